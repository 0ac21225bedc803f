"""Sharding evaluation work across processes so that the result equals one process's.

Evaluation splits a dataset into the batches one process would run, gives every process a
contiguous block of whole batches, and gathers the rows back in rank order without padding:
every sample is computed exactly once, in the same batch as in a single process. (A
DistributedSampler pads the last shard with repeated samples, which biases AUROC and FPR95.)
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(number of processes, this process's rank); (1, 0) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def batch_shard(n_batches: int, world_size: int, rank: int) -> range:
    """This rank's batch indices: a contiguous block of the single-process batches."""
    per = math.ceil(n_batches / world_size) if n_batches else 0
    return range(min(rank * per, n_batches), min((rank + 1) * per, n_batches))


def gather_rows(local: Tensor) -> Tensor:
    """Concatenate every rank's rows in rank order (blocks may differ in length)."""
    world_size, _ = world()
    if world_size == 1:
        return local
    size = torch.tensor([local.shape[0]], device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, sizes)])
