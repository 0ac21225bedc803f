"""The loss-head interface and the registry of loss heads.

A head maps penultimate features to the raw logits that evaluation sees, and owns the
training loss computed from the features (and, for outlier exposure, from an outlier batch's
features). Everything a loss needs (a temperature, learnable prototypes, an entropic scale,
a mixing distribution) lives in the head, so the Lightning task never changes when a new loss
is added.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from oodlab._infra.registry import Registry


class LossHead(nn.Module):
    """Base class: ``head(features) -> logits`` (evaluation) and
    ``head.training_loss(features, targets, outlier_features=None) -> scalar`` (training).

    The training step of :class:`oodlab.task.OODClassificationTask` is, for every head::

        images, targets = head.prepare_batch(images, labels)          # batch alteration
        if the run draws outliers (outliers=...) and head.uses_outliers:
            images, targets, outliers = head.mix_outliers(images, targets, outliers)
        features = backbone(cat([images, outliers]))                  # one forward
        loss = head.training_loss(features[:n], targets, features[n:] or None)

    A head overrides :meth:`loss` when its objective is a function of its evaluation logits
    (the default :meth:`training_loss` is ``self.loss(self(features), targets)``, so CE,
    LogitNorm, IsoMax and DisMax never see the features), or :meth:`training_loss` when it is
    not (T2FNorm's training-only feature normalisation, outlier exposure).

    What the logged numbers mean, the same for every head:

    - ``train/loss`` (and results.json's ``logit_norm.train_loss``): the mean of
      :meth:`training_loss` over the epoch's training steps, i.e. the objective the optimiser
      minimised, on the altered batch and with the outlier batch when the run draws one.
    - ``val/loss``: :meth:`training_loss` on the ID validation batch, unaltered (no
      :meth:`prepare_batch`, no mixing) and without outliers (``outlier_features=None``):
      the part of the objective that needs no outliers, on clean ID images. For CE-like
      heads with mixing (mixup, RegMixup, MixOE) that is the plain CE term; for OE it is the
      CE term; for Energy-OE the CE term plus the ID energy hinge.
    - the logit-norm curves (``norm/train``, ``norm/val_id``, ``norm/ood``; results.json's
      ``logit_norm``): the mean L2 norm of the *evaluation* logits ``head(features)``, never
      of a training-only transform of them (T2FNorm's normalised features, LogitNorm's
      normalised logits, IsoMax's entropic scale). In training, over the first ``N`` rows of
      the batch, ``N`` the number of ID images the loader gave: the clean images where a head
      appends altered ones (DisMax's FPR, RegMixup, MixOE), the mixed ones where it replaces
      them (mixup); never the outliers. The training accuracy uses the same rows.
    """

    #: registry key, also written to results.json as run.loss
    name: ClassVar[str]
    #: the OOD score that suits this head, by its registered score name
    default_score: ClassVar[str] = "msp"
    #: the head's objective needs an outlier batch (outlier exposure): the run must name an
    #: outlier set (``outliers=``), and a run without one stops with a one-line error
    uses_outliers: ClassVar[bool] = False
    #: outliers per ID image in a step (outlier batch size = ratio x ID batch size) when the
    #: ``outliers`` config leaves ``ratio`` unset: the head's paper's value
    outlier_ratio: ClassVar[float] = 1.0

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes

    def forward(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def training_loss(
        self, features: Tensor, targets: Tensor, outlier_features: Tensor | None = None
    ) -> Tensor:
        """The training objective from penultimate ``features`` (rows of the possibly altered
        ID batch), ``targets`` as :meth:`prepare_batch` returned them, and the outlier
        batch's features when the run draws one (None otherwise, and always in validation).

        The default ignores outliers and is ``self.loss(self(features), targets)``.
        """
        return self.loss(self(features), targets)

    def prepare_batch(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Hook for losses that alter the training batch (DisMax's fractional probabilities,
        mixup).

        Called on normalised, augmented training images only. The returned targets are what
        :meth:`training_loss` receives: class indices (N,) or probabilities (N, K).
        """
        return images, targets

    def mix_outliers(
        self, images: Tensor, targets: Tensor, outliers: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Hook for losses that build training images from ID and outlier images (MixOE).

        Called after :meth:`prepare_batch`, with the step's normalised, augmented outlier
        images, only when the run draws outliers and :attr:`uses_outliers` is true. Returns
        the ID images and targets the backbone and :meth:`training_loss` get, and the
        outlier images whose features become ``outlier_features`` (None: no outlier
        features). The default leaves everything as it is.
        """
        return images, targets, outliers

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
