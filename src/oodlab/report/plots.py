"""PNG plots of one run: the logit-norm curve and ID vs OOD score histograms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_logit_norm_curve(
    history: Mapping[str, Sequence[float]], path: str | Path, title: str = "", ood_name: str = "OOD"
) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_score_histograms(
    id_scores: Mapping[str, np.ndarray],
    ood_scores: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    title: str = "",
    bins: int = 60,
) -> Path:
    """One panel per score: the ID test distribution against every OOD set."""
    names = list(id_scores)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), dpi=110, squeeze=False)
    for ax, name in zip(axes[0], names):
        ids = np.asarray(id_scores[name], dtype=np.float64)
        everything = np.concatenate(
            [ids, *[np.asarray(v, dtype=np.float64) for v in ood_scores[name].values()]]
        )
        finite = everything[np.isfinite(everything)]
        edges = np.histogram_bin_edges(finite, bins=bins) if finite.size else bins
        ax.hist(ids, bins=edges, density=True, alpha=0.55, label="ID test", color="tab:blue")
        for set_name, values in ood_scores[name].items():
            ax.hist(
                np.asarray(values, dtype=np.float64),
                bins=edges,
                density=True,
                histtype="step",
                lw=1.3,
                label=set_name,
            )
        ax.set_title(name)
        ax.set_xlabel("score (higher = more ID)")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("density (log)")
    axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
