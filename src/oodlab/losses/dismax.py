"""DisMax: Macedo, Zanchettin and Ludermir, "Distinction Maximization Loss: Efficiently
Improving Out-of-Distribution Detection and Uncertainty Estimation by Replacing the Loss and
Calibrating" (arXiv:2205.05874). Official code: github.com/dlmacedo/distinction-maximization-loss
(losses/dismax.py).

Details taken from the official code:

- isometric distances are ``|s| * ||f^ - p^_j|| / sqrt(2)``: the code's 1/sqrt(2) makes
  the distance between orthogonal unit vectors 1 (range [0, sqrt(2)] times ``|s|``);
- ``temperature`` defaults to 1.0; the official code changes it only by post-hoc
  calibration (it also divides the training logits, so leave it at 1 to train);
- the entropic scale is 10 in training.

Differences from the official code:

- the training loss is ``log_softmax`` + NLL in fp32 (the official code takes the log of the
  softmax, the same function, but inf when a probability underflows), with a clamped square
  root for the distances (finite gradient at zero distance);
- the official loss drops the entropic scale in eval mode; ``loss()`` here is always the
  training loss (scale 10), like oodlab's IsoMax heads;
- fractional probability regularisation (FPR, "DisMax†") is off by default here, on by
  default in the official ``DisMaxLossSecondPart``; see :meth:`DisMaxHead.prepare_batch`
  for how its batch differs.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oodlab.losses._ops import (
    boolean,
    cross_entropy,
    euclidean_distances,
    l2_normalize,
    positive,
)
from oodlab.losses.base import LossHead, fp32, register_loss


@register_loss
class DisMaxHead(LossHead):
    """``d_j = |s| * ||f^ - p^_j||_2 / sqrt(2)``; ``logits_j = -(d_j + mean_k d_k) / T``.

    Prototypes start N(0, 1), ``distance_scale`` ``s`` starts at 1 (both learnable);
    ``T`` = ``temperature`` (fixed). ``loss = CE(entropic_scale * logits, y)``, where the
    targets may be the fractional probabilities built by :meth:`prepare_batch` when
    ``fpr`` is true. The max-mean-logit-entropy score (``mmles``) suits it.
    """

    name = "dismax"
    default_score = "mmles"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        temperature: float = 1.0,
        entropic_scale: float = 10.0,
        fpr: bool = False,
    ):
        super().__init__(in_features, num_classes)
        self.temperature = positive("loss.temperature", temperature)
        self.entropic_scale = positive("loss.entropic_scale", entropic_scale)
        self.fpr = boolean("loss.fpr", fpr)
        self.prototypes = nn.Parameter(torch.randn(num_classes, in_features))
        self.distance_scale = nn.Parameter(torch.ones(1))

    def isometric_distances(self, features: Tensor) -> Tensor:
        distances = euclidean_distances(l2_normalize(features), l2_normalize(self.prototypes))
        return self.distance_scale.to(distances.dtype).abs() * distances / math.sqrt(2.0)

    def forward(self, features: Tensor) -> Tensor:
        d = self.isometric_distances(features)
        return -(d + d.mean(dim=1, keepdim=True)) / self.temperature

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(self.entropic_scale * fp32(logits), targets)

    def prepare_batch(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Fractional probability regularisation: append N quadrant-mixed images.

        With ``perm`` a random permutation of the batch, mixed image ``i`` takes its
        top-left quadrant from image ``perm[i]``, bottom-left from ``perm[i-1]``, top-right
        from ``perm[i-2]`` and bottom-right from ``perm[i-3]`` (indices mod N), and its
        target is ``0.25`` times the sum of those four images' targets. The result is the
        N original images followed by the N mixed ones, with (2N, K) probability targets
        (original rows one-hot).

        The quadrant construction (random permutation, then rolls by 0, 1, 2, 3 along the
        batch) and the 0.25-per-quadrant targets are the official ``preprocess``. The
        official code instead *replaces* the second half of the shuffled batch with mixed
        images and averages the two halves' losses with equal weight (CE on the clean half,
        KL to the fractional targets on the mixed half). Appending N mixed images keeps that
        1:1 clean:mixed weighting (KL and soft CE differ by the targets' entropy, a constant,
        so the gradients agree) without dropping half of every batch, at the cost of
        forwarding 2N images. As in the official code, each quadrant gets weight 0.25 even
        when an odd height or width makes the quadrants unequal. Images that are not
        (N, C, H, W) and batches with fpr off pass through unchanged.
        """
        if not self.fpr or images.ndim != 4:
            return images, targets
        n, k = images.shape[0], self.num_classes
        if targets.ndim == 1:
            probs = F.one_hot(targets.long(), k).to(torch.float32)
        else:
            probs = targets.to(torch.float32)
        perm = torch.randperm(n, device=images.device)
        sources = [torch.roll(perm, shift, 0) for shift in range(4)]  # sources[s][i] = perm[i-s]
        h2, w2 = images.shape[2] // 2, images.shape[3] // 2
        mixed = images[sources[0]]  # advanced indexing copies
        mixed[:, :, h2:, :w2] = images[sources[1]][:, :, h2:, :w2]  # bottom-left
        mixed[:, :, :h2, w2:] = images[sources[2]][:, :, :h2, w2:]  # top-right
        mixed[:, :, h2:, w2:] = images[sources[3]][:, :, h2:, w2:]  # bottom-right
        # a left fold, ((a + b) + c) + d, as sum() adds: the same floats as before
        mixed_probs = 0.25 * functools.reduce(
            torch.add, [probs[s.to(probs.device)] for s in sources]
        )
        return torch.cat([images, mixed]), torch.cat([probs, mixed_probs])

    def hparams(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "entropic_scale": self.entropic_scale,
            "fpr": self.fpr,
        }
