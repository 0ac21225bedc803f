"""Published weights bring their own preprocessing, read offline from the caches, and a missing
file is one line naming the URL and where it goes."""

from __future__ import annotations

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
