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


@pytest.mark.slow
def test_ddp_evaluation_of_streamed_image_lists_equals_a_single_process(run_cli, tmp_path):
    """Image lists stream from JPEG files; each process reads its own block of batches, and the
    gathered metrics equal one process's."""
    import timm
    import torch
    from test_image_lists import write_jpeg

    root = tmp_path / "imgs"
    rows: dict[str, list[str]] = {"train": [], "test": [], "ood": []}
    for i in range(30):
        label, split = i % 2, ("train", "train", "test")[i % 3]
        write_jpeg(root / f"c{label}" / f"{i}.jpg", i, (40, 36))
        rows[split].append(f"c{label}/{i}.jpg {label}")
    for i in range(11):
        write_jpeg(root / "ood" / f"{i}.jpg", 70 + i, (36, 40))
        rows["ood"].append(f"ood/{i}.jpg")
    for split, lines in rows.items():
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    torch.save(timm.create_model("resnet10t", num_classes=2).state_dict(), tmp_path / "w.pth")
    common = [
        "arch=resnet10t", f"weights={tmp_path / 'w.pth'}", "data=image_list",
        f"data.dataset.root={root}", "data.dataset.train=train.txt", "data.dataset.test=test.txt",
        "data.dataset.val_size=4", "data.num_workers=0", "data.dataset.preprocessing.resize=36",
        "data.dataset.preprocessing.crop=32", "data.eval_batch_size=3", "ood=image_list",
        f"ood.val.list={root / 'ood.txt'}", f"ood.val.root={root}",
        "+ood_set@ood.sets.mine=image_list", f"ood.sets.mine.list={root / 'ood.txt'}",
        f"ood.sets.mine.root={root}", "eval.scores=[msp,energy,knn]", "eval.grids.knn.k=[1,3]",
        "eval.cache.enabled=false", "plots=false",
    ]  # fmt: skip
    results = {}
    for name, extra in (("one", ["trainer.accelerator=cpu"]), ("two", TWO_PROCESSES)):
        out = tmp_path / name
        proc = run_cli("eval.py", *common, *extra, f"hydra.run.dir={out}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads((out / "results.json").read_text())
    assert results["two"]["run"]["processes"] == 2
    assert_same_metrics(results["two"], results["one"])
