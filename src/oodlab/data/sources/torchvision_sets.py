"""Datasets torchvision knows (CIFAR-10/100, SVHN, MNIST, DTD, Places365): as in-distribution
SplitData, and as OOD sets fitted to the in-distribution image shape.

torchvision downloads and checks them (its md5s) on a user's machine. oodlab parses them once
into a uint8 tensor cache; every later run loads the cache in milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets as tvd

from oodlab.data.cache import cached_tensors
from oodlab.data.downloads import open_torchvision
from oodlab.data.imaging import decode_files, fit_tensor, sample_indices
from oodlab.data.splits import assemble
from oodlab.data.types import ImageTensors, SplitData
from oodlab.errors import ConfigError, UnknownNameError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    """Where torchvision keeps a dataset under ``root``, its splits and where it comes from."""

    subdir: str
    splits: tuple[str, ...]
    source: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


SPECS: dict[str, _Spec] = {
    # CIFAR/MNIST/DTD make their own sub-folder under root (torchvision's layout), so an existing
    # torchvision data folder is found as it is; SVHN and Places365 write loose files, so they
    # get one of their own.
    "cifar10": _Spec(
        "",
        ("train", "test"),
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
        "(extracted: {root}/cifar-10-batches-py/)",
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _Spec(
        "",
        ("train", "test"),
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz "
        "(extracted: {root}/cifar-100-python/)",
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
    "svhn": _Spec(
        "svhn",
        ("train", "test", "extra"),
        "http://ufldl.stanford.edu/housenumbers/{split}_32x32.mat "
        "(as {root}/svhn/{split}_32x32.mat)",
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
    ),
    "mnist": _Spec(
        "",
        ("train", "test", "all"),
        "https://ossci-datasets.s3.amazonaws.com/mnist/ (the four .gz files in {root}/MNIST/raw/)",
        (0.1307,),
        (0.3081,),
    ),
    "dtd": _Spec(
        "",
        ("all", "train", "val", "test"),
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/"
        "dtd-r1.0.1.tar.gz (extracted: {root}/dtd/dtd/images/)",
    ),
    "places365": _Spec(
        "places365",
        ("val",),
        "http://data.csail.mit.edu/places/places365/val_256.tar and "
        "filelist_places365-standard.tar (extracted into {root}/places365/)",
    ),
}
ID_DATASETS = ("cifar10", "cifar100", "svhn")


def _spec(name: str) -> _Spec:
    if name not in SPECS:
        raise UnknownNameError("torchvision dataset", name, SPECS)
    return SPECS[name]


def _folder(root: str | Path, name: str) -> Path:
    return Path(root).expanduser() / _spec(name).subdir


def _how_to_get(name: str, folder: Path, split: str = "") -> str:
    data_root = folder.parent if _spec(name).subdir else folder
    source = _spec(name).source.format(split=split, root=data_root)
    return f"Run once with network access, or download {source} yourself."


def _open(
    name: str, folder: Path, download: bool, make: Callable[[bool], Any], split: str = ""
) -> Any:
    return open_torchvision(name, folder, make, download, _how_to_get(name, folder, split))


# -- array-backed sets: CIFAR, SVHN, MNIST ---------------------------------------------------
def _parse_arrays(name: str, root: Path, split: str, download: bool) -> dict[str, torch.Tensor]:
    root.mkdir(parents=True, exist_ok=True)
    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        ds = _open(
            name, root, download, lambda d: cls(str(root), train=split == "train", download=d)
        )
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        labels = torch.as_tensor(ds.targets, dtype=torch.long)
    elif name == "svhn":
        ds = _open(
            name, root, download, lambda d: tvd.SVHN(str(root), split=split, download=d), split
        )
        images = torch.from_numpy(np.ascontiguousarray(ds.data))
        labels = torch.as_tensor(ds.labels, dtype=torch.long)
    elif name == "mnist":
        parts = ("train", "test") if split == "all" else (split,)
        sets = [
            _open(
                name,
                root,
                download,
                lambda d, p=p: tvd.MNIST(str(root), train=p == "train", download=d),  # type: ignore[misc]
            )
            for p in parts
        ]
        images = torch.cat([s.data for s in sets]).unsqueeze(1).contiguous()
        labels = torch.cat([s.targets for s in sets]).long()
    else:  # pragma: no cover - guarded by the callers
        raise UnknownNameError("array dataset", name, ("cifar10", "cifar100", "svhn", "mnist"))
    return {"images": images, "labels": labels}


def torchvision_arrays(
    name: str,
    root: str | Path,
    split: str,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of one split, parsed once and cached."""
    spec = _spec(name)
    if split not in spec.splits:
        raise ConfigError("split", split, f"one of {', '.join(spec.splits)} for {name}")
    folder = _folder(root, name)
    cache = Path(cache_dir) if cache_dir else Path(root).expanduser() / "cache"
    return cached_tensors(
        cache / "torchvision" / f"{name}-{split}.pt",
        lambda: _parse_arrays(name, folder, split, download),
    )


