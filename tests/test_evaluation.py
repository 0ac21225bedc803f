"""The evaluation protocol: one inference pass per dataset, hyperparameters chosen on the
validation pair only, statistics from the training split, means over sets and groups,
calibration, and DDP sharding that covers every sample once."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oodlab._infra.distributed import batch_shard
from oodlab.api import evaluate
from oodlab.data.types import ImageTensors
from oodlab.errors import ConfigError, UnknownNameError
from oodlab.evaluation.selection import ScorePlan, choose, search_space
from oodlab.losses import CrossEntropyHead
from oodlab.metrics import calibration_report, ood_metrics
from oodlab.models.classifier import OODClassifier
from oodlab.models.transforms import Normalize
from oodlab.scores import SCORES, Outputs, Score


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.num_features = 6

    def forward(self, x):
        return F.relu(self.conv(x)).amax(dim=(2, 3))


class CountingClassifier(OODClassifier):
    """Counts full-network passes: cached inference vs re-runs (ODIN)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls: Counter[str] = Counter()

    def forward_with_features(self, x):
        self.calls["forward_with_features"] += 1
        return super().forward_with_features(x)

    def forward(self, x):
        self.calls["forward"] += 1
        return super().forward(x)


def images(n: int, seed: int, bright: bool) -> ImageTensors:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 80, (n, 1, 6, 6), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    if bright:  # a class-dependent bright pixel column: something for the model to be sure about
        for c in range(3):
            x[labels == c, :, :, 2 * c : 2 * c + 2] += 150
        return ImageTensors(x.clamp(0, 255).to(torch.uint8), labels)
    return ImageTensors.unlabeled(x.to(torch.uint8))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = CountingClassifier(TinyBackbone(), CrossEntropyHead(6, 3)).eval()
    data = {
        "train": images(90, 1, True),
        "val": images(40, 2, True),
        "test": images(50, 3, True),
        "val_ood": images(20, 4, False),
        "ood": {
            "dark": images(25, 5, False),
            "other": images(15, 6, False),
            "third": images(10, 7, False),
        },
    }
    return model, Normalize((0.2,), (0.3,)), data


def run(model, normalize, data, scores, **kwargs):
    """The evaluation behind the record oodlab.evaluate returns."""
    kwargs = {
        "id_train": data["train"],
        "id_val": data["val"],
        "val_ood": data["val_ood"],
        "batch_size": 16,
        **kwargs,
    }
    record = evaluate(
        model, data["test"], data["ood"], scores, normalize=normalize, dataset="tiny", **kwargs
    )
    return record.evaluation


