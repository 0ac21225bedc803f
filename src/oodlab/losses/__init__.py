"""Loss heads: what turns penultimate features into logits, and logits into a training loss.

Each head registers itself in :data:`LOSSES` under its ``name``. ``conf/loss/<name>.yaml``
names the class as a Hydra ``_target_``; :func:`build_loss_head` instantiates it for a
backbone's feature width and the task's classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oodlab._infra.instantiate import instantiate
from oodlab.losses.base import LOSSES, LossHead, register_loss
from oodlab.losses.ce import CrossEntropyHead, LinearHead
from oodlab.losses.dismax import DisMaxHead
from oodlab.losses.isomax import IsoMaxHead, IsoMaxPlusHead
from oodlab.losses.logit_penalty import LogitPenaltyHead
from oodlab.losses.logitnorm import LogitNormHead


def build_loss_head(loss: Mapping[str, Any], in_features: int, num_classes: int) -> LossHead:
    """The head ``loss`` describes (``{"_target_": ..., "tau": 0.04}``, the ``loss`` config
    group as a plain dict): its hyperparameters go to the head class's ``__init__``."""
    return instantiate(dict(loss), in_features=in_features, num_classes=num_classes)


__all__ = [
    "LOSSES",
    "CrossEntropyHead",
    "DisMaxHead",
    "IsoMaxHead",
    "IsoMaxPlusHead",
    "LinearHead",
    "LogitNormHead",
    "LogitPenaltyHead",
    "LossHead",
    "build_loss_head",
    "register_loss",
]
