"""Focal loss for calibration: Mukhoti et al., "Calibrating Deep Neural Networks using Focal
Loss", NeurIPS 2020. Official code: github.com/torrvision/focal_calibration
(Losses/focal_loss_adaptive_gamma.py).

``loss = mean_i -(1 - p_iy)^gamma_i log p_iy`` with ``p = softmax(f)``.

Default: their FLSD-53 (sample-dependent gamma): ``gamma_i = 5`` when ``p_iy < 0.2``, else
``gamma_i = 3`` (``gamma``). This is the official ``FocalLossAdaptive(gamma=3)``: its table
gives 5 below 0.2 and 3 in [0.2, 0.5), and ``gamma`` from 0.5 up. ``adaptive=false`` gives
focal loss with a fixed ``gamma`` (their FL-3 with gamma=3). As in the official code, gamma_i
is chosen from ``p_iy`` without a gradient through the choice.

Difference from the official code: the official losses *sum* over the batch
(``size_average=False``, and its CE is ``reduction='sum'`` too); this head averages, like
every oodlab head, so learning rates transfer between losses. With SGD the official runs
are these with the learning rate times the batch size.

Probability targets (N, K) generalise it to ``sum_k t_ik (1 - p_ik)^gamma_ik (-log p_ik)``,
the same value for one-hot rows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from oodlab.losses._ops import boolean, no_autocast, non_negative, one_hot_probabilities
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead

#: FLSD-53: below this probability of the true class, gamma is LOW_P_GAMMA
LOW_P = 0.2
LOW_P_GAMMA = 5.0


@register_loss
class FocalHead(LinearHead):
    """Focal loss, FLSD-53 by default (``gamma=3``, ``adaptive=true``)."""

    name = "focal"
    default_score = "msp"

    def __init__(
        self, in_features: int, num_classes: int, gamma: float = 3.0, adaptive: bool = True
    ):
        super().__init__(in_features, num_classes)
        self.gamma = non_negative("loss.gamma", gamma)
        self.adaptive = boolean("loss.adaptive", adaptive)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        with no_autocast(logits):
            log_p = F.log_softmax(fp32(logits), dim=1)
            p = log_p.exp()
            gamma = torch.full_like(p, self.gamma)
            if self.adaptive:
                gamma = torch.where(p.detach() < LOW_P, LOW_P_GAMMA, gamma)
            t = one_hot_probabilities(targets, logits.shape[1], log_p.dtype).to(log_p)
            # (1 - p)^gamma with a finite gradient at p = 1 (gamma >= 0)
            weight = (1.0 - p).clamp_min(0.0).pow(gamma)
            return -(t * weight * log_p).sum(dim=1).mean()

    def hparams(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "adaptive": self.adaptive}
