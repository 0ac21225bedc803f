"""The parts of a run, each built by one named function from its config group: the data
module (``data``, ``ood``), the task (``model``, ``loss``, ``optimizer``, ``scheduler``), the
callbacks, the loggers, Fabric (``trainer``, for evaluation) and, for ``src/eval.py arch=``,
a plain classifier with its weights."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from oodlab._infra.instantiate import instantiate
from oodlab.callbacks import RunState
from oodlab.data.datamodule import OODDataModule
from oodlab.data.preprocessing import Preprocessing
from oodlab.errors import ConfigError, UnknownNameError
from oodlab.outputs import loggers as run_loggers
from oodlab.outputs import wandb_run
from oodlab.run.runtime import plain, sweep_group
from oodlab.task import OODClassificationTask

#: the keys of the ``model`` group, each an argument of the task
MODEL_KEYS = "backbone, backbone_kwargs, pretrained, weights, weights_prefix"
#: loggers whose package is an optional extra of oodlab
LOGGER_EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def build_datamodule(cfg: DictConfig, preprocessing: Preprocessing | None = None) -> OODDataModule:
    """The data of the ``data`` and ``ood`` groups; ``preprocessing`` (pretrained weights' own)
    replaces the data config's for the sources that decode images (image lists)."""
    extra = {"preprocessing": preprocessing} if preprocessing is not None else {}
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
        **extra,
    )
    dm.setup()
    return dm


def build_task(
    cfg: DictConfig, dm: OODDataModule, starting_weights: bool = True
) -> OODClassificationTask:
    """The Lightning task: the ``model`` group's keys are the task's own arguments, the data
    module gives the shape and statistics of its images. ``starting_weights=False`` skips
    ``model.pretrained``/``model.weights`` (a resumed run's checkpoint replaces them)."""
    assert dm.data is not None
    model = plain(cfg.model)
    accepted = inspect.signature(OODClassificationTask).parameters
    for key in model:
        if key not in accepted:
            raise ConfigError(
                f"model.{key}", model[key], f"unset: the model group's keys are {MODEL_KEYS}"
            )
    if not starting_weights:
        model |= {"pretrained": False, "weights": None}
    return OODClassificationTask(
        **model,
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.get("scheduler")),
        augment=plain(cfg.data.get("augment")) or {},
        num_classes=dm.num_classes,
        in_chans=dm.data.shape[0],
        input_size=list(dm.data.shape[1:]),
        mean=list(dm.data.mean),
        std=list(dm.data.std),
        channels_last=channels_last(cfg),
        compile=bool(cfg.get("compile", False)),
        outliers=plain(cfg.get("outliers")),
    )


def channels_last(cfg: DictConfig) -> bool:
    """``channels_last=auto`` means on for GPU training only."""
    value = cfg.get("channels_last", "auto")
    if value != "auto":
        return bool(value)
    accelerator = str(cfg.trainer.get("accelerator"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return [*callbacks, RunState()]


def build_loggers(
    cfg: DictConfig,
    tags: list[str],
    wandb_id: str | None = None,
    wandb_start: wandb_run.WandbStart | None = None,
) -> tuple[list[Any], bool]:
    """The loggers of ``cfg.logger``, and whether W&B may upload artifacts. W&B runs of a
    multirun share a group; a resumed run continues its W&B run (``wandb_id``)."""
    loggers, artifacts = [], False
    for name, settings in (cfg.get("logger") or {}).items():
        if settings is None:
            continue
        settings = plain(settings)
        if name == "wandb":
            logger, artifacts = wandb_run.build_logger(
                settings, tags, sweep_group(), wandb_id, wandb_start
            )
            wandb_run.define_run_metrics(logger.experiment, run_loggers.monitored_scores(cfg))
        else:
            logger = build_other_logger(name, settings)
        loggers.append(logger)
    return loggers, artifacts


def build_other_logger(name: str, settings: dict[str, Any]) -> Any:
    uri = str(settings.get("tracking_uri", ""))
    if uri.startswith("sqlite:///"):
        # SQLite creates a missing database file, not a missing folder
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return instantiate(settings)
    except Exception as exc:
        if name in LOGGER_EXTRAS and _missing_module(exc):
            raise ConfigError(
                "logger",
                name,
                f"a logger whose package is installed: pip install 'oodlab[{LOGGER_EXTRAS[name]}]'",
            ) from None
        raise


def _missing_module(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, ImportError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def build_fabric(cfg: DictConfig) -> Any:
    """Processes and devices from the trainer group, so ``trainer=ddp`` shards evaluation."""
    from lightning.fabric import Fabric

    tcfg = cfg.trainer
    return Fabric(
        accelerator=tcfg.get("accelerator", "auto"),
        devices=tcfg.get("devices", 1),
        num_nodes=tcfg.get("num_nodes", 1),
        strategy=tcfg.get("strategy", "auto"),
    )


def eval_preprocessing(cfg: DictConfig) -> Preprocessing | None:
    """The preprocessing ``src/eval.py`` evaluates with: ``preprocessing=`` (a mapping, or the
    name of torchvision weights whose transforms a local file was trained with), else the
    published weights' own (``weights=IMAGENET1K_V1``, ``weights=pretrained``), else None (the
    data config's)."""
    from oodlab.models.published import is_published, published_weights

    given = plain(cfg.get("preprocessing"))
    arch, weights = str(cfg.get("arch") or ""), cfg.get("weights")
    if isinstance(given, str):
        if not arch.startswith("torchvision:"):
            raise ConfigError(
                "preprocessing", given, "a mapping (resize, crop, interpolation, mean, std)"
            )
        return published_weights(arch, given).preprocessing
    if isinstance(given, dict):
        return Preprocessing(**{**given, "source": "config"})
    if arch and weights and is_published(arch, str(weights)):
        return published_weights(arch, str(weights)).preprocessing
    return None


def build_plain_model(cfg: DictConfig, dm: OODDataModule) -> torch.nn.Module:
    """``arch=<timm name>`` or ``arch=torchvision:<name>``, with published weights
    (``weights=IMAGENET1K_V1``, ``weights=pretrained``) or built for the data's classes and
    channels with the state dict of a file (``weights=PATH``; keys may carry
    ``weights_prefix``)."""
    import timm

    from oodlab.models.pretrained import load_weights
    from oodlab.models.published import is_published, load_published, published_weights

    assert dm.data is not None
    arch, weights = str(cfg.arch), cfg.get("weights")
    if not weights:
        raise ConfigError(
            "weights",
            weights,
            f"the path of the {arch} state dict to evaluate (weights=PATH), or published "
            "weights (a torchvision weights name such as IMAGENET1K_V1; pretrained for timm)",
        )
    classes, channels = dm.num_classes, dm.data.shape[0]
    if is_published(arch, str(weights)):
        published = published_weights(arch, str(weights))
        if published.num_classes != classes:
            raise ConfigError(
                "data",
                dm.data.name,
                f"a dataset with the {published.num_classes} classes {published.name} predicts "
                f"(this one has {classes})",
            )
        return load_published(published)
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
