"""Softmax cross-entropy on a linear layer: the baseline every other head is compared with."""

from __future__ import annotations

import logging

import torch.nn.functional as F
from torch import Tensor, nn

from oodlab.losses._ops import cross_entropy, no_autocast
from oodlab.losses.base import LossHead, fp32, register_loss

log = logging.getLogger(__name__)


class LinearHead(LossHead):
    """A ``nn.Linear`` classifier (``self.fc``), run in fp32 even under autocast.

    The layer is tiny next to the backbone, and fp32 logits keep the losses that rescale
    them (LogitNorm divides by tau ~ 0.04) and the post-hoc scores free of bf16 rounding.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        with no_autocast(features):
            return F.linear(fp32(features), self.fc.weight, self.fc.bias)

    @property
    def linear_layer(self) -> nn.Linear | None:
        return self.fc


@register_loss
class CrossEntropyHead(LinearHead):
    """``loss = CE(f, y)`` with ``f = W x + b``.

    ``tau`` is accepted and has no effect. It exists so that the LogitNorm paper's grid,
    ``-m loss=ce,logitnorm loss.tau=0.01,0.04``, composes for the CE jobs too (Hydra refuses
    to override a key a config lacks). :meth:`hparams` leaves it out, so run.loss_params
    stays ``{}`` and reports treat CE runs of every tau as one setting.
    """

    name = "ce"
    default_score = "msp"

    def __init__(self, in_features: int, num_classes: int, tau: float | None = None):
        super().__init__(in_features, num_classes)
        if tau is not None:
            log.info("loss.tau=%s does not apply to loss=ce; it is ignored", tau)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(logits, targets)
