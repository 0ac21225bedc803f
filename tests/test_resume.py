"""Long runs survive being stopped: a run killed with SIGKILL after epoch 2 and resumed ends with
the metrics of an uninterrupted run; SIGTERM saves a mid-epoch checkpoint and exits cleanly, and
the resumed run again matches; a killed sweep completes with ``resume=true``; checkpoints and
results are written atomically and readable by the user's group."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from oodlab.callbacks.checkpoint_io import AtomicCheckpointIO
from oodlab.outputs.record import RunInfo, build_record

REPO = Path(__file__).resolve().parents[1]
# 4 real epochs (27 batches each) of the default experiment, deterministic, on one thread
RUN = [
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "plots=false",
    "eval.scores=[msp,energy,knn]",
    "eval.grids.knn.k=[1,10]",
    "~callbacks.progress_bar",
]


def env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OODLAB_DATA_DIR": str(data_dir),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
    }


def start(data_dir: Path, cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "src" / "train.py"), *args],
        cwd=cwd, env=env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """The exit code, and stdout and stderr together."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def wait_for_writes(path: Path, writes: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``path`` has been (re)written ``writes`` times (an atomic write is a new inode)."""
    seen, last, deadline = 0, None, time.time() + timeout
    while seen < writes:
        assert proc.poll() is None, f"the run ended first:\n{proc.stderr.read()[-3000:]}"
        assert time.time() < deadline, f"{path} was written {seen} times"
        try:
            now = path.stat().st_ino, path.stat().st_mtime_ns
        except FileNotFoundError:
            now = None
        if now is not None and now != last:
            seen, last = seen + 1, now
        time.sleep(0.005)


def same_metrics(got: dict, want: dict) -> None:
    assert got["status"] == want["status"] == "ok"
    assert got["id"]["acc"] == pytest.approx(want["id"]["acc"], abs=1e-6)
    assert got["ood"].keys() == want["ood"].keys()
    for score, table in want["ood"].items():
        for set_name, metrics in table.items():
            for key in ("fpr95", "auroc"):
                assert got["ood"][score][set_name][key] == pytest.approx(metrics[key], abs=1e-6), (
                    score,
                    set_name,
                    key,
                )
    assert got["logit_norm"].keys() == want["logit_norm"].keys()
    for key, curve in want["logit_norm"].items():
        assert got["logit_norm"][key] == pytest.approx(curve, abs=1e-6), key
    assert got["run"]["epochs"] == want["run"]["epochs"] == 4


