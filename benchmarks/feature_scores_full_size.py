"""Resident memory of the chunked feature scores at ImageNet-1k's full training-bank size.

A synthetic bank of 1,281,167 x 2,048 features (ImageNet-1k's training set through a ResNet-50),
written block by block into a memory-mapped ``.npy`` file as the evaluation cache holds it
(10.5 GB in float32: larger than this benchmark lets any step hold), is fitted and scored by
oodlab's KNN and Mahalanobis with 1,000 queries. Peak resident memory (VmRSS, sampled every
5 ms) and wall time are measured per score. KNN and Mahalanobis need no training logits, so
none are made. pytorch-ood holds the bank in memory and is not run at this size (see
benchmarks/feature_scores.py for the same-size comparison).

    python benchmarks/feature_scores_full_size.py [--bank 1281167] [--scores knn,mahalanobis]
        [--precision float32|float64] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from feature_scores import PeakRss, rss_mb

from oodlab.scores import Outputs, _posthoc, create_score

IMAGENET_TRAIN = 1_281_167


def write_bank(path: Path, n: int, k: int, d: int, seed: int = 0) -> np.ndarray:
    """Non-negative class-clustered features, generated and written 8,192 rows at a time."""
    g = np.random.default_rng(seed)
    means = np.abs(g.standard_normal((k, d), dtype=np.float32)) * 0.5
    bank = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, 8192):
        rows = np.arange(start, min(n, start + 8192)) % k
        noise = g.standard_normal((len(rows), d), dtype=np.float32)
        bank[start : start + len(rows)] = np.maximum(means[rows] + noise * 0.4, 0)
    bank.flush()
    del bank
    return np.arange(n) % k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bank", type=int, default=IMAGENET_TRAIN)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--scores", default="knn,mahalanobis")
    parser.add_argument("--precision", choices=("float32", "float64"), default="float64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="where the bank file goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _posthoc.PRECISION["cpu"] = getattr(torch, args.precision)
    tmp = Path(tempfile.mkdtemp(prefix="oodlab-full-", dir=args.dir))
    path = tmp / "features.npy"
    start = time.perf_counter()
    labels = write_bank(path, args.bank, args.classes, args.dim)
    print(
        f"bank {args.bank} x {args.dim} float32 memory-mapped ({path.stat().st_size / 1e9:.1f} "
        f"GB), written in {time.perf_counter() - start:.0f} s; {args.queries} queries; "
        f"{args.precision} chunks, {args.threads} threads; process RSS at start {rss_mb():.0f} MB",
        flush=True,
    )
    feats = _posthoc.map_rows(path)
    # no training logits: neither score reads them (a zero-stride view costs no memory)
    logits = torch.zeros(1, dtype=torch.float32).expand(args.bank, args.classes)
    train = Outputs(logits, feats, torch.from_numpy(labels).long())
    g = np.random.default_rng(1)
    q = np.abs(g.standard_normal((args.queries, args.dim), dtype=np.float32))
    query = Outputs(
        torch.zeros(args.queries, args.classes), torch.from_numpy(q), torch.full((len(q),), -1)
    )
    print(f"{'score':<12} {'fit + score s':>13} {'peak RSS MB':>12} {'process peak MB':>16}")
    for name in args.scores.split(","):
        score = create_score(name)
        with PeakRss() as mem:
            start = time.perf_counter()
            score.fit(train, torch.nn.Module())
            values = score.score(query)
            took = time.perf_counter() - start
        assert torch.isfinite(values).all()
        print(f"{name:<12} {took:>13.1f} {mem.mb:>12.0f} {mem.peak:>16.0f}", flush=True)
        del score
    path.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
