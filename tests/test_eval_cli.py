"""``python src/eval.py ckpt_path=...``: a saved checkpoint evaluated without training, through
the compose API (the real command line runs in test_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from oodlab.checkpoint import CheckpointError, load_checkpoint
from oodlab.cli import eval_main
from oodlab.run.evaluate import evaluate_checkpoint
from oodlab.run.train import train

SCORES = "eval.scores=[msp,energy,default,knn,odin]"
SMALL_GRIDS = [
    "eval.grids.odin.temperature=[1,1000]",
    "eval.grids.odin.epsilon=[0,0.002]",
    "eval.grids.knn.k=[1,5]",
]


def compose_in(config_name: str, out: Path, data_dir: Path, overrides: list[str]) -> DictConfig:
    return compose_config(
        config_name, overrides, out=out, data_dir=data_dir, log_dir=out.parent / "logs"
    )


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A debug-sized IsoMax+ run: its results.json and checkpoints/last.ckpt."""
    out = tmp_path_factory.mktemp("trained") / "run"
    cfg = compose_in(
        "train",
        out,
        data_dir,
        [
            "loss=isomaxplus",
            "debug=fast",
            "+model.backbone_kwargs.widths=[4,8,16]",
            SCORES,
            *SMALL_GRIDS,
        ],
    )
    train(cfg)
    GlobalHydra.instance().clear()
    return out, json.loads((out / "results.json").read_text())


def test_eval_config_shares_the_training_groups(data_dir, tmp_path):
    cfg = compose_in("eval", tmp_path / "run", data_dir, [])
    for group in ("data", "ood", "eval", "trainer", "paths", "logger"):
        assert group in cfg, group
    assert cfg.ckpt_path is None
    # the eval group holds only overrides: default grids come from the score classes
    assert "default" in cfg.eval.scores and cfg.eval.grids == {} and cfg.eval.params == {}
    assert "/eval_multiruns/" in cfg.hydra.sweep.dir


def test_checkpoint_evaluation_reproduces_the_training_run(trained, data_dir, tmp_path):
    train_dir, train_results = trained
    ckpt = train_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), "training saves checkpoints/last.ckpt (ModelCheckpoint)"
    out = tmp_path / "eval"
    cfg = compose_in(
        "eval",
        out,
        data_dir,
        [f"ckpt_path={ckpt}", "debug=fast", "plots=true", SCORES, *SMALL_GRIDS],
    )
    results, objective = evaluate_checkpoint(cfg)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    # the training schema, less training's own validation history
    assert set(train_results) - {"val"} <= set(on_disk) and {"scores", "calibration"} <= set(
        on_disk
    )
    assert on_disk["run"]["checkpoint"] == str(ckpt.resolve())
    assert (
        on_disk["run"]["loss"] == "isomaxplus"
        and on_disk["run"]["epochs"] == train_results["run"]["epochs"] == 1
    )
    # `default` is the head's own score: mds for IsoMax+
    assert list(on_disk["ood"]) == ["msp", "energy", "mds", "knn", "odin"]
    for score, table in train_results["ood"].items():
        for set_name, metrics in table.items():
            for key, value in metrics.items():
                assert on_disk["ood"][score][set_name][key] == pytest.approx(value, abs=1e-9), (
                    score,
                    set_name,
                    key,
                )
    for score, section in train_results["scores"].items():
        assert on_disk["scores"][score]["chosen"] == section["chosen"]
    assert on_disk["logit_norm"] == train_results["logit_norm"]
    assert objective == on_disk["scores"]["msp"]["val_fpr95"]
    calibration = on_disk["calibration"]
    assert (
        calibration["temperature"] > 0
        and calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    )
    assert (out / "reliability.png").stat().st_size > 0


def test_checkpoint_loads_weights_only(trained):
    train_dir, _ = trained
    loaded = load_checkpoint(train_dir / "checkpoints" / "last.ckpt")
    assert loaded.task.head.name == "isomaxplus" and loaded.epochs == 1
    assert not loaded.task.training


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.ckpt", "not found"),
        (lambda d: d, "is a directory"),
        (
            lambda d: (d / "garbage.ckpt").write_bytes(b"not a checkpoint") and d / "garbage.ckpt",
            "could not be loaded",
        ),
        (
            lambda d: torch.save({"weights": torch.zeros(2)}, d / "other.ckpt") or d / "other.ckpt",
            "not an oodlab",
        ),
    ],
    ids=["missing", "directory", "corrupt", "foreign"],
)
def test_bad_checkpoints_fail_with_one_line_naming_the_path(
    make, message, data_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "400")
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    cfg = compose_in("eval", tmp_path / "run", data_dir, [f"ckpt_path={path}", "debug=fast"])
    with pytest.raises(SystemExit) as exit_info:
        eval_main(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err


def test_no_checkpoint_path_says_how_to_give_one(data_dir, tmp_path):
    cfg = compose_in("eval", tmp_path / "run", data_dir, ["debug=fast"])
    with pytest.raises(CheckpointError, match=r"ckpt_path=PATH"):
        evaluate_checkpoint(cfg)
