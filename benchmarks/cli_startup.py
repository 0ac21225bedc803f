"""How fast the command lines answer when they do no run: ``--help``, ``--cfg job`` and a tab
completion query, against ``python -c "import torch, timm"`` measured in the same run.
Target: each within 2 s on two CPU cores (median of ``--repeats``).

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "src/train.py"]
COMMANDS = {
    "train.py --help": ([*TRAIN, "--help"], {}),
    "train.py --cfg job": ([*TRAIN, "--cfg", "job"], {}),
    "eval.py --help": ([sys.executable, "src/eval.py", "--help"], {}),
    "tab completion (bash)": (
        [*TRAIN, "-sc", "query=bash"],
        {"COMP_LINE": "python src/train.py lo"},
    ),
    "report.py --help": ([sys.executable, "src/report.py", "--help"], {}),
    "baseline: import torch, timm": ([sys.executable, "-c", "import torch, timm"], {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, (cmd, env) in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(
                cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, check=True
            )
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name:<32} {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main()
