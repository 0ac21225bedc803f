"""SCALE: post-hoc feature scaling (Xu et al., ICLR 2024)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import chunks, energy, kept_count, model_head, top_k_mask
from oodlab.scores.base import HParam, Outputs, Score, percentile, register_score, run_head


def scale_features(features: Tensor, percentile: float) -> Tensor:
    """Each row times ``exp(s1 / s2)`` (float64): ``s1`` its sum, ``s2`` the sum of its
    ``n - round(n p / 100)`` largest activations. Nothing is pruned."""
    x = features.double()
    mask = top_k_mask(x, kept_count(x.shape[1], percentile))
    s1 = x.sum(dim=1, keepdim=True)
    s2 = torch.where(mask, x, 0.0).sum(dim=1, keepdim=True)
    ratio = torch.where(s2 != 0, s1 / torch.where(s2 != 0, s2, 1.0), 0.0)
    return x * torch.exp(ratio)


@register_score
class SCALE(Score):
    """Energy of the head applied to the penultimate features scaled by ``exp(s1 / s2)``.

    Xu, Lian, Yang and Yan, "Scaling for Training Time and Post-hoc Out-of-distribution
    Detection Enhancement" (ICLR 2024); official code kai422/SCALE (an OpenOOD fork:
    openood/networks/scale_net.py), OpenOOD v1.5 openood/networks/scale_net.py with
    openood/postprocessors/scale_postprocessor.py. ``s1`` is a sample's activation sum and
    ``s2`` the sum of its largest ``n - round(n p / 100)`` activations (ASH-S's sharpening
    factor, without ASH's pruning). It acts on the cached penultimate features, after the
    pooling, as the paper does; the head re-runs on them and the score is ``logsumexp``.

    ``percentile``: 85 by default (the official repo's and OpenOOD's
    configs/postprocessors/scale.yml ``percentile: 85``); grid (65, 70, 75, 80, 85, 90, 95),
    OpenOOD's ``percentile_list`` (the official fork's sweep also has 50, 55 and 60).
    Ties at the boundary go by unit order (they do not change ``s2``). A row whose top
    activations sum to 0 is left unscaled (the official code gives 0/0 = NaN).
    """

    name = "scale"
    paper = "Xu et al., ICLR 2024"
    needs_features = True
    needs_head = True
    spec: ClassVar[dict[str, HParam]] = {
        "percentile": HParam(85.0, (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0), percentile),
    }

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        self.head = model_head(model)

    def score(self, outputs: Outputs) -> Tensor:
        scores = [
            energy(
                run_head(self.head, scale_features(block, self._hparams["percentile"]).float())
            ).float()
            for block in chunks(outputs.features)
        ]
        return torch.cat(scores) if scores else outputs.features.new_zeros(0).float()
