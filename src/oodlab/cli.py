"""The entry points of ``src/train.py`` and ``src/eval.py``: the ``*_main`` functions, the
error guard and the value handed back to Hydra's sweeper.

This module imports nothing heavy at import time: torch, Lightning and W&B load when a run
starts, so ``--help``, ``--cfg job`` and tab completion answer at once.

A run, top to bottom: process-wide settings (:mod:`oodlab.run.process`) -> the resume plan
(:mod:`oodlab.run.resume`) -> W&B started in a thread while the libraries import
(:mod:`oodlab.outputs.wandb_run`) -> :func:`oodlab.run.train.train` or
:func:`oodlab.run.evaluate.evaluate_checkpoint`, inside :func:`guarded`.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from oodlab.errors import RunInterrupted, find_user_error
from oodlab.run import process
from oodlab.run.runtime import is_multirun

if TYPE_CHECKING:
    from oodlab.outputs.wandb_run import WandbStart


def train_main(cfg: DictConfig) -> float | None:
    with job_errors():
        process.configure(cfg)
        with process.long_lived_imports():
            from oodlab.outputs.wandb_run import start_early
            from oodlab.run.resume import plan_resume

            plan = plan_resume(cfg)
            started = start_early(cfg, plan)
            from oodlab.run.train import train  # torch, Lightning, timm: while W&B starts

        return guarded(lambda: train(cfg, plan, started), cfg, started)


def eval_main(cfg: DictConfig) -> float | None:
    with job_errors():
        process.configure(cfg)
        with process.long_lived_imports():
            from oodlab.outputs.wandb_run import start_early

            started = start_early(cfg, None)
            from oodlab.run.evaluate import evaluate_checkpoint

        return guarded(lambda: evaluate_checkpoint(cfg, started), cfg, started)


@contextmanager
def job_errors() -> Iterator[None]:
    """Marks an exception that escapes a job, so that :func:`run_hydra` reports it as Hydra
    does (a traceback: it is no config error of the command line) instead of translating it."""
    try:
        yield
    except BaseException as exc:
        exc._oodlab_job = True  # type: ignore[attr-defined]
        raise


def run_hydra(main: Callable[[], Any]) -> None:
    """Call the ``@hydra.main`` function ``main`` with Hydra's error reporting wrapped: a
    config error raised while Hydra composes (a wrong type, a key not in the config, an unknown
    option, an override that does not parse) is one line on stderr and exit status 1, never a
    traceback. ``HYDRA_FULL_ERROR=1`` keeps Hydra's full traceback; errors of the job itself
    are reported as before (:func:`guarded` turns user errors into one line)."""
    import hydra._internal.utils as hydra_utils

    from oodlab.config import config_error_line

    original = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        def translated() -> Any:
            try:
                return func()
            except Exception as exc:
                if os.environ.get("HYDRA_FULL_ERROR") == "1" or getattr(exc, "_oodlab_job", False):
                    raise
                line = config_error_line(exc)
                if line is None:
                    raise
                sys.stderr.write(f"error: {line}\n")
                sys.exit(1)

        return original(translated)

    hydra_utils.run_and_report = run_and_report
    try:
        main()
    finally:
        hydra_utils.run_and_report = original


def guarded(
    run: Callable[[], tuple[dict[str, Any], float]],
    cfg: DictConfig,
    started: WandbStart | None = None,
) -> float | None:
    """Run ``run``; turn user errors into one clear line, keep a sweep going past a failed
    job, and stop cleanly on a signal.

    A failed job of a multirun writes a results.json with ``status: failed`` and the error, so
    the report shows it, and the remaining jobs still run. A run stopped by a signal has saved
    a checkpoint; it records ``status: interrupted`` and exits with 128 + the signal number,
    after calling the handler that was there before (a cluster's requeue).
    """
    from rich.markup import escape

    from oodlab.outputs.console import make_console
    from oodlab.run.sweep import write_failure_record

    console = make_console(sys.stderr)
    try:
        _, objective = run()
        return sweeper_value(objective)
    except RunInterrupted as stop:
        write_failure_record(
            cfg, "interrupted", f"{stop}. Resume with ckpt_path=last or resume=true.", None
        )
        console.print(
            f"[bold yellow]interrupted[/]: {escape(str(stop))}. Resume with the same command "
            f"plus ckpt_path={escape(str(stop.checkpoint))}"
        )
        if callable(stop.previous_handler):
            stop.previous_handler(stop.signum, None)
        sys.exit(128 + stop.signum)
    except Exception as exc:  # every failure is reported; none is swallowed silently
        user_error = find_user_error(exc)
        message = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
        if is_multirun():
            write_failure_record(cfg, "failed", message, traceback.format_exc())
            console.print(
                f"[bold red]job failed[/]: {escape(message)}", highlight=False, soft_wrap=True
            )
            # None, not NaN: the Optuna sweeper then records a failed trial (sweeper_value)
            return None
        if user_error is None:
            raise
        # escaped: a message's brackets (pip install 'oodlab[mlflow]') are text, not markup
        console.print(f"[bold red]error[/]: {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    finally:
        if started is not None:
            started.discard()


def sweeper_value(objective: float | None) -> float | None:
    """The value a job hands back to Hydra's sweeper: None for a failed job or a NaN objective.

    hydra-optuna-sweeper records a job returning None as a FAIL trial and goes on. A NaN
    would crash the study instead: Optuna 2.10's ``study.tell`` rejects it, and the
    sweeper's fallback then tells FAIL together with the NaN, which Optuna rejects too.
    """
    if objective is None or (isinstance(objective, float) and math.isnan(objective)):
        return None
    return float(objective)
