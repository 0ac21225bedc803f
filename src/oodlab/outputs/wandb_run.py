"""W&B, in one module: the ``wandb.init`` arguments, the run started early, its tags, its
artifacts and its finish.

``wandb.init`` spends about a second starting W&B's service and waiting for it. The command
lines start it in a thread (:meth:`WandbStart.begin`) while torch and Lightning import, and the
logger then takes that run (:func:`build_logger`). Every key of ``logger.wandb`` reaches
``wandb.init`` (:func:`init_kwargs`), except the few that configure Lightning's logger
(:data:`LOGGER_KEYS`). A resumed run continues the W&B run of its checkpoint (the resume plan's
``wandb_id``).

The run's own tags (loss, dataset, backbone, the loss's hyperparameters) are known once the
task is built; :func:`run_tags` computes them, once, and they are added to the tags the user
gave.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from oodlab._infra.instantiate import instantiate

if TYPE_CHECKING:
    from oodlab.run.resume import ResumePlan

log = logging.getLogger(__name__)

#: keys of ``logger.wandb`` that configure Lightning's WandbLogger, not the W&B run
LOGGER_KEYS = ("_target_", "log_model", "prefix", "checkpoint_name", "artifacts")
#: WandbLogger's names for ``wandb.init`` arguments
RENAMED = {"save_dir": "dir", "version": "id"}


def init_kwargs(
    settings: Mapping[str, Any], group: str | None = None, resume_id: str | None = None
) -> dict[str, Any]:
    """``wandb.init``'s arguments for the ``logger.wandb`` config ``settings`` (plain values):
    every key but :data:`LOGGER_KEYS`, ``offline`` as ``mode``, the sweep's ``group`` where
    none is set, and ``resume_id`` to continue a run."""
    kwargs: dict[str, Any] = {}
    for key, value in settings.items():
        if key in LOGGER_KEYS:
            continue
        if key == "offline":
            kwargs["mode"] = "offline" if value else "online"
        else:
            kwargs[RENAMED.get(key, key)] = value
    kwargs.setdefault("mode", "offline")
    kwargs["tags"] = list(kwargs.get("tags") or [])
    kwargs["group"] = kwargs.get("group") or group
    if resume_id:
        kwargs |= {"id": resume_id, "resume": "allow"}
    # several runs in one process (a multirun, the tests): each init finishes the one before
    kwargs.setdefault("reinit", "finish_previous")
    return kwargs


def run_tags(
    loss: str | None,
    dataset: str,
    backbone: str | None = None,
    loss_params: Mapping[str, Any] | None = None,
    evaluation: bool = False,
) -> list[str]:
    """The tags that tell a run apart in the W&B UI, from what the run built: a training run's
    loss, dataset, backbone and loss hyperparameters; an evaluation's dataset and loss."""
    if evaluation:
        return [f"dataset:{dataset}", "eval", *([f"loss:{loss}"] if loss else [])]
    tags = [f"loss:{loss}", f"dataset:{dataset}", f"backbone:{backbone}"]
    return tags + [f"{key}:{value}" for key, value in (loss_params or {}).items()]


class WandbStart:
    """The handle of a W&B run being started in a thread. Empty (no thread) when the run has
    no W&B logger, or its start is left to :func:`build_logger`."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._run: Any = None
        self.kwargs: dict[str, Any] | None = None

    @classmethod
    def begin(cls, kwargs: dict[str, Any]) -> WandbStart:
        handle = cls()
        handle.kwargs = kwargs

        def init() -> None:
            try:
                import wandb

                handle._run = wandb.init(**kwargs)
            except Exception as exc:  # build_logger starts it again, and reports the error
                log.debug("early wandb.init failed: %s", exc)

        handle._thread = threading.Thread(target=init, name="oodlab-wandb-init", daemon=True)
        handle._thread.start()
        return handle

    def take(self) -> Any | None:
        """The started run (waiting for it), or None; it is handed out once."""
        if self._thread is None:
            return None
        self._thread.join()
        self._thread = None
        run, self._run = self._run, None
        return run

    def discard(self) -> None:
        """Finish a started run that no logger took (the job failed or was skipped first)."""
        run = self.take()
        if run is not None:
            run.finish(exit_code=1)


def start_early(cfg: DictConfig, plan: ResumePlan | None) -> WandbStart | None:
    """The run's W&B run, started in a thread while the libraries import, when the run has a
    W&B logger and the resume plan does not skip it (a resumed run continues its W&B run)."""
    settings = (cfg.get("logger") or {}).get("wandb")
    if settings is None or (plan is not None and plan.skip):
        return None
    # wandb.init imports W&B's public API, whose pydantic models call inspect.getmodule over
    # every loaded module: 2 s once torch, timm and Lightning are loaded, 0.2 s before
    import wandb.apis.public  # noqa: F401

    from oodlab.run.runtime import sweep_group

    resume_id = plan.wandb_id if plan is not None else None
    plain = OmegaConf.to_container(settings, resolve=True)
    assert isinstance(plain, dict)
    return WandbStart.begin(
        init_kwargs({str(k): v for k, v in plain.items()}, sweep_group(), resume_id)
    )


def build_logger(
    settings: Mapping[str, Any],
    tags: list[str],
    group: str | None,
    resume_id: str | None = None,
    started: WandbStart | None = None,
) -> tuple[Any, bool]:
    """Lightning's WandbLogger over the run started early, or over one started now with the
    same arguments; the run's ``tags`` are added to the user's. Also returns whether W&B may
    upload artifacts (``logger.wandb.artifacts``, online runs only)."""
    import wandb

    kwargs = init_kwargs(settings, group, resume_id)
    run = started.take() if started is not None and started.kwargs == kwargs else None
    if started is not None and run is None:
        started.discard()
    if run is None:
        run = wandb.init(**(kwargs | {"tags": [*kwargs["tags"], *tags]}))
    elif missing := [t for t in tags if t not in run.tags]:
        run.tags = (*run.tags, *missing)
    offline = kwargs["mode"] == "offline"
    artifacts = bool(settings.get("artifacts", True)) and not offline
    logger = instantiate(
        {"_target_": settings.get("_target_", "lightning.pytorch.loggers.WandbLogger")},
        experiment=run,
        save_dir=kwargs.get("dir"),
        offline=offline,
        log_model=artifacts,
        **{k: settings[k] for k in ("prefix", "checkpoint_name") if k in settings},
    )
    return logger, artifacts


def define_run_metrics(run: Any, monitored: list[str]) -> None:
    """A W&B run's summary keeps the best (lowest) validation FPR95 of every monitored score
    and the final test metrics.

    W&B globs match name suffixes only (``val_ood/*/fpr95`` is refused), so each FPR95 key is
    named; a ``val_ood/*`` glob would also take the minimum of AUROC.
    """
    for score in monitored:
        run.define_metric(f"val_ood/{score}/fpr95", summary="min")
    run.define_metric("test/*", summary="last")


def upload_results(logger: Any, results: Path) -> None:
    """results.json as a W&B artifact of the logger's run."""
    import wandb

    artifact = wandb.Artifact(f"results-{logger.experiment.id}", type="results")
    artifact.add_file(str(results))
    logger.experiment.log_artifact(artifact)


def finish(status: str) -> None:
    """Close the process's W&B run, with the exit code of the run's status."""
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=0 if status == "ok" else 1)
