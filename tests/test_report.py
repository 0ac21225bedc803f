"""The sweep report: grouping, statistics and marking on hand-made results.json files with
known values, then the real command on the grid and Optuna sweeps of test_sweeps.py."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_sweeps import wandb_records

from oodlab.errors import MissingFileError, UnknownNameError
from oodlab.outputs.scores_file import save_scores
from oodlab.report import (
    load_sweep,
    plot_logit_norm_curves,
    plot_param_sweep,
    plot_score_histograms_by_loss,
    summary_table,
    tidy_frame,
    to_latex,
    to_markdown,
)
from oodlab.report.cli import main as report_main
from oodlab.report.sweep_plots import NothingToPlotError


def write_results(run_dir: Path, results: dict) -> None:
    """A results.json as earlier versions wrote it: the report must read it as it is."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(results))


REPO = Path(__file__).resolve().parents[1]
SETS = ("textures", "gaussian")


def fake_results(
    loss: str,
    tau: float | None,
    seed: int,
    fpr: float,
    acc: float,
    extra_overrides: tuple[str, ...] = (),
) -> dict:
    """A results.json as train.py writes it, with the metrics chosen by the test."""
    overrides = [
        f"loss={loss}",
        *([f"loss.tau={tau}"] if tau is not None else []),
        f"seed={seed}",
        "debug=fast",
        *extra_overrides,
    ]
    per_set = {
        s: {"n": 64, "fpr95": fpr + i * 0.1, "auroc": 1 - fpr, "aupr_in": 0.9, "aupr_out": 0.8}
        for i, s in enumerate(SETS)
    }
    per_set["mean"] = {
        k: float(np.mean([per_set[s][k] for s in SETS]))
        for k in ("fpr95", "auroc", "aupr_in", "aupr_out")
    }
    return {
        "schema": 1,
        "status": "ok",
        "run": {
            "loss": loss, "loss_params": {"tau": tau} if loss == "logitnorm" else {},
            "backbone": "small_cnn", "dataset": "mnist5k", "seed": seed, "epochs": 2, "wall_s": 1.0,
            "device": "cpu", "overrides": overrides,
        },
        "id": {"dataset": "mnist5k", "n": 100, "acc": acc, "ece": 0.05},
        "ood": {"msp": per_set},
        "logit_norm": {
            "epoch": [0, 1], "train": [1.0, 2.0 + seed], "val_id": [1.0, 1.5], "ood": [0.5, 0.7]
        },
        "val": {"objective": "val_ood/msp/fpr95", "objective_value": fpr},
    }  # fmt: skip


@pytest.fixture
def fake_sweep(tmp_path: Path) -> Path:
    """CE run at two taus it ignores (duplicates), LogitNorm at two taus, two seeds, one failure."""
    jobs = []
    for tau in (0.01, 0.04):
        for seed in (0, 1):
            jobs.append(fake_results("ce", tau, seed, fpr=0.6 + 0.02 * seed, acc=0.95))
    for tau, base in ((0.01, 0.3), (0.04, 0.2)):
        for seed in (0, 1):
            jobs.append(
                fake_results("logitnorm", tau, seed, fpr=base + 0.04 * seed, acc=0.9 + 0.01 * seed)
            )
    for index, results in enumerate(jobs):
        write_results(tmp_path / "sweep" / str(index), results)
        rng = np.random.default_rng(index)
        save_scores(
            tmp_path / "sweep" / str(index),
            {"msp": rng.random(100)},
            {"msp": {s: rng.random(64) * 0.5 for s in SETS}},
        )
    failed = {
        "schema": 1, "status": "failed",
        "error": "loss.tau=-1 is not allowed: loss.tau must be > 0.",
        "run": {"overrides": ["loss=logitnorm", "loss.tau=-1", "seed=0", "debug=fast"], "seed": 0},
    }  # fmt: skip
    write_results(tmp_path / "sweep" / str(len(jobs)), failed)
    return tmp_path / "sweep"


def test_rows_group_by_swept_keys_and_merge_ce_duplicates(fake_sweep: Path):
    sweep = load_sweep(fake_sweep)
    assert sweep.swept_keys == ["loss", "loss.tau"]
    assert sweep.fixed == {"dataset": "mnist5k", "backbone": "small_cnn", "debug": "fast"}
    table = summary_table(sweep)
    rows = table.settings.reset_index(drop=True)
    assert list(rows["loss"]) == ["ce", "logitnorm", "logitnorm"]
    assert rows["loss.tau"].iloc[1:].tolist() == [0.01, 0.04]
    # CE's four runs are two seeds run twice: one row, n = 2 seeds
    assert rows[["n_seeds", "n_runs"]].values.tolist() == [[2, 4], [2, 2], [2, 2]]

    mean_fpr = table.mean[("mean", "fpr95")].tolist()
    std_fpr = table.std[("mean", "fpr95")].tolist()
    assert mean_fpr == pytest.approx([0.66, 0.37, 0.27])
    assert std_fpr == pytest.approx(
        [
            statistics.stdev([0.65, 0.67]),
            statistics.stdev([0.35, 0.39]),
            statistics.stdev([0.25, 0.29]),
        ]
    )
    assert table.mean[("ID", "acc")].tolist() == pytest.approx([0.95, 0.905, 0.905])
    assert table.count[("textures", "fpr95")].tolist() == [2, 2, 2]


