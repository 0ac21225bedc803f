"""The loss-head interface and the registry of loss heads.

A head maps penultimate features to the raw logits that evaluation sees, and owns the
training loss computed from those logits. Everything a loss needs (a temperature,
learnable prototypes, an entropic scale) lives in the head, so the Lightning task never
changes when a new loss is added.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from oodlab._infra.registry import Registry


class LossHead(nn.Module):
    """Base class: ``head(features) -> logits``; ``head.loss(logits, targets) -> scalar``."""

    #: registry key, also written to results.json as run.loss
    name: ClassVar[str]
    #: the OOD score that suits this head, by its registered score name
    default_score: ClassVar[str] = "msp"

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes

    def forward(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def prepare_batch(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Hook for losses that alter the training batch (DisMax's fractional probabilities).

        Called on normalised, augmented training images only. The returned targets are what
        :meth:`loss` receives: class indices (N,) or probabilities (N, K).
        """
        return images, targets

    def hparams(self) -> dict[str, Any]:
        """The loss's own hyperparameters, recorded as run.loss_params in results.json."""
        return {}

    @property
    def linear_layer(self) -> nn.Linear | None:
        """The ``nn.Linear`` that computes the logits when the head is one linear map (scores
        with a closed form for linear heads read it); None for every other head."""
        return None


def fp32(t: Tensor) -> Tensor:
    """Norms, distances and log-softmax run in fp32 even under autocast."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


#: every loss head by name (``run.loss`` in results.json); filled by :func:`register_loss`
LOSSES: Registry[type[LossHead]] = Registry("loss")


def register_loss(cls: type[LossHead]) -> type[LossHead]:
    LOSSES.register(cls.name)(cls)
    return cls
