"""What the whole default run costs against a plain PyTorch loop doing the same 10 epochs.

Both are timed as whole processes, from start to exit, imports included, alternating, and the
median of ``--repeats`` is reported with user and system CPU time:

* ``plain``: benchmarks/plain_loop.py (training only; no validation, no evaluation);
* ``plain, channels_last`` and ``plain, gc frozen``: the plain loop with oodlab's memory format,
  or with oodlab's garbage-collector settings (is oodlab's margin its own engineering?);
* ``oodlab``: ``python src/train.py`` as a user runs it (W&B offline, plots, the console table);
* ``oodlab, no logger/plots``: the same with ``logger=none plots=false``;
* variants given with ``--variant NAME=OVERRIDES``
  (e.g. ``--variant no-monitor='~callbacks.ood_monitor'``).

Target: oodlab <= 1.15 x plain. The machine is shared: compare ratios from one run of this
script, never times from different runs.

    python benchmarks/default_run_overhead.py [--repeats 3] [--variant NAME=OVERRIDES ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall, user, system) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=space-separated overrides"
    )
    args = parser.parse_args()
    env = dict(os.environ, WANDB_MODE="offline")
    with tempfile.TemporaryDirectory() as tmp:
        train = [sys.executable, "src/train.py"]
        commands = {
            "plain": [sys.executable, "benchmarks/plain_loop.py"],
            "plain, channels_last": [sys.executable, "benchmarks/plain_loop.py", "--channels-last"],
            "plain, gc frozen": [sys.executable, "benchmarks/plain_loop.py", "--freeze-gc"],
            "oodlab": [*train, f"hydra.run.dir={tmp}/run"],
            "oodlab, no logger/plots": [
                *train,
                "logger=none",
                "plots=false",
                f"hydra.run.dir={tmp}/bare",
            ],
        }
        for spec in args.variant:
            name, _, overrides = spec.partition("=")
            commands[name] = [*train, *overrides.split(), f"hydra.run.dir={tmp}/{len(commands)}"]
        timed(
            [*train, "debug=fast", f"hydra.run.dir={tmp}/warm"], env
        )  # caches built once, untimed
        times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, env))
    plain = statistics.median(t[0] for t in times["plain"])
    print(f"{'command':<28} {'wall s':>8} {'user s':>8} {'sys s':>8} {'x plain':>8}")
    for name, runs in times.items():
        wall, user, system = (statistics.median(t[i] for t in runs) for i in range(3))
        print(f"{name:<28} {wall:8.2f} {user:8.2f} {system:8.2f} {wall / plain:8.2f}")


if __name__ == "__main__":
    main()
