"""Outlier Exposure: Hendrycks, Mazeika and Dietterich, "Deep Anomaly Detection with Outlier
Exposure", ICLR 2019. Official code: github.com/hendrycks/outlier-exposure (CIFAR/oe_scratch.py,
oe_tune.py); OpenOOD v1.5: openood/trainers/oe_trainer.py, configs/pipelines/train/train_oe.yml.

``loss = CE(f_in, y) + weight * mean_o CE(f_o, uniform)`` with
``CE(f_o, uniform) = logsumexp(f_o) - mean_k f_ok``, the outliers' cross-entropy to the
uniform distribution. ID and outlier images go through the backbone in one batch, as in the
official code (batch-norm statistics over both).

Defaults and where they come from: ``weight = 0.5`` (the paper's lambda for vision, the
official code's 0.5 and OpenOOD's lambda_oe); 2 outliers per ID image (``outlier_ratio``):
the official code's oe_batch_size 256 for batch_size 128, OpenOOD's cifar10_oe.yml too.
``val/loss`` is the CE term (validation has no outliers).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from oodlab.losses._ops import cross_entropy, no_autocast, non_negative
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead


@register_loss
class OutlierExposureHead(LinearHead):
    """CE on ID images plus ``weight`` times the outliers' CE to the uniform distribution."""

    name = "oe"
    default_score = "msp"
    uses_outliers = True
    outlier_ratio = 2.0

    def __init__(self, in_features: int, num_classes: int, weight: float = 0.5):
        super().__init__(in_features, num_classes)
        self.weight = non_negative("loss.weight", weight)

    def training_loss(
        self, features: Tensor, targets: Tensor, outlier_features: Tensor | None = None
    ) -> Tensor:
        loss = cross_entropy(self(features), targets)
        if outlier_features is None:
            return loss
        with no_autocast(outlier_features):
            z = fp32(self(outlier_features))
            to_uniform = (torch.logsumexp(z, dim=1) - z.mean(dim=1)).mean()
        return loss + self.weight * to_uniform

    def hparams(self) -> dict[str, Any]:
        return {"weight": self.weight}
