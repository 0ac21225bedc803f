"""What ``src/train.py`` and ``src/eval.py`` run, given a composed Hydra config.

This module imports nothing heavy: torch, Lightning and W&B load when a run starts
(oodlab.runs), so ``--help``, ``--cfg job`` and tab completion answer at once. Everything is
importable and testable through Hydra's compose API.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from oodlab.errors import find_user_error


def train(cfg: DictConfig) -> tuple[dict[str, Any], float]:
    """One training run and its evaluation: (results.json's content, the sweep objective)."""
    from oodlab.runs import train as train_run

    return train_run(cfg)


def evaluate_checkpoint(cfg: DictConfig) -> tuple[dict[str, Any], float]:
    """The evaluation of a saved model: (results.json's content, the sweep objective)."""
    from oodlab.runs import evaluate_checkpoint as evaluate_run

    return evaluate_run(cfg)


def sweeper_value(objective: float | None) -> float | None:
    """The value a job hands back to Hydra's sweeper: None for a failed job or a NaN objective.

    hydra-optuna-sweeper records a job returning None as a FAIL trial and goes on. A NaN
    would crash the study instead: Optuna 2.10's ``study.tell`` rejects it, and the
    sweeper's fallback then tells FAIL together with the NaN, which Optuna rejects too.
    """
    if objective is None or (isinstance(objective, float) and math.isnan(objective)):
        return None
    return float(objective)


def guarded(
    fn: Callable[[DictConfig], tuple[dict[str, Any], float]], cfg: DictConfig
) -> float | None:
    """Run ``fn``; turn user errors into one clear line, keep a sweep going past a failed job,
    and stop cleanly on a signal.

    A failed job of a multirun writes a results.json with ``status: failed`` and the error, so
    the report shows it, and the remaining jobs still run. A run stopped by a signal has saved
    a checkpoint; it records ``status: interrupted`` and exits with 128 + the signal number,
    after calling the handler that was there before (a cluster's requeue).
    """
    from oodlab._infra import early_wandb
    from oodlab.callbacks.preemption import RunInterrupted
    from oodlab.outputs.console import make_console

    console = make_console(sys.stderr)
    try:
        _, objective = fn(cfg)
        return sweeper_value(objective)
    except RunInterrupted as stop:
        write_record(
            cfg, "interrupted", f"{stop}. Resume with ckpt_path=last or resume=true.", None
        )
        console.print(
            f"[bold yellow]interrupted[/]: {stop}. Resume with the same command plus ckpt_path={stop.checkpoint}"
        )
        if callable(stop.previous_handler):
            stop.previous_handler(stop.signum, None)
        sys.exit(128 + stop.signum)
    except Exception as exc:  # every failure is reported; none is swallowed silently
        user_error = find_user_error(exc)
        message = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
        if is_multirun():
            write_record(cfg, "failed", message, traceback.format_exc())
            console.print(f"[bold red]job failed[/]: {message}", highlight=False, soft_wrap=True)
            # None, not NaN: the Optuna sweeper then records a failed trial (sweeper_value)
            return None
        if user_error is None:
            raise
        console.print(f"[bold red]error[/]: {message}", highlight=False, soft_wrap=True)
        sys.exit(1)
    finally:
        early_wandb.discard()


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, name the jobs that failed and, unless told
    otherwise, exit with status 1, so that scripts and CI see a sweep with failures. Every
    job's results.json, failed or not, is already written."""

    def __init__(self, fail_on_failed_jobs: bool = True):
        self.fail_on_failed_jobs = fail_on_failed_jobs

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from oodlab.outputs.console import make_console

        sweep_dir = Path(config.hydra.sweep.dir)
        failed = []
        for path in sorted(sweep_dir.glob("**/results.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("status") not in (None, "ok"):
                failed.append((path.parent, record.get("status"), record.get("error", "")))
        if not failed:
            return
        console = make_console(sys.stderr)
        console.print(
            f"[bold red]{len(failed)} job(s) of the sweep did not finish[/] ({sweep_dir}):",
            highlight=False,
            soft_wrap=True,
        )
        for job_dir, status, error in failed:
            console.print(f"  {job_dir.name}: {status}: {error}", highlight=False, soft_wrap=True)
        console.print(
            "Rerun them into the same directory with resume=true; finished jobs are skipped.",
            highlight=False,
        )
        if self.fail_on_failed_jobs:
            sys.exit(1)


def sweep_group() -> str | None:
    """All jobs of one multirun share a W&B group: the sweep directory's name."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().sweep.dir).name if is_multirun() else None


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def write_record(cfg: DictConfig, status: str, error: str, trace: str | None) -> None:
    """results.json of a run that did not finish: the error and what tells the run apart."""
    from hydra.core.hydra_config import HydraConfig

    from oodlab.outputs.record import RunInfo, build_record

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    run = RunInfo(overrides=overrides, seed=int(cfg.seed))
    build_record(run, status=status, error=error, traceback=trace).write(Path(cfg.paths.output_dir))


def requeued() -> bool:
    """A SLURM job started again by its requeue (SLURM counts the restarts): it resumes."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def prepare_process(cfg: DictConfig) -> None:
    """Process-wide settings of a run: quiet third-party libraries, keep freed memory, load the
    libraries a run needs with the collector out of the way, and start W&B early."""
    from oodlab._infra.memory import keep_freed_memory, long_lived_imports, skip_final_collection
    from oodlab._infra.quiet import quiet_third_party

    quiet_third_party(not cfg.get("verbose_third_party", False))
    keep_freed_memory()
    skip_final_collection()
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    with long_lived_imports():
        if wandb_cfg is not None:
            # wandb.init imports W&B's public API, whose pydantic models call inspect.getmodule
            # over every loaded module: 2 s once torch, timm and Lightning are loaded, 0.2 s before
            import wandb.apis.public  # noqa: F401

            from oodlab._infra import early_wandb

            if not (cfg.get("ckpt_path") or cfg.get("resume") or requeued()):
                settings = OmegaConf.to_container(wandb_cfg, resolve=True)
                settings["group"] = settings.get("group") or sweep_group()
                settings["tags"] = [*(settings.get("tags") or []), *expected_tags(cfg)]
                early_wandb.start(settings)
        import oodlab.runs  # noqa: F401  (torch, Lightning, timm: while W&B starts in its thread)


def expected_tags(cfg: DictConfig) -> list[str]:
    """The run's W&B tags as far as the config tells them before anything is built (the run
    adds any it could not foresee, e.g. a folder dataset's name): loss, dataset, backbone and
    the loss's own hyperparameters."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("loss") is None or cfg.get("model") is None:  # src/eval.py: the checkpoint tells
        return []
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    loss = choices.get("loss") or str(cfg.loss.get("_target_", "")).rsplit(".", 1)[-1]
    dataset = cfg.data.dataset.get("name") or choices.get("data")
    params = [
        f"{k}:{float(v) if isinstance(v, int) else v}"
        for k, v in cfg.loss.items()
        if k != "_target_" and v is not None
    ]
    return [f"loss:{loss}", f"dataset:{dataset}", f"backbone:{cfg.model.backbone}", *params]


def train_main(cfg: DictConfig) -> float | None:
    prepare_process(cfg)
    return guarded(train, cfg)


def eval_main(cfg: DictConfig) -> float | None:
    prepare_process(cfg)
    return guarded(evaluate_checkpoint, cfg)


def config_dir() -> Path:
    """conf/ beside src/ in the repository (the package is installed editable)."""
    return Path(__file__).resolve().parents[2] / "conf"
