"""Published weights bring their own preprocessing, read offline from the caches, and a missing
file is one line naming the URL and where it goes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from oodlab.data.preprocessing import IMAGENET, Preprocessing
from oodlab.errors import ConfigError, MissingWeightsError, UnknownNameError
from oodlab.models.published import (
    is_published,
    load_published,
    published_weights,
    torchvision_file,
)
from oodlab.run.build import eval_preprocessing


def test_torchvision_weights_bring_their_transforms():
    published = published_weights("torchvision:resnet50", "IMAGENET1K_V1")
    assert published.num_classes == 1000
    assert published.preprocessing.key() == IMAGENET.key()
    assert published.preprocessing.source == "torchvision:ResNet50_Weights.IMAGENET1K_V1"
    # ViT-B/16's SWAG weights are evaluated at 384 pixels, bicubic
    swag = published_weights("torchvision:vit_b_16", "IMAGENET1K_SWAG_E2E_V1").preprocessing
    assert (swag.resize, swag.crop, swag.interpolation) == (384, 384, "bicubic")
    assert published_weights("torchvision:swin_t", "DEFAULT").preprocessing.resize == 232


def test_timm_weights_bring_their_transforms():
    tv = published_weights("resnet50.tv_in1k", "pretrained").preprocessing
    assert (tv.resize, tv.crop, tv.interpolation) == (256, 224, "bilinear")
    vit = published_weights("vit_base_patch16_224.augreg_in21k_ft_in1k", "pretrained")
    assert vit.preprocessing.mean == (0.5, 0.5, 0.5) and vit.num_classes == 1000


def test_names_and_files_are_told_apart(tmp_path):
    assert is_published("torchvision:resnet50", "IMAGENET1K_V1")
    assert is_published("resnet18", "pretrained")
    weights = tmp_path / "IMAGENET1K_V1"
    weights.write_bytes(b"")
    assert not is_published("torchvision:resnet50", str(weights)), "a file of that name"
    assert not is_published("resnet18", str(tmp_path / "w.pth"))
    with pytest.raises(UnknownNameError, match="IMAGENET1K_V2"):
        published_weights("torchvision:resnet50", "IMAGENET1K_V3")


def test_offline_a_missing_file_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    with pytest.raises(MissingWeightsError) as info:
        torchvision_file(url, "ResNet18_Weights.IMAGENET1K_V1")
    message = str(info.value)
    assert url in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "\n" not in message and "HF_HUB_OFFLINE" not in message


def test_a_cached_file_loads_offline(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    published = published_weights("torchvision:resnet18", "IMAGENET1K_V1")
    enum = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    cached.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), cached)
    model = load_published(published)
    assert not model.training
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"arch": "torchvision:resnet50", "weights": "IMAGENET1K_V1"}, IMAGENET.key()),
        (
            {"arch": "torchvision:resnet50", "weights": "w.pth", "preprocessing": "IMAGENET1K_V1"},
            IMAGENET.key(),
        ),
        (
            {
                "arch": "resnet18",
                "weights": "w.pth",
                "preprocessing": {"resize": 72, "crop": 64, "mean": [0.5], "std": [0.5]},
            },
            Preprocessing(72, 64, mean=(0.5,), std=(0.5,)).key(),
        ),
        ({"arch": "resnet18", "weights": "w.pth"}, None),
    ],
)
def test_the_eval_preprocessing_follows_weights_and_config(overrides, expected):
    cfg = OmegaConf.create({"arch": None, "weights": None, "preprocessing": None} | overrides)
    found = eval_preprocessing(cfg)
    assert (found.key() if found else None) == expected


def test_a_bad_preprocessing_names_the_key():
    with pytest.raises(ConfigError, match="crop <= resize"):
        Preprocessing(resize=64, crop=128)
    with pytest.raises(ConfigError, match="interpolation"):
        Preprocessing(resize=64, crop=64, interpolation="lanczos5")


@pytest.mark.slow
def test_eval_cli_with_published_weights_uses_and_records_their_preprocessing(run_cli, tmp_path):
    """``arch=torchvision:resnet18 weights=IMAGENET1K_V1`` offline, its file in torch's hub
    cache (random weights: no network here), on image lists labelled as ImageNet-1k."""
    import torchvision
    from test_image_lists import write_jpeg

    hub = tmp_path / "torch"
    enum = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = hub / "hub" / "checkpoints" / os.path.basename(enum.url)
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    root = tmp_path / "imgs"
    rows: dict[str, list[str]] = {"train": [], "test": [], "ood": []}
    for i in range(18):
        label, split = (0, 999)[i % 2], ("train", "train", "test")[i % 3]
        write_jpeg(root / f"c{label}" / f"{i}.jpg", i, (48, 40))
        rows[split].append(f"c{label}/{i}.jpg {label}")
    for i in range(6):
        write_jpeg(root / "ood" / f"{i}.jpg", 50 + i, (40, 48))
        rows["ood"].append(f"ood/{i}.jpg")
    for split, lines in rows.items():
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval"
    env_args = [f"hydra.run.dir={out}"]
    proc = run_cli(
        "eval.py", "arch=torchvision:resnet18", "weights=IMAGENET1K_V1",
        "data=image_list", f"data.dataset.root={root}", "data.dataset.train=train.txt",
        "data.dataset.test=test.txt", "data.dataset.val_size=4", "data.num_workers=0",
        # the data config's own preprocessing, which the weights' replaces
        "data.dataset.preprocessing.resize=40", "data.dataset.preprocessing.crop=32",
        "data.eval_batch_size=8", "ood=image_list", f"ood.val.list={root / 'ood.txt'}",
        f"ood.val.root={root}", "+ood_set@ood.sets.mine=image_list",
        f"ood.sets.mine.list={root / 'ood.txt'}", f"ood.sets.mine.root={root}",
        "eval.scores=[msp,energy]", "plots=false", *env_args,
        extra_env={"TORCH_HOME": str(hub), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "results.json").read_text())["run"]
    assert run["preprocessing"] == {
        "resize": 256,
        "crop": 224,
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "source": "torchvision:ResNet18_Weights.IMAGENET1K_V1",
    }
    assert run["loading"]["decode"]["used"] == "cpu"
    assert run["checkpoint"] == "IMAGENET1K_V1" and run["backbone"] == "torchvision:resnet18"


@pytest.mark.slow
def test_the_imagenet200_fine_tuning_experiment_trains_on_a_generated_openood_root(
    run_cli, tmp_path
):
    """experiment=logitnorm_imagenet200 end to end (one step, tiny crops), on OpenOOD's
    ImageNet-200 layout generated here; random weights instead of the pretrained ones."""
    from test_image_lists import make_openood_root

    root = make_openood_root(tmp_path / "openood")
    lists = root / "benchmark_imglist"
    (lists / "imagenet").rename(lists / "imagenet200")
    for path in (lists / "imagenet200").glob("*_imagenet.txt"):
        path.rename(path.with_name(path.name.replace("_imagenet.txt", "_imagenet200.txt")))
    out = tmp_path / "run"
    proc = run_cli(
        "train.py", "experiment=logitnorm_imagenet200", f"data.root={root}",
        "model.backbone=resnet10t", "model.pretrained=false", "data.num_workers=0",
        "data.dataset.preprocessing.resize=36", "data.dataset.preprocessing.crop=32",
        "data.batch_size=4", "data.eval_batch_size=8", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1", "logger=none",
        "plots=false", "eval.scores=[msp,energy]", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    assert record["run"]["loss"] == "logitnorm" and record["run"]["dataset"] == "imagenet200"
    assert set(record["ood"]["msp"]) >= {"ssb_hard", "ninco", "inaturalist", "textures"}
    assert record["run"]["preprocessing"]["crop"] == 32
