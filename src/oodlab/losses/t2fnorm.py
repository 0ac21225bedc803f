"""T2FNorm: Regmi et al., "T2FNorm: Train-time Feature Normalization for OOD Detection in
Image Classification", CVPR Workshops 2024 (arXiv:2305.17797). Reference implementation:
OpenOOD v1.5 (Jingkang50/OpenOOD: openood/networks/t2fnorm_net.py, trainers/t2fnorm_trainer.py,
configs/pipelines/train/train_t2fnorm.yml).

Training: the penultimate features are L2-normalised and divided by ``tau`` (norm ``1/tau``)
before the linear layer, and the loss is plain CE. Evaluation: the linear layer on the raw,
un-normalised features, as the paper describes ("non-transformed space for OOD scoring").

Defaults and where they come from: ``tau = 0.1``, OpenOOD's train_t2fnorm.yml (the trainer
calls ``net.set_tau(0.1)``).

Where OpenOOD differs from the paper: its ``forward_ood_inference`` also divides the raw
features by ``tau`` before the linear layer for models trained from scratch (a temperature
of ``tau`` on the weight term, the bias left alone). ``eval_scale=true`` reproduces that;
the default (false) follows the paper and keeps ``head(features) = W f + b``, so the
closed-form linear-head scores (``linear_layer``) apply.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from oodlab.losses._ops import boolean, cross_entropy, l2_normalize, no_autocast, positive
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead


@register_loss
class T2FNormHead(LinearHead):
    """``loss = CE(W (f / (tau ||f||)) + b, y)``; evaluation sees ``W f + b`` (or
    ``W f / tau + b`` with ``eval_scale``)."""

    name = "t2fnorm"
    default_score = "msp"

    def __init__(self, in_features: int, num_classes: int, tau: float = 0.1, eval_scale=False):
        super().__init__(in_features, num_classes)
        self.tau = positive("loss.tau", tau)
        self.eval_scale = boolean("loss.eval_scale", eval_scale)

    def forward(self, features: Tensor) -> Tensor:
        if not self.eval_scale:
            return super().forward(features)
        with no_autocast(features):
            return F.linear(fp32(features) / self.tau, self.fc.weight, self.fc.bias)

    def training_loss(
        self, features: Tensor, targets: Tensor, outlier_features: Tensor | None = None
    ) -> Tensor:
        with no_autocast(features):
            z = F.linear(l2_normalize(features) / self.tau, self.fc.weight, self.fc.bias)
            return cross_entropy(z, targets)

    @property
    def linear_layer(self) -> nn.Linear | None:
        return None if self.eval_scale else self.fc

    def hparams(self) -> dict[str, Any]:
        return {"tau": self.tau, "eval_scale": self.eval_scale}
