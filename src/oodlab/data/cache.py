"""On-disk tensor cache: decode or parse once, then every later run loads uint8 tensors."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from oodlab._infra.io import atomic_write_bytes


def cached_tensors(path: str | Path, build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    path = Path(path)
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a truncated or stale cache is rebuilt, never trusted
            path.unlink(missing_ok=True)
    tensors = build()
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    # Atomic so two sweep jobs building the same cache never read half a file.
    atomic_write_bytes(path, buffer.getvalue())
    return tensors
