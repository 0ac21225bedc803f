"""Plots of a whole sweep: a parameter (tau) against OOD and ID metrics, the logit-norm curves
of every setting, and ID-vs-OOD score histograms of each loss side by side.

Each function returns a matplotlib Figure (built without pyplot, so it neither depends on
nor changes the global backend) and writes a PNG when given a path. Notebooks display the
returned figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from oodlab._infra.errors import OodlabError, UnknownNameError
from oodlab.outputs.scores_file import SCORES_FILE, load_scores
from oodlab.report.collect import Sweep
from oodlab.report.tables import ID_COLUMN, METRIC_LABELS, SweepTable, key_label, value_label

TAU_KEY = "loss.tau"
PLAIN_NUMBER = FuncFormatter(lambda value, _: f"{value:g}")


class NothingToPlotError(OodlabError):
    """A sweep that lacks what a plot needs (no swept tau, no saved scores)."""


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        fig.savefig(path)
    return fig


def _is_absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _family(table: SweepTable, setting: str, param: str) -> str:
    """The setting with ``param`` left out: one line of the plot."""
    parts = [
        value_label(table.settings.at[setting, k])
        if k == "loss"
        else f"{key_label(k)}={value_label(table.settings.at[setting, k])}"
        for k in table.keys
        if k != param and not _is_absent(table.settings.at[setting, k])
    ]
    return " ".join(parts) or "runs"


def plot_param_sweep(
    table: SweepTable,
    path: str | Path | None = None,
    param: str = TAU_KEY,
    ood_column: tuple[str, str] = ("mean", "fpr95"),
    id_column: tuple[str, str] = (ID_COLUMN, "acc"),
) -> Figure:
    """``param`` (log axis) against the mean-over-OOD-sets metric and the ID metric.

    One line per setting family (the other swept keys), error bars are the std over seeds.
    Settings without ``param`` (CE has no tau) are drawn as horizontal reference lines.
    """
    if param not in table.keys:
        raise NothingToPlotError(
            f"{key_label(param)} was not swept in these runs (swept: {', '.join(map(key_label, table.keys))}); "
            f"a {key_label(param)} plot needs runs at two or more values of {param}."
        )
    for col in (ood_column, id_column):
        if col not in table.columns:
            raise UnknownNameError(
                "table column", f"{col[0]}/{col[1]}", [f"{s}/{m}" for s, m in table.columns]
            )
    fig = Figure(figsize=(10, 3.8), dpi=120, layout="constrained")
    axes = fig.subplots(1, 2)
    families: dict[str, list[str]] = {}
    for setting in table.settings.index:
        families.setdefault(_family(table, setting, param), []).append(setting)
    swept = table.settings[param].dropna()
    x_range = (float(swept.min()), float(swept.max())) if len(swept) else (1e-3, 1.0)
    for ax, col in zip(axes, (ood_column, id_column)):
        for index, (family, settings) in enumerate(families.items()):
            color = f"C{index % 10}"
            x = table.settings.loc[settings, param].astype(float).to_numpy()
            y = 100 * table.mean[col].loc[settings].to_numpy(dtype=float)
            err = 100 * np.nan_to_num(table.std[col].loc[settings].to_numpy(dtype=float))
            with_param = ~np.isnan(x)
            if with_param.any():
                order = np.argsort(x[with_param])
                ax.errorbar(
                    x[with_param][order],
                    y[with_param][order],
                    yerr=err[with_param][order],
                    marker="o",
                    ms=4,
                    capsize=3,
                    color=color,
                    label=family,
                )
            for level, spread in zip(y[~with_param], err[~with_param]):
                ax.axhline(level, color=color, ls="--", label=f"{family} (no {key_label(param)})")
                ax.axhspan(level - spread, level + spread, color=color, alpha=0.12)
        ax.set_xscale("log")
        ax.set_xlim(x_range[0] / 1.5, x_range[1] * 1.5)
        ax.xaxis.set_major_formatter(PLAIN_NUMBER)
        # within one decade the only ticks are minor ones, and they need the labels
        ax.xaxis.set_minor_formatter(
            PLAIN_NUMBER if x_range[1] < 10 * x_range[0] else NullFormatter()
        )
        ax.set_xlabel(key_label(param))
        label = (
            f"{col[0]} {METRIC_LABELS[col[1]]} (%)"
            if col[0] != "mean"
            else f"mean {METRIC_LABELS[col[1]]} over OOD sets (%)"
        )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(f"OOD ({table.score})")
    axes[1].set_title("in-distribution")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_logit_norm_curves(
    sweep: Sweep, path: str | Path | None = None, settings: Sequence[str] | None = None
) -> Figure:
    """Mean ‖logits‖ per epoch on train, ID val and the tracked OOD set: one line per setting
    (mean over its runs, band = min..max over seeds), overlaid."""
    ok = sweep.ok
    chosen = list(settings) if settings is not None else list(dict.fromkeys(ok["setting"]))
    fig = Figure(figsize=(12, 3.6), dpi=120, layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    panels = (("train", "train"), ("val_id", "ID val"), ("ood", "OOD (tracked set)"))
    drawn = False
    for index, setting in enumerate(chosen):
        curves = [
            sweep.results[d].get("logit_norm") or {}
            for d in ok.loc[ok["setting"] == setting, "run_dir"]
        ]
        curves = [c for c in curves if c.get("epoch")]
        if not curves:
            continue
        length = min(len(c["epoch"]) for c in curves)
        epochs = np.asarray(curves[0]["epoch"][:length])
        for ax, (key, _) in zip(axes, panels):
            stack = np.array(
                [
                    [np.nan if v is None else v for v in c.get(key, [])[:length]]
                    for c in curves
                    if len(c.get(key, [])) >= length
                ],
                dtype=float,
            )
            if stack.size == 0:
                continue
            color = f"C{index % 10}"
            ax.plot(
                epochs,
                np.nanmean(stack, axis=0),
                marker="o",
                ms=3,
                color=color,
                label=sweep.setting_label(setting),
            )
            if len(stack) > 1:
                ax.fill_between(
                    epochs,
                    np.nanmin(stack, axis=0),
                    np.nanmax(stack, axis=0),
                    color=color,
                    alpha=0.15,
                )
            drawn = True
    if not drawn:
        raise NothingToPlotError(
            "no run in this sweep recorded a logit_norm curve (callbacks.ood_monitor was off)."
        )
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ‖f‖₂ of logits")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def representative_runs(
    sweep: Sweep, table: SweepTable, losses: Sequence[str] | None = None
) -> dict[str, str]:
    """For each loss, the run dir of its best setting (lowest mean FPR95 of ``table.score``),
    lowest seed first, among runs that saved scores.npz."""
    ok = sweep.ok
    ok = ok[ok["run_dir"].map(lambda d: (Path(d) / SCORES_FILE).exists()).astype(bool)]
    available = list(dict.fromkeys(ok["loss"]))
    if losses is None:
        losses = [name for name in ("ce", "logitnorm") if name in available] or available
    chosen: dict[str, str] = {}
    if not losses:
        return chosen
    ranking = ("mean", "fpr95") if ("mean", "fpr95") in table.columns else table.columns[0]
    for loss in losses:
        if loss not in available:
            raise UnknownNameError("loss with saved scores in this sweep", loss, available)
        settings = table.settings.index[
            (table.settings["loss"] == loss) & table.settings.index.isin(ok["setting"])
        ]
        best = table.mean[ranking].loc[settings].astype(float).idxmin()
        runs = ok[ok["setting"] == best].sort_values("seed")
        chosen[loss] = runs["run_dir"].iloc[0]
    return chosen


def plot_score_histograms_by_loss(
    sweep: Sweep,
    table: SweepTable,
    path: str | Path | None = None,
    losses: Sequence[str] | None = None,
    ood_sets: Sequence[str] | None = None,
    bins: int = 50,
) -> Figure:
    """ID test scores against OOD test scores (``table.score``), one panel per loss, side by
    side (the LogitNorm paper's figure): CE and LogitNorm by default."""
    chosen = representative_runs(sweep, table, losses)
    if not chosen:
        raise NothingToPlotError(f"no successful run in this sweep saved {SCORES_FILE}.")
    fig = Figure(figsize=(4.4 * len(chosen), 3.4), dpi=120, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(chosen)))
    score = table.score
    for ax, run_dir in zip(axes, chosen.values()):
        id_scores, ood_scores = load_scores(run_dir)
        if score not in id_scores:
            raise UnknownNameError("score in scores.npz", score, id_scores)
        names = list(ood_sets) if ood_sets is not None else list(ood_scores[score])
        id_values = id_scores[score].astype(np.float64)
        ood_values = np.concatenate([ood_scores[score][n] for n in names]).astype(np.float64)
        finite = np.concatenate([id_values, ood_values])
        finite = finite[np.isfinite(finite)]
        edges = np.histogram_bin_edges(finite, bins=bins) if finite.size else bins
        ax.hist(id_values, bins=edges, density=True, alpha=0.6, color="tab:blue", label="ID test")
        ax.hist(
            ood_values,
            bins=edges,
            density=True,
            alpha=0.6,
            color="tab:orange",
            label="OOD: " + ", ".join(names),
        )
        row = sweep.runs[sweep.runs["run_dir"] == run_dir].iloc[0]
        ax.set_title(
            f"{sweep.setting_label(row['setting'])} (seed {value_label(row['seed'])})", fontsize=9
        )
        ax.set_xlabel(f"{score} (higher = more ID)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("density")
    return _save(fig, path)


def sweep_figures(sweep: Sweep, table: SweepTable) -> dict[str, Figure | str]:
    """Every sweep plot by name: the Figure, or the reason it does not apply to this sweep."""
    drawers = {
        "tau_sweep": lambda: plot_param_sweep(table),
        "logit_norm_curves": lambda: plot_logit_norm_curves(sweep),
        "score_histograms": lambda: plot_score_histograms_by_loss(sweep, table),
    }
    figures: dict[str, Figure | str] = {}
    for name, draw in drawers.items():
        try:
            figures[name] = draw()
        except OodlabError as err:
            figures[name] = f"{name}: {err}"
    return figures


def write_sweep_plots(
    sweep: Sweep, table: SweepTable, out_dir: str | Path
) -> tuple[list[Path], list[str]]:
    """The plots of :func:`sweep_figures` as ``<name>.png`` in ``out_dir``; returns the files
    and one line per plot skipped, with its reason."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for name, figure in sweep_figures(sweep, table).items():
        if isinstance(figure, str):
            skipped.append(figure)
            continue
        figure.savefig(out_dir / f"{name}.png")
        written.append(out_dir / f"{name}.png")
    return written, skipped
