"""Every loss head and every post-hoc score, compared on the default experiment.

Two Hydra multiruns of the real command line, 3 seeds each (the default experiment: MNIST-5k,
small_cnn, 10 epochs, its offline OOD suite; hyperparameters are each method's defaults or
chosen on the validation pair, never on the test sets):

1. every loss of ``conf/loss/`` scored with msp, energy and its own score (``default``);
2. a CE model and a LogitNorm model scored with every registered score.

It prints two markdown tables of mean ± sample std over seeds (in %): the mean over the real
OOD test sets (``mean``) and the noise sets (``mean_noise``), with ID accuracy. Usage, from the
repository root:

    python benchmarks/method_comparison.py                     # both sweeps, then the tables
    python benchmarks/method_comparison.py --report-only DIR   # the tables of finished sweeps
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def loss_names() -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / "loss").glob("*.yaml"))


def score_names() -> list[str]:
    from oodlab.scores import SCORES

    return SCORES.names()


def sweep_commands(out: Path, seeds: str, extra: Sequence[str]) -> dict[str, list[str]]:
    common = ["logger=none", "plots=false", "~callbacks.progress_bar", f"seed={seeds}", *extra]
    train = [sys.executable, str(REPO / "src" / "train.py"), "-m"]
    return {
        "losses": [
            *train,
            f"loss={','.join(loss_names())}",
            "eval.scores=[msp,energy,default]",
            f"hydra.sweep.dir={out / 'losses'}",
            *common,
        ],
        "scores": [
            *train,
            "loss=ce,logitnorm",
            f"eval.scores=[{','.join(score_names())}]",
            f"hydra.sweep.dir={out / 'scores'}",
            *common,
        ],
    }


def read_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(sweep_dir.glob("**/results.json")):
        record = json.loads(path.read_text())
        if record.get("status") == "ok":
            runs.append(record)
    return runs


def mean_std(values: Iterable[float]) -> str:
    values = [100 * v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def metric(record: dict[str, Any], score: str, row: str, key: str) -> float | None:
    return (((record.get("ood") or {}).get(score) or {}).get(row) or {}).get(key)


def own_score(record: dict[str, Any]) -> str:
    """The head's own score, what ``default`` in eval.scores stood for: its default_score."""
    from oodlab.losses import LOSSES

    return LOSSES[record["run"]["loss"]].default_score


def loss_table(runs: list[dict[str, Any]]) -> str:
    by_loss: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in runs:
        by_loss[record["run"]["loss"]].append(record)
    head = (
        "| loss | own score | seeds | ID acc | MSP FPR95 ↓ | MSP AUROC ↑ | Energy FPR95 ↓ | "
        "Energy AUROC ↑ | own FPR95 ↓ | own AUROC ↑ | MSP noise FPR95 ↓ |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for loss, records in sorted(by_loss.items()):
        own = own_score(records[0])

        def cell(score: str, key: str, row: str = "mean", rs: list = records) -> str:
            return mean_std(metric(r, score, row, key) for r in rs)

        lines.append(
            f"| {loss} | {own} | {len(records)} | "
            f"{mean_std(r['id']['acc'] for r in records)} | "
            f"{cell('msp', 'fpr95')} | {cell('msp', 'auroc')} | {cell('energy', 'fpr95')} | "
            f"{cell('energy', 'auroc')} | {cell(own, 'fpr95')} | {cell(own, 'auroc')} | "
            f"{cell('msp', 'fpr95', 'mean_noise')} |"
        )
    return "\n".join(lines)


def score_table(runs: list[dict[str, Any]]) -> str:
    by_loss: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in runs:
        by_loss[record["run"]["loss"]].append(record)
    losses = sorted(by_loss)
    head = "| score | " + " | ".join(
        f"{loss} FPR95 ↓ | {loss} AUROC ↑ | {loss} noise FPR95 ↓" for loss in losses
    )
    lines = [head + " |", "|---|" + "---|" * (3 * len(losses))]
    scores = sorted({s for r in runs for s in (r.get("ood") or {})})
    for score in scores:
        cells = []
        for loss in losses:
            rs = by_loss[loss]
            cells += [
                mean_std(metric(r, score, "mean", "fpr95") for r in rs),
                mean_std(metric(r, score, "mean", "auroc") for r in rs),
                mean_std(metric(r, score, "mean_noise", "fpr95") for r in rs),
            ]
        lines.append(f"| {score} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(out: Path) -> str:
    parts = []
    if (out / "losses").exists():
        parts.append(
            "### Every loss (msp, energy, own score)\n\n" + loss_table(read_runs(out / "losses"))
        )
    if (out / "scores").exists():
        parts.append(
            "### Every score (CE and LogitNorm models)\n\n" + score_table(read_runs(out / "scores"))
        )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="folder of the two sweeps")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", choices=("losses", "scores"), default=None)
    p.add_argument("--report-only", type=Path, default=None, metavar="DIR")
    p.add_argument("extra", nargs="*", help="further Hydra overrides for every job")
    args = p.parse_args(argv)
    if args.report_only is not None:
        print(report(args.report_only))
        return 0
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    out = (args.out or REPO / "logs" / "benchmarks" / "method_comparison" / stamp).resolve()
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    code = 0
    for name, command in sweep_commands(out, args.seeds, args.extra).items():
        if args.only and name != args.only:
            continue
        print("$", " ".join(command[1:]), flush=True)
        start = time.time()
        done = subprocess.run(command, cwd=REPO, env=env)
        print(f"{name}: {(time.time() - start) / 60:.1f} min, exit code {done.returncode}")
        code = code or done.returncode
    text = report(out)
    (out / "summary.md").write_text(text)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
