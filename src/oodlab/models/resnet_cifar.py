"""ResNet-18/34 with the CIFAR stem, registered in timm's model registry.

The torchvision / kuangliu BasicBlock ResNet as OpenOOD uses it for 32x32 inputs
(``ResNet18_32x32``): the ImageNet 7x7 stride-2 stem and max-pool are replaced by one
3x3 stride-1 conv, so the four stages see 32, 16, 8 and 4 pixels.

* stem: conv3x3(64)-BN-ReLU;
* four stages of post-activation basic blocks (conv3x3-BN-ReLU-conv3x3-BN, add, ReLU) with
  64, 128, 256, 512 channels, strides 1, 2, 2, 2; the shortcut is conv1x1-BN when the shape
  changes;
* global average pooling and a linear classifier.

ResNet-18 has 11,173,962 and ResNet-34 21,282,122 parameters with 10 classes. ``drop_rate``
is timm's classifier dropout (before ``fc``, default 0; the reference has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from oodlab._infra.validate import in_range
from oodlab.errors import ConfigError
from oodlab.models._base import PooledBackbone, build_backbone, register_backbone

__all__ = ["ResNetCifar", "resnet18_cifar", "resnet34_cifar"]


class _BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class ResNetCifar(PooledBackbone):
    """BasicBlock ResNet with a 3x3 stride-1 stem and no max-pool; timm's model interface.

    ``num_classes=0`` makes ``forward`` return pooled penultimate features (N, 512).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        layers: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ConfigError(
                "layers", tuple(layers), f"{len(widths)} positive block counts, one per width"
            )
        self.drop_rate = drop_rate = in_range("drop_rate", drop_rate, 0, 1, closed="left")

        chs = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, chs, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(chs),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        for s, (n, width) in enumerate(zip(layers, widths)):
            blocks = []
            for i in range(n):
                blocks.append(_BasicBlock(chs, width, 2 if s > 0 and i == 0 else 1))
                chs = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self._init_head(chs, num_classes, global_pool, drop_rate, (in_chans, 32, 32))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


def _create(
    name: str, pretrained: bool, default_layers: tuple[int, ...], **kwargs: Any
) -> ResNetCifar:
    return build_backbone(ResNetCifar, name, pretrained, kwargs, layers=default_layers)


@register_backbone
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetCifar:
    """ResNet-18 with the CIFAR stem (11.17 M parameters with 10 classes)."""
    return _create("resnet18_cifar", pretrained, (2, 2, 2, 2), **kwargs)


@register_backbone
def resnet34_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetCifar:
    """ResNet-34 with the CIFAR stem (21.28 M parameters with 10 classes)."""
    return _create("resnet34_cifar", pretrained, (3, 4, 6, 3), **kwargs)
