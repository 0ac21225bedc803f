"""Every conf/loss/*.yaml trains through the real command line with tiny limits: a new loss
config is covered without editing this file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "loss"
LOSS_CONFIGS = sorted(path.stem for path in CONF_DIR.glob("*.yaml"))


@pytest.mark.parametrize("loss", LOSS_CONFIGS)
def test_every_loss_config_runs_from_the_cli(loss, run_cli, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        "train.py",
        "debug=fast",
        "logger=none",
        f"loss={loss}",
        "trainer.limit_train_batches=2",
        "outliers.set.n=64",
        f"hydra.run.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "ok" and results["run"]["loss"] == loss
    from oodlab.losses import LOSSES

    expected = "offline" if LOSSES[loss].uses_outliers else None
    assert results["run"].get("outliers") == expected
