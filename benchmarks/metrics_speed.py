"""Speed of ``oodlab.metrics.ood_metrics`` against separate torchmetrics calls.

On 10**6 ID and 10**6 OOD random float32 scores, times (best of 3, same run):

(a) four torchmetrics functional calls with ``thresholds=None``: ``binary_auroc``,
    ``binary_average_precision`` with ID positive and again with OOD positive, and
    ``binary_specificity_at_sensitivity`` at sensitivity 0.95 (FPR95 = 1 - specificity);
(b) one ``ood_metrics`` call, which sorts once and derives every metric from that curve.

It checks that the values agree and prints both times and their ratio (target <= 1/3).

The scores are uniform in [0, 1) (``torch.rand``) because torchmetrics' binary functions
apply a sigmoid to inputs outside [0, 1]. For the OOD-positive AP we pass ``1 - score``
rather than ``-score`` for the same reason; ``torch.rand`` float32 values are multiples
of 2**-24, so ``1 - score`` is exact and reverses the order without new ties.

Run: ``python benchmarks/metrics_speed.py [--n 1000000] [--repeats 3] [--seed 0]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_specificity_at_sensitivity,
)

from oodlab.metrics import ood_metrics


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def torchmetrics_separately(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> dict:
    scores = torch.cat([id_scores, ood_scores])
    is_id = torch.cat(
        [
            torch.ones_like(id_scores, dtype=torch.long),
            torch.zeros_like(ood_scores, dtype=torch.long),
        ]
    )
    spec, _ = binary_specificity_at_sensitivity(
        scores, is_id, min_sensitivity=0.95, thresholds=None
    )
    return {
        "auroc": float(binary_auroc(scores, is_id, thresholds=None)),
        "aupr_in": float(binary_average_precision(scores, is_id, thresholds=None)),
        "aupr_out": float(binary_average_precision(1 - scores, 1 - is_id, thresholds=None)),
        "fpr95": 1.0 - float(spec),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10**6, help="scores per set (ID and OOD)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(args.seed)
    id_scores = torch.rand(args.n, generator=gen)  # ID somewhat higher than OOD
    ood_scores = torch.rand(args.n, generator=gen) * 0.8

    t_sep, ref = best_of(lambda: torchmetrics_separately(id_scores, ood_scores), args.repeats)
    t_one, ours = best_of(lambda: ood_metrics(id_scores, ood_scores), args.repeats)
    ratio = t_one / t_sep

    # torchmetrics computes rates and areas in float32, ood_metrics in int64/float64.
    tol = {"auroc": 1e-5, "aupr_in": 1e-5, "aupr_out": 1e-5, "fpr95": 1e-5}
    rows = [(k, ref[k], ours[k], abs(ref[k] - ours[k]) <= tol[k]) for k in tol]
    agree = all(ok for *_, ok in rows)

    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"OOD metrics on {args.n:,} ID + {args.n:,} OOD scores "
            f"(best of {args.repeats}, {torch.get_num_threads()} threads)"
        )
        for col in ("metric", "torchmetrics x4", "ood_metrics", "agree"):
            table.add_column(col, justify="right")
        for k, a, b, ok in rows:
            table.add_row(k, f"{a:.8f}", f"{b:.8f}", "yes" if ok else "NO")
        table.add_row("fpr95_openood", "-", f"{ours['fpr95_openood']:.8f}", "-")
        table.add_section()
        table.add_row("time (s)", f"{t_sep:.3f}", f"{t_one:.3f}", "")
        table.add_row("ratio", "", f"{ratio:.3f}", "")
        Console().print(table)
    except ImportError:
        print(f"{'metric':>14} {'torchmetrics x4':>16} {'ood_metrics':>12} agree")
        for k, a, b, ok in rows:
            print(f"{k:>14} {a:16.8f} {b:12.8f} {'yes' if ok else 'NO'}")
        print(f"{'time (s)':>14} {t_sep:16.3f} {t_one:12.3f}")
        print(f"{'ratio':>14} {'':16} {ratio:12.3f}")

    print(
        f"torchmetrics x4: {t_sep:.3f} s  ood_metrics: {t_one:.3f} s  ratio: {ratio:.3f} "
        f"(target <= 0.333: {'met' if ratio <= 1 / 3 else 'MISSED'}); "
        f"values {'agree' if agree else 'DISAGREE'}"
    )
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