def test_best_value_marked_per_column(fake_sweep: Path):
    table = summary_table(load_sweep(fake_sweep))
    best_setting = table.settings.index[2]  # logitnorm tau=0.04: lowest FPR95
    ce_setting = table.settings.index[0]  # CE: highest accuracy
    assert table.best[("mean", "fpr95")] == {best_setting}
    assert table.best[("ID", "acc")] == {ce_setting}
    # a column where every setting ties marks nothing
    assert ("ID", "ece") not in table.best and ("textures", "aupr_in") not in table.best

    markdown = to_markdown(table)
    lines = markdown.splitlines()
    header = lines[0].split(" | ")
    logitnorm_04 = next(line for line in lines if line.startswith("| logitnorm | 0.04 "))
    cells = logitnorm_04.split(" | ")
    assert cells[header.index("mean FPR95↓")] == "**27.00 ± 2.83**"
    ce_row = next(line for line in lines if line.startswith("| ce | - "))
    assert " 2 (4 runs) " in ce_row and "**95.00 ± 0.00**" in ce_row

    latex = to_latex(table)
    assert (
        r"\toprule" in latex
        and r"\textbf{27.00 $\pm$ 2.83}" in latex
        and r"\multicolumn{3}{c}{textures}" in latex
    )
    assert "small\\_cnn" in latex


def test_failed_runs_are_listed_not_dropped(fake_sweep: Path):
    sweep = load_sweep(fake_sweep)
    assert len(sweep.failed) == 1
    table = summary_table(sweep)
    markdown = to_markdown(table)
    assert "**Failed runs (1)**" in markdown
    assert "`loss=logitnorm loss.tau=-1`" in markdown and "loss.tau must be > 0" in markdown
    frame = tidy_frame(table)
    assert frame["status"].tolist() == ["ok", "ok", "ok", "failed"]
    assert "loss.tau must be > 0" in frame["error"].iloc[-1]


def test_report_of_failed_runs_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    failed = {
        "schema": 1, "status": "failed", "error": "Invalid learning rate: -1",
        "run": {"overrides": ["optimizer.lr=-1", "seed=0"], "seed": 0},
    }  # fmt: skip
    write_results(tmp_path / "sweep" / "0", failed)
    assert report_main([str(tmp_path / "sweep")]) == 0
    captured = capsys.readouterr()
    assert "**Failed runs (1)**" in captured.out and "`optimizer.lr=-1`" in captured.out
    assert "0 ok, 1 failed" in captured.err
    assert (
        (tmp_path / "sweep" / "report" / "sweep_msp.tex")
        .read_text()
        .startswith("% no successful run")
    )


def test_other_swept_overrides_become_columns(tmp_path: Path):
    for index, (lr, seed) in enumerate([(0.1, 0), (0.1, 1), (0.01, 0)]):
        write_results(
            tmp_path / str(index),
            fake_results(
                "ce",
                None,
                seed,
                0.5,
                0.9,
                (
                    f"optimizer.lr={lr}",
                    f"paths.log_dir=/x{index}",
                    *(["resume=true"] if seed else []),
                ),
            ),
        )
    sweep = load_sweep(tmp_path)
    # paths only move files, resume=true only says how a job ran: never a setting; seed neither
    assert sweep.swept_keys == ["loss", "optimizer.lr"]
    table = summary_table(sweep)
    assert table.settings["optimizer.lr"].tolist() == [0.01, 0.1]
    assert table.settings["n_seeds"].tolist() == [1, 2]


