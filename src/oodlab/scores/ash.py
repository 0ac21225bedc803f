"""ASH: activation shaping of the penultimate features (Djurisic et al., ICLR 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import chunks, energy, kept_count, model_head, one_of, top_k_mask
from oodlab.scores.base import HParam, Outputs, Score, percentile, register_score, run_head

PERCENTILES = (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)


def ash(features: Tensor, percentile: float, variant: str) -> Tensor:
    """ASH-P, -B or -S of each row (float64): keep the ``n - round(n p / 100)`` largest
    activations and zero the rest; then

    * ``p`` (prune): the kept values as they are;
    * ``b`` (binarise): every kept unit set to ``s1 / k``, ``s1`` the row's sum before pruning;
    * ``s`` (scale): the kept values times ``exp(s1 / s2)``, ``s2`` the sum after pruning.
    """
    x = features.double()
    k = kept_count(x.shape[1], percentile)
    mask = top_k_mask(x, k)
    s1 = x.sum(dim=1, keepdim=True)
    pruned = torch.where(mask, x, 0.0)
    if variant == "p":
        return pruned
    if variant == "b":
        return torch.where(mask, s1 / max(k, 1), 0.0)
    s2 = pruned.sum(dim=1, keepdim=True)
    # a row whose kept values sum to 0 (all-zero features) is left as pruned, not 0/0 = NaN
    ratio = torch.where(s2 != 0, s1 / torch.where(s2 != 0, s2, 1.0), 0.0)
    return pruned * torch.exp(ratio)


@register_score
class ASH(Score):
    """Energy of the head applied to activation-shaped penultimate features.

    Djurisic, Bozanic, Ashok and Liu, "Extremely Simple Activation Shaping for
    Out-of-Distribution Detection" (ICLR 2023); official code andrijazz/ash (ash.py), OpenOOD
    v1.5 openood/networks/ash_net.py with openood/postprocessors/ash_postprocessor.py. The
    shaping (see :func:`ash`) acts on the cached penultimate features, after the global
    pooling, as the paper and both codes do; the head then re-runs on them (no backbone
    pass) and the score is ``logsumexp`` of its logits.

    * ``variant``: ``b`` by default, the one OpenOOD v1.5's ``ash`` runs (``ash_b`` in
      ash_net.py); ``s`` and ``p`` are the paper's other two. The official repository's
      configs use ``ash_s`` (``ash_s@95`` CIFAR, ``ash_s@90`` ImageNet). The default grid keeps
      OpenOOD's one variant; ``eval.grids.ash.variant=[s,b,p]`` lets the validation pair
      choose, ``eval.params.ash.variant=s`` fixes another.
    * ``percentile``: 90 by default, OpenOOD configs/postprocessors/ash.yml
      (``percentile: 90``); grid (65, 70, 75, 80, 85, 90, 95), its ``percentile_list``.

    Units with equal activations at the pruning boundary are kept in unit order (a stable
    sort); the official ``torch.topk`` leaves that order unspecified, which matters for ASH-B
    when the k-th largest value is tied (typically several zeros). An all-zero row under ASH-S
    stays zero (the official code gives 0/0 = NaN).
    """

    name = "ash"
    paper = "Djurisic et al., ICLR 2023"
    needs_features = True
    needs_head = True
    spec: ClassVar[dict[str, HParam]] = {
        "percentile": HParam(90.0, PERCENTILES, percentile),
        "variant": HParam("b", ("b",), one_of("s", "b", "p")),
    }

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        self.head = model_head(model)

    def score(self, outputs: Outputs) -> Tensor:
        scores = [
            energy(
                run_head(
                    self.head,
                    ash(block, self._hparams["percentile"], self._hparams["variant"]).float(),
                )
            ).float()
            for block in chunks(outputs.features)
        ]
        return torch.cat(scores) if scores else outputs.features.new_zeros(0).float()
