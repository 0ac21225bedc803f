"""Bad input gets one clear line: the choices, the key and its range, or the step of a NaN."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from oodlab.cli import guarded
from oodlab.errors import ConfigError, NonFiniteLossError, UnknownNameError
from oodlab.run.train import train


@pytest.mark.slow
def test_unknown_loss_lists_choices(run_cli):
    proc = run_cli("train.py", "loss=logitnrom")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "loss='logitnrom' is not allowed: loss must be one of" in proc.stderr
    assert "Did you mean logitnorm" in proc.stderr
    for name in ("ce", "logitnorm", "isomax", "dismax"):
        assert name in proc.stderr


@pytest.mark.slow
def test_non_positive_tau_names_key_and_range(run_cli):
    proc = run_cli("train.py", "loss.tau=0", "logger=none")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "loss.tau" in proc.stderr and "> 0" in proc.stderr


@pytest.mark.parametrize("tau", [0.0, -0.04])
def test_tau_error_in_process(compose_cfg, tau, monkeypatch):
    """Caught before the data loads: a bad loss value costs no waiting."""
    import oodlab.run.train

    def no_data(cfg):
        raise AssertionError("the data was loaded before the loss was checked")

    monkeypatch.setattr(oodlab.run.train, "build_datamodule", no_data)
    with pytest.raises(ConfigError, match=r"loss\.tau"):
        train(compose_cfg(["debug=fast", f"loss.tau={tau}"]))


def test_ckpt_path_last_without_a_run_says_where_it_looked(compose_cfg, tmp_path):
    from oodlab.errors import MissingFileError

    cfg = compose_cfg(["debug=fast", "ckpt_path=last", f"hydra.run.dir={tmp_path}"])
    with pytest.raises(
        MissingFileError,
        match=r"^Checkpoint not found: looked in .*checkpoints\. ckpt_path=last resumes",
    ):
        train(cfg)


def test_unknown_backbone_lists_oodlab_models(compose_cfg, capsys):
    cfg = compose_cfg(["debug=fast", "model.backbone=small_cn"])
    with pytest.raises(SystemExit) as exit_info:
        guarded(lambda: train(cfg), cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Unknown backbone 'small_cn'" in err and "small_cnn" in err and "wrn40_2" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "group, name",
    [
        (
            "data",
            "mnist5",
        ),
        ("ood", "nope"),
        ("loss", "isomaxx"),
    ],
)
def test_unknown_group_option_lists_choices(compose_cfg, group, name):
    with pytest.raises(ConfigCompositionException, match="Available options"):
        compose_cfg([f"{group}={name}"])


def test_unknown_score_lists_choices(compose_cfg):
    with pytest.raises(UnknownNameError, match=r"Unknown score 'msq'.*msp"):
        train(compose_cfg(["debug=fast", "eval.scores=[msp,msq]"]))


def test_unknown_curve_set_lists_sets(compose_cfg):
    with pytest.raises(UnknownNameError, match="textures"):
        train(compose_cfg(["debug=fast", "ood.curve=texture"]))


def test_nan_loss_stops_and_names_step(compose_cfg):
    # An infinite learning rate turns the weights non-finite after the first update, so the
    # loss of the second step (global step 1) is NaN.
    cfg = compose_cfg(["debug=fast", "loss=ce", "optimizer.lr=inf", "scheduler=none"])
    with pytest.raises(NonFiniteLossError, match=r"global step 1 \(epoch 0\)") as info:
        train(cfg)
    assert "'ce'" in str(info.value)
