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

from torch import Tensor, nn

from oodlab.models._base import PooledBackbone, build_backbone, register_backbone

__all__ = ["SmallCNN", "small_cnn"]


def _conv_bn(in_chs: int, out_chs: int, act_bound: float | None = None) -> nn.Sequential:
    act = nn.ReLU(inplace=True) if act_bound is None else nn.Hardtanh(0.0, act_bound, inplace=True)
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chs),
        act,
    )


def standardize_images(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Each image to zero mean and unit standard deviation over all its pixels and channels."""
    flat = x.flatten(1)
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (x - flat.mean(1).view(shape)) / (flat.std(1).view(shape) + eps)


class SmallCNN(PooledBackbone):
    """timm's model interface: ``num_classes=0`` makes ``forward`` return pooled features."""

    default_global_pool = "max"  # see the module docstring
    # PyTorch's default init: the figures in the module docstring were measured with it.
    reference_init = False

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        widths: tuple[int, ...] = (16, 32, 64),
        drop_rate: float = 0.0,
        global_pool: str = "max",
        standardize: bool = False,
        act_bound: float | None = None,
    ):
        """``standardize``: per-image standardisation of the input, which makes the network
        invariant to input scale and offset, f(a * x + b) = f(x) for a > 0 (a ReLU network's
        confidence otherwise grows without bound along a * x). ``act_bound``: ReLU clipped at
        this value (Hardtanh(0, act_bound); 6 = ReLU6) instead of a plain ReLU."""
        super().__init__()
        self.drop_rate = drop_rate
        self.standardize = bool(standardize)
        stages: list[nn.Module] = []
        chs = in_chans
        for i, width in enumerate(widths):
            stages.append(_conv_bn(chs, width, act_bound))
            stages.append(_conv_bn(width, width, act_bound))
            if i < len(widths) - 1:
                stages.append(nn.MaxPool2d(2))
            chs = width
        self.features = nn.Sequential(*stages)
        self._init_head(chs, num_classes, global_pool, drop_rate, (in_chans, 28, 28))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(standardize_images(x) if self.standardize else x)


@register_backbone
def small_cnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """Small 6-conv network for 28x28 inputs (~73 k parameters)."""
    return build_backbone(SmallCNN, "small_cnn", pretrained, kwargs)
