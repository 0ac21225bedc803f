"""W&B pieces of the sweep loop: run summaries that keep the right value of each metric, and the
sweep report logged as a W&B Table into the sweep's group.

wandb is imported lazily: runs with ``logger=none`` and reports without ``--wandb`` never load it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from oodlab.report.tables import SweepTable

TEST_METRICS_GLOB = "test/*"


def monitored_scores(cfg: Mapping[str, Any]) -> list[str]:
    """The scores callbacks.ood_monitor tracks on the validation pair every epoch."""
    monitor = (cfg.get("callbacks") or {}).get("ood_monitor") or {}
    return [str(s) for s in (monitor.get("scores") or [])]


def val_fpr95_keys(scores: Iterable[str]) -> list[str]:
    return [f"val_ood/{score}/fpr95" for score in scores]


def define_run_metrics(run: Any, monitored_scores: Iterable[str]) -> None:
    """A run's summary keeps the best (lowest) validation FPR95 of every monitored score and the
    final test metrics.

    W&B globs match name suffixes only (``val_ood/*/fpr95`` is refused), so each FPR95 key
    is named; a ``val_ood/*`` glob would also take the minimum of AUROC.
    """
    for key in val_fpr95_keys(monitored_scores):
        run.define_metric(key, summary="min")
    run.define_metric(TEST_METRICS_GLOB, summary="last")


def run_config(
    loss: str, loss_params: Mapping[str, Any], dataset: str, backbone: str
) -> dict[str, Any]:
    """Flat config keys for grouping and filtering runs in the W&B UI (``tau`` among them)."""
    return {"loss": loss, "dataset": dataset, "backbone": backbone, **loss_params}


def wandb_table(frame: pd.DataFrame) -> Any:
    import wandb

    clean = frame.astype(object).where(frame.notna(), None)
    return wandb.Table(columns=[str(c) for c in clean.columns], data=clean.to_numpy().tolist())


def log_report(
    table: SweepTable,
    group: str,
    project: str = "oodlab",
    mode: str = "offline",
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
