"""The resume plan of a run, decided once, before anything is built: skip a finished job, or
resume from which checkpoint, continuing which W&B run. The early W&B start and training both
read the same :class:`ResumePlan`.

* ``ckpt_path=PATH`` or ``ckpt_path=last`` resumes from that checkpoint;
* ``resume=true`` (or a SLURM requeue) skips a job whose results.json says ok, starts a failed
  one again, and resumes an unfinished one from its newest checkpoint;
* a results.json written by another job (a sweep rerun with a changed grid) is set aside with
  its checkpoints under ``.previous-<time>`` names, so nothing of it is lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from oodlab.errors import MissingFileError
from oodlab.outputs.record import HOW_A_JOB_RAN, RESULTS_FILE, RunRecord
from oodlab.run.runtime import requeued, run_dir, task_overrides

log = logging.getLogger("oodlab")

CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True)
class ResumePlan:
    """``finished``: this job's results.json from a finished run (the job is skipped);
    ``checkpoint``: where training resumes (None: from the start); ``wandb_id``: the W&B
    run the resumed training continues."""

    finished: RunRecord | None = None
    checkpoint: Path | None = None
    wandb_id: str | None = None

    @property
    def skip(self) -> bool:
        return self.finished is not None


def plan_resume(cfg: DictConfig) -> ResumePlan:
    """The plan for a training run's config (``ckpt_path``, ``resume``, SLURM's requeue)."""
    resume = bool(cfg.get("resume", False)) or requeued()
    previous = previous_record(cfg) if resume else None
    if previous is not None and previous.status == "ok":
        return ResumePlan(finished=previous)
    checkpoint = resume_checkpoint(cfg, resume, previous)
    return ResumePlan(checkpoint=checkpoint, wandb_id=saved_wandb_id(checkpoint))


def newest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resume_checkpoint(
    cfg: DictConfig, resume: bool, previous: RunRecord | None = None
) -> Path | None:
    """``ckpt_path`` (a file, or ``last``: the newest in this run's checkpoints/), or with
    ``resume`` the newest one if any, unless ``previous`` says the job failed: then it starts
    again."""
    ckpt_dir = run_dir(cfg) / CHECKPOINT_DIR
    given = cfg.get("ckpt_path")
    if given == "last":
        found = newest_checkpoint(ckpt_dir)
        if found is None:
            raise MissingFileError(
                "Checkpoint",
                str(ckpt_dir),
                "ckpt_path=last resumes a run in its own directory: give the run's directory too "
                "(hydra.run.dir=logs/runs/<run>), or pass the checkpoint file as ckpt_path=PATH.",
            )
        return found
    if given:
        path = Path(str(given)).expanduser()
        if not path.is_file():
            raise MissingFileError(
                "Checkpoint file", str(path), "Pass an existing file, or ckpt_path=last."
            )
        return path
    if not resume:
        return None
    if previous is not None and previous.status == "failed":
        log.info("resume: %s failed before; it runs again from the start", run_dir(cfg))
        return None
    return newest_checkpoint(ckpt_dir)


def job_overrides(items: list[str]) -> list[str]:
    """What a job runs: its overrides less those that say how it ran, in a fixed order."""
    return sorted(o for o in items if o.lstrip("+~").split("=", 1)[0] not in HOW_A_JOB_RAN)


def previous_record(cfg: DictConfig) -> RunRecord | None:
    """The results.json already in this run's directory, if the same job (the same overrides)
    wrote it. Another job's is set aside, with its checkpoints, and None is returned."""
    path = run_dir(cfg) / RESULTS_FILE
    if not path.exists():
        return None
    record = RunRecord.read(path)
    if job_overrides(list(record.run.overrides or [])) == job_overrides(task_overrides()):
        return record
    log.warning(
        "resume: %s holds the results of another job (%s); they are kept under .previous-* "
        "names and this job (%s) runs from the start",
        run_dir(cfg),
        " ".join(record.run.overrides or []) or "no overrides",
        " ".join(task_overrides()) or "no overrides",
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path.replace(path.with_name(f"results.previous-{stamp}.json"))
    checkpoints = run_dir(cfg) / CHECKPOINT_DIR
    if checkpoints.exists():
        checkpoints.replace(checkpoints.with_name(f"{CHECKPOINT_DIR}.previous-{stamp}"))
    return None


def saved_wandb_id(checkpoint: Path | None) -> str | None:
    """The W&B run id that :class:`oodlab.callbacks.RunState` stored in a checkpoint."""
    if checkpoint is None:
        return None
    import torch  # only a resumed run reads a checkpoint here

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key, state in (raw.get("callbacks") or {}).items():
        if str(key).startswith("RunState") and isinstance(state, dict):
            return state.get("wandb_id")
    return None
