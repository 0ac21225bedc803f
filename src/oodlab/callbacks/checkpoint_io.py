"""Lightning checkpoints written atomically: serialised in memory, written to a temporary file
beside the target, flushed to disk and renamed over it. A kill at any moment leaves either the
previous checkpoint or the new one, both loadable."""

from __future__ import annotations

import io
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from oodlab._infra.io import atomic_write_bytes


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())
