"""One run from a composed Hydra config: training (``src/train.py``) or the evaluation of a
saved model (``src/eval.py``). Both end in ``oodlab.evaluate`` and write the same outputs.

Imported by oodlab.cli only when a run starts, so the command lines answer ``--help`` without
loading torch, Lightning or W&B.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from oodlab._infra import early_wandb
from oodlab._infra.instantiate import instantiate
from oodlab._infra.validate import number
from oodlab.api import evaluate
from oodlab.callbacks import OODMonitor, Preemption, RunState
from oodlab.callbacks.checkpoint_io import AtomicCheckpointIO
from oodlab.cli import requeued, sweep_group
from oodlab.data.datamodule import OODDataModule
from oodlab.errors import ConfigError, MissingFileError
from oodlab.evaluation.selection import plan_scores
from oodlab.losses import build_loss_head
from oodlab.outputs import loggers as run_loggers
from oodlab.outputs.console import print_results
from oodlab.outputs.record import HOW_A_JOB_RAN, RESULTS_FILE, RunInfo, RunRecord, empty_history
from oodlab.outputs.scores_file import save_scores
from oodlab.task import OODClassificationTask

log = logging.getLogger("oodlab")

CHECKPOINT_DIR = "checkpoints"


# -- config ---------------------------------------------------------------------------------
def plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain values, without Hydra's own node (present under the compose API)."""
    return {k: plain(v) for k, v in cfg.items() if k != "hydra"}


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


#: optimizer keys checked before training: (what it is, lowest value, whether that value is allowed)
OPTIMIZER_CHECKS = {
    "lr": ("the learning rate", 0.0, False),
    "weight_decay": ("the weight decay", 0.0, True),
    "momentum": ("the momentum", 0.0, True),
}


def validate(cfg: DictConfig) -> None:
    """Fail on a bad value before minutes of training, with the key named."""
    if cfg.trainer.get("max_epochs") is not None and cfg.trainer.max_epochs < 1:
        raise ConfigError("trainer.max_epochs", cfg.trainer.max_epochs, "a positive integer")
    if (
        str(cfg.trainer.get("accelerator", "auto")) in ("gpu", "cuda")
        and not torch.cuda.is_available()
    ):
        raise ConfigError(
            "trainer.accelerator",
            cfg.trainer.accelerator,
            "cpu or auto: this machine has no CUDA GPU",
        )
    for key, (what, low, inclusive) in OPTIMIZER_CHECKS.items():
        if cfg.get("optimizer") is not None and key in cfg.optimizer:
            allowed = f"a number {'>=' if inclusive else '>'} {low:g} ({what})"
            value = number(f"optimizer.{key}", cfg.optimizer[key], allowed, finite=False)
            if value < low or (value == low and not inclusive):
                raise ConfigError(f"optimizer.{key}", cfg.optimizer[key], allowed)
    if cfg.get("loss") is not None:
        # a throwaway 1-feature, 2-class head checks every loss hyperparameter before the data loads
        build_loss_head(plain(cfg.loss), in_features=1, num_classes=2)
    if not cfg.eval.scores:
        raise ConfigError("eval.scores", cfg.eval.scores, "a non-empty list of score names")
    # `default` is the head's own score, always a valid name
    params = plain(cfg.eval.get("params")) or {}
    named = {str(n): params.get(str(n)) for n in cfg.eval.scores if str(n) != "default"}
    plan_scores(named, plain(cfg.eval.get("grids")) or {})


# -- building blocks ------------------------------------------------------------------------
def build_datamodule(cfg: DictConfig) -> OODDataModule:
    dm = OODDataModule(
        dataset=cfg.data.dataset,
        ood_sets=cfg.ood.sets,
        val_ood=cfg.ood.get("val"),
        curve_ood=cfg.ood.get("curve"),
        curve_n=cfg.ood.get("curve_n"),
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        cache_dir=cfg.paths.cache_dir,
        seed=int(cfg.seed),
        on_device=bool(cfg.data.get("on_device", True)),
    )
    dm.setup()
    return dm


