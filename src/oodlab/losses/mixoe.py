"""MixOE: Zhang, Inkawhich, Linderman, Chen and Li, "Mixture Outlier Exposure: Towards
Out-of-Distribution Detection in Fine-grained Environments", WACV 2023. Official code:
github.com/zjysteven/MixOE (train/train_mixoe.py, scripts/train.sh); OpenOOD v1.5:
openood/trainers/mixoe_trainer.py, configs/pipelines/train/train_mixoe.yml.

Each ID image ``x_i`` is mixed with an outlier ``o_i``: CutMix pastes a box of the outlier
into the ID image (``mix_op=cutmix``: one box per batch, its area ``1 - lam``, ``lam``
recomputed from the clipped box) or mixup blends them (``mix_op=mixup``:
``lam x + (1 - lam) o``), with ``lam ~ Beta(alpha, beta)`` once per batch. The mixed image's
target is ``lam onehot(y) + (1 - lam) / K``::

    loss = CE(f(x), y) + weight * softCE(f(mixed), lam onehot(y) + (1 - lam) / K)

Defaults and where they come from: OpenOOD v1.5's train_mixoe.yml, the CIFAR / ImageNet-200
benchmark setting: ``mix_op = cutmix``, ``alpha = 0.1``, ``beta = 1.0``, ``weight = 1.0``
(its ``lambda_oe``), one outlier per ID image (its script sets oe batch = ID batch = 128).

Official code vs. OpenOOD: the official code draws ``lam ~ Beta(alpha, alpha)`` and uses
``beta`` as the loss weight (its fine-grained runs: cutmix alpha=2 weight=5, mixup alpha=1
weight=5); OpenOOD draws ``lam ~ Beta(alpha, beta)`` with a separate ``lambda_oe``. This head
has both parameters of the Beta distribution and a separate ``weight``, so both are
settings: ``loss.alpha=2 loss.beta=2 loss.weight=5`` is the official cutmix run. Both
forward the mixed batch separately from the ID batch; here the N mixed images are appended
to the N ID images and go through the backbone in one batch (batch-norm statistics over
both). The box is drawn on the device: its centre is uniform over the image, its sides
``floor(H sqrt(1 - lam))`` and ``floor(W sqrt(1 - lam))``, clipped, as in ``rand_bbox``.
``val/loss`` (no outliers) is the CE term.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from oodlab.errors import ConfigError
from oodlab.losses._ops import (
    cross_entropy,
    non_negative,
    one_hot_probabilities,
    positive,
    sample_beta,
)
from oodlab.losses.base import register_loss
from oodlab.losses.ce import LinearHead

MIX_OPS = ("cutmix", "mixup")


def cutmix_box(lam: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """(H, W) boolean mask of one random box of area about ``1 - lam`` (clipped at the
    borders), and the ``lam`` the clipped box gives: ``1 - area / (H W)``."""
    cut = torch.sqrt(1.0 - lam)
    sides = []
    for size in (height, width):
        length = torch.floor(size * cut)
        centre = torch.randint(0, size, (), device=lam.device).to(length.dtype)
        half = torch.floor(length / 2)
        lo = (centre - half).clamp(0, size)
        hi = (centre + half).clamp(0, size)
        pos = torch.arange(size, device=lam.device, dtype=length.dtype)
        sides.append(((pos >= lo) & (pos < hi), hi - lo))
    (rows, h), (cols, w) = sides
    return rows[:, None] & cols[None, :], 1.0 - h * w / (height * width)


@register_loss
class MixOEHead(LinearHead):
    """CE on ID images plus ``weight`` times soft CE on ID/outlier mixtures."""

    name = "mixoe"
    default_score = "msp"
    uses_outliers = True
    outlier_ratio = 1.0

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        alpha: float = 0.1,
        beta: float = 1.0,
        weight: float = 1.0,
        mix_op: str = "cutmix",
    ):
        super().__init__(in_features, num_classes)
        self.alpha = positive("loss.alpha", alpha)
        self.beta = positive("loss.beta", beta)
        self.weight = non_negative("loss.weight", weight)
        if mix_op not in MIX_OPS:
            raise ConfigError("loss.mix_op", mix_op, " or ".join(MIX_OPS))
        self.mix_op = mix_op

    def mix_outliers(
        self, images: Tensor, targets: Tensor, outliers: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The N ID images followed by N mixtures (ID image i with outlier i mod M), with
        (2N, K) probability targets (the ID rows one-hot); no outlier features."""
        n, m = images.shape[0], outliers.shape[0]
        if m < n:
            outliers = outliers[torch.arange(n, device=outliers.device) % m]
        outliers = outliers[:n].to(images.dtype)
        lam = sample_beta(self.alpha, self.beta, images.device)
        if self.mix_op == "cutmix":
            mask, lam = cutmix_box(lam, images.shape[2], images.shape[3])
            mixed = torch.where(mask, outliers, images)
        else:
            lam_x = lam.to(images.dtype)
            mixed = lam_x * images + (1 - lam_x) * outliers
        probs = one_hot_probabilities(targets, self.num_classes).to(images.device)
        soft = lam * probs + (1 - lam) / self.num_classes
        return torch.cat([images, mixed]), torch.cat([probs, soft]), None

    def training_loss(
        self, features: Tensor, targets: Tensor, outlier_features: Tensor | None = None
    ) -> Tensor:
        """Class indices (validation): CE. The (2N, K) targets of :meth:`mix_outliers`: CE
        on the first N rows plus ``weight`` times soft CE on the last N."""
        logits = self(features)
        if targets.ndim == 1:
            return cross_entropy(logits, targets)
        n = targets.shape[0] // 2
        return cross_entropy(logits[:n], targets[:n]) + self.weight * cross_entropy(
            logits[n:], targets[n:]
        )

    def hparams(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "weight": self.weight,
            "mix_op": self.mix_op,
        }
