"""Backbone + loss head, the network every task trains and every score reads."""

from __future__ import annotations

from typing import Any

import timm
from torch import Tensor, nn

from oodlab._infra.errors import UnknownNameError
from oodlab.losses.base import LossHead


def oodlab_model_names() -> list[str]:
    """The architectures oodlab registers in timm (the ones meant for small images)."""
    return sorted(
        name for name in timm.list_models() if timm.models.model_entrypoint(name).__module__.startswith("oodlab.")
    )


def create_backbone(name: str, in_chans: int, **kwargs: Any) -> nn.Module:
    """A timm model with its classifier removed: ``forward`` returns (N, num_features)."""
    if not timm.is_model(name):
        raise UnknownNameError(
            "backbone",
            name,
            timm.list_models(),
            hint=f"oodlab's small-image models: {', '.join(oodlab_model_names())}. "
            "Any timm architecture also works (see timm.list_models()).",
        )
    # No hub access, ever: weights come from training.
    return timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)


class OODClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: LossHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, D): what ReAct, Mahalanobis and KNN read."""
        return self.backbone(x)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(x)
        return self.head(features), features

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))
