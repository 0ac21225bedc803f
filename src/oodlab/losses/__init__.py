"""Loss heads: what turns penultimate features into logits, and logits into a training loss.

Each head registers itself in :data:`LOSSES` under its ``name`` (``@register_loss``), and
:data:`LOSSES` is how heads are built: ``conf/loss/<name>.yaml`` holds ``name: <registered
name>`` and the head's hyperparameters, and :func:`build_loss_head` looks the class up and
passes it the rest. Every module of this package whose name does not start with ``_`` is
imported here, so a new loss is one module (a registered :class:`LossHead`) plus one
``conf/loss/<name>.yaml``: no line to add here or in the tests (tests/test_losses.py runs its
generic checks on every registered head and every conf/loss file).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from typing import Any

from oodlab.errors import ConfigError
from oodlab.losses.base import LOSSES, LossHead, register_loss
from oodlab.losses.ce import CrossEntropyHead, LinearHead
from oodlab.losses.dismax import DisMaxHead
from oodlab.losses.isomax import IsoMaxHead, IsoMaxPlusHead
from oodlab.losses.logit_penalty import LogitPenaltyHead
from oodlab.losses.logitnorm import LogitNormHead

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

#: the arguments build_loss_head gives every head itself
SIZE_ARGS = ("in_features", "num_classes")


def head_keys(cls: type[LossHead]) -> list[str] | None:
    """The hyperparameters ``cls.__init__`` accepts (None: any, it takes ``**kwargs``)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in SIZE_ARGS]


def loss_name(loss: Mapping[str, Any]) -> str:
    """The registered name ``loss`` asks for: its ``name``, or, in the loss config of a
    checkpoint written before heads were built by name, the class its ``_target_`` names."""
    if "name" in loss:
        return str(loss["name"])
    target = loss.get("_target_")
    if target:
        module, _, attr = str(target).rpartition(".")
        return getattr(importlib.import_module(module), attr).name
    raise ConfigError("loss.name", None, f"the name of a loss head, one of {LOSSES.names()}")


def build_loss_head(loss: Mapping[str, Any], in_features: int, num_classes: int) -> LossHead:
    """The head ``loss`` describes (``{"name": "logitnorm", "tau": 0.04}``, the ``loss`` config
    group as a plain dict): the class registered under ``name``, given the other keys.

    A key the head does not accept is a ConfigError naming it and the head's keys."""
    cls = LOSSES[loss_name(loss)]
    hparams = {k: v for k, v in loss.items() if k not in ("name", "_target_")}
    accepted = head_keys(cls)
    if accepted is not None:
        for key, value in hparams.items():
            if key not in accepted:
                keys = ", ".join(accepted) or "none: it has no hyperparameters"
                raise ConfigError(f"loss.{key}", value, f"a key of loss {cls.name} ({keys})")
    return cls(in_features=in_features, num_classes=num_classes, **hparams)


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
    "head_keys",
    "register_loss",
]
