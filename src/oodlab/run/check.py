"""The config's values, checked before any data loads: a bad value stops the run in one line
that names the key and what is allowed, seconds into the run instead of minutes."""

from __future__ import annotations

from omegaconf import DictConfig

from oodlab._infra.validate import number
from oodlab.errors import ConfigError
from oodlab.run.runtime import plain

#: optimizer keys: (what it is, lowest value, whether that value is allowed)
OPTIMIZER_CHECKS = {
    "lr": ("the learning rate", 0.0, False),
    "weight_decay": ("the weight decay", 0.0, True),
    "momentum": ("the momentum", 0.0, True),
}


def check_config(cfg: DictConfig) -> None:
    """Every check of a training or evaluation config."""
    check_trainer(cfg)
    check_optimizer(cfg)
    check_loss(cfg)
    check_scores(cfg)


def check_trainer(cfg: DictConfig) -> None:
    import torch

    if cfg.trainer.get("max_epochs") is not None and cfg.trainer.max_epochs < 1:
        raise ConfigError("trainer.max_epochs", cfg.trainer.max_epochs, "a positive integer")
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.accelerator", accelerator, "cpu or auto: this machine has no CUDA GPU"
        )


def check_optimizer(cfg: DictConfig) -> None:
    if cfg.get("optimizer") is None:
        return
    for key, (what, low, inclusive) in OPTIMIZER_CHECKS.items():
        if key not in cfg.optimizer:
            continue
        allowed = f"a number {'>=' if inclusive else '>'} {low:g} ({what})"
        value = number(f"optimizer.{key}", cfg.optimizer[key], allowed, finite=False)
        if value < low or (value == low and not inclusive):
            raise ConfigError(f"optimizer.{key}", cfg.optimizer[key], allowed)


def check_loss(cfg: DictConfig) -> None:
    """A throwaway 1-feature, 2-class head checks every loss hyperparameter."""
    from oodlab.losses import build_loss_head

    if cfg.get("loss") is not None:
        build_loss_head(plain(cfg.loss), in_features=1, num_classes=2)


def check_scores(cfg: DictConfig) -> None:
    """Score names, fixed hyperparameters and grids; ``default`` (the head's own score) is
    always a valid name."""
    from oodlab.evaluation.selection import plan_scores

    if not cfg.eval.scores:
        raise ConfigError("eval.scores", cfg.eval.scores, "a non-empty list of score names")
    params = plain(cfg.eval.get("params")) or {}
    named = {str(n): params.get(str(n)) for n in cfg.eval.scores if str(n) != "default"}
    plan_scores(named, plain(cfg.eval.get("grids")) or {}, params=params)
