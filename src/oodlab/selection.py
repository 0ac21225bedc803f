"""Choosing a score's hyperparameters on the validation pair.

The validation pair is the ID validation split and a validation OOD set that shares no image
with any test OOD set (Gaussian noise with its own seed by default, ``ood.val``). Every setting
of the grid is scored on it; the lowest FPR95 wins, ties go to the higher AUROC, then to the
earlier setting in grid order. Test data are never looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from oodlab._infra.errors import ConfigError, UnknownNameError
from oodlab.metrics import ood_metrics
from oodlab.scores import SCORES, Score, grid_settings


@dataclass
class Choice:
    """The hyperparameters one score runs with, and how they were chosen."""

    name: str
    chosen: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    #: per setting: its values and its validation metrics
    trials: list[dict[str, Any]] = field(default_factory=list)
    val: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "fixed": self.fixed,
            "chosen": self.chosen,
            "val_fpr95": None if self.val is None else self.val["fpr95"],
            "val_auroc": None if self.val is None else self.val["auroc"],
            "criterion": "min val fpr95, ties: max val auroc",
            "trials": self.trials,
        }


def search_space(name: str, fixed: Mapping[str, Any], grids: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """The grid of every hyperparameter of ``name`` that eval.params does not fix.

    ``grids`` is eval.grids; a key missing there falls back to the score's default grid.
    """
    cls = SCORES.get(name)
    given = dict((grids or {}).get(name) or {})
    unknown = set(given) - set(cls.spec)
    if unknown:
        raise ConfigError(f"eval.grids.{name}", given, f"a mapping with keys among {sorted(cls.spec) or 'none'}")
    space: dict[str, list[Any]] = {}
    for key, hp in cls.spec.items():
        if key in fixed:
            continue
        values = given.get(key, list(hp.grid))
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"eval.grids.{name}.{key}", values, "a non-empty list of values")
        space[key] = [hp.check(f"eval.grids.{name}.{key}", v) for v in values]
    return space


def check_scores(scores: Mapping[str, Mapping[str, Any] | None], grids: Mapping[str, Any] | None) -> dict[str, dict[str, list[Any]]]:
    """Validate score names, fixed values (eval.params) and grids (eval.grids) before any work;
    returns each score's search space. Cheap: call it before training to fail early."""
    for name in grids or {}:
        if name not in SCORES:
            raise UnknownNameError("score in eval.grids", name, SCORES.names())
    for name, fixed in scores.items():
        SCORES.get(name)(**dict(fixed or {}))
    return {name: search_space(name, dict(fixed or {}), grids) for name, fixed in scores.items()}


def better(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Is validation result ``a`` strictly better than ``b``? Lower FPR95, then higher AUROC."""
    return (a["fpr95"], -a["auroc"]) < (b["fpr95"], -b["auroc"])


def choose(
    name: str,
    fixed: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    score_settings: Callable[[list[dict[str, Any]]], list[tuple[Tensor, Tensor]]] | None,
) -> Choice:
    """Pick the setting of ``grid`` (merged with ``fixed``) with the best validation metrics.

    ``score_settings`` maps the settings to (val ID scores, val OOD scores) pairs; None means
    there is no validation pair, and the published defaults are used.
    """
    cls: type[Score] = SCORES.get(name)
    fixed = dict(fixed)
    if score_settings is None:
        return Choice(name, cls(**fixed).hparams(), fixed=fixed, grid=dict(grid))
    settings = [{**fixed, **s} for s in grid_settings(grid)]
    trials: list[dict[str, Any]] = []
    best = 0
    for i, (val_id, val_ood) in enumerate(score_settings(settings)):
        metrics = ood_metrics(val_id, val_ood)
        trials.append({"params": {k: settings[i][k] for k in grid}, **metrics})
        if i and better(metrics, trials[best]):
            best = i
    chosen = cls(**settings[best]).hparams()
    val = {k: v for k, v in trials[best].items() if k != "params"}
    return Choice(name, chosen, fixed=fixed, grid=dict(grid), trials=trials, val=val)
