"""RegMixup: Pinto, Yang, Lim, Torr and Dokania, "RegMixup: Mixup as a Regularizer Can
Surprisingly Improve Accuracy and Out Distribution Robustness", NeurIPS 2022. Official code:
github.com/FrancescoPinto/RegMixup (models/regmixup.py, commands.sh); OpenOOD v1.5 ports it
(openood/trainers/regmixup_trainer.py).

Each training batch of N images gets N mixup images appended (``lam ~ Beta(alpha, alpha)``,
one per batch, a random pairing), and the loss is the mean CE over all 2N rows, clean rows to
their labels, mixed rows to ``lam onehot(y) + (1 - lam) onehot(y[perm])``.

Defaults and where they come from: ``alpha = 20``, the official commands.sh for CIFAR-10
(OpenOOD's train_regmixup.yml too); the official value for CIFAR-100 is 10.

Paper vs. official code: the paper writes ``CE(clean) + eta * CE(mixed)`` with ``eta = 1``;
the official code (and OpenOOD) averages over the concatenated 2N batch, which is half of
that. We follow the code (the loss is ``(CE(clean) + CE(mixed)) / 2``); with SGD the paper's
form is this one at twice the learning rate. ``eta`` is not a setting: the code has none.
Validation (``val/loss``) sees the clean batch: plain CE.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from oodlab.losses._ops import cross_entropy, one_hot_probabilities, positive
from oodlab.losses.base import register_loss
from oodlab.losses.ce import LinearHead
from oodlab.losses.mixup import mix_pairs


@register_loss
class RegMixupHead(LinearHead):
    """Mean CE over the clean batch and its appended mixup batch."""

    name = "regmixup"
    default_score = "msp"

    def __init__(self, in_features: int, num_classes: int, alpha: float = 20.0):
        super().__init__(in_features, num_classes)
        self.alpha = positive("loss.alpha", alpha)

    def prepare_batch(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The N clean images followed by N mixup images, with (2N, K) probability targets
        (the clean rows one-hot)."""
        if images.ndim != 4:
            return images, targets
        mixed, mixed_probs = mix_pairs(images, targets, self.num_classes, self.alpha)
        probs = one_hot_probabilities(targets, self.num_classes).to(images.device)
        return torch.cat([images, mixed]), torch.cat([probs, mixed_probs])

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(logits, targets)

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha}