def build_task(
    cfg: DictConfig, dm: OODDataModule, starting_weights: bool = True
) -> OODClassificationTask:
    """The Lightning task the config describes; ``starting_weights=False`` skips
    ``model.pretrained``/``model.weights`` (a resumed run's checkpoint replaces them anyway)."""
    assert dm.data is not None
    channels_last = cfg.get("channels_last", "auto")
    if channels_last == "auto":
        channels_last = str(cfg.trainer.get("accelerator")) in ("gpu", "cuda") or (
            cfg.trainer.get("accelerator") == "auto" and torch.cuda.is_available()
        )
    return OODClassificationTask(
        backbone=cfg.model.backbone,
        backbone_kwargs=plain(cfg.model.get("backbone_kwargs")) or {},
        pretrained=starting_weights and bool(cfg.model.get("pretrained", False)),
        weights=cfg.model.get("weights") if starting_weights else None,
        weights_prefix=cfg.model.get("weights_prefix"),
        loss=plain(cfg.loss),
        num_classes=dm.num_classes,
        in_chans=dm.data.shape[0],
        input_size=list(dm.data.shape[1:]),
        mean=list(dm.data.mean),
        std=list(dm.data.std),
        augment=plain(cfg.data.get("augment")) or {},
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.get("scheduler")),
        channels_last=bool(channels_last),
        compile=bool(cfg.get("compile", False)),
    )


