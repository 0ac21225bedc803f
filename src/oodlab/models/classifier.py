"""Backbone + loss head, the network every task trains and every score reads."""

from __future__ import annotations

from typing import Any

import timm
from torch import Tensor, nn

from oodlab.errors import UnknownNameError
from oodlab.losses.base import LossHead
from oodlab.models.pretrained import load_weights, pretrained_file


def is_oodlab_model(name: str) -> bool:
    """Whether timm's registry holds ``name`` (tag allowed) as one of oodlab's architectures."""
    from timm.models import get_arch_name, is_model, model_entrypoint

    arch = get_arch_name(name)
    return is_model(arch) and model_entrypoint(arch).__module__.startswith("oodlab.")


def oodlab_model_names() -> list[str]:
    """The architectures oodlab registers in timm (the ones meant for small images), read
    from timm's registry."""
    return [name for name in timm.list_models() if is_oodlab_model(name)]


def create_backbone(
    name: str,
    in_chans: int,
    *,
    pretrained: bool = False,
    weights: str | None = None,
    weights_prefix: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm model with its classifier removed: ``forward`` returns (N, num_features).

    ``pretrained`` loads timm's published weights (from timm's cache, or downloaded when the
    machine is online); ``weights`` loads a local ``.pth``/``.safetensors`` file after
    stripping ``weights_prefix`` from its keys. Either way the classifier is dropped: the loss
    head replaces it for the task's classes.
    """
    if not timm.is_model(name):
        raise UnknownNameError(
            "backbone",
            name,
            timm.list_models(),
            hint=f"oodlab's small-image models: {', '.join(oodlab_model_names())}. "
            "Any timm architecture also works (see timm.list_models()).",
        )
    if pretrained and not is_oodlab_model(name):
        # timm loads the file we found (cached or downloaded): it drops the classifier and adapts
        # the first convolution to in_chans, and makes no network call of its own
        kwargs["pretrained_cfg_overlay"] = {"file": pretrained_file(name)}
    model = timm.create_model(
        name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs
    )
    if weights:
        load_weights(model, weights, prefix=weights_prefix)
    return model


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
