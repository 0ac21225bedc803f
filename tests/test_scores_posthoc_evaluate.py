"""The OpenOOD v1.5 post-hoc scores through ``oodlab.evaluate`` on a small model: every one runs
on the shared inference pass, chooses on the validation pair, and the ID-val fits
(``needs_val``) get the ID validation split."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import oodlab

NEW_SCORES = [
    "vim",
    "ash",
    "scale",
    "gen",
    "fdbd",
    "nnguide",
    "klm",
    "dice",
    "rmds",
    "she",
    "nci",
    "temp_scaling",
]


def data(n: int, seed: int, labelled: bool = True, shift: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256 - shift, (n, 3, 8, 8), dtype=torch.uint8, generator=g) + shift
    return (x, torch.randint(0, 4, (n,), generator=g)) if labelled else x


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


@pytest.fixture
def sets():
    return {
        "test": data(40, 1),
        "val": data(30, 2),
        "train": data(60, 3),
        "val_ood": data(20, 4, False, shift=100),
        "ood": data(25, 5, False, shift=100),
    }


def test_every_new_score_through_evaluate(sets):
    record = oodlab.evaluate(
        small_model(),
        sets["test"],
        {"ood": sets["ood"]},
        scores=NEW_SCORES,
        id_val=sets["val"],
        val_ood=sets["val_ood"],
        id_train=sets["train"],
        # 60 training samples: K must stay below them (OpenOOD's grid is K=100)
        grids={"nnguide": {"K": [5, 10]}, "gen": {"gamma": [0.1, 1.0], "M": [10]}},
        batch_size=16,
    )
    assert set(record.ood) == set(NEW_SCORES)
    for name in NEW_SCORES:
        metrics = record.ood[name]["ood"]
        assert 0.0 <= metrics["auroc"] <= 1.0 and 0.0 <= metrics["fpr95"] <= 1.0, name
        assert record.scores[name].val is not None, name
        values = record.evaluation.id_scores[name]
        assert values.shape == (40,) and bool(torch.isfinite(values).all()), name
    assert len(record.scores["ash"].trials) == 7
    assert len(record.scores["vim"].trials) == 2
    assert record.scores["nnguide"].chosen["K"] in (5, 10)
    # temperature scaling's T is the run's calibration temperature (both fitted on ID val)
    t = record.calibration["temperature"]
    logits = record.evaluation.outputs["id"].logits.double()
    expected = (logits / t).softmax(dim=1).amax(dim=1).float()
    torch.testing.assert_close(record.evaluation.id_scores["temp_scaling"], expected)
    assert math.isfinite(t)


def test_val_fits_without_a_validation_ood_set(sets):
    record = oodlab.evaluate(
        small_model(),
        sets["test"],
        {"ood": sets["ood"]},
        scores=["klm", "temp_scaling", "vim"],
        id_val=sets["val"],
        id_train=sets["train"],
    )
    assert record.scores["vim"].chosen == {"dim": None}  # published default, no search
    assert set(record.ood) == {"klm", "temp_scaling", "vim"}
    with pytest.raises(ValueError, match="validation split"):
        oodlab.evaluate(small_model(), sets["test"], {"ood": sets["ood"]}, scores=["klm"])


@pytest.mark.slow
def test_every_new_score_through_the_training_command(compose_cfg):
    """debug=fast with every new score: small_cnn's 64-dimensional features, the MNIST-5k
    suite, choices on its validation pair."""
    from oodlab.run.train import train

    cfg = compose_cfg(
        ["debug=fast", "logger=none", "plots=false", f"eval.scores=[msp,{','.join(NEW_SCORES)}]"]
    )
    results, _ = train(cfg)
    assert set(results["ood"]) == {"msp", *NEW_SCORES}
    for name in NEW_SCORES:
        mean = results["ood"][name]["mean"]
        assert all(math.isfinite(mean[k]) for k in ("fpr95", "auroc")), name
        assert results["scores"][name]["val_fpr95"] is not None, name
