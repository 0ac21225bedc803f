"""Train/val carving, training subsets and per-channel statistics shared by every ID dataset.

Splits use their own seed (``split_seed``), not the training seed, so every run of a sweep
trains, validates and tests on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from oodlab.data.types import ImageTensors, SplitData
from oodlab.errors import ConfigError

#: where the ID validation images come from (data.dataset.val_from)
VAL_SOURCES = ("held_out", "train")


def _count(size: int | float, total: int, key: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise ConfigError(key, size, "an image count (int) or a fraction in (0, 1)")
    if isinstance(size, float) and not 0.0 < size < 1.0:
        raise ConfigError(key, size, "a fraction in (0, 1) or an image count (int)")
    count = round(size * total) if isinstance(size, float) else int(size)
    if not 1 <= count < total:
        raise ConfigError(key, size, f"an image count in [1, {total - 1}] or a fraction in (0, 1)")
    return count


def carve(labels: Tensor, size: int | float, seed: int, key: str) -> tuple[Tensor, Tensor]:
    """Split indices into (rest, carved), stratified by label when every class allows it."""
    total = len(labels)
    count = _count(size, total, key)
    index = np.arange(total)
    y = labels.numpy()
    counts = np.bincount(y - y.min())
    counts = counts[counts > 0]
    # sklearn needs >= 2 images per class and room for every class on both sides
    stratifiable = counts.min() >= 2 and len(counts) <= count <= total - len(counts)
    stratify = y if stratifiable else None
    rest, carved = train_test_split(index, test_size=count, stratify=stratify, random_state=seed)
    return torch.from_numpy(np.sort(rest)), torch.from_numpy(np.sort(carved))


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, accumulated in float64 chunk by chunk."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float().div_(255.0)
        total += x.sum(dim=(0, 2, 3), dtype=torch.float64)
        squares += x.square_().sum(dim=(0, 2, 3), dtype=torch.float64)
    n = max(1, images.shape[0] * images.shape[2] * images.shape[3])
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(round(float(m), 4) for m in mean), tuple(
        round(max(float(s), 1e-3), 4) for s in std
    )


def assemble(
    name: str,
    train: ImageTensors,
    test: ImageTensors,
    *,
    val: ImageTensors | None = None,
    val_size: int | float = 0.1,
    val_from: str = "held_out",
    split_seed: int = 0,
    train_subset: int | float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SplitData:
    """SplitData from a train and a test split: val carved from train (unless given), then
    an optional stratified training subset; mean/std computed on the training images if not given.

    ``val_from``: ``held_out`` removes the val images from training; ``train`` draws them from
    the training images and trains on all of them, as the LogitNorm and IsoMax papers train on
    all 50,000 CIFAR images (their val images have then been seen in training).
    """
    if val_from not in VAL_SOURCES:
        raise ConfigError("data.dataset.val_from", val_from, f"one of {', '.join(VAL_SOURCES)}")
    if val is None:
        rest, carved = carve(train.labels, val_size, split_seed, "data.dataset.val_size")
        train, val = (train.subset(rest) if val_from == "held_out" else train), train.subset(carved)
    if train_subset is not None and not (
        isinstance(train_subset, int) and train_subset >= len(train)
    ):
        # a distinct seed stream from the val split, so the subset is not the val complement
        _, keep = carve(train.labels, train_subset, split_seed + 1, "data.dataset.train_subset")
        train = train.subset(keep)
    if mean is None or std is None:
        computed_mean, computed_std = channel_stats(train.images)
        mean = computed_mean if mean is None else mean
        std = computed_std if std is None else std
    channels = train.shape[0]
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    for key, value in (("data.dataset.mean", mean), ("data.dataset.std", std)):
        if len(value) != channels:
            raise ConfigError(key, list(value), f"a list of {channels} per-channel values")
    if min(std) <= 0:
        raise ConfigError("data.dataset.std", list(std), "positive values")
    return SplitData(name, train, val, test, mean, std, val_from=val_from)
