"""A small CNN for 28x28 grayscale digits, registered in timm's model registry.

Sized so the default MNIST-5k experiment trains to >96% test accuracy in well under a
minute on two CPU cores: three conv stages (28 -> 14 -> 7) and global max pooling.

Why max pooling: digits are a few bright strokes on black. With average pooling the
penultimate features grow with the amount of "ink", so bright textures and photos produced
*higher* confidence than digits (MSP AUROC ~0.3 for CE). Max pooling keeps the features on the
scale of individual strokes; both CE and LogitNorm then separate real-image OOD sets well.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import register_model
from torch import Tensor, nn

__all__ = ["SmallCNN", "small_cnn"]


def _conv_bn(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Follows timm's model interface: ``num_classes=0`` makes ``forward`` return pooled features."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        widths: tuple[int, ...] = (16, 32, 64),
        drop_rate: float = 0.0,
        global_pool: str = "max",
        **_: Any,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        stages: list[nn.Module] = []
        chs = in_chans
        for i, width in enumerate(widths):
            stages.append(_conv_bn(chs, width))
            stages.append(_conv_bn(width, width))
            if i < len(widths) - 1:
                stages.append(nn.MaxPool2d(2))
            chs = width
        self.features = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = chs
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(chs, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = self.default_cfg = {"num_classes": num_classes, "input_size": (in_chans, 28, 28)}

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "max") -> None:
        self.num_classes = num_classes
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def small_cnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """Small 6-conv network for 28x28 inputs (~73 k parameters)."""
    if pretrained:
        raise ValueError("small_cnn has no pretrained weights; oodlab trains from scratch")
    return SmallCNN(**kwargs)


if __name__ == "__main__":  # pragma: no cover
    m = small_cnn(num_classes=0)
    print(sum(p.numel() for p in m.parameters()), m(torch.zeros(2, 1, 28, 28)).shape)
