"""Paper-style sweep tables: one row per setting, mean ± std over seeds, best value marked.

Duplicate runs of one setting and seed (CE swept over a tau it ignores) are averaged first,
so every seed counts once and ``n`` is the number of distinct seeds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from oodlab.errors import UnknownNameError
from oodlab.report.collect import LOSS_PARAM_PREFIX, Sweep

METRIC_LABELS = {
    "fpr95": "FPR95",
    "auroc": "AUROC",
    "aupr_in": "AUPR-In",
    "aupr_out": "AUPR-Out",
    "fpr95_openood": "FPR95 (OpenOOD v1.5)",
    "aupr_in_openood": "AUPR-In (OpenOOD)",
    "aupr_out_openood": "AUPR-Out (OpenOOD)",
    "acc": "Acc",
    "ece": "ECE",
}
#: lower is better; every other metric is higher-is-better
LOWER_IS_BETTER = frozenset({"fpr95", "fpr95_openood", "ece"})
DEFAULT_METRICS = ("fpr95", "auroc", "aupr_in")
ID_COLUMN = "ID"


@dataclass
class SweepTable:
    """Aggregated results of a sweep for one OOD score.

    ``columns`` lists (set, metric) pairs in display order, ending with ("ID", "acc") and
    ("ID", "ece"). ``mean``, ``std`` and ``count`` are indexed by setting (rows in display
    order) with those pairs as columns; ``settings`` holds the swept keys of each row plus
    ``n_seeds`` and ``n_runs``. ``best`` maps each column to the settings holding its best
    mean. Values are fractions, as in results.json.
    """

    score: str
    keys: list[str]
    fixed: dict[str, Any]
    columns: list[tuple[str, str]]
    settings: pd.DataFrame
    mean: pd.DataFrame
    std: pd.DataFrame
    count: pd.DataFrame
    best: dict[tuple[str, str], set[str]]
    failed: pd.DataFrame


def _source_column(set_name: str, metric: str, score: str) -> str:
    return f"id/{metric}" if set_name == ID_COLUMN else f"ood/{score}/{set_name}/{metric}"


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value))
    return (2, str(value))


def summary_table(
    sweep: Sweep, score: str | None = None, metrics: Sequence[str] = DEFAULT_METRICS
) -> SweepTable:
    """Rows: settings of the swept keys. Columns: each OOD set and their mean, for ``metrics``,
    then ID accuracy and ECE. Cells: mean and sample std over seeds."""
    score = score or (sweep.scores[0] if sweep.scores else "msp")
    if sweep.scores and score not in sweep.scores:
        raise UnknownNameError("score in these results", score, sweep.scores)
    unknown = [m for m in metrics if m not in METRIC_LABELS]
    if unknown:
        raise UnknownNameError(
            "metric", unknown[0], [m for m in METRIC_LABELS if m not in ("acc", "ece")]
        )
    ok = sweep.ok
    set_names: dict[str, None] = {}
    for run_dir in ok["run_dir"]:
        set_names |= dict.fromkeys((sweep.results[run_dir].get("ood") or {}).get(score) or {})
    # means (the `mean` row and named group means) go after the individual sets
    ordered = [s for s in set_names if not s.startswith("mean")] + [
        s for s in set_names if s.startswith("mean")
    ]
    columns = [(s, m) for s in ordered for m in metrics] + [(ID_COLUMN, "acc"), (ID_COLUMN, "ece")]
    sources = {col: _source_column(*col, score) for col in columns}
    present = [c for c in columns if sources[c] in ok.columns]

    values = ok[[sources[c] for c in present]].assign(
        setting=ok["setting"], seed=ok["seed"].fillna(-1)
    )
    per_seed = values.groupby(["setting", "seed"], sort=False).mean()
    grouped = per_seed.groupby(level="setting", sort=False)
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    for frame in (mean, std, count):
        frame.columns = pd.Index(present, tupleize_cols=False)

    first = ok.drop_duplicates("setting").set_index("setting")
    settings = first[sweep.swept_keys].copy()
    settings["n_seeds"] = per_seed.reset_index().groupby("setting", sort=False)["seed"].nunique()
    settings["n_runs"] = ok.groupby("setting", sort=False).size()
    order = sorted(
        settings.index, key=lambda s: [_sort_value(settings.at[s, k]) for k in sweep.swept_keys]
    )
    settings = settings.loc[order]
    mean, std, count = mean.loc[order], std.loc[order], count.loc[order]

    best = mark_best(mean, present)
    failed = sweep.failed[["run_dir", "seed", "changed", "overrides", "error"]].reset_index(
        drop=True
    )
    failed.insert(1, "run", relative_run_names(sweep.runs["run_dir"], failed["run_dir"]))
    return SweepTable(
        score,
        list(sweep.swept_keys),
        dict(sweep.fixed),
        present,
        settings,
        mean,
        std,
        count,
        best,
        failed,
    )


def mark_best(
    mean: pd.DataFrame, columns: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], set[str]]:
    """Per column, the settings holding its best mean (lowest FPR95 and ECE, highest otherwise).
    A column where every row ties says nothing: nothing is marked."""
    best: dict[tuple[str, str], set[str]] = {}
    for col in columns:
        column = mean[col].dropna()
        target = column.min() if col[1] in LOWER_IS_BETTER else column.max()
        winners = set(column.index[column == target])
        if len(winners) < len(column):
            best[col] = winners
    return best


# -- formatting -----------------------------------------------------------------------------------
def relative_run_names(all_runs: Sequence[str], runs: Sequence[str]) -> list[str]:
    """Run directories relative to the folder all runs share: ``3`` within one sweep."""
    every = list(all_runs)
    common = Path(os.path.commonpath(every)) if len(every) > 1 else Path(every[0]).parent
    return [str(Path(r).relative_to(common)) for r in runs]


def key_label(key: str) -> str:
    return key.removeprefix(LOSS_PARAM_PREFIX)


def value_label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def column_label(col: tuple[str, str], arrows: bool = True) -> str:
    set_name, metric = col
    arrow = ("↓" if metric in LOWER_IS_BETTER else "↑") if arrows else ""
    return f"{set_name} {METRIC_LABELS[metric]}{arrow}"


def cell_text(table: SweepTable, setting: str, col: tuple[str, str], pm: str = "±") -> str:
    """``12.34 ± 0.56`` in percent; ``(n=2)`` appended where fewer seeds than the row has."""
    mean = table.mean.at[setting, col]
    if mean != mean:
        return "-"
    std = table.std.at[setting, col]
    text = f"{100 * mean:.2f}" + (f" {pm} {100 * std:.2f}" if std == std else "")
    n = int(table.count.at[setting, col])
    if n < int(table.settings.at[setting, "n_seeds"]):
        text += f" (n={n})"
    return text


def _rows(
    table: SweepTable, bold: str, pm: str, escape: Callable[[str], str] = str
) -> list[list[str]]:
    rows = []
    for setting in table.settings.index:
        row = [escape(value_label(table.settings.at[setting, k])) for k in table.keys]
        row.append(_n_label(table, setting))
        for col in table.columns:
            text = cell_text(table, setting, col, pm)
            row.append(bold.format(text) if setting in table.best.get(col, ()) else text)
        rows.append(row)
    return rows


def _n_label(table: SweepTable, setting: str) -> str:
    seeds, runs = (
        int(table.settings.at[setting, "n_seeds"]),
        int(table.settings.at[setting, "n_runs"]),
    )
    return f"{seeds}" if runs == seeds else f"{seeds} ({runs} runs)"


def caption(table: SweepTable) -> str:
    fixed = ", ".join(f"{key_label(k)}={value_label(v)}" for k, v in table.fixed.items())
    text = (
        f"Score {table.score}; metrics in %, mean ± sample std over n seeds; "
        "best per column in bold (lowest FPR95 and ECE, highest otherwise)."
    )
    return f"{text} Fixed: {fixed}." if fixed else text


def to_markdown(table: SweepTable) -> str:
    header = [*map(key_label, table.keys), "n", *(column_label(c) for c in table.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(":---" if i < len(table.keys) else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(table, "**{}**", "±")]
    lines += ["", caption(table)]
    if len(table.failed):
        lines += [
            "",
            f"**Failed runs ({len(table.failed)})**",
            "",
            "| run | seed | overrides | error |",
            "|:---|---:|:---|:---|",
        ]
        for _, run in table.failed.iterrows():
            error = str(run["error"] or "").replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {run['run']} | {value_label(run['seed'])} | `{run['changed']}` | {error} |"
            )
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, repl in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("$", r"\$"),
    ):
        text = text.replace(char, repl)
    return text


def to_latex(table: SweepTable) -> str:
    """A booktabs table with two header rows: the OOD set, then the metric."""
    if table.settings.empty:
        return f"% no successful run to tabulate ({len(table.failed)} failed)\n"
    rows = _rows(table, r"\textbf{{{}}}", r"$\pm$")
    n_keys = len(table.keys)
    for row in rows:
        row[: n_keys + 1] = [_latex_escape(v) for v in row[: n_keys + 1]]
    index = pd.MultiIndex.from_arrays(
        [[r[i] for r in rows] for i in range(n_keys + 1)],
        names=[_latex_escape(key_label(k)) for k in table.keys] + ["n"],
    )
    columns = pd.MultiIndex.from_tuples(
        [(_latex_escape(s), METRIC_LABELS[m]) for s, m in table.columns]
    )
    frame = pd.DataFrame([r[n_keys + 1 :] for r in rows], index=index, columns=columns)
    styler = frame.style
    latex = styler.to_latex(
        hrules=True,
        multicol_align="c",
        column_format="l" * (n_keys + 1) + "r" * len(table.columns),
        caption=_latex_escape(caption(table)).replace("±", r"$\pm$"),
    )
    return latex


def tidy_frame(table: SweepTable) -> pd.DataFrame:
    """One row per setting: status "ok", the score, the swept keys, n_seeds, n_runs, then
    ``<set>/<metric>/{mean,std,n}`` as fractions; failed runs follow with status "failed"."""
    frame = table.settings.reset_index(drop=True).rename(columns=key_label)
    frame.insert(0, "status", "ok")
    frame.insert(1, "score", table.score)
    stats = {}
    for col in table.columns:
        name = f"{col[0]}/{col[1]}"
        stats[f"{name}/mean"] = table.mean[col].to_numpy()
        stats[f"{name}/std"] = table.std[col].to_numpy()
        stats[f"{name}/n"] = table.count[col].to_numpy()
    frame = pd.concat([frame, pd.DataFrame(stats)], axis=1)
    counts = ["n_seeds", "n_runs", *(c for c in stats if c.endswith("/n"))]
    # nullable integers: counts stay "2", not "2.0", beside the failed rows' empty cells
    frame[counts] = frame[counts].astype("Int64")
    if len(table.failed):
        failed = table.failed.assign(
            status="failed", score=table.score, seed=table.failed["seed"].astype("Int64")
        )
        frame = pd.concat(
            [frame, failed[["status", "score", "run_dir", "seed", "overrides", "error"]]],
            ignore_index=True,
        )
    return frame


def to_csv(table: SweepTable, path: str | Path) -> Path:
    path = Path(path)
    tidy_frame(table).to_csv(path, index=False)
    return path


def failed_table(table: SweepTable) -> Any:
    from rich.markup import escape
    from rich.table import Table

    out = Table(title=f"[bold red]{len(table.failed)} failed run(s)[/]", title_justify="left")
    for name in ("run", "seed", "overrides", "error"):
        out.add_column(name, overflow="fold")
    for _, run in table.failed.iterrows():
        out.add_row(
            escape(str(run["run"])),
            value_label(run["seed"]),
            escape(str(run["changed"])),
            f"[red]{escape(str(run['error']))}[/]",
        )
    return out