LOGGER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def build_loggers(
    cfg: DictConfig, tags: list[str], wandb_id: str | None = None
) -> tuple[list[Any], bool]:
    """The loggers of ``cfg.logger``, and whether W&B may upload artifacts (logger.wandb.artifacts).

    W&B runs of a multirun share a group; a resumed run continues its W&B run (``wandb_id``).
    """
    loggers, artifacts = [], False
    for name, lcfg in (cfg.get("logger") or {}).items():
        if lcfg is None:
            continue
        lcfg = plain(lcfg)
        extra: dict[str, Any] = {}
        if name == "wandb":
            artifacts = bool(lcfg.pop("artifacts", True))
            lcfg["log_model"] = bool(artifacts and not lcfg.get("offline", True))
            extra = {
                "group": lcfg.get("group") or sweep_group(),
                "tags": [*(lcfg.get("tags") or []), *tags],
            }
            if wandb_id:
                extra |= {"id": wandb_id, "resume": "allow"}
            elif (started := early_wandb.take()) is not None:
                if missing := [t for t in tags if t not in started.tags]:
                    started.tags = (*started.tags, *missing)
                extra = {"experiment": started}
        if str(lcfg.get("tracking_uri", "")).startswith("sqlite:///"):
            # SQLite creates a missing database file, not a missing folder
            Path(str(lcfg["tracking_uri"]).removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        try:
            logger = instantiate(lcfg, **extra)
        except Exception as exc:
            if name in LOGGER_PACKAGES and _missing_module(exc):
                raise ConfigError(
                    "logger",
                    name,
                    f"a logger whose package is installed: pip install 'oodlab[{LOGGER_PACKAGES[name]}]'",
                ) from None
            raise
        if name == "wandb":
            run_loggers.define_run_metrics(logger.experiment, run_loggers.monitored_scores(cfg))
        loggers.append(logger)
    return loggers, artifacts


def _missing_module(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, ImportError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return [*callbacks, RunState()]


# -- the run's directory --------------------------------------------------------------------
def newest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resume_checkpoint(
    cfg: DictConfig, resume: bool, previous: RunRecord | None = None
) -> Path | None:
    """The checkpoint to resume from: ``ckpt_path`` (a file, or ``last``: the newest in this
    run's checkpoints/), or with ``resume`` the newest one if any, unless ``previous`` (this
    job's results.json) says the job failed: then it starts again."""
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
        loss_params=head.hparams() if hasattr(head, "hparams") else {},
        backbone=model.hparams.backbone if hasattr(model, "hparams") else str(cfg.get("arch")),
        dataset=dataset,
        seed=int(cfg.seed),
        epochs=None if epochs is None else int(epochs),
        wall_s=round(wall_s, 2),
        device=device.type,
        experiment=cfg.get("experiment_name"),
        overrides=overrides(),
        num_classes=getattr(head, "num_classes", None),
        **extra,
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
    )


SEEN_VAL_WARNING = (
    "the ID validation images were drawn from the training images (data.dataset.val_from=train): "
    "score settings and the temperature were chosen on images the model was trained on"
)


def note_validation_source(record: RunRecord, dm: OODDataModule) -> None:
    assert dm.data is not None
    record.id = {**(record.id or {}), "val_from": dm.data.val_from}
    if dm.data.val_from == "train":
        record.warnings.append(SEEN_VAL_WARNING)


def save_outputs(cfg: DictConfig, record: RunRecord) -> None:
    """results.json, scores.npz and the plots, into the run's directory."""
    out = run_dir(cfg)
    record.write(out)
    evaluation = record.evaluation
    assert evaluation is not None
    save_scores(out, evaluation.id_scores, evaluation.ood_scores)
    if not cfg.get("plots", True):
        return
    from oodlab.outputs.plots import (
        plot_logit_norm_curve,
        plot_score_histograms,
        reliability_diagram,
    )

    run = record.run
    title = f"{run.dataset} / {run.loss} {run.loss_params}"
    if record.logit_norm and record.logit_norm.get("epoch"):
        plot_logit_norm_curve(
            record.logit_norm,
            out / "logit_norm.png",
            title=title,
            ood_name=str(cfg.ood.get("curve")),
        )
    test = evaluation.outputs["id"]
    reliability_diagram(
        test.logits, test.labels, out / "reliability.png", title=f"{title}: ID test"
    )
    plot_score_histograms(
        {k: v.numpy() for k, v in evaluation.id_scores.items()},
        {k: {s: t.numpy() for s, t in v.items()} for k, v in evaluation.ood_scores.items()},
        out / "score_histograms.png",
        title=title,
    )


def job_overrides(items: list[str]) -> list[str]:
    """What a job runs: its overrides less those that say how it ran, in a fixed order."""
    return sorted(o for o in items if o.lstrip("+~").split("=", 1)[0] not in HOW_A_JOB_RAN)


def previous_record(cfg: DictConfig) -> RunRecord | None:
    """The results.json already in this run's directory, if it was written by the same job (the
    same overrides). One written by another job (a sweep rerun with a changed grid) is set
    aside, with its checkpoints, under a ``.previous-<time>`` name, so that this job runs anew
    and nothing of the other is lost."""
    path = run_dir(cfg) / RESULTS_FILE
    if not path.exists():
        return None
    record = RunRecord.read(path)
    if job_overrides(list(record.run.overrides or [])) != job_overrides(overrides()):
        log.warning(
            "resume: %s holds the results of another job (%s); they are kept under .previous-* names "
            "and this job (%s) runs from the start",
            run_dir(cfg),
            " ".join(record.run.overrides or []) or "no overrides",
            " ".join(overrides()) or "no overrides",
        )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path.replace(path.with_name(f"results.previous-{stamp}.json"))
        checkpoints = run_dir(cfg) / CHECKPOINT_DIR
        if checkpoints.exists():
            checkpoints.replace(checkpoints.with_name(f"{CHECKPOINT_DIR}.previous-{stamp}"))
        return None
    return record


# -- train ----------------------------------------------------------------------------------
def train(cfg: DictConfig) -> tuple[dict[str, Any], float]:
    """One training run and its OOD evaluation. Returns the results and the sweep objective."""
    start = time.time()
    validate(cfg)
    resume = bool(cfg.get("resume", False)) or requeued()
    previous = previous_record(cfg) if resume else None
    if previous is not None and previous.status == "ok":
        log.info("resume: %s already finished (results.json says ok); skipped", run_dir(cfg))
        return previous.to_json(), float((previous.val or {}).get("objective_value", float("nan")))
    ckpt = resume_checkpoint(cfg, resume, previous)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    task = build_task(cfg, dm, starting_weights=ckpt is None)
    assert dm.data is not None
    head = task.head
    tags = [f"loss:{head.name}", f"dataset:{dm.data.name}", f"backbone:{cfg.model.backbone}"]
    tags += [f"{k}:{v}" for k, v in head.hparams().items()]
    from oodlab.callbacks.run_state import saved_wandb_id

    loggers, artifacts = build_loggers(
        cfg, tags, wandb_id=saved_wandb_id(str(ckpt)) if ckpt else None
    )
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
        if ckpt is not None:
            log.info(
                "resuming from %s (a checkpoint of the last epoch only re-runs the evaluation)",
                ckpt,
            )
        trainer.fit(task, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)

        monitor = next((c for c in callbacks if isinstance(c, OODMonitor)), None)
        objective_key = f"val_ood/{cfg.eval.objective_score}/fpr95"
        objective = monitor.last(objective_key) if monitor else float("nan")
        record = evaluate_task(cfg, task.model, task.normalize, task.device, dm)
        note_validation_source(record, dm)
        record.run = run_info(
            cfg, task, dm.data.name, trainer.current_epoch, time.time() - start, task.device
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
            save_outputs(cfg, record)
            run_loggers.log_record(loggers, record, run_dir(cfg), artifacts=artifacts)
            print_results(record)
            log.info("results: %s", run_dir(cfg) / RESULTS_FILE)
        status = "ok"
        return record.to_json(), objective
    finally:
        run_loggers.finish_loggers(loggers, status)


# -- eval: a saved model, no training -------------------------------------------------------
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


def plain_model(cfg: DictConfig, dm: OODDataModule) -> torch.nn.Module:
    """``arch=<timm name>`` or ``arch=torchvision:<name>``, built for the data's classes and
    channels, with the state dict of ``weights`` (keys may carry ``weights_prefix``)."""
    import timm

    from oodlab.errors import UnknownNameError
    from oodlab.models.pretrained import load_weights

    assert dm.data is not None
    arch, weights = str(cfg.arch), cfg.get("weights")
    if not weights:
        raise ConfigError(
            "weights", weights, f"the path of the {arch} state dict to evaluate (weights=PATH)"
        )
    classes, channels = dm.num_classes, dm.data.shape[0]
    if arch.startswith("torchvision:"):
        import torchvision

        name = arch.split(":", 1)[1]
        if name not in torchvision.models.list_models():
            raise UnknownNameError("torchvision model", name, torchvision.models.list_models())
        if channels != 3:
            raise ConfigError(
                "data", dm.data.name, f"RGB images: torchvision's {name} takes 3 channels"
            )
        model = torchvision.models.get_model(name, weights=None, num_classes=classes)
    else:
        if not timm.is_model(arch):
            raise UnknownNameError(
                "timm model (arch)",
                arch,
                timm.list_models(),
                hint="torchvision models: arch=torchvision:<name>.",
            )
        model = timm.create_model(arch, pretrained=False, num_classes=classes, in_chans=channels)
    load_weights(model, weights, prefix=cfg.get("weights_prefix"), key="weights")
    return model.eval()


def _evaluate_checkpoint(fabric: Any, cfg: DictConfig) -> tuple[dict[str, Any], float]:
    from oodlab.checkpoint import load_checkpoint
    from oodlab.models.transforms import Normalize

    start = time.time()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("arch"):
        dm = build_datamodule(cfg)
        assert dm.data is not None
        model = scored = plain_model(cfg, dm).to(fabric.device)
        normalize: Any = Normalize(dm.data.mean, dm.data.std)
        epochs, checkpoint, history = (
            None,
            str(Path(str(cfg.weights)).expanduser().resolve()),
            empty_history(),
        )
    else:
        loaded = load_checkpoint(cfg.get("ckpt_path"), map_location="cpu")
        dm = build_datamodule(cfg)
        assert dm.data is not None
        task = loaded.task
        expected = (task.hparams.num_classes, task.hparams.in_chans)
        if (dm.num_classes, dm.data.shape[0]) != expected:
            raise ConfigError(
                "data",
                dm.data.name,
                f"a dataset with {expected[0]} classes and {expected[1]} channel(s), as the checkpoint was trained on",
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
        model = task.to(fabric.device)
        scored, normalize = task.model, task.normalize
        epochs, checkpoint, history = (
            loaded.epochs,
            str(loaded.path.resolve()),
            loaded.logit_norm or empty_history(),
        )
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
    )
    record.logit_norm = history
    choice = record.scores.get(str(cfg.eval.objective_score))
    objective = choice.val["fpr95"] if choice is not None and choice.val else float("nan")
    if fabric.is_global_zero:
        save_outputs(cfg, record)
        tags = [
            f"dataset:{dm.data.name}",
            "eval",
            *([f"loss:{record.run.loss}"] if record.run.loss else []),
        ]
        loggers, artifacts = build_loggers(cfg, tags)
        try:
            run_loggers.log_record(loggers, record, run_dir(cfg), artifacts=artifacts)
        finally:
            run_loggers.finish_loggers(loggers, "ok")
        print_results(record)
        log.info("results: %s", run_dir(cfg) / RESULTS_FILE)
    return record.to_json(), objective
