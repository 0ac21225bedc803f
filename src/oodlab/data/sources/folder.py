"""Your own images: a folder with one sub-folder per class as the in-distribution dataset,
and any folder of images as an OOD set. No config file needed (see docs/data.md, "Your own images").

Files are listed the way torchvision's ImageFolder lists them (same extensions, same sorted
class order), decoded once on a thread pool, and cached as uint8 tensors keyed by every
file's path, size and modification time, so editing the folder invalidates the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.datasets.folder import (
    IMG_EXTENSIONS,
    find_classes,
    has_file_allowed_extension,
    make_dataset,
)

from oodlab.data.cache import cached_tensors
from oodlab.data.downloads import extract_once
from oodlab.data.imaging import decode_files, sample_indices
from oodlab.data.splits import assemble, carve
from oodlab.data.types import ImageTensors, SplitData
from oodlab.errors import ConfigError, MissingDataError

log = logging.getLogger(__name__)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
LAYOUT_HINT = (
    "Lay it out as <folder>/<class>/<image> (one sub-folder per class), or with "
    "<folder>/train/<class>/... and <folder>/test/<class>/... (and optionally val/)."
)


def _image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and 4 <= s <= 1024 for s in size):
        raise ConfigError(
            "data.dataset.image_size", image_size, "an int (or [height, width]) in [4, 1024]"
        )
    return size


def resolve_folder(path: str | Path | None, root: str | Path | None, key: str, what: str) -> Path:
    """The folder to read: ``path`` itself, or, for an archive, its extraction under ``root``."""
    if path in (None, "", "???"):
        raise ConfigError(key, path, f"the path of {what}")
    folder = Path(str(path)).expanduser()
    if not folder.exists():
        raise MissingDataError(
            "image folder", str(folder.resolve()), f"Pass {key}=<{what}>. {LAYOUT_HINT}"
        )
    if folder.is_file():
        if not folder.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise ConfigError(
                key, str(path), f"a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)})"
            )
        stem = folder.name
        for suffix in ARCHIVE_SUFFIXES:
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        base = Path(root) if root is not None else folder.parent
        folder = extract_once(folder, base / "extracted" / stem)
        # archives usually wrap everything in one top-level folder (cifar10-jpeg/...)
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
    if not folder.is_dir():
        raise ConfigError(key, str(path), f"the path of {what}")
    return folder


def _signature(files: Sequence[str], extra: str) -> str:
    """Hash of every file's path, size and mtime: a changed folder never reuses a stale cache."""
    h = hashlib.sha1(extra.encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _labelled_files(
    folder: Path, class_to_idx: dict[str, int], allow_empty: bool
) -> list[tuple[str, int]]:
    try:
        return make_dataset(
            str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=allow_empty
        )
    except FileNotFoundError as exc:
        raise MissingDataError("image folder", str(folder), f"{exc} {LAYOUT_HINT}") from exc


def _classes(folder: Path) -> tuple[list[str], dict[str, int]]:
    try:
        classes, class_to_idx = find_classes(str(folder))
    except FileNotFoundError as exc:
        raise MissingDataError(
            "image folder", str(folder), f"It has no class sub-folders. {LAYOUT_HINT}"
        ) from exc
    if len(classes) < 2:
        raise ConfigError(
            "data.dataset.path",
            str(folder),
            f"a folder with at least 2 class sub-folders, found {classes}",
        )
    return classes, class_to_idx


def load_image_folder(
    path: str | None = None,
    image_size: int | Sequence[int] = 32,
    channels: int = 3,
    val_size: int | float = 0.1,
    test_size: int | float = 0.2,
    split_seed: int = 0,
    train_subset: int | float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
    fit: str = "resize_crop",
    root: str | None = None,
    cache_dir: str | None = None,
    num_threads: int | None = None,
) -> SplitData:
    """An image-folder dataset as SplitData.

    With ``train/`` and ``test/`` sub-folders those splits are used (and ``val/`` if present);
    otherwise the test split (``test_size``) is carved from all images. The val split
    (``val_size``) is carved from train, stratified, with ``split_seed``. ``mean``/``std``
    default to the training images' statistics.
    """
    if channels not in (1, 3):
        raise ConfigError("data.dataset.channels", channels, "1 (greyscale) or 3 (RGB)")
    height, width = _image_size(image_size)
    folder = resolve_folder(
        path, root, "data.dataset.path", "a folder of images, one sub-folder per class"
    )
    split_dirs = {s: folder / s for s in ("train", "val", "test") if (folder / s).is_dir()}
    presplit = "train" in split_dirs and "test" in split_dirs
    classes, class_to_idx = _classes(split_dirs["train"] if presplit else folder)
    if presplit:
        parts = {
            s: _labelled_files(d, class_to_idx, allow_empty=s != "train")
            for s, d in split_dirs.items()
        }
        for split, files in parts.items():
            if not files:
                raise MissingDataError(
                    "image folder",
                    str(split_dirs[split]),
                    f"The {split} folder has no images. {LAYOUT_HINT}",
                )
    else:
        parts = {"all": _labelled_files(folder, class_to_idx, allow_empty=False)}

    shape = (channels, height, width)
    all_files = [f for files in parts.values() for f, _ in files]
    key = _signature(all_files, f"{folder.resolve()}|{shape}|{fit}")
    cache_root = Path(cache_dir) if cache_dir else Path(root or folder.parent) / "cache"
    dataset_name = name or folder.name

    def build() -> dict[str, torch.Tensor]:
        log.info("decoding %d images from %s (cached afterwards)", len(all_files), folder)
        out: dict[str, torch.Tensor] = {}
        for split, files in parts.items():
            out[f"{split}_images"] = decode_files([f for f, _ in files], shape, fit, num_threads)
            out[f"{split}_labels"] = torch.tensor([y for _, y in files], dtype=torch.long)
        return out

    arrays = cached_tensors(cache_root / "folders" / f"{dataset_name}-{key}.pt", build)

    def split_named(s: str) -> ImageTensors:
        return ImageTensors(arrays[f"{s}_images"], arrays[f"{s}_labels"], tuple(classes))

    if presplit:
        train, test = split_named("train"), split_named("test")
        val = split_named("val") if "val" in parts else None
    else:
        everything = split_named("all")
        rest, carved = _carve_test(everything, test_size, split_seed)
        train, test, val = everything.subset(rest), everything.subset(carved), None
    return assemble(
        dataset_name,
        train,
        test,
        val=val,
        val_size=val_size,
        split_seed=split_seed,
        train_subset=train_subset,
        mean=mean,
        std=std,
    )


def _carve_test(
    data: ImageTensors, test_size: int | float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    # seed offset keeps the test carve independent of the val carve that follows
    return carve(data.labels, test_size, seed + 7919, "data.dataset.test_size")


def list_images(folder: Path) -> list[str]:
    """Every image file under ``folder``, at any depth, in sorted order."""
    return sorted(
        str(p)
        for p in folder.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and has_file_allowed_extension(p.name, IMG_EXTENSIONS)
    )


def folder_ood_set(
    *,
    shape: Sequence[int],
    path: str | None = None,
    n: int | None = None,
    seed: int = 0,
    fit: str = "resize_crop",
    root: str | None = None,
    cache_dir: str | None = None,
    num_threads: int | None = None,
) -> ImageTensors:
    """Any folder (or archive) of images, at any depth, as an unlabeled OOD set fitted to
    ``shape``."""
    folder = resolve_folder(path, root, "ood.sets.<name>.path", "a folder of images")
    files = list_images(folder)
    if not files:
        raise MissingDataError(
            "image folder",
            str(folder),
            f"It contains no image files ({', '.join(IMG_EXTENSIONS)}).",
        )
    chosen = [files[i] for i in sample_indices(len(files), n, seed, "ood.sets.<name>.n")]
    key = _signature(chosen, f"{folder.resolve()}|{tuple(shape)}|{fit}")
    cache_root = Path(cache_dir) if cache_dir else Path(root or folder.parent) / "cache"

    def build() -> dict[str, torch.Tensor]:
        log.info("decoding %d OOD images from %s (cached afterwards)", len(chosen), folder)
        return {"images": decode_files(chosen, shape, fit, num_threads)}

    images = cached_tensors(cache_root / "ood" / f"folder-{folder.name}-{key}.pt", build)["images"]
    return ImageTensors.unlabeled(images)