def _classes(name: str, root: str | Path) -> tuple[str, ...]:
    if name == "cifar10":
        return (
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        )
    if name == "cifar100":
        meta = Path(root).expanduser() / "cifar-100-python" / "meta"
        if meta.is_file():
            import pickle

            with meta.open("rb") as fh:
                return tuple(pickle.load(fh, encoding="latin1")["fine_label_names"])
        return tuple(str(i) for i in range(100))
    return tuple(str(i) for i in range(10))


def load_torchvision_id(
    name: str = "cifar10",
    root: str = "data",
    val_size: int | float = 5000,
    split_seed: int = 0,
    train_subset: int | float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    download: bool = True,
    cache_dir: str | None = None,
    val_from: str = "held_out",
) -> SplitData:
    """CIFAR-10, CIFAR-100 or SVHN: the official train split minus a stratified val split
    (``val_size``, fixed ``split_seed``; with ``val_from=train`` the val images are drawn from
    the training images and training keeps all of them), and the official test split."""
    if name not in ID_DATASETS:
        raise UnknownNameError(
            "in-distribution torchvision dataset",
            name,
            ID_DATASETS,
            hint="For your own images use data=folder.",
        )
    spec = _spec(name)
    classes = _classes(name, root)
    train = torchvision_arrays(name, root, "train", download, cache_dir)
    test = torchvision_arrays(name, root, "test", download, cache_dir)
    return assemble(
        name,
        ImageTensors(train["images"], train["labels"], classes),
        ImageTensors(test["images"], test["labels"], classes),
        val_size=val_size,
        val_from=val_from,
        split_seed=split_seed,
        train_subset=train_subset,
        mean=spec.mean if mean is None else mean,
        std=spec.std if std is None else std,
    )


# -- file-backed sets: DTD, Places365 --------------------------------------------------------
def torchvision_files(name: str, root: str | Path, split: str, download: bool = True) -> list[str]:
    """Image file paths of DTD (all 5,640 images for split=all) or Places365 (val: 36,500)."""
    spec = _spec(name)
    if split not in spec.splits:
        raise ConfigError("split", split, f"one of {', '.join(spec.splits)} for {name}")
    folder = _folder(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "dtd":
        parts = ("train", "val", "test") if split == "all" else (split,)
        sets = [
            _open(name, folder, download, lambda d, p=p: tvd.DTD(str(folder), split=p, download=d))  # type: ignore[misc]
            for p in parts
        ]
        return sorted({str(f) for s in sets for f in s._image_files})
    if name == "places365":

        def make(d: bool) -> Any:
            ds = tvd.Places365(str(folder), split=split, small=True, download=d)
            if not Path(ds.images_dir).is_dir():
                raise RuntimeError(f"{ds.images_dir} is missing")
            return ds

        return [path for path, _ in _open(name, folder, download, make).imgs]
    raise UnknownNameError("file dataset", name, ("dtd", "places365"))


def torchvision_ood_set(
    *,
    shape: Sequence[int],
    name: str,
    root: str = "data",
    split: str = "test",
    n: int | None = None,
    seed: int = 0,
    fit: str = "resize_crop",
    download: bool = True,
    cache_dir: str | None = None,
    num_threads: int | None = None,
) -> ImageTensors:
    """A torchvision dataset as an unlabeled OOD set: ``n`` images (all if null) drawn with
    ``seed``, converted to the ID channels and resized (shorter side) + centre-cropped."""
    if name in ("dtd", "places365"):
        files = torchvision_files(name, root, split, download)
        chosen = [files[i] for i in sample_indices(len(files), n, seed, "ood.sets.<name>.n")]
        return ImageTensors.unlabeled(decode_files(chosen, shape, fit, num_threads))
    arrays = torchvision_arrays(name, root, split, download, cache_dir)
    index = torch.from_numpy(sample_indices(len(arrays["images"]), n, seed, "ood.sets.<name>.n"))
    return ImageTensors.unlabeled(fit_tensor(arrays["images"][index], shape, fit))
