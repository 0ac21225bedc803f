"""Sweeps through the real command line: a loss x tau x seed grid with failing jobs (joblib
launcher), a three-trial Optuna tau search resumed from its SQLite study (second session on
submitit_local), W&B offline run files, and the sweep configs.

The two sweeps are built once per session (cached under pytest's basetemp) and shared with
test_report.py and test_notebook.py, whose fixtures call the builders here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra

from oodlab.cli import sweeper_value
from oodlab.report import SCORES_FILE, load_scores

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
#: the smoke study: debug=fast runs never join the real search (tau_default)
STUDY = "tau_debug"
GRID_TAUS = (0.05, -1.0)
GRID_SEEDS = (0, 1)
#: W&B's .wandb files: a 7-byte file header, then LevelDB-log records in 32 KiB blocks
WANDB_BLOCK = 32 * 1024
WANDB_HEADER = 7
WANDB_FULL, WANDB_LAST = 1, 4


def run_train(
    cwd: Path, data_dir: Path, *args: str, timeout: float = 400, failed_jobs: int = 0
) -> subprocess.CompletedProcess:
    """The real command line; a multirun in which jobs fail exits 1 after naming them."""
    env = dict(os.environ)
    env.update(
        OODLAB_DATA_DIR=str(data_dir),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        PYTHONWARNINGS="ignore",
        HYDRA_FULL_ERROR="1",
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "src" / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == (1 if failed_jobs else 0), (
        f"train.py {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    if failed_jobs:
        assert f"{failed_jobs} job(s) of the sweep did not finish" in proc.stderr, proc.stderr[
            -3000:
        ]
    return proc


def cached_build(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """Build once per session, whichever test module asks first."""
    root = tmp_path_factory.getbasetemp() / "oodlab-sweeps" / name
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        build(root)
        done.touch()
    return root


def build_grid_sweep(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The issue's grid command, shrunk: CE jobs take a tau they ignore, and LogitNorm's tau=-1
    jobs fail on purpose. Two jobs at a time on the joblib launcher."""

    def build(root: Path) -> None:
        run_train(
            root, data_dir, "-m", "loss=ce,logitnorm", f"loss.tau={','.join(map(str, GRID_TAUS))}",
            f"seed={','.join(map(str, GRID_SEEDS))}", "debug=fast", "logger=none",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"paths.log_dir={root / 'logs'}", f"hydra.sweep.dir={root / 'grid'}",
            failed_jobs=len(GRID_SEEDS),  # LogitNorm with tau=-1, once per seed
        )  # fmt: skip

    return cached_build(tmp_path_factory, "grid", build) / "grid"


