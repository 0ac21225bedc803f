"""What ``src/train.py`` and ``src/eval.py`` run, given a composed Hydra config.

The entry points stay thin; everything here is importable and testable through Hydra's
compose API.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from oodlab._infra.errors import ConfigError, find_user_error
from oodlab.callbacks import OODMonitor
from oodlab.data.datamodule import OODDataModule
from oodlab.evaluation import Evaluation, evaluate
from oodlab.metrics import reliability_diagram
from oodlab.report.optuna_study import sweeper_value
from oodlab.report.plots import plot_logit_norm_curve, plot_score_histograms
from oodlab.report.results import SCHEMA, print_results, write_results
from oodlab.report.scores_file import save_scores
from oodlab.report.wandb_utils import define_run_metrics, monitored_scores, run_config
from oodlab.selection import check_scores
from oodlab.task import OODClassificationTask

log = logging.getLogger("oodlab")
PROCESS_START = time.time()


# -- helpers --------------------------------------------------------------------------------
def _container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain values, without Hydra's own node (present under the compose API)."""
    return {k: _container(v) if isinstance(v, DictConfig) else v for k, v in cfg.items() if k != "hydra"}


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group() -> str | None:
    """All jobs of one multirun share a W&B group: the sweep directory's name."""
    if not is_multirun():
        return None
    sweep = HydraConfig.get().sweep
    return Path(sweep.dir).name


def build_datamodule(cfg: DictConfig) -> OODDataModule:
    dm = OODDataModule(
        dataset=cfg.data.dataset,
        ood_sets=cfg.ood.sets,
        val_ood=cfg.ood.get("val"),
        curve_ood=cfg.ood.get("curve"),
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        cache_dir=cfg.paths.cache_dir,
    )
    dm.setup()
    return dm


def build_task(cfg: DictConfig, dm: OODDataModule) -> OODClassificationTask:
    assert dm.data is not None
    return OODClassificationTask(
        backbone=cfg.model.backbone,
        backbone_kwargs=_container(cfg.model.get("backbone_kwargs")) or {},
        loss=_container(cfg.loss),
        num_classes=dm.num_classes,
        in_chans=dm.data.shape[0],
        mean=list(dm.data.mean),
        std=list(dm.data.std),
        augment=_container(cfg.data.get("augment")) or {},
        optimizer=_container(cfg.optimizer),
        scheduler=_container(cfg.get("scheduler")),
    )


def build_loggers(cfg: DictConfig, tags: list[str]) -> list[Any]:
    loggers = []
    for name, lcfg in (cfg.get("logger") or {}).items():
        if lcfg is None:
            continue
        extra: dict[str, Any] = {}
        if "wandb" in str(lcfg.get("_target_", "")).lower():
            extra = {"group": lcfg.get("group") or sweep_group(), "tags": [*(lcfg.get("tags") or []), *tags]}
        loggers.append(instantiate(lcfg, **extra))
        if extra:
            define_run_metrics(loggers[-1].experiment, monitored_scores(cfg))
        log.debug("logger %s ready", name)
    return loggers


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def validate(cfg: DictConfig) -> None:
    if cfg.trainer.get("max_epochs") is not None and cfg.trainer.max_epochs < 1:
        raise ConfigError("trainer.max_epochs", cfg.trainer.max_epochs, "a positive integer")
    if not cfg.eval.scores:
        raise ConfigError("eval.scores", cfg.eval.scores, "a non-empty list of score names")
    # Fail on a misspelt score or grid before minutes of training, not after. `default` is
    # the head's own score, always a valid name.
    named = {name: fixed for name, fixed in score_params(cfg).items() if name != "default"}
    check_scores(named, _container(cfg.eval.get("grids")) or {})


def score_params(cfg: DictConfig, default_score: str | None = None) -> dict[str, dict[str, Any]]:
    """{score: fixed hyperparameters} from eval.scores and eval.params; the name ``default``
    stands for the loss head's own score (``default_score``)."""
    params = _container(cfg.eval.get("params")) or {}
    names = [default_score if name == "default" and default_score else str(name) for name in cfg.eval.scores]
    return {name: dict(params.get(name) or {}) for name in dict.fromkeys(names)}


