"""Wall time of the default experiment, counted from process start (imports included).

Runs the real command, `python src/train.py loss=<name>`, once per loss head, and reads back
the ID accuracy and mean FPR95 from results.json. Target: <= 90 s per run on 2 CPU cores with
>= 96% ID test accuracy for every loss.

    python benchmarks/train_time.py [--losses ce logitnorm ...] [--extra key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
LOSSES = ["ce", "logitnorm", "logit_penalty", "isomax", "isomaxplus", "dismax"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--losses", nargs="+", default=LOSSES)
    parser.add_argument(
        "--extra", nargs="*", default=[], help="extra Hydra overrides for every run"
    )
    parser.add_argument("--budget", type=float, default=90.0)
    args = parser.parse_args()

    console = Console()
    table = Table(
        title=f"Default experiment, wall time from process start (budget {args.budget:.0f} s)"
    )
    for col in (
        "loss",
        "wall s",
        "in budget",
        "ID acc %",
        "epochs",
        "mean FPR95 % (msp)",
        "mean AUROC % (msp)",
    ):
        table.add_column(col, justify="right")
    env = dict(os.environ, WANDB_SILENT="true")
    with tempfile.TemporaryDirectory() as tmp:
        # One untimed run builds the MNIST-5k and OOD caches, as on any machine after its first run.
        subprocess.run(
            [sys.executable, "src/train.py", "debug=fast", f"hydra.run.dir={tmp}/warm"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        for loss in args.losses:
            run_dir = Path(tmp) / loss
            start = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "src/train.py",
                    f"loss={loss}",
                    f"hydra.run.dir={run_dir}",
                    *args.extra,
                ],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                console.print(f"[red]{loss} failed[/]\n{proc.stderr[-2000:]}")
                continue
            res = json.loads((run_dir / "results.json").read_text())
            mean = res["ood"]["msp"]["mean"]
            table.add_row(
                loss,
                f"{wall:.1f}",
                "yes" if wall <= args.budget else "NO",
                f"{100 * res['id']['acc']:.2f}",
                str(res["run"]["epochs"]),
                f"{100 * mean['fpr95']:.1f}",
                f"{100 * mean['auroc']:.1f}",
            )
            console.print(f"{loss}: {wall:.1f} s, acc {100 * res['id']['acc']:.2f}%")
    console.print(table)


if __name__ == "__main__":
    main()
