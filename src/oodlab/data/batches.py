"""Batch access to in-memory uint8 tensors, plus samplers that keep evaluation exact under DDP."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from oodlab.data.types import ImageTensors


class TensorBatches(Dataset):
    """A dataset whose DataLoader fetches a whole batch with one indexing op.

    torch's DataLoader calls ``__getitems__`` with the batch's index list, so there is no
    per-sample Python work; ``collate_batch`` passes the ready batch through.
    """

    def __init__(self, data: ImageTensors, with_index: bool = False):
        self.data = data
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, indices: Sequence[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch = (self.data.images[idx], self.data.labels[idx])
        return (*batch, idx) if self.with_index else batch


def collate_batch(batch):
    return batch


class ShardSampler(Sampler[int]):
    """Contiguous, unpadded shards of an evaluation set, one per process.

    Lightning's DistributedSampler pads the last shard with repeated samples, which biases
    AUROC and FPR95; shards of unequal length keep every sample exactly once.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0):
        per = math.ceil(length / max(num_replicas, 1))
        self.start, self.stop = min(rank * per, length), min((rank + 1) * per, length)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def shard_bounds(length: int, num_replicas: int, rank: int) -> tuple[int, int]:
    s = ShardSampler(length, num_replicas, rank)
    return s.start, s.stop


def to_float(images: Tensor) -> Tensor:
    return images.float().div_(255.0)
