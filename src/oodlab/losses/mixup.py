"""mixup: Zhang, Cisse, Dauphin and Lopez-Paz, "mixup: Beyond Empirical Risk Minimization",
ICLR 2018. Official code: github.com/facebookresearch/mixup-cifar10 (train.py).

Each training batch is replaced by convex combinations of its images:
``x~ = lam x + (1 - lam) x[perm]`` with one ``lam ~ Beta(alpha, alpha)`` per batch and
``perm`` a random permutation, trained with CE to ``lam onehot(y) + (1 - lam) onehot(y[perm])``
(the official ``lam CE(y) + (1 - lam) CE(y[perm])``: CE is linear in its targets).

Default ``alpha = 1``: the paper's and the official code's CIFAR value (the paper uses
0.1-0.4 for ImageNet; OpenOOD v1.5's train_mixup.yml uses 0.2). Validation and evaluation
see clean images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from oodlab.losses._ops import cross_entropy, one_hot_probabilities, positive, sample_beta
from oodlab.losses.base import register_loss
from oodlab.losses.ce import LinearHead


def mix_pairs(
    images: Tensor, targets: Tensor, num_classes: int, alpha: float
) -> tuple[Tensor, Tensor]:
    """The mixup batch of ``images`` and its probability targets (no host read)."""
    lam = sample_beta(alpha, alpha, images.device)
    perm = torch.randperm(images.shape[0], device=images.device)
    probs = one_hot_probabilities(targets, num_classes).to(images.device)
    lam_x = lam.to(images.dtype)
    mixed = lam_x * images + (1 - lam_x) * images[perm]
    return mixed, lam * probs + (1 - lam) * probs[perm]


@register_loss
class MixupHead(LinearHead):
    """CE on mixup batches (:meth:`prepare_batch`); evaluation sees ``W x + b``."""

    name = "mixup"
    default_score = "msp"

    def __init__(self, in_features: int, num_classes: int, alpha: float = 1.0):
        super().__init__(in_features, num_classes)
        self.alpha = positive("loss.alpha", alpha)

    def prepare_batch(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The batch replaced by its mixup: N mixed images, (N, K) probability targets."""
        if images.ndim != 4:
            return images, targets
        return mix_pairs(images, targets, self.num_classes, self.alpha)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(logits, targets)

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha}
