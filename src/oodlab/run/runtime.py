"""What Hydra's runtime says about this process: multirun or not, the sweep group, the task
overrides, and whether SLURM requeued the job. A leaf module: it imports only Hydra and the
standard library, so the entry points can ask before torch loads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group() -> str | None:
    """All jobs of one multirun share a W&B group: the sweep directory's name."""
    return Path(HydraConfig.get().sweep.dir).name if is_multirun() else None


def task_overrides() -> list[str]:
    """The overrides the user typed for this job (none under the compose API)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def requeued() -> bool:
    """A SLURM job started again by its requeue (SLURM counts the restarts): it resumes."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def run_dir(cfg: DictConfig) -> Path:
    """This run's directory, where results.json, checkpoints/ and the plots go."""
    return Path(cfg.paths.output_dir)


def config_dir() -> Path:
    """conf/ beside src/ in the repository (the package is installed editable)."""
    return Path(__file__).resolve().parents[3] / "conf"


def plain(cfg: Any) -> Any:
    """A config node as plain Python values, resolved; anything else unchanged."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain values, without Hydra's own node (present under compose)."""
    return {str(k): plain(v) for k, v in cfg.items() if k != "hydra"}
