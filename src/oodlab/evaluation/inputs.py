"""What evaluation accepts as data, reduced to one interface: batches of (images, labels) in a
fixed order, a block of whole batches per process.

Accepted: oodlab's :class:`ImageTensors`, a tensor of images, an ``(images, labels)`` pair, a
``Dataset`` yielding ``(image, label)`` or ``image``, or a ``DataLoader`` (never shuffled:
its order is the order of the scores). Labels are -1 where none are given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from oodlab._infra.distributed import batch_shard, world
from oodlab.data.loaders import TensorSet
from oodlab.errors import ConfigError

Batch = tuple[Tensor, Tensor]


class EvalSet(Protocol):
    """One dataset as evaluation reads it."""

    def __len__(self) -> int: ...

    def num_batches(self, batch_size: int) -> int: ...

    def batches(self, batch_size: int, indices: range) -> Iterator[Batch]: ...


class LoaderSet:
    """A DataLoader's batches, in its order; its own batch size wins over evaluation's."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __len__(self) -> int:
        dataset = getattr(self.loader, "dataset", None)
        return len(dataset) if dataset is not None else sum(1 for _ in self.loader)

    def num_batches(self, batch_size: int) -> int:
        return len(self.loader)

    def batches(self, batch_size: int, indices: range) -> Iterator[Batch]:
        for b, item in enumerate(self.loader):
            if b >= indices.stop:
                break
            if b >= indices.start:
                yield split_batch(item)


class DatasetSet(LoaderSet):
    """A map-style Dataset, read in index order at evaluation's batch size."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batches(self, batch_size: int, indices: range) -> Iterator[Batch]:
        # a streaming set (oodlab's image lists) reads itself: decoding workers, pinned memory
        own = getattr(self.dataset, "eval_batches", None)
        if callable(own):
            return own(batch_size, indices)
        self.loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=False)
        return super().batches(batch_size, indices)


def split_batch(item: Any) -> Batch:
    if isinstance(item, Tensor):
        return item, torch.full((item.shape[0],), -1, dtype=torch.long)
    if isinstance(item, Sequence) and item and isinstance(item[0], Tensor):
        if len(item) > 1 and isinstance(item[1], Tensor) and item[1].ndim == 1:
            return item[0], item[1].long()
        return item[0], torch.full((item[0].shape[0],), -1, dtype=torch.long)
    if isinstance(item, dict) and "image" in item:
        return split_batch((item["image"], item.get("label")))
    raise TypeError(f"a batch must be images or (images, labels), got {type(item).__name__}")


def as_eval_set(data: Any, what: str) -> EvalSet:
    """``data`` as an :class:`EvalSet`; ``what`` names the argument in errors."""
    if isinstance(data, (TensorSet, LoaderSet)):
        return data
    if isinstance(data, Tensor):
        return TensorSet(data)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return TensorSet(*data)
    if hasattr(data, "images") and hasattr(data, "labels"):  # ImageTensors
        return TensorSet(data.images, data.labels)
    if isinstance(data, DataLoader):
        return LoaderSet(data)
    if isinstance(data, Dataset):
        return DatasetSet(data)
    raise ConfigError(
        what,
        type(data).__name__,
        "a tensor of images, an (images, labels) pair, a Dataset or a DataLoader",
    )


def my_batches(data: EvalSet, batch_size: int) -> Iterator[Batch]:
    """This process's block of whole batches of ``data``."""
    world_size, rank = world()
    return data.batches(batch_size, batch_shard(data.num_batches(batch_size), world_size, rank))
