"""Batches straight from in-memory uint8 tensors: no DataLoader, no worker processes, no
per-sample Python. On a GPU the tensors live on the device and are indexed there.

:class:`TrainBatches` shuffles with a generator seeded by (seed, epoch), so the order of any
epoch is known without replaying the ones before it. That makes a resumed run see the same
batches as an uninterrupted one, also from the middle of an epoch: Lightning saves
:meth:`TrainBatches.state_dict` in the checkpoint and hands it back on resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from oodlab._infra.distributed import batch_shard
from oodlab.data.types import ImageTensors

Batch = tuple[Tensor, Tensor]


class _EpochCounter:
    """Lightning calls ``loader.sampler.set_epoch(epoch)`` before every training epoch."""

    def __init__(self, epoch: int = 0):
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


def epoch_order(n: int, seed: int, epoch: int, world_size: int = 1, rank: int = 0) -> Tensor:
    """One process's sample indices of ``n`` for ``epoch``: a seeded shuffle, then every
    ``world_size``-th index (as DistributedSampler does), the tail dropped so every process has
    as many. In-memory and streamed training both draw this order."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=generator)
    return perm[rank : (n // world_size) * world_size : world_size]


class TrainBatches:
    """Shuffled training batches of ``data``; with several processes each takes every
    ``world_size``-th sample of the shuffled order (as DistributedSampler does), dropping the
    tail so that every process runs the same number of steps."""

    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        world_size: int = 1,
        rank: int = 0,
        drop_last: bool = True,
    ):
        self.images, self.labels = data.images, data.labels
        self.batch_size = batch_size
        self.seed, self.world_size, self.rank = seed, world_size, rank
        per_rank = len(data) // world_size
        # a last partial batch of a tiny dataset is kept rather than training on nothing
        self.drop_last = drop_last and per_rank > batch_size
        self.per_rank = per_rank
        self.sampler = _EpochCounter(epoch)
        self._skip = 0
        self._consumed = 0

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def order(self, epoch: int) -> Tensor:
        """This process's sample indices for ``epoch``."""
        return epoch_order(self.labels.shape[0], self.seed, epoch, self.world_size, self.rank)

    def __iter__(self) -> Iterator[Batch]:
        order = self.order(self.sampler.epoch).to(self.images.device)
        first, self._skip = self._skip, 0
        self._consumed = first
        for b in range(first, len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.images[index], self.labels[index]

    # Lightning's mid-epoch resume (the _Stateful protocol). Lightning fetches batches ahead
    # of the step that trains on them, so the count of trained batches comes from the
    # training loop (mark_consumed), not from what was yielded.
    def mark_consumed(self, batches: int) -> None:
        self._consumed = batches

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.sampler.epoch, "batches": self._consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._skip = int(state["batches"])


class TensorSet:
    """Images in one tensor (N, ...), any dtype, with int64 labels (-1: none); read in
    slices of whole batches, never copied per sample."""

    def __init__(self, images: Tensor, labels: Tensor | None = None):
        if labels is None:
            labels = torch.full((images.shape[0],), -1, dtype=torch.long)
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images"
            )
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batches(self, batch_size: int, indices: range) -> Iterator[Batch]:
        for b in indices:
            rows = slice(b * batch_size, (b + 1) * batch_size)
            yield self.images[rows], self.labels[rows]


class EvalBatches:
    """An evaluation set in order: this process's contiguous block of whole batches (see
    oodlab._infra.distributed), so that metrics equal a single process's."""

    def __init__(self, data: ImageTensors, batch_size: int, world_size: int = 1, rank: int = 0):
        self.data = TensorSet(data.images, data.labels)
        self.batch_size = batch_size
        self.indices = batch_shard(self.data.num_batches(batch_size), world_size, rank)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Batch]:
        return self.data.batches(self.batch_size, self.indices)
