"""The sweep report as a W&B run in the sweep's group: the table as a W&B Table, and the plots.

wandb is imported lazily: reports without ``--wandb`` never load it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

    from oodlab.report.tables import SweepTable


def wandb_table(frame: pd.DataFrame) -> Any:
    import wandb

    clean = frame.astype(object).where(frame.notna(), None)
    return wandb.Table(columns=[str(c) for c in clean.columns], data=clean.to_numpy().tolist())


def log_report(
    table: SweepTable,
    group: str,
    project: str = "oodlab",
    mode: Literal["online", "offline", "disabled"] = "offline",
    out_dir: str | Path | None = None,
    plots: Iterable[Path] = (),
    config: Mapping[str, Any] | None = None,
) -> Path:
    """A ``job_type=report`` run in the sweep's W&B group holding the table (one row per
    setting, plus failed runs) and the plots. Returns the run's local directory."""
    import wandb

    from oodlab.report.tables import tidy_frame

    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=f"report-{group}-{table.score}",
        dir=str(out_dir) if out_dir is not None else None,
        mode=mode,
        config={
            "score": table.score,
            "swept_keys": table.keys,
            "fixed": table.fixed,
            **(config or {}),
        },
        reinit="finish_previous",
    )
    try:
        payload: dict[str, Any] = {f"sweep_table/{table.score}": wandb_table(tidy_frame(table))}
        payload |= {f"plots/{Path(p).stem}": wandb.Image(str(p)) for p in plots}
        run.log(payload)
        run.summary["n_settings"] = len(table.settings)
        run.summary["n_failed_runs"] = len(table.failed)
        return Path(run.dir).parent
    finally:
        run.finish()
