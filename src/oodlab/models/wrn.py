"""Wide-ResNet for 32x32 inputs, registered in timm's model registry.

Follows the WideResNet of the Outlier-Exposure / LogitNorm code (Hendrycks et al.), which the
LogitNorm CIFAR results are reported on:

* a 3x3 stem conv to 16 channels, then three groups of ``(depth - 4) / 6`` pre-activation
  basic blocks with ``16k, 32k, 64k`` channels (``k = widen_factor``), strides 1, 2, 2;
* block: BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-conv3x3, plus the identity, or a 1x1
  projection when the channel count changes. As in the reference, the projection reads the
  *pre-activated* input (the block's first BN-ReLU is shared by both branches);
* a final BN-ReLU, global average pooling and a linear classifier.

WRN-40-2 has 2,243,546 parameters with 10 classes. ``drop_rate`` is the dropout *between the
two convs of every block* (the reference's ``dropRate``, 0.3 for LogitNorm), not a dropout
before the classifier: the reference has none.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from oodlab._infra.validate import in_range, positive_int
from oodlab.errors import ConfigError
from oodlab.models._base import PooledBackbone, build_backbone, register_backbone

__all__ = ["WideResNet", "wrn40_2"]


class _PreActBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int, drop_rate: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1, bias=False)
        # The reference projects only when the channel count changes (stride alone never
        # changes without it in a WRN).
        self.shortcut = (
            nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False) if in_chs != out_chs else None
        )

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.drop(self.act2(self.bn2(self.conv1(pre)))))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        return out + shortcut


class WideResNet(PooledBackbone):
    """WRN-``depth``-``widen_factor`` (pre-activation); timm's model interface.

    ``num_classes=0`` makes ``forward`` return pooled penultimate features (N, 64k).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        depth: int = 40,
        widen_factor: int = 2,
        drop_rate: float = 0.3,
        global_pool: str = "avg",
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError("depth", depth, "6n+4 with n >= 1 (e.g. 16, 28, 40)")
        widen_factor = positive_int("widen_factor", widen_factor)
        self.drop_rate = drop_rate = in_range("drop_rate", drop_rate, 0, 1, closed="left")
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)

        self.stem = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        groups: list[nn.Module] = []
        chs = widths[0]
        for width, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(_PreActBlock(chs, width, stride if i == 0 else 1, drop_rate))
                chs = width
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.Sequential(*groups)
        self.final_norm = nn.BatchNorm2d(chs)
        self.final_act = nn.ReLU(inplace=True)
        # drop_rate acts inside the blocks; the head has no dropout, as in the reference.
        self._init_head(chs, num_classes, global_pool, None, (in_chans, 32, 32))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.final_act(self.final_norm(self.groups(self.stem(x))))


@register_backbone
def wrn40_2(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-40-2 for 32x32 inputs, dropout 0.3 inside blocks (2.24 M parameters, 10 classes).

    ``depth``, ``widen_factor`` and ``drop_rate`` kwargs give other variants, e.g.
    ``depth=28, widen_factor=10`` for WRN-28-10.
    """
    return build_backbone(
        WideResNet, "wrn40_2", pretrained, kwargs, depth=40, widen_factor=2, drop_rate=0.3
    )
