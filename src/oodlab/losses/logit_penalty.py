"""Logit penalty: cross-entropy plus an L2 penalty on the logits.

The LogitNorm paper (Wei et al., ICML 2022, Sec. 5) uses it as the obvious alternative to
LogitNorm: it also keeps the logit norm from growing, but only softly, and the paper reports
it to be much weaker for OOD detection. It is here as that ablation.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from oodlab.losses._ops import cross_entropy, no_autocast, non_negative
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead


@register_loss
class LogitPenaltyHead(LinearHead):
    """``loss = CE(f, y) + weight * mean_i ||f_i||_2^2``.

    ``weight`` (lambda, >= 0; 0 gives plain CE). Default 0.1: the order of the coefficient
    used for the Logit Penalty baseline in the LogitNorm paper's comparison. We could not
    check the paper's exact value offline, so tune it (e.g. in 0.01 - 1) if the baseline
    matters for your comparison.
    """

    name = "logit_penalty"
    default_score = "msp"

    def __init__(self, in_features: int, num_classes: int, weight: float = 0.1):
        super().__init__(in_features, num_classes)
        self.weight = non_negative("loss.weight", weight)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        with no_autocast(logits):
            f = fp32(logits)
            penalty = f.pow(2).sum(dim=1).mean()
            return cross_entropy(f, targets) + self.weight * penalty

    def hparams(self) -> dict[str, Any]:
        return {"weight": self.weight}
