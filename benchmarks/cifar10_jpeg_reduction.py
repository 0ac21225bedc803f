"""A CPU-sized reduction of the LogitNorm paper's CIFAR-10 claim: CE against the training-time
fixes LogitNorm (tau = 0.04), T2FNorm (tau = 0.1) and outlier exposure (OE, lambda = 0.5), each
at its conf/loss/ defaults.

Trains every loss with 3 seeds on the JPEG copy of CIFAR-10 (read through the image-folder
dataset, straight from its .tar.gz), evaluates them on an OOD suite that needs no download
(MNIST-5k upscaled to 32x32 RGB, texture and photo crops, Gaussian and uniform noise), and
prints ID accuracy with per-set and mean FPR95 / AUROC for MSP and Energy, mean ± std over
seeds.

It runs the real command line, one Hydra multirun:

    python src/train.py -m experiment=cifar10_quick data=folder data.dataset.path=ARCHIVE \\
        loss=ce,logitnorm,t2fnorm,oe seed=0,1,2 ...

OE trains with the offline outlier set (outliers=auto picks it for the OE losses): procedural
shapes and blobs and microscopy crops, none of them a source or a kind of image of the test
suite.

and aggregates the jobs' results.json files with oodlab.report (the module behind
``python src/report.py``). Usage, from the repository root:

    python benchmarks/cifar10_jpeg_reduction.py                    # train, then the table
    python benchmarks/cifar10_jpeg_reduction.py --report-only DIR  # the table of a finished sweep
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SCORES = ("msp", "energy")
METRICS = ("fpr95", "auroc")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--archive",
        type=Path,
        default=DEFAULT_ARCHIVE,
        help="CIFAR-10 as JPEG image folders: a .tar.gz or an extracted folder "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / "data",
        help="git-ignored folder the archive is extracted into and caches live in "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="sweep directory (default: logs/benchmarks/cifar10_jpeg_reduction/<time>)",
    )
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--losses", default="ce,logitnorm,t2fnorm,oe")
    p.add_argument(
        "--train-subset", type=int, default=10000, help="training images kept, stratified"
    )
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument(
        "--model", default="small_cnn", help="an oodlab/timm backbone (conf/model/<name>.yaml)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per job (OMP_NUM_THREADS); 1 is faster on a CPU shared with other work",
    )
    p.add_argument(
        "--report-only",
        type=Path,
        default=None,
        metavar="DIR",
        help="skip training; aggregate the results.json files below DIR",
    )
    p.add_argument("extra", nargs="*", help="further Hydra overrides for every job")
    return p.parse_args(argv)


def sweep_command(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "src" / "train.py"),
        "-m",
        "experiment=cifar10_quick",
        "data=folder",
        f"data.dataset.path={args.archive.resolve()}",
        f"data.dataset.train_subset={args.train_subset}",
        f"model={args.model}",
        f"loss={args.losses}",
        f"seed={args.seeds}",
        f"trainer.max_epochs={args.epochs}",
        f"paths.data_dir={args.data_dir.resolve()}",
        "logger=none",
        "plots=false",
        "~callbacks.progress_bar",
        f"hydra.sweep.dir={out}",
        *args.extra,
    ]


def report(sweep_dir: Path) -> str:
    from oodlab.report.collect import load_sweep
    from oodlab.report.tables import summary_table, to_markdown

    sweep = load_sweep(sweep_dir)
    parts = []
    for score in SCORES:
        table = summary_table(sweep, score=score, metrics=METRICS)
        parts.append(f"### Score: {score}\n\n{to_markdown(table)}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only is not None:
        print(report(args.report_only))
        return 0
    if not args.archive.exists():
        print(
            f"error: CIFAR-10 JPEG copy not found at {args.archive}; pass --archive PATH "
            "(a .tar.gz or a folder with train/<class>/ and test/<class>/).",
            file=sys.stderr,
        )
        return 2
    out = (
        args.out
        or REPO
        / "logs"
        / "benchmarks"
        / "cifar10_jpeg_reduction"
        / time.strftime("%Y-%m-%d_%H-%M-%S")
    ).resolve()
    command = sweep_command(args, out)
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print("$", " ".join(command[1:]), flush=True)
    start = time.time()
    done = subprocess.run(command, cwd=REPO, env=env)
    minutes = (time.time() - start) / 60
    text = f"Sweep: {out} ({minutes:.1f} min wall, exit code {done.returncode})\n\n{report(out)}"
    (out / "summary.md").write_text(text)
    print(text)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
