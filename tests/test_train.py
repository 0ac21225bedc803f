"""The default pipeline end to end: compose API in-process, the real command lines as
subprocesses, and a two-job multirun."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from oodlab.run.train import train

DOCUMENTED_METRICS = {"fpr95", "auroc", "aupr_in", "aupr_out"}


def check_results(results: dict, loss: str) -> None:
    assert results["schema"] == 1
    assert results["status"] == "ok"
    run = results["run"]
    assert run["loss"] == loss
    assert run["dataset"] == "mnist5k"
    assert run["backbone"] == "small_cnn"
    assert run["device"] == "cpu"
    assert run["wall_s"] > 0
    assert 0.0 <= results["id"]["acc"] <= 1.0
    assert 0.0 <= results["id"]["ece"] <= 1.0
    assert results["id"]["n"] == 1000
    for score in ("msp", "maxlogit", "energy"):
        per_set = results["ood"][score]
        assert set(per_set) == {
            "textures",
            "photos",
            "glyphs",
            "gaussian",
            "uniform",
            "mean",
            "mean_noise",
        }
        for name, metrics in per_set.items():
            assert set(metrics) >= DOCUMENTED_METRICS, name
            assert all(0.0 <= metrics[k] <= 1.0 for k in DOCUMENTED_METRICS)
        # the mean is the unweighted mean of the real-image sets; noise has its own row
        for row, names in (
            ("mean", ("textures", "photos", "glyphs")),
            ("mean_noise", ("gaussian", "uniform")),
        ):
            for key in DOCUMENTED_METRICS:
                assert per_set[row][key] == pytest.approx(
                    sum(per_set[n][key] for n in names) / len(names)
                )
    curve = results["logit_norm"]
    assert (
        len(curve["epoch"])
        == run["epochs"]
        == len(curve["train"])
        == len(curve["val_id"])
        == len(curve["ood"])
    )
    assert all(math.isfinite(v) and v > 0 for v in curve["train"] + curve["val_id"] + curve["ood"])


def test_default_config_composes(compose_cfg):
    cfg = compose_cfg()
    assert cfg.loss.name == "logitnorm" and cfg.loss.tau == 0.04
    assert cfg.model.backbone == "small_cnn"
    assert cfg.data.dataset._target_.endswith("load_mnist5k")
    assert set(cfg.ood.sets) == {"textures", "photos", "glyphs", "gaussian", "uniform"}
    assert "wandb" in cfg.logger and cfg.logger.wandb.offline is True
    # the validation OOD set is made from validation digits: no image of any test set
    assert cfg.ood.val._target_.endswith("mnist5k_digit_transforms") and cfg.ood.val.split == "val"


@pytest.mark.parametrize("loss", ["ce", "logitnorm"])
def test_fast_run_through_compose_api(compose_cfg, loss):
    cfg = compose_cfg([f"loss={loss}", "debug=fast", "trainer.max_epochs=2", "plots=true"])
    results, objective = train(cfg)
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["run"] == results["run"]
    # the fast preset shrinks every OOD set to 64 images
    for per_set in on_disk["ood"]["msp"].values():
        assert per_set.get("n", 64) == 64
    on_disk["id"]["n"] = 1000  # unchanged by the preset; keeps check_results generic
    check_results(on_disk, loss)
    assert on_disk["run"]["loss_params"] == ({"tau": 0.04} if loss == "logitnorm" else {})
    assert 0.0 <= objective <= 1.0
    assert (out / "logit_norm.png").stat().st_size > 0
    assert (out / "score_histograms.png").stat().st_size > 0
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert not list(out.glob(".results.json.*")), "atomic write left a temporary file"


@pytest.mark.slow
def test_train_command_line(run_cli, tmp_path):
    """The real entry point, with W&B in its default offline mode."""
    run_dir = tmp_path / "cli-run"
    proc = run_cli(
        "train.py",
        "loss=logitnorm",
        "loss.tau=0.04",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        f"hydra.run.dir={run_dir}",
        "paths.log_dir=logs",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    check_results(results, "logitnorm")
    assert "FPR95" in proc.stdout and "textures" in proc.stdout
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1, "W&B should log offline into the run directory"


@pytest.mark.slow
def test_two_job_multirun(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train.py", "-m", "loss=ce,logitnorm", "debug=fast", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = sorted(
        json.loads((sweep / str(i) / "results.json").read_text())["run"]["loss"] for i in (0, 1)
    )
    assert losses == ["ce", "logitnorm"]


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_other_loggers(compose_cfg, logger):
    cfg = compose_cfg(["debug=fast", f"logger={logger}"])
    train(cfg)
    csv_files = list(Path(cfg.paths.output_dir).rglob("metrics.csv"))
    assert bool(csv_files) == (logger == "csv")
    if csv_files:
        header = csv_files[0].read_text().splitlines()[0]
        assert "norm/train" in header and "val_ood/msp/fpr95" in header