def run_evaluation(cfg: DictConfig, task: OODClassificationTask, dm: OODDataModule) -> Evaluation:
    assert dm.data is not None
    return evaluate(
        task.model,
        task.normalize,
        dm.data.test,
        dm.ood,
        score_params(cfg, task.head.default_score),
        dataset_name=dm.data.name,
        id_train=dm.data.train,
        id_val=dm.data.val,
        val_ood=dm.val_ood,
        grids=_container(cfg.eval.get("grids")) or {},
        mean_exclude=list(cfg.ood.get("mean_exclude") or []),
        groups=_container(cfg.ood.get("groups")) or {},
        batch_size=cfg.data.eval_batch_size,
        device=task.device,
    )


def run_info(cfg: DictConfig, task: OODClassificationTask, dm: OODDataModule, epochs: int, wall_s: float) -> dict[str, Any]:
    assert dm.data is not None
    return {
        "loss": task.head.name,
        "loss_params": task.head.hparams(),
        "backbone": cfg.model.backbone,
        "dataset": dm.data.name,
        "seed": int(cfg.seed),
        "epochs": int(epochs),
        "wall_s": round(wall_s, 2),
        "device": task.device.type,
        "experiment": cfg.get("experiment_name"),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
    }


def save_outputs(cfg: DictConfig, results: dict[str, Any], evaluation: Evaluation, history: dict[str, list[float]]) -> None:
    out = run_dir(cfg)
    results.update(evaluation.sections())
    write_results(out, results)
    save_scores(out, evaluation.id_scores, evaluation.ood_scores)
    if cfg.get("plots", True):
        run = results["run"]
        title = f"{run['dataset']} / {run['loss']} {run['loss_params']}"
        if history.get("epoch"):
            plot_logit_norm_curve(history, out / "logit_norm.png", title=title, ood_name=str(cfg.ood.get("curve")))
        test = evaluation.outputs["id"]
        reliability_diagram(test.logits, test.labels, out / "reliability.png", title=f"{title}: ID test")
        plot_score_histograms(
            {k: v.numpy() for k, v in evaluation.id_scores.items()},
            {k: {s: t.numpy() for s, t in v.items()} for k, v in evaluation.ood_scores.items()},
            out / "score_histograms.png",
            title=title,
        )


# -- train ----------------------------------------------------------------------------------
def train(cfg: DictConfig) -> tuple[dict[str, Any], float]:
    """One training run and its OOD evaluation. Returns the results and the sweep objective."""
    start = time.time()
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    task = build_task(cfg, dm)
    loss_name = task.head.name
    tags = [f"loss:{loss_name}", f"dataset:{dm.data.name}", f"backbone:{cfg.model.backbone}"]
    tags += [f"{k}:{v}" for k, v in task.head.hparams().items()]
    loggers = build_loggers(cfg, tags)
    callbacks = build_callbacks(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, use_distributed_sampler=False)
    for logger in loggers:
        logger.log_hyperparams({**run_config(loss_name, task.head.hparams(), dm.data.name, cfg.model.backbone), "loss_name": loss_name, "loss_params": task.head.hparams(), "config": config_dict(cfg)})
    trainer.fit(task, datamodule=dm)

    evaluation = run_evaluation(cfg, task, dm)
    monitor = next((c for c in callbacks if isinstance(c, OODMonitor)), None)
    history = monitor.history if monitor else {"epoch": [], "train": [], "val_id": [], "ood": []}
    objective_key = f"val_ood/{cfg.eval.objective_score}/fpr95"
    objective = monitor.last(objective_key) if monitor else float("nan")
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "ok",
        "run": run_info(cfg, task, dm, trainer.current_epoch, time.time() - start),
        "id": evaluation.id,
        "ood": evaluation.ood,
        "logit_norm": history,
        "val": {
            "ood_set": "val",
            "objective": objective_key,
            "objective_value": objective,
            "best_fpr95": monitor.best(objective_key) if monitor else float("nan"),
            "history": monitor.val_ood_history if monitor else {},
        },
    }
    if trainer.is_global_zero:
        save_outputs(cfg, results, evaluation, history)
        for logger in loggers:
            log_final_metrics(logger, results)
        print_results(results)
        log.info("results: %s", run_dir(cfg) / "results.json")
    for logger in loggers:
        if hasattr(logger, "experiment") and "wandb" in type(logger).__name__.lower():
            logger.experiment.finish()
    return results, objective


def log_final_metrics(logger: Any, results: dict[str, Any]) -> None:
    flat: dict[str, float] = {"test/acc": results["id"]["acc"], "test/ece": results["id"]["ece"]}
    for score, per_set in results["ood"].items():
        for set_name, metrics in per_set.items():
            for key, value in metrics.items():
                if key != "n":
                    flat[f"test/{score}/{set_name}/{key}"] = value
    logger.log_metrics(flat)


