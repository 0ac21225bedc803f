"""Label smoothing: Szegedy et al., "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016 (Sec. 7), studied for calibration by Mueller, Kornblith and Hinton, "When
Does Label Smoothing Help?", NeurIPS 2019.

``loss = CE(f, (1 - eps) * onehot(y) + eps / K)``, torch's ``label_smoothing`` convention
(the uniform share ``eps / K`` also goes to the true class). Default ``eps = 0.1``, the value
of both papers (Szegedy et al. use 0.1 on ImageNet; Mueller et al. 0.05-0.1).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from oodlab._infra.validate import non_negative
from oodlab.errors import ConfigError
from oodlab.losses._ops import cross_entropy, one_hot_probabilities
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead


@register_loss
class LabelSmoothingHead(LinearHead):
    """CE against targets smoothed towards uniform by ``epsilon``."""

    name = "label_smoothing"
    default_score = "msp"

    def __init__(self, in_features: int, num_classes: int, epsilon: float = 0.1):
        super().__init__(in_features, num_classes)
        self.epsilon = non_negative("loss.epsilon", epsilon)
        if self.epsilon >= 1:
            raise ConfigError("loss.epsilon", epsilon, "in [0, 1)")

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        dtype = fp32(logits).dtype
        probs = one_hot_probabilities(targets, logits.shape[1], dtype).to(logits.device)
        smoothed = (1.0 - self.epsilon) * probs + self.epsilon / logits.shape[1]
        return cross_entropy(logits, smoothed)

    def hparams(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}
