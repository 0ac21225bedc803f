"""Augmentation of whole batches on the device: no per-sample Python transforms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oodlab.errors import ConfigError


class BatchAugment(nn.Module):
    """Random crop with zero padding, then an optional horizontal flip, per sample, in one go."""

    def __init__(self, crop_padding: int = 0, hflip: bool = False):
        super().__init__()
        if crop_padding < 0:
            raise ConfigError("data.augment.crop_padding", crop_padding, ">= 0")
        self.crop_padding = int(crop_padding)
        self.hflip = bool(hflip)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n, 1, 1), device=x.device)
            dx = torch.randint(0, 2 * p + 1, (n, 1, 1), device=x.device)
            rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
            cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
            batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
            # (n, h, w, c) gather, back to channels-first
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        if self.hflip:
            flip = torch.rand(n, device=x.device) < 0.5
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        return x.contiguous()

    def extra_repr(self) -> str:
        return f"crop_padding={self.crop_padding}, hflip={self.hflip}"


class Normalize(nn.Module):
    """uint8 or [0, 1] images -> the normalised input space the network (and ODIN) works in."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std
