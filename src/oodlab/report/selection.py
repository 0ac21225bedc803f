"""The τ search of a sweep, decided on the validation pair only.

For every loss, the setting whose runs have the lowest mean validation objective over seeds
(``val/objective``: the last epoch's FPR95 on the validation pair, what the Optuna search
minimises) is its chosen setting; test metrics never enter the choice. The comparison table
holds one row per loss, at its chosen setting.
"""

from __future__ import annotations

import math

import pandas as pd

from oodlab.report.collect import Sweep
from oodlab.report.tables import SweepTable, mark_best

OBJECTIVE = "val/objective"


def validation_means(sweep: Sweep) -> pd.DataFrame:
    """Per setting: loss, mean and std over seeds of the validation objective, and its runs."""
    ok = sweep.ok
    if OBJECTIVE not in ok.columns:
        return pd.DataFrame(columns=["loss", "mean", "std", "n"])
    per_seed = ok.groupby(["setting", "seed"], sort=False)[OBJECTIVE].mean()
    grouped = per_seed.groupby(level="setting", sort=False)
    frame = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()})
    frame.insert(
        0, "loss", ok.drop_duplicates("setting").set_index("setting").loc[frame.index, "loss"]
    )
    return frame


def chosen_settings(sweep: Sweep) -> dict[str, str]:
    """{loss: setting} with the lowest mean validation objective; ties to the first setting
    in the table's order. A loss whose runs have no objective keeps its first setting."""
    means = validation_means(sweep)
    chosen: dict[str, str] = {}
    for loss in dict.fromkeys(sweep.ok["loss"]):
        settings = list(dict.fromkeys(sweep.ok.loc[sweep.ok["loss"] == loss, "setting"]))
        scored = [
            (means.at[s, "mean"], i, s)
            for i, s in enumerate(settings)
            if s in means.index and not math.isnan(means.at[s, "mean"])
        ]
        chosen[loss] = min(scored)[2] if scored else settings[0]
    return chosen


def comparison_table(table: SweepTable, chosen: dict[str, str]) -> SweepTable:
    """``table`` restricted to the chosen setting of each loss, best values marked again."""
    rows = [s for s in table.settings.index if s in set(chosen.values())]
    subset = SweepTable(
        table.score,
        list(table.keys),
        dict(table.fixed),
        list(table.columns),
        table.settings.loc[rows],
        table.mean.loc[rows],
        table.std.loc[rows],
        table.count.loc[rows],
        {},
        table.failed.iloc[0:0],
    )
    subset.best = mark_best(subset.mean, subset.columns)
    return subset
