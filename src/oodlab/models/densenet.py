"""DenseNet-BC for 32x32 inputs, registered in timm's model registry.

Follows the ``DenseNet3`` of the ODIN / IsoMax code (after Huang et al.'s CIFAR DenseNet):

* a 3x3 stem conv to ``2k`` channels (``k = growth_rate``);
* three dense blocks of ``(depth - 4) / 6`` bottleneck layers (``(depth - 4) / 3`` plain
  layers when ``bottleneck=False``); a bottleneck layer is BN-ReLU-conv1x1(4k)-dropout-
  BN-ReLU-conv3x3(k)-dropout, and its output is concatenated after its input;
* between blocks a transition: BN-ReLU-conv1x1(floor(compression * C))-dropout-avgpool 2x2;
* a final BN-ReLU, global average pooling and a linear classifier.

DenseNet-BC-100 (k=12, compression 0.5) has 769,162 parameters with 10 classes and
342 penultimate features. ``drop_rate`` is the reference's in-block ``dropRate`` (0 in the
ODIN/IsoMax setting), not a dropout before the classifier: the reference has none.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from oodlab._infra.validate import in_range, positive_int
from oodlab.errors import ConfigError
from oodlab.models._base import PooledBackbone, build_backbone, register_backbone

__all__ = ["DenseNetCifar", "densenet_bc100"]


def _bn_relu_conv(in_chs: int, out_chs: int, kernel_size: int, drop_rate: float) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.BatchNorm2d(in_chs),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False),
    ]
    if drop_rate > 0:
        layers.append(nn.Dropout(drop_rate))
    return layers


class _DenseLayer(nn.Module):
    """One (bottleneck) layer: computes ``growth_rate`` new maps and appends them to its input."""

    def __init__(self, in_chs: int, growth_rate: int, bottleneck: bool, drop_rate: float):
        super().__init__()
        if bottleneck:
            inter = 4 * growth_rate
            layers = _bn_relu_conv(in_chs, inter, 1, drop_rate) + _bn_relu_conv(
                inter, growth_rate, 3, drop_rate
            )
        else:
            layers = _bn_relu_conv(in_chs, growth_rate, 3, drop_rate)
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((x, self.body(x)), dim=1)


class _Transition(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int, drop_rate: float):
        super().__init__(*_bn_relu_conv(in_chs, out_chs, 1, drop_rate), nn.AvgPool2d(2))


class DenseNetCifar(PooledBackbone):
    """DenseNet(-BC) with three dense blocks for 32x32 inputs; timm's model interface.

    ``num_classes=0`` makes ``forward`` return pooled penultimate features.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        depth: int = 100,
        growth_rate: int = 12,
        compression: float = 0.5,
        bottleneck: bool = True,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        per_layer = 6 if bottleneck else 3  # convs per dense layer, times three blocks
        if depth < 4 + per_layer or (depth - 4) % per_layer != 0:
            raise ConfigError(
                "depth", depth, f"{per_layer}n+4 with n >= 1 (bottleneck={bottleneck})"
            )
        growth_rate = positive_int("growth_rate", growth_rate)
        compression = in_range("compression", compression, 0, 1, closed="right")
        self.drop_rate = drop_rate = in_range("drop_rate", drop_rate, 0, 1, closed="left")
        n = (depth - 4) // per_layer

        chs = 2 * growth_rate
        self.stem = nn.Conv2d(in_chans, chs, 3, stride=1, padding=1, bias=False)
        stages: list[nn.Module] = []
        for b in range(3):
            for _i in range(n):
                stages.append(_DenseLayer(chs, growth_rate, bottleneck, drop_rate))
                chs += growth_rate
            if b < 2:
                out_chs = math.floor(chs * compression)
                stages.append(_Transition(chs, out_chs, drop_rate))
                chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.final_norm = nn.BatchNorm2d(chs)
        self.final_act = nn.ReLU(inplace=True)
        # drop_rate acts inside the layers; the head has no dropout, as in the reference.
        self._init_head(chs, num_classes, global_pool, None, (in_chans, 32, 32))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.final_act(self.final_norm(self.stages(self.stem(x))))


@register_backbone
def densenet_bc100(pretrained: bool = False, **kwargs: Any) -> DenseNetCifar:
    """DenseNet-BC-100, k=12, compression 0.5 (0.77 M parameters with 10 classes)."""
    defaults = {"depth": 100, "growth_rate": 12, "compression": 0.5, "bottleneck": True}
    return build_backbone(DenseNetCifar, "densenet_bc100", pretrained, kwargs, **defaults)
