"""Image lists: any ``relative/path label`` file over a root folder, streamed from the files.

ImageNet does not fit in memory as uint8 tensors, so these sets are torch Datasets that decode
on demand, in DataLoader workers (oodlab.data.streaming), to uint8 (C, H, W): the shorter
side resized to ``preprocessing.resize``, then a centre crop of ``preprocessing.crop``, exactly
as torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` do on a PIL image. Mean and std are
applied later, on the device (the task's or evaluation's normalisation).

The list format (OpenOOD's ``benchmark_imglist/*.txt``), one image a line:

* ``<path> <label>``: the label is the last whitespace-separated token when it is an integer
  (``-1``: OOD); the path is everything before it, so it may contain spaces
  (``my dir/a b.jpg 3``). OpenOOD writes one space and no spaces in paths: both readings agree.
* ``<path>`` alone, or a line whose last token is not an integer: the whole line is the path,
  unlabelled (-1).
* Blank lines and lines starting with ``#`` are skipped. Paths are relative to the root
  folder; absolute paths are used as they are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from oodlab.data.imaging import crop_box, decode_image, fit_pil, resized_size, sample_indices
from oodlab.data.preprocessing import Preprocessing
from oodlab.data.streaming import StreamOptions
from oodlab.data.types import SplitData
from oodlab.errors import ConfigError, CorruptDataError, MissingDataError

log = logging.getLogger(__name__)
__all__ = ["ImageListDataset", "crop_box", "decode_image", "fit_pil", "resized_size"]

#: how many files of a list are checked to exist before a run starts (evenly spaced)
CHECKED_FILES = 2000
JPEG_MAGIC = b"\xff\xd8"
# item kinds the streaming workers hand back (oodlab.data.streaming)
DECODED, ENCODED_JPEG = 0, 1


# -- the list format ------------------------------------------------------------------------
def parse_line(line: str) -> tuple[str, int] | None:
    """One list line -> (path, label), or None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    parts = text.rsplit(None, 1)
    if len(parts) == 2:
        try:
            return parts[0], int(parts[1])
        except ValueError:
            pass
    return text, -1