@pytest.fixture(scope="module")
def uninterrupted(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    code, err = finish(start(data_dir, out, *RUN, "logger=none", f"hydra.run.dir={out / 'run'}"))
    assert code == 0, err[-3000:]
    return json.loads((out / "run" / "results.json").read_text())


@pytest.mark.slow
def test_a_run_killed_after_epoch_2_resumes_to_the_same_result(uninterrupted, data_dir, tmp_path):
    run = tmp_path / "run"
    proc = start(
        data_dir, tmp_path, *RUN, f"hydra.run.dir={run}"
    )  # W&B offline, the default logger
    wait_for_writes(run / "checkpoints" / "last.ckpt", 2, proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert (
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    )  # epochs 0 and 1 done
    assert not (run / "results.json").exists()

    code, err = finish(start(data_dir, tmp_path, *RUN, f"hydra.run.dir={run}", "ckpt_path=last"))
    assert code == 0, err[-3000:]
    same_metrics(json.loads((run / "results.json").read_text()), uninterrupted)
    # the W&B run continues under the same id, offline too
    first, second = sorted((run / "wandb").glob("offline-run-*"))
    assert first.name.rsplit("-", 1)[1] == second.name.rsplit("-", 1)[1]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_mid_epoch_and_the_run_resumes(
    uninterrupted, data_dir, tmp_path
):
    run = tmp_path / "run"
    proc = start(data_dir, tmp_path, *RUN, "logger=csv", f"hydra.run.dir={run}")
    wait_for_writes(run / "checkpoints" / "last.ckpt", 1, proc)  # epoch 0 done
    time.sleep(1.0)  # inside epoch 1
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    assert "interrupted" in err and "ckpt_path=" in err
    record = json.loads((run / "results.json").read_text())
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and 0 < ckpt["global_step"] - 27 < 27, (
        "saved in the middle of epoch 1"
    )
    # the logger was closed: the CSV logger flushed what it had
    assert list(run.rglob("metrics.csv"))

    code, err = finish(
        start(data_dir, tmp_path, *RUN, "logger=csv", f"hydra.run.dir={run}", "resume=true")
    )
    assert code == 0, err[-3000:]
    same_metrics(json.loads((run / "results.json").read_text()), uninterrupted)


def sweep_args(sweep: Path) -> list[str]:
    return ["-m", "debug=fast", "trainer.max_epochs=2", "seed=0,1,2,3", f"hydra.sweep.dir={sweep}"]


@pytest.mark.slow
def test_a_killed_sweep_completes_with_resume(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = start(data_dir, tmp_path, *sweep_args(sweep))
    deadline = time.time() + 300
    while sum((sweep / str(i) / "results.json").exists() for i in range(4)) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    done = {
        i: (sweep / str(i) / "results.json").stat().st_mtime_ns
        for i in range(4)
        if (sweep / str(i) / "results.json").exists()
    }
    assert set(done) >= {0, 1}
    # job 1 recorded a failure: it is run again
    failed = build_record(RunInfo(seed=1), status="failed", error="made up for the test")
    failed.write(sweep / "1")

    code, err = finish(start(data_dir, tmp_path, *sweep_args(sweep), "resume=true"))
    assert code == 0, err[-3000:]
    records = {i: json.loads((sweep / str(i) / "results.json").read_text()) for i in range(4)}
    assert all(r["status"] == "ok" for r in records.values())
    assert [records[i]["run"]["seed"] for i in range(4)] == [0, 1, 2, 3]
    # job 0 was skipped: its results.json is the one of the first session
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == done[0]
    assert "already finished" in err


def test_a_checkpoint_write_that_dies_leaves_the_previous_one(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def killed(*_):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"], "no temporary file left behind"


def test_results_are_readable_by_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        path = build_record(RunInfo(seed=0), status="failed", error="x").write(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_stop_hands_over_to_the_previous_handler(compose_cfg):
    """submitit's requeue is the handler a SLURM job had before oodlab's: it is called after
    the record is written, with the signal."""
    from oodlab.callbacks.preemption import RunInterrupted
    from oodlab.cli import guarded

    cfg = compose_cfg(["debug=fast"])
    calls = []

    def stopped(_cfg):
        raise RunInterrupted(
            signal.SIGUSR2,
            Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
            lambda *a: calls.append(a),
        )

    with pytest.raises(SystemExit) as exit_info:
        guarded(lambda: stopped(cfg), cfg)
    assert exit_info.value.code == 128 + signal.SIGUSR2 and calls == [(signal.SIGUSR2, None)]
    record = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert record["status"] == "interrupted" and "SIGUSR2" in record["error"]


def test_a_requeued_slurm_job_resumes_by_itself(compose_cfg, monkeypatch):
    from oodlab.run.train import train

    cfg = compose_cfg(["debug=fast", "logger=none", "plots=false"])
    first, _ = train(cfg)
    mtime = (Path(cfg.paths.output_dir) / "results.json").stat().st_mtime_ns
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    again, _ = train(cfg)
    assert again["run"] == first["run"]
    assert (Path(cfg.paths.output_dir) / "results.json").stat().st_mtime_ns == mtime, (
        "a finished job is not run again"
    )


def test_resume_runs_a_failed_job_again_from_the_start(compose_cfg, caplog):
    from oodlab.outputs.record import RunRecord
    from oodlab.run.train import train

    cfg = compose_cfg(["debug=fast", "logger=none"])
    assert train(cfg)[0]["status"] == "ok"
    run = Path(cfg.paths.output_dir)
    record = RunRecord.read(run / "results.json")
    build_record(record.run, status="failed", error="made up for the test").write(run)
    assert list((run / "checkpoints").glob("*.ckpt"))
    with caplog.at_level("INFO", logger="oodlab"):
        again, _ = train(compose_cfg(["debug=fast", "logger=none", "resume=true"]))
    assert again["status"] == "ok"
    assert "runs again from the start" in caplog.text and "resuming from" not in caplog.text


def test_resume_into_another_jobs_directory_keeps_its_results_aside(compose_cfg):
    from oodlab.run.train import train

    first, _ = train(compose_cfg(["debug=fast", "logger=none"]))
    assert first["run"]["loss_params"]["tau"] == 0.04
    changed, _ = train(compose_cfg(["debug=fast", "logger=none", "loss.tau=0.5", "resume=true"]))
    assert changed["status"] == "ok" and changed["run"]["loss_params"]["tau"] == 0.5, (
        "not skipped as finished"
    )
    run = Path(compose_cfg(["debug=fast"]).paths.output_dir)
    (kept,) = run.glob("results.previous-*.json")
    assert json.loads(kept.read_text())["run"]["loss_params"]["tau"] == 0.04
    assert list(run.glob("checkpoints.previous-*/*.ckpt")), "the other job's checkpoints are kept"
