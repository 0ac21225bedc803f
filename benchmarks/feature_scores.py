"""Feature scores at ImageNet shape: oodlab's chunked fits against pytorch-ood's, same process.

Synthetic features shaped like a ResNet-50's on ImageNet-1k (1,000 classes, D = 2,048,
non-negative, class-dependent means), a training bank of ``--bank`` rows memory-mapped from a
``.npy`` file (as the evaluation cache holds it) and ``--queries`` query rows. For KNN,
Mahalanobis, ViM and RMDS it times oodlab's fit + score and pytorch-ood 0.4's
``fit_features`` + ``predict_features`` on the same data, measures each one's peak resident
memory above the starting point (VmRSS sampled every 5 ms), and checks that the scores agree
(Spearman rank correlation; pytorch-ood's are outlier scores, so they are negated). It also
runs oodlab's scores at half the bank to show that memory does not grow with the bank, and
measures float32 chunks against the float64 reference (the GPU path's precision).

pytorch-ood is installed for this benchmark only (not a dependency of oodlab):

    .venv/bin/pip install --no-deps pytorch-ood==0.4.0

Run: ``python benchmarks/feature_scores.py [--bank 20000] [--queries 1000] [--classes 1000]
[--dim 2048] [--threads 2]``; numbers on docs/performance.md ("Feature scores at ImageNet
scale").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from oodlab.scores import Outputs, _posthoc, create_score


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRss:
    """The peak VmRSS above the level at entry, sampled every 5 ms."""

    def __enter__(self) -> PeakRss:
        self.base = rss_mb()
        self.peak = self.base
        self.stop = False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.005)

    def __exit__(self, *_: Any) -> None:
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def mb(self) -> float:
        return self.peak - self.base


def synthetic(n: int, k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features around per-class means (fp32), written block by block."""
    g = np.random.default_rng(seed)
    means = np.abs(g.standard_normal((k, d), dtype=np.float32)) * 0.5
    labels = np.arange(n) % k
    feats = np.empty((n, d), dtype=np.float32)
    for i in range(0, n, 8192):
        y = labels[i : i + 8192]
        noise = g.standard_normal((len(y), d), dtype=np.float32)
        feats[i : i + 8192] = np.maximum(means[y] + noise * 0.4, 0)
    return feats, labels


class Head(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)


def oodlab_run(name: str, train: Outputs, test: Outputs, model: nn.Module) -> torch.Tensor:
    score = create_score(name, **({"k": 50} if name == "knn" else {}))
    score.fit(train, model)
    return score.score(test)


def pytorch_ood_run(name: str, train: Outputs, test: Outputs, model: Head) -> torch.Tensor:
    from pytorch_ood.detector import KNN, RMD, Mahalanobis, ViM

    labels = train.labels
    if name == "knn":
        det = KNN(None, k=50)
    elif name == "mahalanobis":
        det = Mahalanobis(None)
    elif name == "rmds":
        det = RMD(None)
    else:
        w, b = model.head.weight.detach(), model.head.bias.detach()
        det = ViM(None, d=1000, w=w, b=b)
    det.fit_features(train.features, labels)
    return -det.predict_features(test.features).double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bank", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scores", default="knn,mahalanobis,vim,rmds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.scores.split(",")
    k, d = args.classes, args.dim

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(k, d, generator=g) / d**0.5
    bias = torch.randn(k, generator=g) * 0.1
    model = Head(weight, bias)
    tmp = Path(tempfile.mkdtemp(prefix="oodlab-bench-"))
    bank, labels = synthetic(args.bank, k, d, 0)
    np.save(tmp / "features.npy", bank)
    np.save(tmp / "half.npy", bank[: args.bank // 2])
    del bank
    q, _ = synthetic(args.queries, k, d, 1)
    q[args.queries // 2 :] = np.abs(
        np.random.default_rng(2).standard_normal(
            (args.queries - args.queries // 2, d), dtype=np.float32
        )
    )  # an OOD half
    qt = torch.from_numpy(q)
    with torch.no_grad():
        test = Outputs(model.head(qt), qt, torch.full((len(qt),), -1))

    def train_outputs(file: str, n: int) -> Outputs:
        feats = _posthoc.map_rows(tmp / file)  # memory-mapped, as the evaluation cache reads it
        logits = torch.cat([model.head(b.float()).detach() for b in _posthoc.chunks(feats)])
        return Outputs(logits, feats, torch.from_numpy(labels[:n]).long())

    full = train_outputs("features.npy", args.bank)
    half = train_outputs("half.npy", args.bank // 2)
    print(
        f"bank {args.bank} x {d} (memory-mapped fp32, {args.bank * d * 4 / 2**30:.2f} GiB), "
        f"{args.queries} queries, {k} classes, {args.threads} threads"
    )
    header = (
        f"{'score':<12} {'oodlab s':>9} {'RSS MB':>7} {'half-bank RSS':>13} "
        f"{'fp32 s':>7} {'fp32 err':>9} {'pytorch-ood s':>13} {'RSS MB':>7} {'speed-up':>8} "
        f"{'rank corr':>9}"
    )
    print(header)
    for name in names:
        with PeakRss() as m_half:
            oodlab_run(name, half, test, model)
        with PeakRss() as mem:
            start = time.perf_counter()
            ours = oodlab_run(name, full, test, model)
            ours_s = time.perf_counter() - start
        _posthoc.PRECISION["cpu"] = torch.float32
        start = time.perf_counter()
        ours32 = oodlab_run(name, full, test, model)
        fp32_s = time.perf_counter() - start
        _posthoc.PRECISION["cpu"] = torch.float64
        err = float((ours32.double() - ours.double()).abs().max() / ours.double().abs().max())
        dense = Outputs(full.logits, full.features.clone(), full.labels)  # pytorch-ood: in RAM
        with PeakRss() as theirs_mem:
            start = time.perf_counter()
            theirs = pytorch_ood_run(name, dense, test, model)
            theirs_s = time.perf_counter() - start
        del dense
        rho = spearmanr(ours.numpy(), theirs.numpy()).statistic
        print(
            f"{name:<12} {ours_s:>9.2f} {mem.mb:>7.0f} {m_half.mb:>13.0f} {fp32_s:>7.2f} "
            f"{err:>9.1e} {theirs_s:>13.2f} {theirs_mem.mb:>7.0f} {theirs_s / ours_s:>7.1f}x "
            f"{rho:>9.6f}",
            flush=True,
        )
    for f in tmp.iterdir():
        f.unlink()
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
