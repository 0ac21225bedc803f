"""IsoMax and IsoMax+: distance-based heads trained with an entropic scale.

- IsoMax: Macedo, Ludermir and Zanchettin, "Entropic Out-of-Distribution Detection"
  (IJCNN 2021; arXiv:1908.05569).
- IsoMax+: Macedo and Ludermir, "Enhanced Isotropy Maximization Loss: Seamless and
  High-Performance Out-of-Distribution Detection Simply Replacing the SoftMax Loss"
  (arXiv:2105.14399).

Official code: github.com/dlmacedo/entropic-out-of-distribution-detection (losses/).
Differences from it, all numerical only:

- the training loss is ``log_softmax`` + NLL in fp32; the official code takes the log of
  the softmax probabilities, which is the same function but returns inf when a probability
  underflows;
- distances use a clamped square root (finite, zero gradient at zero distance) where the
  official code uses ``F.pairwise_distance``, whose ``eps=1e-6`` is added to the difference
  vector: values differ by O(1e-6);
- the official heads also divide the logits by a post-hoc calibration temperature fixed to
  1 during training; oodlab leaves calibration out of these two heads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from oodlab.losses._ops import cross_entropy, euclidean_distances, l2_normalize, positive
from oodlab.losses.base import LossHead, fp32, register_loss


@register_loss
class IsoMaxHead(LossHead):
    """``logits_j = -||f - p_j||_2``; ``loss = CE(entropic_scale * logits, y)``.

    Prototypes ``p`` (K, D) are learnable and start at zero. Evaluation sees the plain
    (unscaled) logits; the entropic score (negative entropy of their softmax) suits it.
    """

    name = "isomax"
    default_score = "es"

    def __init__(self, in_features: int, num_classes: int, entropic_scale: float = 10.0):
        super().__init__(in_features, num_classes)
        self.entropic_scale = positive("loss.entropic_scale", entropic_scale)
        self.prototypes = nn.Parameter(torch.zeros(num_classes, in_features))

    def forward(self, features: Tensor) -> Tensor:
        return -euclidean_distances(features, self.prototypes)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(self.entropic_scale * fp32(logits), targets)

    def hparams(self) -> dict[str, Any]:
        return {"entropic_scale": self.entropic_scale}


@register_loss
class IsoMaxPlusHead(LossHead):
    """``logits_j = -|s| * ||f^ - p^_j||_2`` with L2-normalised features and prototypes.

    Prototypes start N(0, 1); ``distance_scale`` ``s`` is a learnable scalar starting at 1.
    ``loss = CE(entropic_scale * logits, y)``; evaluation sees the plain logits, and the
    minimum-distance score (the max logit) suits it.
    """

    name = "isomaxplus"
    default_score = "mds"

    def __init__(self, in_features: int, num_classes: int, entropic_scale: float = 10.0):
        super().__init__(in_features, num_classes)
        self.entropic_scale = positive("loss.entropic_scale", entropic_scale)
        self.prototypes = nn.Parameter(torch.randn(num_classes, in_features))
        self.distance_scale = nn.Parameter(torch.ones(1))

    def normalized_distances(self, features: Tensor) -> Tensor:
        """``||f^ - p^_j||_2`` in [0, 2], fp32."""
        return euclidean_distances(l2_normalize(features), l2_normalize(self.prototypes))

    def forward(self, features: Tensor) -> Tensor:
        distances = self.normalized_distances(features)
        return -(self.distance_scale.to(distances.dtype).abs() * distances)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(self.entropic_scale * fp32(logits), targets)

    def hparams(self) -> dict[str, Any]:
        return {"entropic_scale": self.entropic_scale}
