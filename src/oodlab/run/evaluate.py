"""``python src/eval.py``: the evaluation of a saved model, and the call into
``oodlab.evaluate`` that training shares.

A checkpoint of oodlab (``ckpt_path=``) brings its task: backbone, loss head and input
normalisation. Any other classifier (``arch=`` with ``weights=``) is built plain and scored
as the Python API scores it. Evaluation runs under Fabric, so ``trainer=ddp`` shards it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from oodlab.api import evaluate
from oodlab.data.datamodule import OODDataModule
from oodlab.errors import ConfigError
from oodlab.evaluation.cache import eval_cache
from oodlab.outputs import loggers as run_loggers
from oodlab.outputs import wandb_run
from oodlab.outputs.console import print_results
from oodlab.outputs.record import RESULTS_FILE, RunInfo, RunRecord, empty_history
from oodlab.outputs.run_files import save_run_files
from oodlab.run.build import (
    build_datamodule,
    build_fabric,
    build_loggers,
    build_plain_model,
    eval_preprocessing,
)
from oodlab.run.check import check_config
from oodlab.run.runtime import plain, run_dir, task_overrides

log = logging.getLogger("oodlab")

SEEN_VAL_WARNING = (
    "the ID validation images were drawn from the training images (data.dataset.val_from="
    "train): score settings and the temperature were chosen on images the model was trained on"
)


def evaluate_checkpoint(
    cfg: DictConfig, wandb_start: wandb_run.WandbStart | None = None
) -> tuple[dict[str, Any], float]:
    """Every score and OOD set of the config on the checkpoint's (or ``arch``'s) weights:
    (results.json's content, the validation objective). Writes results.json, in the training
    schema, into this run's directory."""
    check_config(cfg)
    fabric = build_fabric(cfg)
    return fabric.launch(_evaluate_on, cfg, wandb_start)


def _evaluate_on(
    fabric: Any, cfg: DictConfig, wandb_start: wandb_run.WandbStart | None
) -> tuple[dict[str, Any], float]:
    from oodlab.checkpoint import load_checkpoint
    from oodlab.models.transforms import Normalize

    start = time.time()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("arch"):
        preprocessing = eval_preprocessing(cfg)
        dm = build_datamodule(cfg, preprocessing)
        assert dm.data is not None
        model = scored = build_plain_model(cfg, dm).to(fabric.device)
        # published weights are normalised with their own statistics, not the data's
        stats = preprocessing or dm.data
        normalize: Any = Normalize(tuple(stats.mean), tuple(stats.std))
        epochs, history = None, empty_history()
        weights = Path(str(cfg.weights)).expanduser()
        checkpoint = str(weights.resolve()) if weights.exists() else str(cfg.weights)
    else:
        loaded = load_checkpoint(cfg.get("ckpt_path"), map_location="cpu")
        dm = build_datamodule(cfg)
        check_data_fits(loaded.task, dm)
        model = loaded.task.to(fabric.device)
        scored, normalize = loaded.task.model, loaded.task.normalize
        epochs, checkpoint = loaded.epochs, str(loaded.path.resolve())
        history = loaded.logit_norm or empty_history()
    assert dm.data is not None
    record = evaluate_task(cfg, scored, normalize, fabric.device, dm)
    note_validation_source(record, dm)
    record.run = run_info(
        cfg,
        model,
        dm.data.name,
        epochs,
        time.time() - start,
        fabric.device,
        checkpoint=checkpoint,
        processes=fabric.world_size,
        **image_reading(dm),
    )
    record.logit_norm = history
    choice = record.scores.get(str(cfg.eval.objective_score))
    objective = choice.val["fpr95"] if choice is not None and choice.val else float("nan")
    if fabric.is_global_zero:
        out = run_dir(cfg)
        save_run_files(out, record, cfg.get("plots", True), cfg.ood.get("curve"))
        tags = wandb_run.run_tags(record.run.loss, dm.data.name, evaluation=True)
        loggers, artifacts = build_loggers(cfg, tags, wandb_start=wandb_start)
        try:
            run_loggers.log_record(loggers, record, out, artifacts=artifacts)
        finally:
            run_loggers.finish_loggers(loggers, "ok")
        print_results(record)
        log.info("results: %s", out / RESULTS_FILE)
    return record.to_json(), objective


def image_reading(dm: OODDataModule) -> dict[str, Any]:
    """How the data module read streamed images, for the record: the preprocessing they were
    decoded with and the loading (workers, decoder); nothing for in-memory tensors."""
    preprocessing = getattr(dm, "preprocessing", None)
    if preprocessing is None:
        return {}
    return {"preprocessing": preprocessing.to_json(), "loading": dm.loading()}


def check_data_fits(task: Any, dm: OODDataModule) -> None:
    """The data must have the classes, channels and image size the checkpoint was trained on."""
    assert dm.data is not None
    expected = (task.hparams.num_classes, task.hparams.in_chans)
    if (dm.num_classes, dm.data.shape[0]) != expected:
        raise ConfigError(
            "data",
            dm.data.name,
            f"a dataset with {expected[0]} classes and {expected[1]} channel(s), as the "
            "checkpoint was trained on",
        )
    trained_size = task.hparams.get("input_size")  # None in checkpoints from before 0.2
    if trained_size is not None and list(dm.data.shape[1:]) != list(trained_size):
        height, width = trained_size
        raise ConfigError(
            "data",
            dm.data.name,
            f"images of {height}x{width} pixels, as the checkpoint was trained on (these are "
            f"{dm.data.shape[1]}x{dm.data.shape[2]}; set data.dataset.image_size)",
        )


def evaluate_task(
    cfg: DictConfig, model: Any, normalize: Any, device: torch.device, dm: OODDataModule
) -> RunRecord:
    """A trained or loaded model through ``oodlab.evaluate``, as the Python API runs it."""
    assert dm.data is not None
    return evaluate(
        model,
        dm.data.test,
        dm.ood,
        scores=[str(s) for s in cfg.eval.scores],
        params=plain(cfg.eval.get("params")) or {},
        grids=plain(cfg.eval.get("grids")) or {},
        id_val=dm.data.val,
        val_ood=dm.val_ood,
        id_train=dm.data.train,
        normalize=normalize,
        groups=plain(cfg.ood.get("groups")) or {},
        mean_exclude=list(cfg.ood.get("mean_exclude") or []),
        batch_size=cfg.data.eval_batch_size,
        device=device,
        dataset=dm.data.name,
        cache=eval_cache(cfg),
        preprocessing=getattr(dm, "preprocessing", None),
    )


def note_validation_source(record: RunRecord, dm: OODDataModule) -> None:
    """Where the ID validation images came from, and a warning when they were trained on."""
    assert dm.data is not None
    record.id = {**(record.id or {}), "val_from": dm.data.val_from}
    if dm.data.val_from == "train":
        record.warnings.append(SEEN_VAL_WARNING)


def run_info(
    cfg: DictConfig,
    model: Any,
    dataset: str,
    epochs: int | None,
    wall_s: float,
    device: torch.device,
    **extra: Any,
) -> RunInfo:
    """The ``run`` section for an oodlab task (loss head and backbone from it) or, for
    ``src/eval.py arch=...``, any other model."""
    head = getattr(model, "head", None)
    return RunInfo(
        loss=getattr(head, "name", None),
        loss_params=head.hparams() if head is not None and hasattr(head, "hparams") else {},
        backbone=model.hparams.backbone if hasattr(model, "hparams") else str(cfg.get("arch")),
        dataset=dataset,
        seed=int(cfg.seed),
        epochs=None if epochs is None else int(epochs),
        wall_s=round(wall_s, 2),
        device=device.type,
        experiment=cfg.get("experiment_name"),
        overrides=task_overrides(),
        num_classes=getattr(head, "num_classes", None),
        outliers=getattr(model, "outliers_used", None),
        **extra,
    )
