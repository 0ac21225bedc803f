"""GEN: generalized entropy of the softmax (Liu et al., CVPR 2023)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from oodlab.scores.base import (
    HParam,
    Outputs,
    Score,
    positive_float,
    positive_int,
    register_score,
)


@register_score
class GEN(Score):
    """Minus the generalized entropy of the ``M`` largest softmax probabilities.

    Liu, Lochman and Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution
    Detection" (CVPR 2023); official code XixiLiu95/GEN (benchmark.py ``generalized_entropy``),
    OpenOOD v1.5 openood/postprocessors/gen_postprocessor.py:
    ``score = -sum_{j in top M} p_j^gamma (1 - p_j)^gamma``. ``M`` above the number of
    classes means all of them (the official slice ``[:, -M:]``).

    * ``gamma``: 0.1 (paper and official ``--gamma`` default; OpenOOD
      configs/postprocessors/gen.yml); grid (0.01, 0.1, 0.5, 1, 2, 5, 10), OpenOOD's
      ``gamma_list``.
    * ``M``: 100 (official ``--M`` default, ImageNet; OpenOOD gen.yml); grid
      (10, 50, 100, 200, 500, 1000), OpenOOD's ``M_list``.
    """

    name = "gen"
    paper = "Liu et al., CVPR 2023"
    spec: ClassVar[dict[str, HParam]] = {
        "gamma": HParam(0.1, (0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0), positive_float),
        "M": HParam(100, (10, 50, 100, 200, 500, 1000), positive_int),
    }

    def score(self, outputs: Outputs) -> Tensor:
        gamma, m = self._hparams["gamma"], self._hparams["M"]
        p = outputs.logits.double().softmax(dim=1)
        top = p.topk(min(m, p.shape[1]), dim=1).values
        return -(top.pow(gamma) * (1.0 - top).pow(gamma)).sum(dim=1).float()
