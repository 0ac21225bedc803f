"""``hydra/launcher=local_gpus``: every job of a multirun gets its own GPUs, never shared with a
running job, also when jobs finish out of order. Tested with a faked GPU count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest

from hydra_plugins.oodlab_launchers.local_gpus import gpu_slots, visible_gpus

REPO = Path(__file__).resolve().parents[1]


def run_probe(tmp_path: Path, *args: str) -> list[dict]:
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "apps" / "gpu_probe.py"), "-m",
         "hydra/launcher=local_gpus", f"hydra.sweep.dir={sweep}", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/probe.json"))]


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


@pytest.mark.parametrize(("gpus", "per_job", "jobs"), [(3, 1, 7), (4, 2, 5)])
def test_jobs_never_share_a_gpu(tmp_path, gpus, per_job, jobs):
    records = run_probe(
        tmp_path,
        f"hydra.launcher.gpus={gpus}",
        f"hydra.launcher.gpus_per_job={per_job}",
        "+sleep=0.4",
        f"+job={','.join(map(str, range(jobs)))}",
    )
    assert sorted(r["job"] for r in records) == list(range(jobs))
    for r in records:
        assert len(r["gpus"].split(",")) == per_job and set(r["gpus"].split(",")) <= {
            str(i) for i in range(gpus)
        }
    for a, b in combinations(records, 2):
        if overlap(a, b):
            assert not set(a["gpus"].split(",")) & set(b["gpus"].split(",")), (a, b)
    # as many at once as there are slots, and slots are reused as jobs finish out of order
    slots = gpus // per_job
    running = [sum(r["start"] <= a["start"] < r["end"] for r in records) for a in records]
    assert max(running) == slots
    finish_order = [r["job"] for r in sorted(records, key=lambda r: r["end"])]
    assert finish_order != sorted(finish_order)


def test_slots_and_gpu_discovery(monkeypatch):
    assert gpu_slots(["0", "1", "2", "3", "4"], 2) == [("0", "1"), ("2", "3")]
    with pytest.raises(ValueError, match="gpus_per_job=2"):
        gpu_slots(["0"], 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_gpus() == ["3", "5"] and visible_gpus(2) == ["0", "1"]


@pytest.mark.slow
def test_the_training_command_runs_on_the_launcher(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        "-m",
        "debug=fast",
        "hydra/launcher=local_gpus",
        "hydra.launcher.gpus=2",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "results.json").read_text())["status"] == "ok"
