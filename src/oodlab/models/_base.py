"""What oodlab's backbones share: their registration in timm's registry, the check of their
keyword arguments, timm's classifier interface over a pooled feature map, the reference weight
init, and the refusal of pretrained weights they do not have."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from timm.layers import SelectAdaptivePool2d
from timm.models import register_model
from torch import Tensor, nn

from oodlab.errors import ConfigError

F = TypeVar("F", bound=Callable[..., nn.Module])
M = TypeVar("M", bound=nn.Module)

#: what ``timm.create_model`` hands every factory besides the model's own arguments
TIMM_FACTORY_ARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def register_backbone(fn: F) -> F:
    """Register a model factory in timm's registry, so ``timm.create_model`` builds it; timm's
    registry is the only one (:func:`oodlab.models.oodlab_model_names` reads it)."""
    # timm types the decorator as returning a plain Callable; it returns fn itself
    return register_model(fn)  # type: ignore[return-value]


def build_backbone(
    cls: type[M], name: str, pretrained: bool, kwargs: Mapping[str, Any], **defaults: Any
) -> M:
    """``cls(**defaults, **kwargs)`` for the factory ``name``, after timm's own factory arguments
    are set aside. A keyword ``cls`` does not take (a typo in ``model.backbone_kwargs``) is a
    ConfigError naming it and the accepted ones, never silently ignored."""
    no_pretrained(name, pretrained)
    own = {k: v for k, v in kwargs.items() if k not in TIMM_FACTORY_ARGS}
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = {k: v for k, v in own.items() if k not in accepted}
    if unknown:
        raise ConfigError(
            "model.backbone_kwargs", unknown, f"keys {name} accepts: {', '.join(accepted)}"
        )
    return cls(**{**defaults, **own})


def init_weights(module: nn.Module) -> None:
    """Reference init: He-normal convs (fan-out), BN weight 1 / bias 0, linear bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def no_pretrained(name: str, pretrained: bool) -> None:
    """timm factories take ``pretrained``; oodlab's models have no published weights."""
    if pretrained:
        raise ConfigError(
            "model.pretrained",
            True,
            f"false: {name} has no pretrained weights (model.weights=PATH loads your own)",
        )


class PooledBackbone(nn.Module):
    """timm's model interface for a network whose ``forward_features`` returns (N, C, H, W):
    global pooling, optional classifier dropout, then a linear classifier ``fc``.
    ``num_classes=0`` replaces ``fc`` by the identity, so ``forward`` returns pooled features.

    A subclass builds its body, calls :meth:`_init_head` last and implements
    :meth:`forward_features`.
    """

    #: what ``reset_classifier`` pools with when not told
    default_global_pool: ClassVar[str] = "avg"
    #: apply :func:`init_weights` to the whole network once built, and to a reset classifier
    reference_init: ClassVar[bool] = True

    head_drop: nn.Module | None

    def _init_head(
        self,
        num_features: int,
        num_classes: int,
        global_pool: str,
        drop_rate: float | None,
        input_size: tuple[int, int, int],
    ) -> None:
        """``drop_rate`` is classifier dropout after pooling; None leaves the head without a
        dropout module (for networks whose ``drop_rate`` acts inside their blocks)."""
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = num_features
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = None if drop_rate is None else nn.Dropout(drop_rate)
        self.fc = self._classifier(num_classes)
        self.pretrained_cfg = self.default_cfg = {
            "num_classes": num_classes,
            "input_size": input_size,
        }
        if self.reference_init:
            init_weights(self)

    def _classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (0: none); ``global_pool`` defaults to the
        class's ``default_global_pool``, not to the pooling in use."""
        self.num_classes = num_classes
        pool_type = self.default_global_pool if global_pool is None else global_pool
        self.global_pool = SelectAdaptivePool2d(pool_type=pool_type, flatten=True)
        self.fc = self._classifier(num_classes)
        if self.reference_init:
            init_weights(self.fc)

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)
        if self.head_drop is not None:
            x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
