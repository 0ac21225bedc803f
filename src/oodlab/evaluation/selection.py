"""Choosing a score's hyperparameters on the validation pair.

The validation pair is the ID validation split and a validation OOD set that shares no image
with any test OOD set (``ood.val``). Every setting of the grid is scored on it; the lowest
FPR95 wins, ties go to the higher AUROC, then to the earlier setting in grid order. Test data
are never looked at. :func:`choose` only reads scores that were already computed.

A validation pair that cannot tell settings apart is *degenerate*: every setting ties, or the
chosen setting's AUROC is below 0.5 (the validation OOD set looks more in-distribution than
the ID data). The choice then says so, and evaluation warns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from oodlab.errors import ConfigError, UnknownNameError
from oodlab.evaluation.choice import Choice
from oodlab.metrics import ood_metrics
from oodlab.scores import SCORES, Score, grid_settings
from oodlab.scores.base import check_keys


@dataclass(frozen=True)
class ScorePlan:
    """One score to evaluate: its class, the values fixed by the user, and the grid to search."""

    name: str
    cls: type[Score]
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]

    @property
    def settings(self) -> list[dict[str, Any]]:
        """Every setting of the grid merged with the fixed values, in grid order."""
        return [{**self.fixed, **s} for s in grid_settings(self.grid)]


def search_space(
    name: str, fixed: Mapping[str, Any], grids: Mapping[str, Any] | None
) -> dict[str, list[Any]]:
    """The grid of every hyperparameter of ``name`` that eval.params does not fix.

    ``grids`` is eval.grids; a key missing there falls back to the score's default grid
    (``spec``, the only place default grids live).
    """
    cls = SCORES[name]
    given = dict((grids or {}).get(name) or {})
    check_keys(cls, "eval.grids", given)
    space: dict[str, list[Any]] = {}
    for key, hp in cls.spec.items():
        if key in fixed:
            continue
        values = given.get(key, list(hp.grid))
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"eval.grids.{name}.{key}", values, "a non-empty list of values")
        space[key] = [hp.check(f"eval.grids.{name}.{key}", v) for v in values]
    return space


def check_overrides(params: Mapping[str, Any] | None, grids: Mapping[str, Any] | None) -> None:
    """Every score named in eval.params and eval.grids is registered, and every key is one of
    its hyperparameters with a valid value, whether or not eval.scores lists the score."""
    for section, given in (("eval.params", params), ("eval.grids", grids)):
        for name, keys in (given or {}).items():
            if name not in SCORES:
                raise UnknownNameError(f"score in {section}", name, SCORES.names())
            if keys is not None and not isinstance(keys, Mapping):
                raise ConfigError(f"{section}.{name}", keys, "a mapping of hyperparameters")
            check_keys(SCORES[name], section, keys or {})
    for name, fixed in (params or {}).items():
        SCORES[name](**(fixed or {}))
    for name in grids or {}:
        search_space(name, {}, grids)


def plan_scores(
    scores: Mapping[str, Mapping[str, Any] | None],
    grids: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, ScorePlan]:
    """Validate score names, fixed values (eval.params) and grids (eval.grids) before any
    work, and return each score's plan. ``params`` is the whole eval.params, checked even for
    scores ``scores`` leaves out. Cheap: call it before training to fail early."""
    check_overrides(params, grids)
    plans = {}
    for name, fixed in scores.items():
        fixed = dict(fixed or {})
        SCORES[name](**fixed)  # checks the fixed values
        plans[name] = ScorePlan(name, SCORES[name], fixed, search_space(name, fixed, grids))
    return plans


def better(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Is validation result ``a`` strictly better than ``b``? Lower FPR95, then higher AUROC."""
    return (a["fpr95"], -a["auroc"]) < (b["fpr95"], -b["auroc"])


def choose(plan: ScorePlan, val_scores: Sequence[tuple[Tensor, Tensor]] | None) -> Choice:
    """Pick the setting of ``plan`` with the best validation metrics.

    ``val_scores`` holds, for each of ``plan.settings`` in order, the (ID val scores, OOD val
    scores) pair; None means there is no validation pair, and the published defaults (with the
    fixed values) are used.
    """
    if val_scores is None:
        return Choice(plan.name, plan.cls(**plan.fixed).hparams(), fixed=plan.fixed, grid=plan.grid)
    settings = plan.settings
    if len(val_scores) != len(settings):
        raise ValueError(
            f"{plan.name}: {len(val_scores)} scored settings for {len(settings)} settings"
        )
    trials: list[dict[str, Any]] = []
    best = 0
    for i, (val_id, val_ood) in enumerate(val_scores):
        metrics = ood_metrics(val_id, val_ood)
        trials.append({"params": {k: settings[i][k] for k in plan.grid}, **metrics})
        if i and better(metrics, trials[best]):
            best = i
    val = {k: v for k, v in trials[best].items() if k != "params"}
    return Choice(
        plan.name,
        plan.cls(**settings[best]).hparams(),
        fixed=plan.fixed,
        grid=plan.grid,
        trials=trials,
        val=val,
        degenerate=degenerate_reason(trials, val),
    )


def degenerate_reason(trials: Sequence[Mapping[str, Any]], val: Mapping[str, float]) -> str | None:
    if len(trials) > 1 and len({(t["fpr95"], t["auroc"]) for t in trials}) == 1:
        return (
            f"all {len(trials)} settings tie "
            f"(val FPR95 {val['fpr95']:.3f}, AUROC {val['auroc']:.3f})"
        )
    if val["auroc"] < 0.5:
        return (
            f"val AUROC {val['auroc']:.3f} < 0.5: the validation OOD set scores as more "
            "in-distribution than ID data"
        )
    return None
