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

from oodlab.errors import NothingToPlotError, OodlabError, UnknownNameError
from oodlab.outputs.scores_file import SCORES_FILE, load_scores
from oodlab.report.collect import Sweep
from oodlab.report.tables import ID_COLUMN, METRIC_LABELS, SweepTable, key_label, value_label

TAU_KEY = "loss.tau"
PLAIN_NUMBER = FuncFormatter(lambda value, _: f"{value:g}")


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
            f"{key_label(param)} was not swept in these runs "
            f"(swept: {', '.join(map(key_label, table.keys))}); "
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
    """For each loss, a run of its setting chosen on the validation pair (lowest mean
    validation objective; oodlab.report.selection), lowest seed first, among runs that saved
    scores.npz. Test metrics never pick the run shown."""
    from oodlab.report.selection import chosen_settings

    ok = sweep.ok
    ok = ok[ok["run_dir"].map(lambda d: (Path(d) / SCORES_FILE).exists()).astype(bool)]
    available = list(dict.fromkeys(ok["loss"]))
    if losses is None:
        losses = [name for name in ("ce", "logitnorm") if name in available] or available
    chosen: dict[str, str] = {}
    if not losses:
        return chosen
    best_of = chosen_settings(sweep)
    for loss in losses:
        if loss not in available:
            raise UnknownNameError("loss with saved scores in this sweep", loss, available)
        runs = ok[ok["setting"] == best_of[loss]].sort_values("seed")
        if runs.empty:  # the chosen setting saved no scores: the loss's first one that did
            runs = ok[ok["loss"] == loss].sort_values("seed")
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


def logitnorm_bound(tau: float, num_classes: int) -> float:
    """The LogitNorm paper's lower bound of its loss: log(1 + (K - 1) exp(-2 / tau))."""
    return math.log1p((num_classes - 1) * math.exp(-2.0 / tau))


def _tau_runs(sweep: Sweep) -> dict[str, list[str]]:
    ok = sweep.ok
    if TAU_KEY not in ok.columns:
        raise NothingToPlotError("no run in this sweep has a tau (loss.tau).")
    runs = ok[ok[TAU_KEY].notna()]
    if runs.empty:
        raise NothingToPlotError("no run in this sweep has a tau (loss.tau).")
    return {
        setting: list(group["run_dir"]) for setting, group in runs.groupby("setting", sort=False)
    }


