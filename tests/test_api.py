"""``oodlab.evaluate`` on models that are not oodlab's, through every kind of data it accepts;
the README's example runs as written; results.json files of earlier versions still load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import oodlab
from oodlab.evaluation.model import ScoringModel
from oodlab.outputs.record import RunRecord

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    record = RunRecord.read(tmp_path / "logs" / "api_example")
    assert set(record.ood) == {"msp", "energy", "knn", "mahalanobis"}
    assert set(record.ood["msp"]) == {"uniform_noise", "inverted_digits", "mean"}
    assert record.id["n"] == 497 and 0.0 <= record.id["acc"] <= 1.0
    # hyperparameters chosen on the validation pair, from the default grids
    assert (
        record.scores["knn"].chosen["k"] in (1, 10, 50, 100, 200)
        and len(record.scores["knn"].trials) == 5
    )
    assert record.calibration["fitted_on"] == "val"
    printed = capsys.readouterr().out.split()
    assert float(printed[0]) == pytest.approx(record.ood["energy"]["uniform_noise"]["auroc"])


def data(n: int, seed: int, labelled: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    return (x, torch.randint(0, 4, (n,), generator=g)) if labelled else x


@pytest.fixture
def sets():
    return {
        "test": data(40, 1),
        "val": data(30, 2),
        "train": data(60, 3),
        "val_ood": data(20, 4, False),
        "ood": data(25, 5, False),
    }


def evaluate(model, sets, **kwargs):
    kwargs = {
        "id_val": sets["val"],
        "val_ood": sets["val_ood"],
        "id_train": sets["train"],
        "batch_size": 16,
        "grids": {"knn": {"k": [1, 5]}},
        **kwargs,
    }
    return oodlab.evaluate(
        model,
        sets["test"],
        {"ood": sets["ood"]},
        scores=["msp", "knn", "gradnorm", "react"],
        **kwargs,
    )


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    ).eval()


def test_every_kind_of_data_gives_the_same_record(sets):
    model = tiny_cnn()
    want = evaluate(model, sets)
    as_dataset = {
        k: TensorDataset(*v) if isinstance(v, tuple) else TensorDataset(v) for k, v in sets.items()
    }
    as_loader = {k: DataLoader(v, batch_size=7) for k, v in as_dataset.items()}
    for variant in (as_dataset, as_loader):
        got = evaluate(model, variant)
        assert got.ood == want.ood
        assert got.id == want.id
        assert {k: c.chosen for k, c in got.scores.items()} == {
            k: c.chosen for k, c in want.scores.items()
        }


def test_hooked_features_are_the_last_layer_input():
    model = torchvision.models.resnet18(num_classes=4).eval()
    net = ScoringModel(model)
    assert net.kind == "hook" and net.head is model.fc
    x = torch.randn(3, 3, 32, 32)
    logits, features = net.forward_with_features(x)
    body = nn.Sequential(*list(model.children())[:-1])
    torch.testing.assert_close(features, body(x).flatten(1))
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(net.head(features), logits)


def test_timm_models_give_pooled_pre_logits():
    model = timm.create_model("resnet10t", pretrained=False, num_classes=4).eval()
    net = ScoringModel(model)
    assert net.kind == "timm"
    x = torch.randn(2, 3, 32, 32)
    logits, features = net.forward_with_features(x)
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(net.head(features), logits)
    assert features.shape == (2, model.num_features)


def test_a_named_head_and_a_bad_name():
    model = tiny_cnn()
    assert ScoringModel(model, head="4").head is model[4]
    with pytest.raises(oodlab.errors.ConfigError, match="head"):
        ScoringModel(model, head="classifier")


def test_scores_without_labels_or_validation_pair(sets):
    record = oodlab.evaluate(
        tiny_cnn(), sets["ood"], {"ood": sets["val_ood"]}, scores={"energy": {"temperature": 2.0}}
    )
    assert record.id["acc"] is None and record.calibration is None
    assert (
        record.scores["energy"].chosen == {"temperature": 2.0}
        and record.scores["energy"].val is None
    )


def test_default_score_of_a_model_without_an_oodlab_head_is_msp(sets):
    record = oodlab.evaluate(tiny_cnn(), sets["test"], {"ood": sets["ood"]}, scores=["default"])
    assert set(record.ood) == {"msp"}


def test_results_of_the_previous_version_still_load():
    raw = json.loads((REPO / "tests" / "data" / "results_v0.1.json").read_text())
    record = RunRecord.read(REPO / "tests" / "data" / "results_v0.1.json")
    assert record.status == "ok" and record.run.loss == "isomaxplus" and record.warnings == []
    again = record.to_json()
    # every key it had is written back unchanged; newer keys are added
    for key, value in raw.items():
        if key == "scores":
            for name, section in value.items():
                assert {k: v for k, v in again["scores"][name].items() if k in section} == section
        else:
            assert again[key] == value, key
    assert record.flatten()["ood/mds/mean/auroc"] == raw["ood"]["mds"]["mean"]["auroc"]
    assert record.flatten("test/")["test/acc"] == raw["id"]["acc"]


def test_default_score_of_a_plain_classifier_is_msp():
    """`src/eval.py arch=...` keeps eval.scores' default list: `default` must resolve for a
    model without an oodlab head too."""
    from oodlab.api import resolve_scores

    assert resolve_scores(["default", "energy"], None, None) == {"msp": {}, "energy": {}}
    assert resolve_scores(["default"], None, "es") == {"es": {}}


@pytest.mark.parametrize("training", [False, True])
def test_the_callers_model_keeps_its_modes_and_batchnorm_statistics(sets, training):
    """evaluate switches to eval mode while it runs, then hands back every submodule's own
    training flag: a model passed in eval mode is not returned in train mode (batch-statistics
    BatchNorm, active dropout), and a mixed state survives too."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(8, 4),
    ).train(training)
    model[5].train(not training)  # a submodule whose mode differs from its parent's
    modes = {name: m.training for name, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model[1].state_dict().items()}
    first = evaluate(model, sets)
    assert {name: m.training for name, m in model.named_modules()} == modes
    for key, value in model[1].state_dict().items():
        assert torch.equal(value, stats[key]), key
    # and the evaluation itself ran in eval mode: the same numbers again
    assert evaluate(model, sets).ood == first.ood