def test_sweep_plots_from_fake_runs(fake_sweep: Path, tmp_path: Path):
    sweep = load_sweep(fake_sweep)
    table = summary_table(sweep)
    figure = plot_param_sweep(table, tmp_path / "tau.png")
    ood_axis = figure.axes[0]
    (line,) = ood_axis.containers  # one errorbar series: logitnorm; CE is a horizontal line
    assert np.allclose(line.lines[0].get_xdata(), [0.01, 0.04])
    assert np.allclose(line.lines[0].get_ydata(), [37.0, 27.0])
    assert any(np.allclose(drawn.get_ydata(), [66.0, 66.0]) for drawn in ood_axis.get_lines())
    plot_logit_norm_curves(sweep, tmp_path / "norms.png")
    histograms = plot_score_histograms_by_loss(sweep, table, tmp_path / "hist.png")
    assert [ax.get_title().split(" (")[0] for ax in histograms.axes] == ["ce", "logitnorm tau=0.04"]
    for name in ("tau.png", "norms.png", "hist.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_plot_needs_a_swept_tau(tmp_path: Path):
    for seed in (0, 1):
        write_results(tmp_path / str(seed), fake_results("ce", None, seed, 0.5, 0.9))
    with pytest.raises(NothingToPlotError, match="tau was not swept"):
        plot_param_sweep(summary_table(load_sweep(tmp_path)))


def test_bad_input_gives_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(MissingFileError, match=r"no results\.json below"):
        load_sweep(tmp_path)
    assert report_main([str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "missing" in err and "Traceback" not in err
    write_results(tmp_path / "0", fake_results("ce", None, 0, 0.5, 0.9))
    with pytest.raises(UnknownNameError, match="Choices: msp"):
        summary_table(load_sweep(tmp_path), score="energy")
    assert report_main([str(tmp_path), str(tmp_path)]) == 1
    assert "--out" in capsys.readouterr().err


# -- the real sweeps -----------------------------------------------------------------------------


def expected_cell(jobs: list[dict], key) -> tuple[float, float, int]:
    """Mean and sample std over seeds, each seed's duplicates averaged first."""
    by_seed: dict[int, list[float]] = {}
    for job in jobs:
        by_seed.setdefault(job["run"]["seed"], []).append(key(job))
    values = [float(np.mean(v)) for v in by_seed.values()]
    return (
        float(np.mean(values)),
        (statistics.stdev(values) if len(values) > 1 else float("nan")),
        len(values),
    )


@pytest.mark.slow
def test_report_command_on_grid_and_optuna_sweeps(
    grid_sweep: Path, optuna_study: Path, tmp_path: Path
):
    out = tmp_path / "report"
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, str(REPO / "src" / "report.py"), str(grid_sweep), str(optuna_study),
         "--out", str(out), "--wandb"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| loss | tau | n |")
    assert "**Failed runs (3)**" in proc.stdout
    assert "3 failed" in proc.stderr

    jobs = [
        json.loads(p.read_text())
        for d in (grid_sweep, optuna_study)
        for p in sorted(d.rglob("results.json"))
    ]
    ok = [j for j in jobs if j["status"] == "ok"]
    with (out / "sweep_msp.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows].count("failed") == 3
    settings = {(j["run"]["loss"], j["run"]["loss_params"].get("tau")) for j in ok}
    ok_rows = [r for r in rows if r["status"] == "ok"]
    assert len(ok_rows) == len(settings)
    for row in ok_rows:
        tau = float(row["tau"]) if row["tau"] else None
        same = [
            j
            for j in ok
            if j["run"]["loss"] == row["loss"]
            and j["run"]["loss_params"].get("tau") == (pytest.approx(tau) if tau else None)
        ]
        assert same, row
        for column, key in (
            ("mean/fpr95", lambda j: j["ood"]["msp"]["mean"]["fpr95"]),
            ("textures/auroc", lambda j: j["ood"]["msp"]["textures"]["auroc"]),
            ("ID/acc", lambda j: j["id"]["acc"]),
            ("ID/ece", lambda j: j["id"]["ece"]),
        ):
            mean, std, n = expected_cell(same, key)
            assert float(row[f"{column}/mean"]) == pytest.approx(mean)
            assert int(float(row[f"{column}/n"])) == n == int(row["n_seeds"])
            if n > 1:
                assert float(row[f"{column}/std"]) == pytest.approx(std)
    ce = next(r for r in ok_rows if r["loss"] == "ce")
    assert (ce["n_seeds"], ce["n_runs"]) == ("2", "4")

    latex = (out / "sweep_msp.tex").read_text()
    assert latex.count(r"\textbf{") >= 1 and r"\bottomrule" in latex
    for name in ("tau_sweep", "logit_norm_curves", "score_histograms"):
        assert (out / f"{name}.png").stat().st_size > 10_000

    # W&B: the report run joins the first sweep's group and holds the table
    (run_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.run_group == grid_sweep.name and run.job_type == "report"
    (table_file,) = out.glob("wandb/offline-run-*/files/media/table/**/*.table.json")
    logged = json.loads(table_file.read_text())
    assert len(logged["data"]) == len(rows)
    assert "mean/fpr95/mean" in logged["columns"]