def _curve(sweep: Sweep, run_dirs: Sequence[str], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    curves = [(sweep.results[d].get("logit_norm") or {}) for d in run_dirs]
    curves = [c for c in curves if c.get(key)]
    if not curves:
        return None
    length = min(len(c[key]) for c in curves)
    values = np.array(
        [[np.nan if v is None else v for v in c[key][:length]] for c in curves], dtype=float
    )
    return np.asarray(curves[0]["epoch"][:length]), values


def plot_loss_bound(sweep: Sweep, path: str | Path | None = None) -> Figure:
    """LogitNorm's training loss against the paper's lower bound log(1 + (K - 1) exp(-2 / tau)):
    (a) the loss per epoch for each tau (mean over seeds); (b) the last epoch's loss against
    tau, with the bound as a curve. A small tau leaves the loss free to go to zero; from
    tau ~ 0.1 the bound holds the loss up, whatever the network does."""
    fig = Figure(figsize=(10, 3.8), dpi=120, layout="constrained")
    axes = fig.subplots(1, 2)
    taus = sorted(
        _tau_runs(sweep).items(),
        key=lambda item: float(sweep.runs.loc[sweep.runs["setting"] == item[0], TAU_KEY].iloc[0]),
    )
    points, classes = [], None
    for index, (setting, run_dirs) in enumerate(taus):
        curve = _curve(sweep, run_dirs, "train_loss")
        classes = classes or (sweep.results[run_dirs[0]].get("run") or {}).get("num_classes")
        if curve is None:
            continue
        tau = float(sweep.runs.loc[sweep.runs["setting"] == setting, TAU_KEY].iloc[0])
        epochs, values = curve
        axes[0].plot(
            epochs,
            np.nanmean(values, axis=0),
            marker="o",
            ms=3,
            color=f"C{index % 10}",
            label=f"tau={tau:g}",
        )
        points.append((tau, float(np.nanmean(values[:, -1])), float(np.nanstd(values[:, -1]))))
    if not points or not classes:
        raise NothingToPlotError(
            "no tau run recorded its training loss (logit_norm.train_loss) and class count."
        )
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("LogitNorm training loss")
    axes[0].set_title("(a) training loss per epoch")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    tau_values, last_loss, loss_std = (np.array(v) for v in zip(*points))
    grid = np.geomspace(min(tau_values.min(), 0.005) / 1.5, max(tau_values.max(), 1.0), 200)
    axes[1].plot(
        grid,
        [logitnorm_bound(t, int(classes)) for t in grid],
        "k--",
        lw=1,
        label=f"bound log(1+(K-1)e^(-2/tau)), K={classes}",
    )
    axes[1].errorbar(
        tau_values,
        last_loss,
        yerr=loss_std,
        marker="o",
        ms=4,
        capsize=3,
        color="C1",
        label="last-epoch training loss",
    )
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_formatter(PLAIN_NUMBER)
    axes[1].set_xlabel("tau")
    axes[1].set_title("(b) the loss and its lower bound")
    axes[1].grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def plot_tau_selection(sweep: Sweep, table: SweepTable, path: str | Path | None = None) -> Figure:
    """The tau search and what it chose: tau against the validation objective (the only thing
    the choice reads), and, for information, against the test FPR95 of the real-image sets
    (``mean``) and of the noise sets (``mean_noise``); CE as dashed reference lines."""
    from oodlab.report.selection import chosen_settings, validation_means

    if TAU_KEY not in table.keys:
        raise NothingToPlotError("tau was not swept in these runs: no tau search to show.")
    means = validation_means(sweep)
    chosen = chosen_settings(sweep)
    panels = [
        ("validation FPR95 (the objective)", None),
        ("test mean FPR95, real-image sets", ("mean", "fpr95")),
    ]
    if ("mean_noise", "fpr95") in table.columns:
        panels.append(("test mean FPR95, noise sets", ("mean_noise", "fpr95")))
    fig = Figure(figsize=(4.2 * len(panels), 3.6), dpi=120, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    tau = table.settings[TAU_KEY]
    for ax, (title, column) in zip(axes, panels):
        for index, loss in enumerate(dict.fromkeys(table.settings["loss"])):
            rows = table.settings.index[table.settings["loss"] == loss]
            if column is None:
                y = 100 * means.reindex(rows)["mean"].to_numpy(dtype=float)
                err = 100 * np.nan_to_num(means.reindex(rows)["std"].to_numpy(dtype=float))
            else:
                y = 100 * table.mean[column].loc[rows].to_numpy(dtype=float)
                err = 100 * np.nan_to_num(table.std[column].loc[rows].to_numpy(dtype=float))
            x = tau.loc[rows].astype(float).to_numpy()
            color = f"C{index % 10}"
            if np.isnan(x).all():
                for level in y:
                    ax.axhline(level, color=color, ls="--", label=f"{loss} (no tau)")
                continue
            order = np.argsort(x)
            ax.errorbar(
                x[order],
                y[order],
                yerr=err[order],
                marker="o",
                ms=4,
                capsize=3,
                color=color,
                label=loss,
            )
            if loss in chosen and chosen[loss] in rows:
                ax.axvline(
                    float(tau.loc[chosen[loss]]),
                    color=color,
                    ls=":",
                    lw=1.2,
                    label=f"chosen tau={float(tau.loc[chosen[loss]]):g}",
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PLAIN_NUMBER)
        ax.set_xlabel("tau")
        ax.set_ylabel("%")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def sweep_figures(sweep: Sweep, table: SweepTable) -> dict[str, Figure | str]:
    """Every sweep plot by name: the Figure, or the reason it does not apply to this sweep.
    With tau swept, the logit-norm curves show each loss at its validation-chosen setting."""
    from oodlab.report.selection import chosen_settings

    curve_settings = list(chosen_settings(sweep).values()) if TAU_KEY in table.keys else None
    drawers = {
        "tau_sweep": lambda: plot_param_sweep(table),
        "tau_selection": lambda: plot_tau_selection(sweep, table),
        "logitnorm_loss_bound": lambda: plot_loss_bound(sweep),
        "logit_norm_curves": lambda: plot_logit_norm_curves(sweep, settings=curve_settings),
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
