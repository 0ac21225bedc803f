"""What a multirun needs beyond its jobs: the record of a job that did not finish, and the
Hydra callback that names the failed jobs when the sweep ends."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from oodlab.run.runtime import run_dir, task_overrides


def write_failure_record(cfg: DictConfig, status: str, error: str, trace: str | None) -> None:
    """results.json of a job that did not finish: its status, the error, and what tells the
    job apart (its overrides and seed), so the report shows it and resume=true reruns it."""
    from oodlab.outputs.record import RunInfo, build_record

    run = RunInfo(overrides=task_overrides(), seed=int(cfg.seed))
    build_record(run, status=status, error=error, traceback=trace).write(run_dir(cfg))


class SweepSummary(Callback):
    """At the end of a multirun, name the jobs that failed and, unless told otherwise, exit
    with status 1, so that scripts and CI see a sweep with failures. Every job's results.json,
    failed or not, is already written."""

    def __init__(self, fail_on_failed_jobs: bool = True):
        self.fail_on_failed_jobs = fail_on_failed_jobs

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.markup import escape

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
        say: dict[str, Any] = {"highlight": False, "soft_wrap": True}
        console.print(
            f"[bold red]{len(failed)} job(s) of the sweep did not finish[/] ({sweep_dir}):", **say
        )
        for job_dir, status, error in failed:
            console.print(f"  {escape(job_dir.name)}: {status}: {escape(str(error))}", **say)
        console.print(
            "Rerun them into the same directory with resume=true; finished jobs are skipped.",
            highlight=False,
        )
        if self.fail_on_failed_jobs:
            sys.exit(1)
