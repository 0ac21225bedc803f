"""What a run sends to its loggers (W&B, TensorBoard, MLflow, CSV): its configuration, the
final record as flat test metrics, results.json as an artifact where the logger keeps files,
and a finish that is never skipped.

Every logger receives the same metrics: the per-epoch curves (``norm/*``, ``val_ood/*``,
``train/*``, ``val/*``) through Lightning's logging, and the record's ``test/*`` keys here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oodlab.outputs import wandb_run
from oodlab.outputs.record import RESULTS_FILE, RunRecord

log = logging.getLogger(__name__)


def kind(logger: Any) -> str:
    """``wandb``, ``tensorboard``, ``mlflow``, ``csv`` or the class name, lower case."""
    name = type(logger).__name__.lower()
    for known in ("wandb", "tensorboard", "mlflow", "csv"):
        if known in name:
            return known
    return name


def monitored_scores(cfg: Mapping[str, Any]) -> list[str]:
    """The scores callbacks.ood_monitor tracks on the validation pair every epoch."""
    monitor = (cfg.get("callbacks") or {}).get("ood_monitor") or {}
    return [str(s) for s in (monitor.get("scores") or [])]


def run_config(
    loss: str, loss_params: Mapping[str, Any], dataset: str, backbone: str
) -> dict[str, Any]:
    """Flat config keys for grouping and filtering runs in the W&B UI (``tau`` among them)."""
    return {"loss": loss, "dataset": dataset, "backbone": backbone, **loss_params}


def log_record(
    loggers: Sequence[Any], record: RunRecord, run_dir: str | Path, artifacts: bool = True
) -> None:
    """The final record to every logger: its test metrics, and results.json itself.

    W&B gets results.json (and Lightning's checkpoint, through ``log_model``) as artifacts
    only when online and ``artifacts`` is true; MLflow stores results.json with the run;
    TensorBoard shows it as text.
    """
    metrics = record.flatten(prefix="test/")
    results = Path(run_dir) / RESULTS_FILE
    for logger in loggers:
        logger.log_metrics(metrics)
        which = kind(logger)
        if (
            which == "wandb"
            and artifacts
            and not getattr(logger, "_offline", True)
            and results.exists()
        ):
            wandb_run.upload_results(logger, results)
        elif which == "mlflow" and results.exists():
            logger.experiment.log_artifact(logger.run_id, str(results))
        elif which == "tensorboard":
            text = json.dumps(record.to_json(), indent=2, default=str)
            logger.experiment.add_text("results.json", f"```\n{text}\n```", global_step=0)
        logger.save()


def finish_loggers(loggers: Sequence[Any], status: str) -> None:
    """Close every logger, also after a failure; each one's own error is logged, never raised,
    so one broken logger cannot keep the others from closing or hide the run's error."""
    lightning_status = {"ok": "success", "interrupted": "success"}.get(status, "failed")
    for logger in loggers:
        try:
            logger.finalize(lightning_status)
            if kind(logger) == "wandb":
                wandb_run.finish(status)
        except Exception as exc:  # closing must not mask the run's outcome
            log.warning("closing the %s logger failed: %s", kind(logger), exc)
