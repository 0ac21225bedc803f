"""LogitNorm: Wei et al., "Mitigating Neural Network Overconfidence with Logit
Normalization", ICML 2022 (official code: github.com/hongxin001/logitnorm_ood)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from oodlab.losses._ops import cross_entropy, no_autocast, positive
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead

#: added to the logit norm, as in the official code (keeps f = 0 finite)
NORM_OFFSET = 1e-7


@register_loss
class LogitNormHead(LinearHead):
    """``loss = CE(f / (tau * (||f||_2 + 1e-7)), y)``; evaluation sees the raw logits ``f``.

    ``tau`` > 0 is the temperature (``loss.tau``): 0.04 for CIFAR-10 in the paper. The loss
    is bounded below by ``log(1 + (K - 1) exp(-2 / tau))``; the official maintainer advises
    a smaller tau for more classes (about 0.0085 for CIFAR-100, logitnorm_ood issue #2).
    """

    name = "logitnorm"
    default_score = "msp"

    def __init__(self, in_features: int, num_classes: int, tau: float = 0.04):
        super().__init__(in_features, num_classes)
        self.tau = positive("loss.tau", tau)

    def normalized_logits(self, logits: Tensor) -> Tensor:
        with no_autocast(logits):
            f = fp32(logits)
            norms = torch.linalg.vector_norm(f, dim=1, keepdim=True) + NORM_OFFSET
            return f / (norms * self.tau)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(self.normalized_logits(logits), targets)

    def hparams(self) -> dict[str, Any]:
        return {"tau": self.tau}
