"""Two CPU processes (DDP, gloo) give exactly the single-process OOD metrics on the same
checkpoint: no sample is duplicated by sampler padding, and every sample is computed in the same
batch as in one process. Runs the real command lines, as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from oodlab.run.evaluate import evaluate_checkpoint

# every code path: cached logit scores, a grid searched on the validation pair, a network
# re-run (odin), training statistics (react, knn, mahalanobis) and the head (gradnorm)
COMMON = [
    "debug=fast",
    # 10 test batches, 5 per process; a 64-image OOD set is one batch, so one process scores none
    # of it
    "data.eval_batch_size=100",
    "eval.scores=[msp,energy,odin,gradnorm,react,knn,mahalanobis]",
    "eval.grids.odin.temperature=[1,1000]",
    "eval.grids.odin.epsilon=[0,0.002]",
    "eval.grids.knn.k=[1,10]",
]
# a narrow small_cnn: the test is about exactness, not accuracy
TINY_CNN = "+model.backbone_kwargs.widths=[4,8,16]"
TWO_PROCESSES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def compose_eval(out: Path, data_dir: Path, overrides: list[str]) -> DictConfig:
    return compose_config("eval", overrides, out=out, data_dir=data_dir)


def assert_same_metrics(got: dict, want: dict) -> None:
    assert got["id"] == pytest.approx(want["id"], abs=1e-6)
    assert got["ood"].keys() == want["ood"].keys()
    for score, table in want["ood"].items():
        assert table.keys() == got["ood"][score].keys()
        for set_name, metrics in table.items():
            for key, value in metrics.items():
                assert got["ood"][score][set_name][key] == pytest.approx(value, abs=1e-6), (
                    score,
                    set_name,
                    key,
                )
    for score, section in want["scores"].items():
        assert got["scores"][score]["chosen"] == section["chosen"], score
        assert got["scores"][score]["val_fpr95"] == pytest.approx(section["val_fpr95"], abs=1e-6), (
            score
        )


@pytest.mark.slow
def test_ddp_training_and_evaluation_equal_a_single_process(
    run_cli, data_dir: Path, tmp_path: Path
):
    train_dir = tmp_path / "train"
    # sync_batchnorm needs GPUs: off for the CPU run
    done = run_cli(
        "train.py",
        *COMMON,
        *TWO_PROCESSES,
        "trainer.sync_batchnorm=false",
        TINY_CNN,
        f"hydra.run.dir={train_dir}",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(tmp_path.rglob("results.json")) == [train_dir / "results.json"], (
        "one results.json per run"
    )
    trained = json.loads((train_dir / "results.json").read_text())
    ckpt = train_dir / "checkpoints" / "last.ckpt"

    single_dir = tmp_path / "single"
    single, _ = evaluate_checkpoint(
        compose_eval(single_dir, data_dir, [f"ckpt_path={ckpt}", *COMMON])
    )
    GlobalHydra.instance().clear()
    single = json.loads(json.dumps(single))
    assert single["run"]["processes"] == 1
    assert_same_metrics(trained, single)

    ddp_dir = tmp_path / "ddp"
    done = run_cli(
        "eval.py", f"ckpt_path={ckpt}", *COMMON, *TWO_PROCESSES, f"hydra.run.dir={ddp_dir}"
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(ddp_dir.rglob("results.json")) == [ddp_dir / "results.json"]
    two = json.loads((ddp_dir / "results.json").read_text())
    assert two["run"]["processes"] == 2
    assert_same_metrics(two, single)
