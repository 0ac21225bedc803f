"""oodlab's CIFAR backbones: parameter counts against the references, timm's interface."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf

import oodlab.models
from oodlab.errors import ConfigError, UnknownNameError
from oodlab.models import create_backbone

CIFAR_MODELS = ["wrn40_2", "densenet_bc100", "resnet18_cifar", "resnet34_cifar"]
#: every architecture oodlab registers, read from timm's registry: the generic tests cover a new
#: one unedited
OODLAB_MODELS = oodlab.models.oodlab_model_names()
MODEL_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "conf" / "model").glob("*.yaml"))


def _bn(c: int) -> int:
    return 2 * c


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def _fc(cin: int, classes: int = 10) -> int:
    return cin * classes + classes


def _wrn_params(depth: int, k: int) -> int:
    n = (depth - 4) // 6
    total, chs = _conv(3, 16, 3), 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += _bn(chs) + _conv(chs, width, 3) + _bn(width) + _conv(width, width, 3)
            total += _conv(chs, width, 1) if chs != width else 0
            chs = width
    return total + _bn(chs) + _fc(chs)


def _densenet_bc_params(depth: int, k: int) -> int:
    n = (depth - 4) // 6
    chs = 2 * k
    total = _conv(3, chs, 3)
    for b in range(3):
        for _ in range(n):
            total += _bn(chs) + _conv(chs, 4 * k, 1) + _bn(4 * k) + _conv(4 * k, k, 3)
            chs += k
        if b < 2:
            total += _bn(chs) + _conv(chs, chs // 2, 1)
            chs //= 2
    return total + _bn(chs) + _fc(chs)


def _resnet_params(layers: tuple[int, ...]) -> int:
    total, chs = _conv(3, 64, 3) + _bn(64), 64
    for s, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
        for i in range(n):
            stride = 2 if s > 0 and i == 0 else 1
            total += _conv(chs, width, 3) + _bn(width) + _conv(width, width, 3) + _bn(width)
            if stride != 1 or chs != width:
                total += _conv(chs, width, 1) + _bn(width)
            chs = width
    return total + _fc(chs)


# name -> (exact count derived above, published approximate count)
PARAM_COUNTS = {
    "wrn40_2": (2_243_546, 2.24e6),
    "densenet_bc100": (769_162, 0.769e6),
    "resnet18_cifar": (11_173_962, 11.17e6),
    "resnet34_cifar": (21_282_122, 21.28e6),
}


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_hand_derived_counts_match_the_table() -> None:
    assert _wrn_params(40, 2) == PARAM_COUNTS["wrn40_2"][0]
    assert _densenet_bc_params(100, 12) == PARAM_COUNTS["densenet_bc100"][0]
    assert _resnet_params((2, 2, 2, 2)) == PARAM_COUNTS["resnet18_cifar"][0]
    assert _resnet_params((3, 4, 6, 3)) == PARAM_COUNTS["resnet34_cifar"][0]


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_parameter_count_matches_reference(name: str) -> None:
    exact, published = PARAM_COUNTS[name]
    n = _n_params(timm.create_model(name, pretrained=False, num_classes=10))
    assert n == exact
    assert abs(n - published) / published < 0.01


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_timm_interface(name: str) -> None:
    x = torch.randn(2, 3, 32, 32)
    features = timm.create_model(name, pretrained=False, num_classes=0, in_chans=3).eval()
    with torch.no_grad():
        out = features(x)
    assert out.shape == (2, features.num_features)
    assert isinstance(features.get_classifier(), torch.nn.Identity)

    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    with torch.no_grad():
        logits = model(x)
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert logits.shape == (2, 10)
    assert pre.shape == (2, model.num_features)
    # Same weights without the classifier: forward must return exactly the pre-logits.
    features.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    )
    with torch.no_grad():
        torch.testing.assert_close(features(x), pre)

    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3
    assert torch.count_nonzero(model.get_classifier().bias) == 0


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_single_channel_input(name: str) -> None:
    model = timm.create_model(name, pretrained=False, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", OODLAB_MODELS)
def test_pretrained_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(name, pretrained=True)


def test_registered_as_oodlab_models() -> None:
    assert set(CIFAR_MODELS) | {"small_cnn"} <= set(OODLAB_MODELS)
    # timm's registry is the only one: no oodlab-side copy of it
    assert not hasattr(oodlab.models, "BACKBONES")
    assert not oodlab.models.is_oodlab_model("resnet18") and oodlab.models.is_oodlab_model(
        "small_cnn"
    )


@pytest.mark.parametrize("name", OODLAB_MODELS)
def test_timm_builds_it_with_timms_interface(name: str) -> None:
    model = timm.create_model(name, num_classes=3).eval()
    size = model.pretrained_cfg["input_size"]
    x = torch.randn(2, *size)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pooled.shape == (2, model.num_features) and model.get_classifier().out_features == 3


@pytest.mark.parametrize("name", OODLAB_MODELS)
def test_an_unknown_keyword_is_refused_by_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"model\.backbone_kwargs=\{'dropuot': 0\.1\}") as info:
        create_backbone(name, 3, dropuot=0.1)
    assert "drop_rate" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_every_model_config_builds(path: Path) -> None:
    cfg = OmegaConf.load(path)
    kwargs = OmegaConf.to_container(cfg.backbone_kwargs)
    in_chans = 1 if cfg.backbone == "small_cnn" else 3
    assert create_backbone(cfg.backbone, in_chans, **kwargs).num_features > 0


def test_unknown_backbone_lists_oodlab_models() -> None:
    with pytest.raises(UnknownNameError) as info:
        create_backbone("not_a_model", 3)
    for name in [*CIFAR_MODELS, "small_cnn"]:
        assert name in str(info.value)


def test_create_backbone_returns_features() -> None:
    small = create_backbone("small_cnn", 1).eval()
    with torch.no_grad():
        assert small(torch.randn(2, 1, 28, 28)).shape == (2, small.num_features)
    wrn = create_backbone("wrn40_2", 3, drop_rate=0.0).eval()
    with torch.no_grad():
        assert wrn(torch.randn(2, 3, 32, 32)).shape == (2, 128)


def test_wrn_variants_via_kwargs() -> None:
    model = timm.create_model("wrn40_2", num_classes=10, depth=16, widen_factor=4, drop_rate=0.0)
    assert model.num_features == 256
    assert _n_params(model) == _wrn_params(16, 4)
    with pytest.raises(ConfigError, match="depth"):
        timm.create_model("wrn40_2", depth=30)


def test_wrn_dropout_is_inside_blocks() -> None:
    model = timm.create_model("wrn40_2", num_classes=10)  # reference default: 0.3
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 18 and all(d.p == 0.3 for d in drops)
    no_drop = timm.create_model("wrn40_2", num_classes=10, drop_rate=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in no_drop.modules())


def test_reference_initialisation() -> None:
    model = timm.create_model("resnet18_cifar", num_classes=10)
    conv = model.stem[0]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() - (2.0 / fan_out) ** 0.5) < 0.1 * (2.0 / fan_out) ** 0.5
    bn = model.stem[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(model.fc.bias == 0)


def test_small_cnn_standardize_makes_it_scale_invariant() -> None:
    torch.manual_seed(0)
    model = timm.create_model("small_cnn", num_classes=10, standardize=True).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        # per-image standardisation: f(a * x + b) = f(x) for a > 0 (up to the 1e-3 std floor)
        assert torch.allclose(model(x), model(3.0 * x + 0.5), atol=1e-2)
    plain = timm.create_model("small_cnn", num_classes=10).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(x), plain(3.0 * x + 0.5), atol=1e-3)