def read_image_list(path: str | Path) -> list[tuple[str, int]]:
    """Every (relative path, label) of an image-list file, in file order."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError("image list", str(path), "Give the path of an existing list file.")
    entries = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            entry = parse_line(line)
            if entry is not None:
                entries.append(entry)
    return entries


class ImageListDataset(Dataset):
    """Images of an image list as a map-style Dataset: ``ds[i]`` is (uint8 (C, crop, crop),
    label). ``files`` are full paths; ``labels`` int64 (-1: OOD).

    The paths are held in one numpy bytes array, not a list of str, so DataLoader workers
    (forked) do not copy them page by page as reference counts change. Passed to
    ``oodlab.evaluate``, it is read through decoding workers and pinned memory
    (:meth:`eval_batches`, with ``options``).
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: Sequence[int] | Tensor | None,
        preprocessing: Preprocessing,
        *,
        channels: int = 3,
        classes: Sequence[str] = (),
        name: str = "image list",
        options: StreamOptions | None = None,
        how_to_get: str = "",
    ):
        self._files = np.array([os.fsencode(str(f)) for f in files], dtype=np.bytes_)
        if labels is None:
            labels = torch.full((len(self._files),), -1, dtype=torch.long)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.labels.shape != (len(self._files),):
            raise ValueError(f"{len(self.labels)} labels for {len(self._files)} files")
        if channels not in (1, 3):
            raise ConfigError("image channels", channels, "1 or 3")
        self.preprocessing = preprocessing
        self.channels = channels
        self.classes = tuple(classes)
        self.name = name
        self.options = options or StreamOptions()
        self.how_to_get = how_to_get

    def __len__(self) -> int:
        return len(self._files)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.preprocessing.crop, self.preprocessing.crop

    def file(self, index: int) -> str:
        return os.fsdecode(self._files[index])

    @property
    def files(self) -> list[str]:
        return [os.fsdecode(f) for f in self._files]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path = self.file(index)
        try:
            return decode_image(path, self.preprocessing, self.channels), int(self.labels[index])
        except FileNotFoundError as exc:
            raise self.missing(path) from exc
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise CorruptDataError(
                f"Cannot read image file {path}: {exc}. Delete or replace it."
            ) from exc

    def missing(self, path: str) -> MissingDataError:
        how = self.how_to_get or "The image list names it; put the images under the list's root."
        return MissingDataError(self.name, path, how)

    def item(self, index: int, encoded: bool) -> tuple[Tensor, int, int, str]:
        """What a streaming worker hands back: (data, label, kind, error). ``encoded``: a JPEG
        comes back as its file bytes (kind ENCODED_JPEG) for decoding on the GPU; anything
        else is decoded here (kind DECODED). Errors come back as text (``missing|path`` or
        ``corrupt|message``), so the main process raises them as one-line oodlab errors."""
        path, label = self.file(index), int(self.labels[index])
        try:
            if encoded:
                data = Path(path).read_bytes()
                if data[:2] == JPEG_MAGIC:
                    return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, 1, ""
                return decode_image(data, self.preprocessing, self.channels), label, DECODED, ""
            return decode_image(path, self.preprocessing, self.channels), label, DECODED, ""
        except FileNotFoundError:
            error = f"missing|{path}"
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            error = f"corrupt|Cannot read image file {path}: {exc}. Delete or replace it."
        return torch.zeros(self.shape, dtype=torch.uint8), label, DECODED, error

    def subset(self, index: Tensor | Sequence[int] | np.ndarray) -> ImageListDataset:
        rows = np.asarray(index, dtype=np.int64)
        other = ImageListDataset.__new__(ImageListDataset)
        other.__dict__.update(self.__dict__)
        other._files = self._files[rows]
        other.labels = self.labels[torch.as_tensor(rows)]
        return other

    def with_options(self, options: StreamOptions) -> ImageListDataset:
        other = ImageListDataset.__new__(ImageListDataset)
        other.__dict__.update(self.__dict__)
        other.options = options
        return other

    def cache_key(self) -> str:
        """What tells two sets apart for the evaluation cache: every file's path, size and
        mtime (a stat per file, no image read), the labels and the preprocessing."""
        import hashlib

        h = hashlib.sha256(f"{self.preprocessing.key()}|{self.channels}\n".encode())
        for raw in self._files:
            stat = os.stat(raw)
            h.update(raw + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        h.update(self.labels.numpy().tobytes())
        return f"image-list:{h.hexdigest()}"

    def eval_batches(self, batch_size: int, indices: range) -> Any:
        """Batches ``indices`` (of ``batch_size`` images) in order, through decoding workers:
        the hook ``oodlab.evaluate`` reads a streaming set with (oodlab.evaluation.inputs)."""
        from oodlab.data.streaming import StreamEvalBatches

        return iter(StreamEvalBatches(self, batch_size, indices))

    def check_files(self, limit: int = CHECKED_FILES) -> None:
        """Raise the one-line MissingDataError unless (an evenly spaced ``limit`` of) the files
        exist: a run fails before it starts, not hours in."""
        n = len(self)
        for i in np.unique(np.linspace(0, n - 1, min(n, limit)).astype(np.int64)) if n else []:
            path = self.file(int(i))
            if not os.path.isfile(path):
                raise self.missing(path)


# -- building sets from lists -------------------------------------------------------------
def as_preprocessing(value: Preprocessing | Mapping[str, Any] | None, key: str) -> Preprocessing:
    if isinstance(value, Preprocessing):
        return value
    if value is None:
        raise ConfigError(key, None, "resize, crop (and interpolation, mean, std)")
    fields = dict(value)
    for name in ("mean", "std"):
        if name in fields:
            fields[name] = tuple(float(v) for v in fields[name])
    fields.setdefault("source", "config")
    return Preprocessing(**fields)


def list_dataset(
    list_file: str | Path,
    root: str | Path,
    preprocessing: Preprocessing,
    *,
    channels: int = 3,
    name: str = "image list",
    classes: Sequence[str] = (),
    n: int | None = None,
    seed: int = 0,
    how_to_get: str = "",
    options: StreamOptions | None = None,
    check: bool = True,
    prefix_fallback: bool = False,
) -> ImageListDataset:
    """The images of ``list_file`` under ``root`` (``n``: a fixed random subset).

    ``prefix_fallback``: when the first listed file is missing at ``root/<entry>``, also try
    ``root/<first component>/<entry>`` (an OpenOOD zip extracted into a folder of its own name
    that itself holds a folder of that name)."""
    root = Path(root).expanduser()
    list_path = root / Path(list_file).expanduser()
    entries = read_image_list(list_path)
    if not entries:
        raise MissingDataError(name, str(list_path), "The image list is empty.")
    chosen = [entries[i] for i in sample_indices(len(entries), n, seed, f"{name}.n")]
    base = root
    if prefix_fallback and chosen and not (root / chosen[0][0]).is_file():
        first = Path(chosen[0][0]).parts[0]
        if (root / first / chosen[0][0]).is_file():
            base = root / first
    data = ImageListDataset(
        [base / path for path, _ in chosen],
        [label for _, label in chosen],
        preprocessing,
        channels=channels,
        classes=classes,
        name=name,
        options=options,
        how_to_get=how_to_get,
    )
    if check:
        data.check_files()
    return data


def _ood_preprocessing(
    shape: Sequence[int], preprocessing: Preprocessing | Mapping[str, Any] | None
) -> Preprocessing:
    """The ID data's preprocessing; for in-memory ID data (none), a resize-and-crop to its
    (square) image size."""
    if preprocessing is not None:
        return as_preprocessing(preprocessing, "preprocessing")
    _, height, width = (int(s) for s in shape)
    if height != width:
        raise ConfigError(
            "ood.sets.<name>", f"{height}x{width} ID images", "square ID images for image lists"
        )
    return Preprocessing(resize=height, crop=height, source="ID image size")


def image_list_ood_set(
    *,
    shape: Sequence[int],
    list: str,
    root: str = ".",
    n: int | None = None,
    seed: int = 0,
    name: str | None = None,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    options: StreamOptions | None = None,
) -> ImageListDataset:
    """Any image list as a streaming OOD set (labels are ignored: OOD is -1). ``shape`` is the
    ID images' (C, H, W); ``preprocessing`` the ID data's (the data module passes it)."""
    if not list:
        raise ConfigError("ood.sets.<name>.list", list, "the path of an image-list file")
    pre = _ood_preprocessing(shape, preprocessing)
    data = list_dataset(
        list,
        root,
        pre,
        channels=int(shape[0]),
        name=name or Path(list).stem,
        n=n,
        seed=seed,
        options=options,
    )
    data.labels = torch.full_like(data.labels, -1)
    return data


def load_image_lists(
    *,
    train: str,
    test: str,
    val: str | None = None,
    root: str = ".",
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    name: str | None = None,
    channels: int = 3,
    classes: Sequence[str] | None = None,
    val_size: int | float = 0.1,
    split_seed: int = 0,
    train_subset: int | float | None = None,
    num_workers: int | None = None,
    decode: str = "auto",
    how_to_get: str = "",
    check_train: bool = True,
    prefix_fallback: bool = False,
) -> SplitData:
    """An in-distribution dataset from image lists (``data=image_list``): train, val and test
    lists of labelled images under ``root``. Without a val list, ``val_size`` images (a count
    or a fraction) are carved from train, stratified, with ``split_seed``; ``train_subset``
    keeps that many training images, stratified. ``check_train=False`` lets a run start
    without the training images (an evaluation of post-hoc scores that fit no statistics)."""
    from oodlab.data.splits import carve

    pre = as_preprocessing(preprocessing, "data.dataset.preprocessing")
    options = StreamOptions(num_workers=num_workers, decode=decode)
    common: dict[str, Any] = dict(
        channels=channels, how_to_get=how_to_get, options=options, prefix_fallback=prefix_fallback
    )
    label = name or Path(str(train)).parent.name or "image_list"
    train_set = list_dataset(train, root, pre, name=label, check=False, **common)
    if check_train:
        train_set.check_files()
    elif len(train_set):
        path = train_set.file(0)
        if not os.path.isfile(path):
            log.warning("%s", train_set.missing(path))
    test_set = list_dataset(test, root, pre, name=label, **common)
    for split, data in (("train", train_set), ("test", test_set)):
        if bool((data.labels < 0).any()):
            raise ConfigError(f"data.dataset.{split}", str(Path(root) / split), "labelled lines")
    if val:
        val_set = list_dataset(val, root, pre, name=label, **common)
    else:
        rest, carved = carve(train_set.labels, val_size, split_seed, "data.dataset.val_size")
        train_set, val_set = train_set.subset(rest), train_set.subset(carved)
    if train_subset is not None and not (
        isinstance(train_subset, int) and train_subset >= len(train_set)
    ):
        _, keep = carve(train_set.labels, train_subset, split_seed + 1, "data.dataset.train_subset")
        train_set = train_set.subset(keep)
    num_classes = int(max(train_set.labels.max(), test_set.labels.max())) + 1
    names = tuple(classes) if classes else tuple(str(c) for c in range(num_classes))
    for data in (train_set, val_set, test_set):
        data.classes = names
    return SplitData(
        name=label,
        train=train_set,
        val=val_set,
        test=test_set,
        mean=pre.mean,
        std=pre.std,
        preprocessing=pre,
    )
