"""Any classifier as evaluation needs it: logits, penultimate features, and the last layer.

Three kinds of model are understood, tried in this order:

1. oodlab's own (``forward_with_features`` and a ``head``);
2. timm's interface: ``forward_features``, ``forward_head(x, pre_logits=True)`` and
   ``get_classifier()``, as every timm model and oodlab's backbones have;
3. anything else (a torchvision model, your own): the last layer is found by name
   (``head="fc"``, or the first of ``fc``, ``classifier``, ``head`` that exists, else the
   last ``nn.Linear``), and a forward hook on it captures its input as the features.

Scores that only read logits work with every model; feature scores (KNN, Mahalanobis,
ReAct, GradNorm) use the features and the last layer described here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from oodlab.errors import ConfigError

HEAD_NAMES = ("fc", "classifier", "head")


class ScoringModel(nn.Module):
    #: the wrapped classifier and its last layer: any module, read by duck typing
    #: (forward_with_features, forward_features/forward_head, a hooked head)
    model: Any
    head: Any

    """Wraps a classifier; ``forward(x)`` gives logits, ``forward_with_features(x)`` gives
    ``(logits, features)`` with features of shape (N, D), and ``head`` maps features to logits."""

    def __init__(self, model: nn.Module, head: str | None = None):
        super().__init__()
        self.model = model
        self._captured: Tensor | None = None
        if (
            head is None
            and callable(getattr(model, "forward_with_features", None))
            and hasattr(model, "head")
        ):
            self.kind = "oodlab"
            self.head = model.head
        elif head is None and all(
            callable(getattr(model, name, None))
            for name in ("forward_features", "forward_head", "get_classifier")
        ):
            self.kind = "timm"
            self.head = self.model.get_classifier()
        else:
            self.kind = "hook"
            self.head = find_head(model, head)
            self.head.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self._captured = args[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "oodlab":
            return self.model.forward_with_features(x)
        if self.kind == "timm":
            maps = self.model.forward_features(x)
            return self.model.forward_head(maps), self.model.forward_head(maps, pre_logits=True)
        self._captured = None
        logits = self.model(x)
        if self._captured is None:
            raise RuntimeError(
                f"the model's forward never called its last layer {type(self.head).__name__}"
            )
        features, self._captured = self._captured.flatten(1), None
        return logits, features


def find_head(model: nn.Module, name: str | None) -> nn.Module:
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules or not name:
            linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            raise ConfigError(
                "head", name, f"the name of the model's last layer, e.g. one of {linear[-3:]}"
            )
        return modules[name]
    for candidate in HEAD_NAMES:
        if isinstance(modules.get(candidate), nn.Module):
            return modules[candidate]
    linear = [m for m in modules.values() if isinstance(m, nn.Linear)]
    if not linear:
        raise ConfigError(
            "head",
            None,
            "the name of the layer that computes the logits "
            "(the model has no nn.Linear to guess from)",
        )
    return linear[-1]


def as_scoring_model(model: nn.Module, head: str | None = None) -> ScoringModel:
    return model if isinstance(model, ScoringModel) and head is None else ScoringModel(model, head)


@contextmanager
def in_eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block; afterwards every submodule has its own training
    flag back (``module.train(was_training)`` would flatten a model the caller had put in a
    mixed state, and a wrapper's own flag says nothing about the model it wraps)."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in flags:
            m.training = training
