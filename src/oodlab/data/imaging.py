"""Decoding image files into uint8 tensors, and fitting tensors to an image shape.

Every dataset ends up as one uint8 (N, C, H, W) tensor, so this is the only place that
touches PIL. Decoding runs on a thread pool (PIL releases the GIL while it decodes) and
uses JPEG draft mode, which lets libjpeg decode large photos at 1/2, 1/4 or 1/8 scale
when only a 32x32 thumbnail is wanted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from oodlab.data.preprocessing import Preprocessing
from oodlab.errors import ConfigError, CorruptDataError

Shape = Sequence[int]
FIT_MODES = ("resize_crop", "resize", "center_crop")


def _check_fit(fit: str) -> None:
    if fit not in FIT_MODES:
        raise ConfigError("fit", fit, f"one of {', '.join(FIT_MODES)}")


def _fit_pil(image: Image.Image, height: int, width: int, fit: str) -> Image.Image:
    """resize_crop: shorter side to size, then centre crop (torchvision's Resize + CenterCrop);
    resize: squash to the size; center_crop: crop the centre, resizing only if too small."""
    if image.size == (width, height):
        return image
    if fit == "resize":
        return image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    w, h = image.size
    if fit == "resize_crop" or w < width or h < height:
        scale = max(width / w, height / h)
        image = image.resize(
            (max(width, round(w * scale)), max(height, round(h * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=3.0,
        )
        w, h = image.size
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def decode_file(path: str | Path, shape: Shape, fit: str = "resize_crop") -> np.ndarray:
    """One image file -> uint8 (H, W, C) array of the given (C, H, W) shape."""
    channels, height, width = (int(s) for s in shape)
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as image:
            # JPEG only: decode at the smallest power-of-two scale still >= the target
            image.draft(mode, (width, height))
            image = _fit_pil(image.convert(mode), height, width, fit)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptDataError(
            f"Cannot read image file {path}: {exc}. Delete or replace it."
        ) from exc
    return array[..., None] if channels == 1 else array


def default_threads() -> int:
    return min(32, (os.cpu_count() or 1) * 2)


def decode_files(
    paths: Sequence[str | Path],
    shape: Shape,
    fit: str = "resize_crop",
    num_threads: int | None = None,
) -> Tensor:
    """Decode many files in parallel into one uint8 (N, C, H, W) tensor, in the given order."""
    _check_fit(fit)
    channels, height, width = (int(s) for s in shape)
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = decode_file(paths[i], shape, fit)

    threads = num_threads or default_threads()
    if threads <= 1 or len(paths) < 64:
        for i in range(len(paths)):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            # list() re-raises the first worker exception (a CorruptDataError naming the file)
            list(pool.map(work, range(len(paths)), chunksize=256))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def match_channels(images: Tensor, channels: int) -> Tensor:
    """Grey -> RGB by repetition; RGB -> grey with ITU-R 601 luma weights (PIL's "L")."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    if channels == 1 and have >= 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        grey = (images[:, :3].float() * weights).sum(1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8)
    raise ConfigError("image channels", have, f"convertible to {channels} channel(s)")


def fit_tensor(
    images: Tensor, shape: Shape, fit: str = "resize_crop", batch_size: int = 4096
) -> Tensor:
    """uint8 (N, C, H, W) images -> uint8 (N, *shape), converting channels and size."""
    _check_fit(fit)
    channels, height, width = (int(s) for s in shape)
    images = match_channels(images, channels)
    h, w = images.shape[-2:]
    if (h, w) == (height, width):
        return images
    if fit == "resize":
        size = (height, width)
    else:
        scale = (
            max(height / h, width / w) if fit == "resize_crop" or h < height or w < width else 1.0
        )
        size = (max(height, round(h * scale)), max(width, round(w * scale)))
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].float()
        if size != (h, w):
            batch = F.interpolate(
                batch, size=size, mode="bilinear", antialias=True, align_corners=False
            )
        top, left = (size[0] - height) // 2, (size[1] - width) // 2
        batch = batch[..., top : top + height, left : left + width]
        parts.append(batch.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(parts) if parts else images.new_zeros((0, channels, height, width))


def sample_indices(total: int, n: int | None, seed: int, key: str = "n") -> np.ndarray:
    """A fixed random subset of ``n`` of ``total`` items; all of them, in order, if n is None or
    at least ``total`` (so one ``n`` can serve sets of different sizes)."""
    if n is not None and n < 1:
        raise ConfigError(key, n, "a positive integer or null (all)")
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def generated_shape(n: int, shape: Shape) -> tuple[int, int, int]:
    """(C, H, W) of a set of ``n`` images made to ``shape``, checked (the generated OOD sets:
    crops, glyphs, noise, transformed digits)."""
    if n < 1:
        raise ConfigError("ood.sets.<name>.n", n, "a positive integer")
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


_PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


# -- ImageNet-style preprocessing of streamed sets (oodlab.data.sources.image_list) ----
def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to ``resize``, as torchvision computes
    it (the longer side truncated, not rounded)."""
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """torchvision's CenterCrop box (left, top, right, bottom)."""
    left, top = round((width - crop) / 2.0), round((height - crop) / 2.0)
    return left, top, left + crop, top + crop


def fit_pil(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """Shorter side to ``resize``, then the centre ``crop``: torchvision's Resize + CenterCrop."""
    size = resized_size(*image.size, preprocessing.resize)
    if size != image.size:
        image = image.resize(size, _PIL_INTERPOLATION[preprocessing.interpolation])
    return image.crop(crop_box(*image.size, preprocessing.crop))


def decode_image(
    source: str | Path | bytes, preprocessing: Preprocessing, channels: int = 3
) -> Tensor:
    """One image file (or its bytes) -> uint8 (C, crop, crop). Raises OSError, ValueError or
    PIL's UnidentifiedImageError on an unreadable file."""
    mode = "L" if channels == 1 else "RGB"
    fp: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with Image.open(fp) as image:
        image = fit_pil(image.convert(mode), preprocessing)
        array = np.asarray(image, dtype=np.uint8)
    if channels == 1:
        array = array[..., None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
