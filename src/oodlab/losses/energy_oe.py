"""Energy-bounded outlier exposure: Liu, Wang, Owens and Li, "Energy-based Out-of-distribution
Detection", NeurIPS 2020. Official code: github.com/wetliu/energy_ood (CIFAR/train.py,
``--score energy``).

With the energy ``E(x) = -logsumexp(f(x))``::

    loss = CE(f_in, y) + weight * (mean_in relu(E_in - m_in)^2 + mean_out relu(m_out - E_out)^2)

ID energies above ``m_in`` and outlier energies below ``m_out`` are penalised. ID and
outlier images go through the backbone in one batch, as in the official code.

Defaults and where they come from, all the official train.py's CIFAR values and the paper's
(Sec. 4.1): ``m_in = -25``, ``m_out = -7``, ``weight = 0.1``, 2 outliers per ID image
(oe_batch_size 256 for batch_size 128). The paper fine-tunes a pretrained network for 10
epochs with these margins; from scratch, ``m_in = -25`` asks for much larger logits than
an untrained network has, and may need tuning. The energy score suits the head.

``val/loss`` (no outliers) is the CE term plus ``weight`` times the ID hinge.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from oodlab._infra.validate import number
from oodlab.losses._ops import cross_entropy, no_autocast, non_negative
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead


@register_loss
class EnergyOEHead(LinearHead):
    """CE plus squared hinges on the ID and outlier energies."""

    name = "energy_oe"
    default_score = "energy"
    uses_outliers = True
    outlier_ratio = 2.0

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        weight: float = 0.1,
        m_in: float = -25.0,
        m_out: float = -7.0,
    ):
        super().__init__(in_features, num_classes)
        self.weight = non_negative("loss.weight", weight)
        self.m_in = number("loss.m_in", m_in, "a finite number")
        self.m_out = number("loss.m_out", m_out, "a finite number")

    def training_loss(
        self, features: Tensor, targets: Tensor, outlier_features: Tensor | None = None
    ) -> Tensor:
        z = self(features)
        loss = cross_entropy(z, targets)
        with no_autocast(z):
            energy_in = -torch.logsumexp(fp32(z), dim=1)
            reg = F.relu(energy_in - self.m_in).pow(2).mean()
            if outlier_features is not None:
                energy_out = -torch.logsumexp(fp32(self(outlier_features)), dim=1)
                reg = reg + F.relu(self.m_out - energy_out).pow(2).mean()
        return loss + self.weight * reg

    def hparams(self) -> dict[str, Any]:
        return {"weight": self.weight, "m_in": self.m_in, "m_out": self.m_out}
