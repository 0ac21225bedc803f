"""PNG plots of one run: the logit-norm curve, ID vs OOD score histograms and the reliability
diagram of the ID test set.

Figures are built as ``matplotlib.figure.Figure`` objects and saved through the Agg canvas,
without pyplot: drawing a run's plots never changes matplotlib's global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from oodlab.metrics.calibration import N_BINS, expected_calibration_error, reliability_bins


def save(fig: Figure, path: str | Path, dpi: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    options: dict[str, Any] = {"dpi": dpi} if dpi else {}
    fig.savefig(path, format="png", **options)
    return path


def plot_logit_norm_curve(
    history: Mapping[str, Sequence[float]], path: str | Path, title: str = "", ood_name: str = "OOD"
) -> Path:
    fig = Figure(figsize=(5, 3.5), dpi=120, layout="tight")
    ax = fig.subplots()
    epochs = list(history.get("epoch", []))
    for key, label in (("train", "train"), ("val_id", "ID val"), ("ood", f"OOD ({ood_name})")):
        values = history.get(key) or []
        if values:
            ax.plot(epochs[: len(values)], values, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean ‖f‖₂ of logits")
    ax.set_title(title or "Logit norm during training")
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def plot_score_histograms(
    id_scores: Mapping[str, np.ndarray],
    ood_scores: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    title: str = "",
    bins: int = 60,
) -> Path:
    """One panel per score: the ID test distribution against every OOD set."""
    names = list(id_scores)
    fig = Figure(figsize=(4.2 * len(names), 3.4), dpi=110, layout="tight")
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        ids = np.asarray(id_scores[name], dtype=np.float64)
        everything = np.concatenate(
            [ids, *[np.asarray(v, dtype=np.float64) for v in ood_scores[name].values()]]
        )
        finite = everything[np.isfinite(everything)]
        edges = (
            np.histogram_bin_edges(finite, bins=bins)
            if finite.size
            else np.linspace(0, 1, bins + 1)
        )
        # precomputed histograms drawn as steps: one artist per set instead of one patch per bin
        ax.stairs(
            np.histogram(ids, edges, density=True)[0],
            edges,
            fill=True,
            alpha=0.55,
            label="ID test",
            color="tab:blue",
        )
        for set_name, values in ood_scores[name].items():
            density = np.histogram(np.asarray(values, dtype=np.float64), edges, density=True)[0]
            ax.stairs(density, edges, lw=1.3, label=set_name)
        ax.set_title(name)
        ax.set_xlabel("score (higher = more ID)")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("density (log)")
    axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def reliability_diagram(
    logits,
    targets,
    path: str | Path,
    n_bins: int = N_BINS,
    title: str = "Reliability diagram",
) -> Path:
    """Save a reliability diagram (accuracy per confidence bin vs the diagonal) as PNG.

    The top panel shows per-bin accuracy bars, the gap to the bin's mean confidence and
    the diagonal; the bottom panel shows the sample count per bin. The ECE is in the
    title. Returns the path written.
    """
    bins = reliability_bins(logits, targets, n_bins)
    ece = expected_calibration_error(logits, targets, n_bins)
    edges, acc, conf, count = bins["edges"], bins["accuracy"], bins["confidence"], bins["count"]
    left, width = edges[:-1], np.diff(edges)
    filled = count > 0

    fig = Figure(figsize=(5, 6), layout="constrained")
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.bar(
        left[filled],
        acc[filled],
        width=width[filled],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="Accuracy",
    )
    gap_lo = np.minimum(acc, conf)[filled]
    ax.bar(
        left[filled],
        np.abs(conf - acc)[filled],
        bottom=gap_lo,
        width=width[filled],
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        hatch="//",
        linewidth=0.5,
        label="Gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="Perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(f"{title}\nECE = {ece:.4f} ({n_bins} bins, n = {int(count.sum())})")

    ax_n.bar(left, count, width=width, align="edge", color="gray", edgecolor="black", linewidth=0.5)
    for lo, w, c in zip(left[filled], width[filled], count[filled]):
        ax_n.annotate(str(int(c)), (lo + w / 2, c), ha="center", va="bottom", fontsize=6)
    ax_n.set_xlabel("Confidence (max softmax)")
    ax_n.set_ylabel("Count")
    ax_n.set_ylim(0, max(1, int(count.max())) * 1.25)

    return save(fig, path, dpi=120)
