"""The run's table on the console: every number of results.json that a reader looks at first.

Tables get a fixed width and no colour codes when the output is not a terminal (a log file, a
SLURM output), so they neither wrap at 80 columns nor fill the log with escape codes.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from oodlab.outputs.record import RunRecord

#: the width of tables written to files and pipes
LOG_WIDTH = 132

LOGITNORM_ECE_NOTE = (
    "LogitNorm trains softmax(f / (tau * |f|)), so the raw logits f it is evaluated on are far "
    "less confident than its training softmax: a high raw ECE is expected, and temperature "
    "scaling (T ~ tau * |f|) removes it."
)


def make_console(stream: TextIO | None = None) -> Console:
    """A rich console for ``stream`` (stdout): as usual on a terminal; on anything else a
    fixed width and plain text."""
    stream = stream or sys.stdout
    if stream.isatty():
        return Console(file=stream)
    return Console(
        file=stream,
        width=int(os.environ.get("COLUMNS", LOG_WIDTH)),
        color_system=None,
        soft_wrap=False,
    )


def _pct(value: Any) -> str:
    if value is None:
        return "-"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "nan" if value != value else f"{100 * value:.2f}"


def results_table(record: RunRecord, title: str | None = None) -> Table:
    """One row per (score, OOD set): FPR95 (lower is better), AUROC, AUPR-In, AUPR-Out, in %."""
    run = record.run
    title = title or (
        f"{run.dataset or '?'} | {run.backbone or '?'} | loss={run.loss or '?'} "
        f"{run.loss_params} | seed={run.seed}"
    )
    table = Table(title=title, caption=caption(record), show_lines=False)
    for col in (
        "score",
        "OOD set",
        "n",
        "FPR95↓",
        "AUROC↑",
        "AUPR-In↑",
        "AUPR-Out↑",
        "setting (val)",
    ):
        table.add_column(
            col, justify="left" if col in ("score", "OOD set", "setting (val)") else "right"
        )
    for score, per_set in record.ood.items():
        choice = record.scores.get(score)
        setting = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (choice.chosen if choice else {}).items()
        )
        names = list(per_set)
        for i, (set_name, m) in enumerate(per_set.items()):
            table.add_row(
                score if i == 0 else "",
                set_name,
                str(m.get("n", "")),
                _pct(m.get("fpr95")),
                _pct(m.get("auroc")),
                _pct(m.get("aupr_in")),
                _pct(m.get("aupr_out")),
                setting if i == 0 else "",
                style="bold" if set_name.startswith("mean") else None,
                end_section=set_name == names[-1],
            )
    return table


def caption(record: RunRecord) -> str:
    id_part, cal = record.id or {}, record.calibration
    lines = [
        f"ID test: acc {_pct(id_part.get('acc'))}%, n={id_part.get('n', '?')}. "
        "Metrics in %; FPR95 lower is better."
    ]
    ece = f"ECE {_pct(id_part.get('ece'))}% (raw logits)"
    if cal:
        ece += (
            f", {_pct(cal['ece_after'])}% after temperature scaling "
            f"(T={cal['temperature']:.3g}, fitted on ID val)"
        )
    lines.append(ece)
    # the note explains a high raw ECE only: at least 10% and more than twice the scaled one
    if (
        record.run.loss == "logitnorm"
        and cal
        and cal["ece_before"] >= 0.1
        and cal["ece_before"] > 2 * cal["ece_after"]
    ):
        lines.append(LOGITNORM_ECE_NOTE)
    return "\n".join(lines)


def print_results(record: RunRecord, console: Console | None = None) -> None:
    (console or make_console()).print(results_table(record))
