"""What researchers bring from the rest of the ecosystem: pretrained and local weights, other
people's checkpoints, TensorBoard and MLflow beside W&B, and a command line that is fast,
quiet and answers mistakes in one line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision

from oodlab.errors import ConfigError
from oodlab.models import create_backbone
from oodlab.models.pretrained import MissingWeightsError, pretrained_file
from oodlab.outputs import loggers as run_loggers
from oodlab.outputs.record import RunInfo, RunRecord, build_record
from oodlab.run.train import train

TINY_TIMM = "resnet10t"


# -- starting weights -----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_with_a_key_prefix(tmp_path, suffix):
    source = timm.create_model(TINY_TIMM, num_classes=1000, in_chans=1)
    state = {
        f"module.{k}": v for k, v in source.state_dict().items()
    }  # as a DDP checkpoint has them
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state}, path)
    backbone = create_backbone(TINY_TIMM, 1, weights=str(path), weights_prefix="module.")
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])
    assert not hasattr(backbone, "fc") or isinstance(backbone.fc, torch.nn.Identity), (
        "the classifier is replaced"
    )
    with pytest.raises(ConfigError, match=r"model\.weights.*weights_prefix"):
        create_backbone(TINY_TIMM, 1, weights=str(path))  # the prefix not stripped
    with pytest.raises(ConfigError, match=r"model\.weights.*existing"):
        create_backbone(TINY_TIMM, 1, weights=str(tmp_path / "missing.pth"))


def test_offline_without_cached_weights_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError) as info:
        pretrained_file("resnet18")
    message = str(info.value)
    assert "'resnet18'" in message and "HF_HUB_OFFLINE" in message and "model.weights" in message
    assert "\n" not in message
    assert "Set HF_HUB_OFFLINE=1" not in message, "it is set already"
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_backbone("small_cnn", 1, pretrained=True)


def test_no_network_fails_fast_without_hf_hub_offline(tmp_path, monkeypatch):
    """No route to the hub: one line at once, without Hugging Face's minute of retries."""
    from oodlab.models import pretrained

    def download(*args, **kwargs):
        raise AssertionError("tried to download from an unreachable hub")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(pretrained, "reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    with pytest.raises(MissingWeightsError, match="cannot be reached") as info:
        pretrained_file("resnet18")
    assert "Set HF_HUB_OFFLINE=1 to never try the network" in str(info.value)


def test_fine_tuning_from_a_local_file_with_any_loss_head(compose_cfg, tmp_path):
    source = timm.create_model(TINY_TIMM, num_classes=1000, in_chans=1)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    cfg = compose_cfg(
        [
            "debug=fast",
            "loss=isomaxplus",
            f"model.backbone={TINY_TIMM}",
            f"model.weights={tmp_path / 'w.pth'}",
            "eval.scores=[msp,default]",
        ]
    )
    results, _ = train(cfg)
    assert (
        results["status"] == "ok"
        and results["run"]["backbone"] == TINY_TIMM
        and "mds" in results["ood"]
    )


def test_resuming_a_fine_tuned_run_never_loads_the_starting_weights_again(
    compose_cfg, tmp_path, monkeypatch
):
    source = timm.create_model(TINY_TIMM, num_classes=1000, in_chans=1)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    common = ["debug=fast", f"model.backbone={TINY_TIMM}", "eval.scores=[msp]"]
    first, _ = train(compose_cfg([*common, f"model.weights={tmp_path / 'w.pth'}"]))
    assert first["status"] == "ok"
    (tmp_path / "w.pth").unlink()
    # the starting weights are gone and the hub is off: only the checkpoint can be used
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = [
        *common,
        f"model.weights={tmp_path / 'w.pth'}",
        "model.pretrained=true",
        "ckpt_path=last",
        "trainer.max_epochs=2",
    ]
    resumed, _ = train(compose_cfg(again))
    assert resumed["status"] == "ok" and resumed["run"]["epochs"] == 2


def test_the_fine_tuning_experiment_composes(compose_cfg):
    cfg = compose_cfg(["experiment=finetune_folder", "data.dataset.path=/data/imgs"])
    assert cfg.model.pretrained is True and timm.is_model(cfg.model.backbone)
    assert cfg.loss.name == "logitnorm" and cfg.data.dataset._target_.endswith("load_image_folder")


# -- someone else's checkpoint ----------------------------------------------------------------
@pytest.mark.parametrize("arch", ["torchvision:resnet18", TINY_TIMM])
def test_eval_of_a_plain_state_dict(run_cli, tmp_path, arch):
    if arch.startswith("torchvision:"):
        model = torchvision.models.resnet18(num_classes=3)
        data = [
            "data=folder",
            f"data.dataset.path={digit_folder(tmp_path)}",
            "data.dataset.image_size=32",
            "ood=cifar_offline",
        ]
    else:
        model = timm.create_model(arch, num_classes=10, in_chans=1)
        data = []
    torch.save(model.state_dict(), tmp_path / "w.pth")
    out = tmp_path / "eval"
    proc = run_cli(
        "eval.py", f"arch={arch}", f"weights={tmp_path / 'w.pth'}", "debug=fast", *data,
        "eval.scores=[msp,energy,knn]", "eval.grids.knn.k=[1,5]", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    assert record["run"]["backbone"] == arch and record["run"]["checkpoint"] == str(
        (tmp_path / "w.pth").resolve()
    )
    assert set(record["ood"]) == {"msp", "energy", "knn"}


def digit_folder(root: Path) -> Path:
    """A 3-class RGB image folder made of scikit-learn's digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = root / "digits"
    for i, (image, label) in enumerate(zip(digits.images[:240], digits.target[:240])):
        if label < 3:
            (folder / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 15).astype("uint8")).convert("RGB").resize((32, 32)).save(
                folder / str(label) / f"{i}.png"
            )
    return folder


# -- loggers ------------------------------------------------------------------------------------
def test_tensorboard_gets_the_curves_metrics_and_record(compose_cfg):
    cfg = compose_cfg(["debug=fast", "trainer.max_epochs=2", "logger=tensorboard"])
    train(cfg)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = {p.parent for p in Path(cfg.paths.output_dir).rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {
        "norm/train",
        "norm/val_id",
        "norm/ood",
        "val_ood/msp/fpr95",
        "test/acc",
        "test/msp/mean/auroc",
    } <= scalars
    assert len(acc.Scalars("norm/train")) == 2
    assert any("results.json" in tag for tag in acc.Tags()["tensors"])


def test_mlflow_gets_the_curves_metrics_and_record(compose_cfg):
    cfg = compose_cfg(["debug=fast", "trainer.max_epochs=2", "logger=mlflow"])
    train(cfg)
    import mlflow

    store = Path(cfg.paths.log_dir) / "mlruns" / "mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("oodlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert {"norm/train", "val_ood/msp/fpr95", "test/acc", "test/msp/mean/auroc"} <= set(
        run.data.metrics
    )
    assert [m.value for m in client.get_metric_history(run.info.run_id, "norm/train")] != []
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "results.json" in artifacts


def test_online_wandb_logs_results_and_checkpoint_as_artifacts(tmp_path, monkeypatch):
    logged = []

    class Experiment:
        id = "abc123"

        def log_artifact(self, artifact):
            logged.append(artifact)

    class WandbLogger:  # what log_record reads of Lightning's WandbLogger
        _offline = False
        experiment = Experiment()

        def log_metrics(self, metrics):
            self.metrics = metrics

        def save(self):
            pass

    record = build_record(RunInfo(seed=0), status="ok")
    record.id = {"acc": 0.9, "ece": 0.1}
    record.write(tmp_path)
    online = WandbLogger()
    run_loggers.log_record([online], record, tmp_path, artifacts=True)
    assert online.metrics["test/acc"] == 0.9
    assert [a.type for a in logged] == ["results"]
    run_loggers.log_record(
        [online], record, tmp_path, artifacts=False
    )  # logger.wandb.artifacts=false
    offline = WandbLogger()
    offline._offline = True
    run_loggers.log_record([offline], record, tmp_path, artifacts=True)
    assert len(logged) == 1


def test_a_missing_logger_package_says_how_to_install_it(compose_cfg, monkeypatch):
    from lightning.pytorch.loggers import mlflow as lightning_mlflow

    # what Lightning sees when mlflow is not installed
    monkeypatch.setattr(lightning_mlflow, "_MLFLOW_AVAILABLE", False)
    with pytest.raises(ConfigError, match=r"oodlab\[mlflow\]"):
        train(compose_cfg(["debug=fast", "logger=mlflow"]))


# -- a quiet command line with one-line errors ----------------------------------------------------
NOISE = ("litlogger", "LeafSpec", "on_after_batch_transfer", "anonymous", "Run summary", "wandb: ")


@pytest.mark.slow
def test_a_run_prints_no_third_party_noise_and_plain_wide_tables(run_cli, tmp_path):
    proc = run_cli("train.py", "debug=fast", "logger=wandb", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    for noise in NOISE:
        assert noise not in output, noise
    assert "\x1b[" not in proc.stdout, "no colour codes in a log"
    table = [line for line in proc.stdout.splitlines() if "textures" in line]
    assert table and max(map(len, table)) > 80, "the table is not wrapped at 80 columns"
    assert "after temperature scaling" in proc.stdout
    # resuming the finished run into a new MLflow store: no "directory not empty", no set-up lines
    again = run_cli(
        "train.py",
        "debug=fast",
        "logger=mlflow",
        "ckpt_path=last",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    for noise in (*NOISE, "exists and is not empty", "Creating it", "database tables"):
        assert noise not in again.stdout + again.stderr, noise
    loud = run_cli(
        "train.py",
        "debug=fast",
        "logger=none",
        "verbose_third_party=true",
        f"hydra.run.dir={tmp_path / 'loud'}",
    )
    assert "litlogger" in loud.stdout + loud.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["trainer=gpu"], "trainer.accelerator"),
        (["optimizer.lr=abc"], "optimizer.lr"),
        (["logger=none", "model.weights=/nope.pth"], "model.weights"),
    ],
)
def test_mistakes_get_one_line_naming_the_key(run_cli, args, key):
    proc = run_cli("train.py", "debug=fast", "logger=none", *args)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Error in call to target" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and key in errors[0], proc.stderr[-2000:]


def test_report_names_the_missing_path(capsys, tmp_path):
    from oodlab.report.cli import main as report_main

    missing = tmp_path / ("a-long-sweep-folder-name-" * 8) / "nonexistent"  # > 132 columns
    assert report_main([str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "Dataset" not in err  # whole, on one line: a path stays copyable


@pytest.mark.parametrize(
    "argv",
    [["src/train.py", "--cfg", "job"], ["src/report.py", "--help"]],
    ids=["train-cfg", "report-help"],
)
def test_help_imports_nothing_heavy(argv):
    """--help, --cfg and tab completion never load torch (benchmarks/cli_startup.py times them)."""
    import subprocess

    code = f"import sys, runpy; sys.argv = {argv!r}; "
    code += (
        "import atexit; atexit.register(lambda: print('HEAVY', sorted(m for m in "
        "('torch', 'lightning', 'wandb') if m in sys.modules)));"
    )
    code += f"runpy.run_path({argv[0]!r}, run_name='__main__')"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert re.search(r"HEAVY \[\]", proc.stdout), proc.stdout[-500:] + proc.stderr[-2000:]


def test_records_keep_working_for_every_logger_kind():
    assert run_loggers.kind(type("MLFlowLogger", (), {})()) == "mlflow"
    assert run_loggers.kind(type("TensorBoardLogger", (), {})()) == "tensorboard"
    assert RunRecord.from_json({"run": {"seed": 1}}).run.seed == 1
