"""``python src/report.py DIR [DIR ...]``: the tables and plots of a sweep.

Reads every results.json below the directories, prints the table as Markdown, and writes
``sweep_<score>.md``, ``.csv`` and ``.tex`` plus the PNG plots into ``<DIR>/report`` (or
``--out``). ``--wandb`` also logs the table and plots to a run in the sweep's W&B group.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich_argparse import RichHelpFormatter

from oodlab.errors import ConfigError, OodlabError
from oodlab.outputs.console import make_console
from oodlab.report.collect import load_sweep, saved_config, sweep_group_name
from oodlab.report.selection import chosen_settings, comparison_table
from oodlab.report.sweep_plots import write_sweep_plots
from oodlab.report.tables import (
    DEFAULT_METRICS,
    METRIC_LABELS,
    failed_table,
    summary_table,
    to_csv,
    to_latex,
    to_markdown,
)

REPORT_DIR = "report"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python src/report.py",
        description="Tables (Markdown, CSV, LaTeX) and plots of a sweep's results.json files.",
        formatter_class=RichHelpFormatter,
    )
    p.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        help="multirun directories (or any folders) holding results.json files",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="where to write the files (default: DIR/report; required with several DIRs)",
    )
    p.add_argument(
        "--score",
        help="OOD score of the table (default: the first score in the results, msp by default)",
    )
    p.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help="OOD metrics per set, comma-separated, from "
        f"{', '.join(k for k in METRIC_LABELS if k not in ('acc', 'ece'))}",
    )
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument(
        "--wandb",
        action="store_true",
        help="log the table and plots to a W&B run in the sweep's group",
    )
    p.add_argument(
        "--wandb-mode",
        choices=("offline", "online"),
        default="offline",
        help="offline (default) needs no network; `wandb sync` uploads later",
    )
    p.add_argument(
        "--wandb-project", help="W&B project (default: the one the runs logged to, else oodlab)"
    )
    p.add_argument(
        "--wandb-group",
        help="W&B group (default: the first directory's name, which its runs share)",
    )
    return p


def output_dir(dirs: Sequence[Path], out: Path | None) -> Path:
    if out is not None:
        return out
    if len(dirs) > 1:
        raise ConfigError(
            "--out", None, "a folder for the report when several directories are given"
        )
    return dirs[0] / REPORT_DIR


def wandb_project(run_dirs: Sequence[str], default: str = "oodlab") -> str:
    for run_dir in run_dirs:
        project = ((saved_config(run_dir).get("logger") or {}).get("wandb") or {}).get("project")
        if project:
            return str(project)
    return default


def report(args: argparse.Namespace, console: Console, err: Console) -> Path:
    sweep = load_sweep(args.dirs)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    table = summary_table(sweep, score=args.score, metrics=metrics)
    out = output_dir(args.dirs, args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sweep_{table.score}"
    markdown = to_markdown(table)
    stem.with_suffix(".md").write_text(markdown)
    stem.with_suffix(".tex").write_text(to_latex(table))
    to_csv(table, stem.with_suffix(".csv"))
    console.out(markdown, highlight=False)
    written = [stem.with_suffix(s) for s in (".md", ".csv", ".tex")]
    if "loss.tau" in table.keys and len(table.settings) > 1:
        # the tau search: each loss at its setting chosen on the validation pair
        chosen = comparison_table(table, chosen_settings(sweep))
        text = (
            "**Each loss at the setting chosen on the validation pair** "
            "(lowest mean validation objective; test sets never looked at)\n\n"
        )
        text += to_markdown(chosen)
        (out / f"comparison_{table.score}.md").write_text(text)
        console.out(text, highlight=False)
        written.append(out / f"comparison_{table.score}.md")
    plots: list[Path] = []
    if not args.no_plots:
        plots, skipped = write_sweep_plots(sweep, table, out)
        written += plots
        for line in skipped:
            err.print(f"[yellow]plot skipped[/]: {line}", highlight=False)
    n_ok, n_failed = len(sweep.ok), len(sweep.failed)
    err.print(
        f"{n_ok + n_failed} runs ({n_ok} ok, "
        f"[{'bold red' if n_failed else 'green'}]{n_failed} failed[/]) "
        f"in {len(table.settings)} settings"
    )
    if n_failed:
        err.print(failed_table(table))
    if args.wandb:
        from oodlab.report.wandb_report import log_report

        run_dir = log_report(
            table,
            group=args.wandb_group or sweep_group_name(args.dirs[0]),
            project=args.wandb_project or wandb_project(list(sweep.runs["run_dir"])),
            mode=args.wandb_mode,
            out_dir=out,
            plots=plots,
            config={"dirs": [str(d) for d in args.dirs]},
        )
        written.append(run_dir)
    for path in written:
        err.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # off a terminal: tables at a fixed width, no colour codes, and paths never broken
    err = make_console(sys.stderr)
    try:
        report(args, make_console(sys.stdout), err)
    except OodlabError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
