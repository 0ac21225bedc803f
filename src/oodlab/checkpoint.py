"""Loading a training checkpoint for evaluation, with ``weights_only=True`` and clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from oodlab.errors import CheckpointError, find_user_error
from oodlab.task import OODClassificationTask

HOW_TO_GET = (
    "Training saves one in its run directory: python src/train.py, then "
    "ckpt_path=<run dir>/checkpoints/last.ckpt."
)


@dataclass
class LoadedCheckpoint:
    task: OODClassificationTask
    path: Path
    #: training epochs completed when the checkpoint was written
    epochs: int
    #: the OODMonitor's per-epoch logit-norm curve, if training ran with it
    logit_norm: dict[str, list[float]] = field(default_factory=dict)


def load_checkpoint(
    path: str | Path | None, map_location: str | torch.device = "cpu"
) -> LoadedCheckpoint:
    if path is None or str(path).strip() == "":
        raise CheckpointError(
            "",
            "was not given. Pass ckpt_path=PATH, or arch=<timm or torchvision:name> "
            f"weights=PATH for any other classifier. {HOW_TO_GET}",
        )
    path = Path(path).expanduser()
    if not path.is_file():
        problem = "is a directory, not a file" if path.is_dir() else "not found"
        raise CheckpointError(path, f"{problem}. {HOW_TO_GET}")
    try:
        raw: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict) or "state_dict" not in raw or "hyper_parameters" not in raw:
            raise ValueError(
                "it has no state_dict and hyper_parameters: not an oodlab Lightning checkpoint"
            )
        # the weights come from the checkpoint: never fetch the starting weights again
        task = OODClassificationTask.load_from_checkpoint(
            path, weights_only=True, map_location=map_location, pretrained=False, weights=None
        )
    except Exception as exc:
        if find_user_error(exc) is not None:
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            path,
            f"could not be loaded ({type(exc).__name__}: {reason}). "
            "It may be truncated or not an oodlab checkpoint.",
        ) from exc
    task.eval()
    monitor: Any = next(
        (v for k, v in (raw.get("callbacks") or {}).items() if str(k).startswith("OODMonitor")), {}
    )
    return LoadedCheckpoint(
        task=task,
        path=path,
        epochs=_epochs_completed(raw),
        logit_norm=dict(monitor.get("history") or {}) if isinstance(monitor, dict) else {},
    )


def _epochs_completed(raw: dict[str, Any]) -> int:
    """Epochs whose training ran to the end. ``processed``, not ``completed``: a checkpoint
    written at the end of an epoch is written before Lightning counts the epoch completed."""
    try:
        return int(raw["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(raw.get("epoch", 0))
