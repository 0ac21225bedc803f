"""results.json: building, writing (atomically) and printing one run's results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from oodlab._infra.io import atomic_write_json

SCHEMA = 1
RESULTS_FILE = "results.json"


def write_results(run_dir: str | Path, results: Mapping[str, Any]) -> Path:
    return atomic_write_json(Path(run_dir) / RESULTS_FILE, dict(results))


def read_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    with path.open() as fh:
        return json.load(fh)


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None:
        return "-"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if value != value:
        return "nan"
    return f"{100 * value:.2f}" if pct else f"{value:.4f}"


def results_table(results: Mapping[str, Any], title: str | None = None) -> Table:
    """One row per (score, OOD set): FPR95 (lower is better), AUROC, AUPR-In, AUPR-Out, in %."""
    run = results.get("run", {})
    id_part = results.get("id", {})
    title = title or (
        f"{run.get('dataset', '?')} | {run.get('backbone', '?')} | loss={run.get('loss', '?')} "
        f"{run.get('loss_params', {})} | seed={run.get('seed', '?')}"
    )
    caption = (
        f"ID acc {_fmt(id_part.get('acc'))}%  ECE {_fmt(id_part.get('ece'))}%  "
        f"(n={id_part.get('n', '?')}); metrics in %, FPR95 lower is better"
    )
    table = Table(title=title, caption=caption, show_lines=False)
    for col in ("score", "OOD set", "n", "FPR95↓", "AUROC↑", "AUPR-In↑", "AUPR-Out↑"):
        table.add_column(col, justify="left" if col in ("score", "OOD set") else "right")
    for score, per_set in results.get("ood", {}).items():
        for i, (set_name, m) in enumerate(per_set.items()):
            is_mean = set_name.startswith("mean")
            style = "bold" if is_mean else None
            table.add_row(
                score if i == 0 else "",
                set_name,
                str(m.get("n", "")),
                _fmt(m.get("fpr95")),
                _fmt(m.get("auroc")),
                _fmt(m.get("aupr_in")),
                _fmt(m.get("aupr_out")),
                style=style,
                end_section=set_name == list(per_set)[-1],
            )
    return table


def print_results(results: Mapping[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(results_table(results))