def build_optuna_study(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """hparams_search=tau_optuna: two trials logged to W&B offline, then the same study resumed
    for a third trial that fails (a bad learning rate) on the submitit_local launcher.
    Returns the study's folder (logs/optuna/<study>) holding both sessions."""

    def build(root: Path) -> None:
        logs = root / "logs"
        common = ("hparams_search=tau_optuna", "debug=fast", f"paths.log_dir={logs}")
        run_train(
            root, data_dir, *common, "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0",
            "logger=wandb", f"hydra.sweep.dir={logs / 'optuna' / STUDY / 'session1'}",
        )  # fmt: skip
        run_train(
            root, data_dir, *common, "hydra.sweeper.n_trials=1", "logger=none", "optimizer.lr=-1",
            "hydra/launcher=submitit_local",
            f"hydra.sweep.dir={logs / 'optuna' / STUDY / 'session2'}",
            failed_jobs=1,
        )  # fmt: skip

    return cached_build(tmp_path_factory, "optuna", build) / "logs" / "optuna" / STUDY


def job_results(sweep_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/results.json"))
    }


# -- configs -------------------------------------------------------------------------------------
@pytest.fixture
def compose_hydra() -> Iterator[Callable[..., object]]:
    yield lambda *overrides: compose_config("train", overrides)
    GlobalHydra.instance().clear()


def test_named_tau_grid_holds_the_paper_grid(compose_hydra):
    cfg = compose_hydra("sweep=tau_grid")
    params = cfg.hydra.sweeper.params
    assert params["loss"] == "ce,logitnorm"
    taus = [float(t) for t in params["loss.tau"].split(",")]
    assert 0.04 in taus and len(taus) >= 5 and taus == sorted(taus)
    assert params["seed"] == "0,1,2"
    # every job of the grid composes, CE included: CE carries a tau it ignores
    ce = compose_hydra("loss=ce", "loss.tau=0.01")
    assert ce.loss.tau == 0.01 and ce.loss.name == "ce"


def test_tau_optuna_config(compose_hydra):
    cfg = compose_hydra("hparams_search=tau_optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.direction == "minimize"
    assert sweeper.params["loss.tau"] == "tag(log, interval(0.001, 1.0))"
    assert sweeper.storage._target_.endswith("sqlite_storage") and sweeper.storage.path.endswith(
        "optuna/tau.db"
    )
    assert sweeper.study_name == "tau_default"
    assert (
        compose_hydra("hparams_search=tau_optuna", "debug=fast").hydra.sweeper.study_name == STUDY
    )
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.eval.objective_score == "msp"


def test_slurm_launcher_config(compose_hydra):
    launcher = compose_hydra("hydra/launcher=slurm").hydra.launcher
    assert (
        launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    )
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.nodes == 1
    assert {"partition", "timeout_min", "mem_gb"} <= set(launcher)
    assert launcher.partition and launcher.timeout_min > 0 and launcher.mem_gb > 0
    override = compose_hydra("hydra/launcher=slurm", "hydra.launcher.partition=a100").hydra.launcher
    assert override.partition == "a100"


def test_sweeper_value_hands_optuna_none_for_failures():
    assert sweeper_value(0.25) == 0.25
    assert sweeper_value(float("nan")) is None
    assert sweeper_value(None) is None
    # why: Optuna 2.10 refuses a NaN objective, so the sweeper could not record the trial
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(ValueError):
        study.tell(trial, float("nan"))


# -- the grid --------------------------------------------------------------------------------
@pytest.mark.slow
def test_grid_runs_every_job_and_keeps_failures_apart(grid_sweep: Path):
    jobs = job_results(grid_sweep)
    assert len(jobs) == 2 * len(GRID_TAUS) * len(GRID_SEEDS)
    ok = {n: r for n, r in jobs.items() if r["status"] == "ok"}
    failed = {n: r for n, r in jobs.items() if r["status"] != "ok"}
    # LogitNorm rejects tau=-1; CE ignores tau, so its tau=-1 jobs train normally
    assert len(failed) == len(GRID_SEEDS)
    for result in failed.values():
        assert result["status"] == "failed"
        assert "loss.tau" in result["error"] and "> 0" in result["error"]
        assert (
            "loss=logitnorm" in result["run"]["overrides"]
            and "loss.tau=-1.0" in result["run"]["overrides"]
        )
    for name, result in ok.items():
        run = result["run"]
        assert run["loss_params"] == ({} if run["loss"] == "ce" else {"tau": 0.05})
        assert math.isfinite(result["ood"]["msp"]["mean"]["fpr95"])
        id_scores, ood_scores = load_scores(grid_sweep / name)
        assert len(id_scores["msp"]) == result["id"]["n"]
        assert {k: len(v) for k, v in ood_scores["msp"].items()} == {
            k: v["n"] for k, v in result["ood"]["msp"].items() if "n" in v
        }
    assert {r["run"]["loss"] for r in ok.values()} == {"ce", "logitnorm"}
    assert not any((grid_sweep / n / SCORES_FILE).exists() for n in failed)


# -- the Optuna study ----------------------------------------------------------------------------
def study_trials(study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{study_dir.parent / 'tau.db'}"
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


@pytest.mark.slow
def test_optuna_study_objective_resume_and_failed_trial(optuna_study: Path):
    trials = study_trials(optuna_study)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    session1 = job_results(optuna_study / "session1")
    assert len(session1) == 2
    for trial, result in zip(trials, session1.values()):
        tau = trial.params["loss.tau"]
        assert 0.001 <= tau <= 1.0
        assert result["run"]["loss_params"] == {"tau": pytest.approx(tau)}
        # the objective is the validation pair's FPR95: never a test set's
        assert result["val"]["objective"] == "val_ood/msp/fpr95"
        assert trial.value == pytest.approx(result["val"]["objective_value"])
        assert trial.value == pytest.approx(result["val"]["history"]["val_ood/msp/fpr95"][-1])
    (failed,) = job_results(optuna_study / "session2").values()
    assert failed["status"] == "failed" and "learning rate" in failed["error"]
    assert (optuna_study / "session2" / "optimization_results.yaml").exists()


# -- W&B offline files ----------------------------------------------------------------------
def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's .wandb file (wandb has no public reader)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, chunk, records = path.read_bytes(), WANDB_HEADER, b"", []
    while pos + 7 <= len(data):
        room = WANDB_BLOCK - pos % WANDB_BLOCK
        if room < 7:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += room
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (WANDB_FULL, WANDB_LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def wandb_run_file(run_dir: Path) -> Path:
    (found,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    return found


@pytest.mark.slow
def test_wandb_runs_share_the_sweep_group_and_keep_best_val_fpr95(optuna_study: Path):
    session = optuna_study / "session1"
    for job in sorted(p for p in session.iterdir() if (p / "results.json").exists()):
        result = json.loads((job / "results.json").read_text())
        records = wandb_records(wandb_run_file(job))
        # the run record, then an update when the run's own tags are added once it is built
        run = [r.run for r in records if r.WhichOneof("record_type") == "run"][-1]
        assert run.run_group == session.name
        tau = result["run"]["loss_params"]["tau"]
        assert {"loss:logitnorm", "dataset:mnist5k", "backbone:small_cnn", f"tau:{tau}"} <= set(
            run.tags
        )
        config = {}
        for record in records:
            if record.WhichOneof("record_type") == "config":
                config |= {
                    item.key: json.loads(item.value_json)
                    for item in record.config.update
                    if item.key
                }
        assert config["loss"] == "logitnorm" and config["tau"] == pytest.approx(tau)
        assert config["dataset"] == "mnist5k" and config["backbone"] == "small_cnn"
        metrics = {
            (m.metric.name or m.metric.glob_name): m.metric
            for m in records
            if m.WhichOneof("record_type") == "metric"
        }
        assert metrics["val_ood/msp/fpr95"].summary.min
        assert metrics["test/*"].summary.last
        summary = {}
        for record in records:
            if record.WhichOneof("record_type") == "summary":
                summary |= {
                    "/".join(item.nested_key) or item.key: json.loads(item.value_json)
                    for item in record.summary.update
                }
        assert summary["val_ood/msp/fpr95"]["min"] == pytest.approx(result["val"]["best_fpr95"])
