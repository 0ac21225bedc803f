"""What a resumed run needs beyond Lightning's own checkpoint state: the random number
generators' states, and the id of the W&B run to continue.

The states are saved with every checkpoint and put back at the start of the resumed
training, after Lightning has restored the weights, optimizer, scheduler and loops, and after
model construction has drawn its own random numbers, so the resumed run draws the same
dropout masks and augmentations as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RunState(L.Callback):
    """Saves the RNG states and the W&B run id in checkpoints; restores the RNG states when
    training resumes from one. ``wandb_id`` is set by the run before training.

    It also hands a mid-epoch checkpoint's loader position back to the training batches.
    Lightning does that itself, except when ``configure_optimizers`` reads
    ``trainer.estimated_stepping_batches`` (as a cosine schedule over all steps does), which
    builds the loader before the checkpoint is read (Lightning issue #20550).
    """

    def __init__(self) -> None:
        self.wandb_id: str | None = None
        self._restore: dict[str, Any] | None = None
        self._loader_state: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # pickled-free types only (tuples, lists, ints, tensors): checkpoints load with
        # weights_only=True
        return {"rng": _plain(rng_states()), "wandb_id": self.wandb_id}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = state_dict.get("rng")
        self.wandb_id = state_dict.get("wandb_id") or self.wandb_id

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = (
            checkpoint.get("loops", {})
            .get("fit_loop", {})
            .get("state_dict", {})
            .get("combined_loader")
            or []
        )
        self._loader_state = states[0] if len(states) == 1 else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restore is not None:
            set_rng_states(_unplain(self._restore))
            self._restore = None
        loader = trainer.train_dataloader
        # the batches load lazily: the position set here is read when the first one is fetched
        if (
            self._loader_state
            and self._loader_state.get("batches")
            and loader is not None
            and hasattr(loader, "load_state_dict")
        ):
            loader.load_state_dict(self._loader_state)
        self._loader_state = None


def _plain(states: dict[str, Any]) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    python_version, python_state, python_gauss = states["python"]
    plain = {
        "torch": states["torch"],
        "numpy": [
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        ],
        "python": [int(python_version), list(python_state), python_gauss],
    }
    if "cuda" in states:
        plain["cuda"] = list(states["cuda"])
    return plain


def _unplain(plain: dict[str, Any]) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = plain["numpy"]
    version, state, gauss_next = plain["python"]
    states = {
        "torch": plain["torch"],
        "numpy": (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss),
        "python": (version, tuple(state), gauss_next),
    }
    if "cuda" in plain:
        states["cuda"] = plain["cuda"]
    return states


def saved_wandb_id(checkpoint_path: str) -> str | None:
    """The W&B run id stored in a checkpoint by :class:`RunState`, if any."""
    raw = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    for key, state in (raw.get("callbacks") or {}).items():
        if str(key).startswith("RunState") and isinstance(state, dict):
            return state.get("wandb_id")
    return None