# -- entry-point wrapper ----------------------------------------------------------------------
def guarded(fn: Callable[[DictConfig], tuple[dict[str, Any], float]], cfg: DictConfig) -> float | None:
    """Run ``fn``; turn user errors into one clear line, and keep a sweep going past a failed job.

    In a multirun a failed job writes a results.json with ``status: failed`` and the error, so
    the report shows it, and the remaining jobs still run.
    """
    console = Console(stderr=True)
    try:
        _, objective = fn(cfg)
        return sweeper_value(objective)
    except Exception as exc:  # every failure is reported; none is swallowed silently
        user_error = find_user_error(exc)
        message = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
        if is_multirun():
            failed = {
                "schema": SCHEMA,
                "status": "failed",
                "error": message,
                "traceback": traceback.format_exc(),
                "run": {"overrides": list(HydraConfig.get().overrides.task), "seed": int(cfg.seed)},
            }
            write_results(run_dir(cfg), failed)
            console.print(f"[bold red]job failed[/]: {message}")
            # None, not NaN: the Optuna sweeper then records a failed trial (sweeper_value)
            return None
        if user_error is None:
            raise
        console.print(f"[bold red]error[/]: {message}")
        sys.exit(1)


def train_main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    return guarded(train, cfg)


def config_dir() -> Path:
    """conf/ beside src/ in the repository (the package is installed editable)."""
    return Path(__file__).resolve().parents[2] / "conf"


# -- eval: a saved checkpoint, no training ---------------------------------------------------
def build_fabric(cfg: DictConfig) -> Any:
    """Processes and devices from the trainer group, so ``trainer=ddp`` shards evaluation too."""
    from lightning.fabric import Fabric

    tcfg = cfg.trainer
    return Fabric(
        accelerator=tcfg.get("accelerator", "auto"),
        devices=tcfg.get("devices", 1),
        num_nodes=tcfg.get("num_nodes", 1),
        strategy=tcfg.get("strategy", "auto"),
    )


def evaluate_checkpoint(cfg: DictConfig) -> tuple[dict[str, Any], float]:
    """``python src/eval.py ckpt_path=...``: every score and OOD set of the config, on the
    checkpoint's weights. Writes results.json (the training schema) into this run's directory."""
    validate(cfg)
    fabric = build_fabric(cfg)
    return fabric.launch(_evaluate_checkpoint, cfg)


def _evaluate_checkpoint(fabric: Any, cfg: DictConfig) -> tuple[dict[str, Any], float]:
    from oodlab.checkpoint import load_checkpoint

    start = time.time()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    loaded = load_checkpoint(cfg.get("ckpt_path"), map_location="cpu")
    dm = build_datamodule(cfg)
    task = loaded.task
    assert dm.data is not None
    expected = (task.hparams.num_classes, task.hparams.in_chans)
    if (dm.num_classes, dm.data.shape[0]) != expected:
        raise ConfigError(
            "data", dm.data.name,
            f"a dataset with {expected[0]} classes and {expected[1]} channel(s), as the checkpoint was trained on",
        )
    task = task.to(fabric.device)
    evaluation = run_evaluation(cfg, task, dm)
    history = loaded.logit_norm or {"epoch": [], "train": [], "val_id": [], "ood": []}
    # the validation-pair FPR95 of eval.objective_score, for sweeps over checkpoints
    choice = evaluation.choices.get(str(cfg.eval.objective_score))
    objective = choice.val["fpr95"] if choice is not None and choice.val else float("nan")
    run = {
        "loss": task.head.name,
        "loss_params": task.head.hparams(),
        "backbone": task.hparams.backbone,
        "dataset": dm.data.name,
        "seed": int(cfg.seed),
        "epochs": loaded.epochs,
        "wall_s": round(time.time() - start, 2),
        "device": task.device.type,
        "experiment": cfg.get("experiment_name"),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        "checkpoint": str(loaded.path.resolve()),
        "processes": fabric.world_size,
    }
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "ok",
        "run": run,
        "id": evaluation.id,
        "ood": evaluation.ood,
        "logit_norm": history,
    }
    if fabric.is_global_zero:
        save_outputs(cfg, results, evaluation, history)
        for logger in build_loggers(cfg, [f"loss:{task.head.name}", f"dataset:{dm.data.name}", "eval"]):
            log_final_metrics(logger, results)
        print_results(results)
        log.info("results: %s", run_dir(cfg) / "results.json")
    return results, objective


def eval_main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    return guarded(evaluate_checkpoint, cfg)
