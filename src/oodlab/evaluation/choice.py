"""What the validation pair chose for one score: a plain record, as results.json keeps it.

Its own module, free of torch, so that reading run records (``oodlab.report``) stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CRITERION = "min val fpr95, ties: max val auroc"


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
    #: why the validation pair could not choose, or None
    degenerate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "fixed": self.fixed,
            "chosen": self.chosen,
            "val_fpr95": None if self.val is None else self.val["fpr95"],
            "val_auroc": None if self.val is None else self.val["auroc"],
            "criterion": CRITERION,
            "trials": self.trials,
            "degenerate": self.degenerate,
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> Choice:
        val = None
        if data.get("val_fpr95") is not None:
            val = {"fpr95": data["val_fpr95"], "auroc": data.get("val_auroc")}
        return cls(
            name,
            dict(data.get("chosen") or {}),
            fixed=dict(data.get("fixed") or {}),
            grid=dict(data.get("grid") or {}),
            trials=list(data.get("trials") or []),
            val=val,
            degenerate=data.get("degenerate"),
        )
