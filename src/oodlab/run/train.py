"""``python src/train.py``: one training run and its OOD evaluation, read top to bottom.

check the config -> follow the resume plan -> build data, task, loggers, callbacks, trainer ->
fit -> evaluate through ``oodlab.evaluate`` -> write the outputs and log them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
from omegaconf import DictConfig

from oodlab._infra.instantiate import instantiate
from oodlab.callbacks import OODMonitor, Preemption, RunState
from oodlab.callbacks.checkpoint_io import AtomicCheckpointIO
from oodlab.outputs import loggers as run_loggers
from oodlab.outputs import wandb_run
from oodlab.outputs.console import print_results
from oodlab.outputs.record import RESULTS_FILE, RunRecord, empty_history
from oodlab.outputs.run_files import save_run_files
from oodlab.run.build import build_callbacks, build_datamodule, build_loggers, build_task
from oodlab.run.check import check_config
from oodlab.run.evaluate import evaluate_task, image_reading, note_validation_source, run_info
from oodlab.run.resume import CHECKPOINT_DIR, ResumePlan, plan_resume
from oodlab.run.runtime import config_dict, plain, run_dir

log = logging.getLogger("oodlab")


def train(
    cfg: DictConfig,
    plan: ResumePlan | None = None,
    wandb_start: wandb_run.WandbStart | None = None,
) -> tuple[dict[str, Any], float]:
    """One training run and its OOD evaluation: (results.json's content, the sweep objective).
    ``plan`` is the resume plan the entry point made (made here when None)."""
    start = time.time()
    check_config(cfg)
    plan = plan or plan_resume(cfg)
    if plan.finished is not None:
        log.info("resume: %s already finished (results.json says ok); skipped", run_dir(cfg))
        return plan.finished.to_json(), objective_of(plan.finished)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    task = build_task(cfg, dm, starting_weights=plan.checkpoint is None)
    assert dm.data is not None
    head = task.head
    tags = wandb_run.run_tags(head.name, dm.data.name, cfg.model.backbone, head.hparams())
    loggers, artifacts = build_loggers(cfg, tags, plan.wandb_id, wandb_start)
    status = "failed"
    try:
        callbacks = build_callbacks(cfg)
        state = next(c for c in callbacks if isinstance(c, RunState))
        state.wandb_id = next(
            (lg.experiment.id for lg in loggers if run_loggers.kind(lg) == "wandb"), None
        )
        callbacks.append(Preemption(str(run_dir(cfg) / CHECKPOINT_DIR)))
        trainer: L.Trainer = instantiate(
            plain(cfg.trainer),
            callbacks=callbacks,
            logger=loggers or False,
            use_distributed_sampler=False,
            plugins=[AtomicCheckpointIO()],
        )
        for logger in loggers:
            logger.log_hyperparams(
                {
                    **run_loggers.run_config(
                        head.name, head.hparams(), dm.data.name, cfg.model.backbone
                    ),
                    "loss_name": head.name,
                    "loss_params": head.hparams(),
                    "config": config_dict(cfg),
                }
            )
        if plan.checkpoint is not None:
            log.info(
                "resuming from %s (a checkpoint of the last epoch only re-runs the evaluation)",
                plan.checkpoint,
            )
        ckpt = str(plan.checkpoint) if plan.checkpoint else None
        trainer.fit(task, datamodule=dm, ckpt_path=ckpt)

        monitor = next((c for c in callbacks if isinstance(c, OODMonitor)), None)
        objective_key = f"val_ood/{cfg.eval.objective_score}/fpr95"
        objective = monitor.last(objective_key) if monitor else float("nan")
        record = evaluate_task(cfg, task.model, task.normalize, task.device, dm)
        note_validation_source(record, dm)
        record.run = run_info(
            cfg,
            task,
            dm.data.name,
            trainer.current_epoch,
            time.time() - start,
            task.device,
            **image_reading(dm),
        )
        record.logit_norm = monitor.history if monitor else empty_history()
        record.val = {
            "ood_set": "val",
            "objective": objective_key,
            "objective_value": objective,
            "best_fpr95": monitor.best(objective_key) if monitor else float("nan"),
            "history": monitor.val_ood_history if monitor else {},
        }
        if trainer.is_global_zero:
            out = run_dir(cfg)
            save_run_files(out, record, cfg.get("plots", True), cfg.ood.get("curve"))
            run_loggers.log_record(loggers, record, out, artifacts=artifacts)
            print_results(record)
            log.info("results: %s", out / RESULTS_FILE)
        status = "ok"
        return record.to_json(), objective
    finally:
        run_loggers.finish_loggers(loggers, status)


def objective_of(record: RunRecord) -> float:
    """The sweep objective a finished job reported (its validation-pair FPR95)."""
    return float((record.val or {}).get("objective_value", float("nan")))
