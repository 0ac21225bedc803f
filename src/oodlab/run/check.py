"""The config's values, checked before any data loads: a bad value stops the run in one line
that names the key and what is allowed, seconds into the run instead of minutes.

The ranges and choices of every key live beside its type in the schemas
(hydra_plugins.oodlab_config); :func:`oodlab.config.validate_config` applies them all first.
What follows needs more than a range: the machine (CUDA), the loss registry's own checks (a
throwaway head) and the score registry's (plan_scores)."""

from __future__ import annotations

from omegaconf import DictConfig

from oodlab.config.validate import check_target_arguments, validate_config
from oodlab.errors import ConfigError
from oodlab.run.runtime import plain


def check_config(cfg: DictConfig) -> None:
    """Every check of a training or evaluation config: the schemas' ranges and choices first."""
    validate_config(cfg)
    check_target_arguments(cfg)
    check_trainer(cfg)
    check_loss(cfg)
    check_scores(cfg)


def check_trainer(cfg: DictConfig) -> None:
    import torch

    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.accelerator", accelerator, "cpu or auto: this machine has no CUDA GPU"
        )


def check_loss(cfg: DictConfig) -> None:
    """A throwaway 1-feature, 2-class head checks every loss hyperparameter."""
    from oodlab.losses import build_loss_head

    if cfg.get("loss") is not None:
        build_loss_head(plain(cfg.loss), in_features=1, num_classes=2)


def check_scores(cfg: DictConfig) -> None:
    """Score names, fixed hyperparameters and grids; ``default`` (the head's own score) is
    always a valid name."""
    from oodlab.evaluation.selection import plan_scores

    params = plain(cfg.eval.get("params")) or {}
    named = {str(n): params.get(str(n)) for n in cfg.eval.scores if str(n) != "default"}
    plan_scores(named, plain(cfg.eval.get("grids")) or {}, params=params)