def batches(n: int, size: int = 16) -> int:
    return -(-n // size)


# -- sharding ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_batches", [0, 1, 7, 16, 33, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_are_whole_single_process_batches_in_order(n_batches, world):
    shards = [batch_shard(n_batches, world, rank) for rank in range(world)]
    assert [b for shard in shards for b in shard] == list(range(n_batches))
    assert max(map(len, shards)) - min(map(len, shards)) <= -(-n_batches // world)


# -- inference once ------------------------------------------------------------------------
def test_every_dataset_is_inferred_once_for_all_cached_scores(setup):
    model, normalize, data = setup
    scores = {
        n: {} for n in ("msp", "energy", "gradnorm", "react", "mahalanobis", "knn", "es", "mmles")
    }
    run(model, normalize, data, scores, grids={"knn": {"k": [1, 5]}})
    sizes = [len(data[k]) for k in ("train", "val", "test", "val_ood")] + [
        len(d) for d in data["ood"].values()
    ]
    assert model.calls["forward_with_features"] == sum(batches(n) for n in sizes)
    assert model.calls["forward"] == 0


def test_odin_reruns_the_network_and_nothing_else_does(setup):
    model, normalize, data = setup
    result = run(
        model,
        normalize,
        data,
        {"msp": {}, "odin": {}},
        grids={"odin": {"temperature": [1, 10], "epsilon": [0, 0.01]}},
    )
    # no training split inferred: none of these scores fits statistics
    sizes = [len(data[k]) for k in ("val", "test", "val_ood")] + [
        len(d) for d in data["ood"].values()
    ]
    assert model.calls["forward_with_features"] == sum(batches(n) for n in sizes)
    # val pair, per batch and temperature: one gradient pass, one perturbed pass (eps=0 reuses the
    # gradient pass's logits); test sets: the chosen setting only
    val_batches = batches(len(data["val"])) + batches(len(data["val_ood"]))
    test_batches = sum(batches(n) for n in sizes) - val_batches
    per_test_batch = 2 if result.choices["odin"].chosen["epsilon"] > 0 else 1
    assert model.calls["forward"] == val_batches * 2 * 2 + test_batches * per_test_batch


# -- the protocol --------------------------------------------------------------------------
def test_metrics_equal_an_independent_computation(setup):
    model, normalize, data = setup
    result = run(model, normalize, data, {"energy": {"temperature": 2.0}, "knn": {"k": 3}})

    def energy(x: ImageTensors) -> torch.Tensor:
        with torch.no_grad():
            return 2.0 * torch.logsumexp(model(normalize(x.images)) / 2.0, dim=1)

    for name, ood in data["ood"].items():
        want = ood_metrics(energy(data["test"]), energy(ood))
        got = result.ood["energy"][name]
        assert got["n"] == len(ood)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (name, key)
    # fixed values skip the search: one trial, empty grid
    assert result.choices["energy"].grid == {}
    assert result.choices["energy"].chosen == {"temperature": 2.0}
    assert len(result.choices["energy"].trials) == 1


def test_hyperparameters_are_chosen_on_the_validation_pair(setup):
    model, normalize, data = setup
    grid = [0.5, 3.0, 50.0]
    result = run(model, normalize, data, {"energy": {}}, grids={"energy": {"temperature": grid}})
    with torch.no_grad():
        val_id, val_ood = (model(normalize(d.images)) for d in (data["val"], data["val_ood"]))
    trials = [
        ood_metrics(t * torch.logsumexp(val_id / t, 1), t * torch.logsumexp(val_ood / t, 1))
        for t in grid
    ]
    best = min(range(len(grid)), key=lambda i: (trials[i]["fpr95"], -trials[i]["auroc"], i))
    choice = result.choices["energy"]
    assert choice.chosen == {"temperature": grid[best]}
    assert choice.grid == {"temperature": grid}
    assert choice.val["fpr95"] == trials[best]["fpr95"]
    assert [t["params"]["temperature"] for t in choice.trials] == grid
    section = result.sections()["scores"]["energy"]
    assert (
        section["chosen"] == {"temperature": grid[best]}
        and section["val_fpr95"] == trials[best]["fpr95"]
    )


def test_choose_prefers_lower_fpr95_then_higher_auroc_then_grid_order():
    ids = torch.arange(100.0)
    settings_scores = {
        # fpr95 0.5, auroc high
        1.0: (ids, torch.cat([torch.full((50,), 200.0), torch.full((50,), -1.0)])),
        # fpr95 0.0, lower auroc than the next
        2.0: (ids, torch.full((100,), 4.5)),
        # fpr95 0.0, auroc 1
        3.0: (ids, torch.full((100,), -1.0)),
        # the same metrics as 3.0, later in the grid
        4.0: (ids, torch.full((100,), -5.0)),
    }
    plan = ScorePlan("energy", SCORES["energy"], {}, {"temperature": list(settings_scores)})
    choice = choose(plan, [settings_scores[s["temperature"]] for s in plan.settings])
    assert choice.chosen == {"temperature": 3.0}
    assert [t["fpr95"] for t in choice.trials] == [0.5, 0.0, 0.0, 0.0]


def test_search_space_from_config_with_fixed_keys_and_bad_values():
    assert search_space("odin", {"temperature": 1000}, {"odin": {"epsilon": [0, 0.001]}}) == {
        "epsilon": [0.0, 0.001]
    }
    assert search_space("odin", {}, {}) == {
        "temperature": [1.0, 10.0, 100.0, 1000.0],
        "epsilon": [0.0, 0.0005, 0.001, 0.002, 0.005],
    }
    assert search_space("msp", {}, {}) == {}
    with pytest.raises(ConfigError, match=r"eval\.grids\.odin\.epsilon"):
        search_space("odin", {}, {"odin": {"epsilon": [0.001, -1]}})
    with pytest.raises(ConfigError, match=r"eval\.grids\.knn"):
        search_space("knn", {}, {"knn": {"neighbours": [3]}})
    with pytest.raises(ConfigError, match=r"eval\.grids\.react\.percentile"):
        search_space("react", {}, {"react": {"percentile": 90}})


def test_without_a_validation_ood_set_the_published_defaults_are_used(setup):
    model, normalize, data = setup
    result = run(model, normalize, data, {"odin": {}, "react": {}, "knn": {}}, val_ood=None)
    assert result.choices["odin"].chosen == {"temperature": 1000.0, "epsilon": 0.0014}
    assert result.choices["react"].chosen == {"percentile": 90.0}
    assert result.choices["knn"].chosen == {"k": 50}
    assert (
        result.choices["odin"].val is None
        and result.sections()["scores"]["odin"]["val_fpr95"] is None
    )


class SpyScore(Score):
    """Records what it was fitted on."""

    name = "spy"
    needs_train = True
    fitted_on: ClassVar[list[Outputs]] = []

    def fit(self, train, model):
        SpyScore.fitted_on.append(train)

    def score(self, outputs):
        return outputs.features[:, 0]


def test_statistics_come_from_the_training_split(setup, monkeypatch):
    model, normalize, data = setup
    monkeypatch.setitem(SCORES._entries, "spy", SpyScore)
    SpyScore.fitted_on.clear()
    run(model, normalize, data, {"spy": {}})
    with torch.no_grad():
        train_features = model.forward_features(normalize(data["train"].images))
    assert SpyScore.fitted_on, "fit was never called"
    for train in SpyScore.fitted_on:
        assert torch.equal(train.labels, data["train"].labels)
        torch.testing.assert_close(train.features, train_features)


def test_means_over_sets_and_groups(setup):
    model, normalize, data = setup
    groups = {"near": ["dark"], "far": ["other", "third"]}
    result = run(model, normalize, data, {"msp": {}}, groups=groups, mean_exclude=["third"])
    table = result.ood["msp"]
    assert list(table) == ["dark", "other", "third", "mean", "mean_near", "mean_far"]
    for key in ("fpr95", "auroc", "aupr_in", "aupr_out", "fpr95_openood"):
        assert table["mean"][key] == pytest.approx((table["dark"][key] + table["other"][key]) / 2)
        assert table["mean_near"][key] == pytest.approx(table["dark"][key])
        assert table["mean_far"][key] == pytest.approx(
            (table["other"][key] + table["third"][key]) / 2
        )
    with pytest.raises(ConfigError, match=r"ood\.groups\.near"):
        run(model, normalize, data, {"msp": {}}, groups={"near": ["dark", "nope"]})


def test_calibration_is_fitted_on_val_and_reported_on_test(setup):
    model, normalize, data = setup
    result = run(model, normalize, data, {"msp": {}})
    with torch.no_grad():
        val, test = (model(normalize(data[k].images)) for k in ("val", "test"))
    want = calibration_report(val, data["val"].labels, test, data["test"].labels)
    section = result.sections()["calibration"]
    assert section["fitted_on"] == "val" and section["n_bins"] == 15
    for key, value in want.items():
        assert section[key] == pytest.approx(value, rel=1e-6), key
    assert np.isfinite(section["ece_after"])


def test_bad_names_fail_before_inference(setup):
    model, normalize, data = setup
    with pytest.raises(UnknownNameError, match="Choices"):
        run(model, normalize, data, {"mspp": {}})
    with pytest.raises(UnknownNameError, match=r"eval\.grids"):
        run(model, normalize, data, {"msp": {}}, grids={"odni": {"temperature": [1]}})
    with pytest.raises(ConfigError, match=r"eval\.params\.odin\.epsilon"):
        run(model, normalize, data, {"odin": {"epsilon": -1}})
    assert model.calls["forward_with_features"] == 0
