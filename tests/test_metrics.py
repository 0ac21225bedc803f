"""OOD metrics against scikit-learn and independent numpy definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from oodlab.errors import OodlabError
from oodlab.metrics import OODMetrics, ood_metrics

KEYS = {
    "fpr95",
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr95_openood",
    "aupr_in_openood",
    "aupr_out_openood",
}


# ---------------------------------------------------------------- references


def fpr95_reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """The README's definition, literally: t is the largest value with >= 95% of ID scores >= t;
    FPR95 is the fraction of OOD scores >= t. (t can be taken among the ID scores.)"""
    candidates = np.unique(id_scores)
    frac_ok = [100 * np.sum(id_scores >= c) >= 95 * len(id_scores) for c in candidates]
    t = candidates[np.asarray(frac_ok)].max()
    return float(np.mean(ood_scores >= t))


def fpr95_openood_reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """OpenOOD v1.5 (openood/evaluators/metrics.py): OOD positive, scores negated,
    sklearn roc_curve with its defaults, FPR at the first point with TPR >= 0.95."""
    conf = np.concatenate([id_scores, ood_scores])
    is_ood = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    fpr, tpr, _ = roc_curve(is_ood, -conf)
    return float(fpr[np.argmax(tpr >= 0.95)])


def fpr95_openood_plain(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """The same operating point from its definition, without roc_curve's point dropping:
    u is the smallest value with >= 95% of OOD scores <= u; report ID fraction <= u."""
    candidates = np.unique(ood_scores)
    ok = [100 * np.sum(ood_scores <= c) >= 95 * len(ood_scores) for c in candidates]
    u = candidates[np.asarray(ok)].min()
    return float(np.mean(id_scores <= u))


def sklearn_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    y = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    s = np.r_[id_scores, ood_scores].astype(np.float64)
    return {
        "auroc": roc_auc_score(y, s),
        "aupr_in": average_precision_score(y, s),
        "aupr_out": average_precision_score(1 - y, -s),
        "fpr95": fpr95_reference(id_scores, ood_scores),
        "fpr95_openood": fpr95_openood_reference(id_scores, ood_scores),
        # OpenOOD's evaluator (openood/evaluators/metrics.py): auc(recall, precision)
        "aupr_in_openood": auc(*precision_recall_curve(y, s)[1::-1]),
        "aupr_out_openood": auc(*precision_recall_curve(1 - y, -s)[1::-1]),
    }


def tied_scores(rng: np.random.Generator, n_id: int, n_ood: int, kind: str):
    if kind == "int":  # few distinct values, lots of ties within and across sets
        levels = int(rng.integers(2, 12))
        a = rng.integers(0, levels, n_id) + 1
        b = rng.integers(0, levels, n_ood)
    elif kind == "rounded":
        a = np.round(rng.normal(0.5, 1.0, n_id), 1)
        b = np.round(rng.normal(0.0, 1.0, n_ood), 1)
    else:  # continuous float32, almost no ties
        a = rng.normal(1.0, 1.0, n_id).astype(np.float32)
        b = rng.normal(0.0, 1.0, n_ood).astype(np.float32)
    return a, b


# ---------------------------------------------------------------- vs sklearn


SIZES = [(1, 1), (1, 40), (40, 1), (20, 20), (7, 301), (333, 19), (1000, 1000), (2500, 700)]


@pytest.mark.parametrize("kind", ["int", "rounded", "float"])
@pytest.mark.parametrize("n_id,n_ood", SIZES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_and_definitions(kind, n_id, n_ood, seed):
    rng = np.random.default_rng([seed, n_id, n_ood])
    a, b = tied_scores(rng, n_id, n_ood, kind)
    got = ood_metrics(a, b)
    want = sklearn_metrics(a, b)
    assert set(got) == KEYS
    for key, value in want.items():
        assert isinstance(got[key], float)
        assert 0.0 <= got[key] <= 1.0
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_many_random_tie_patterns():
    """Hundreds of small, heavily tied cases: catches off-by-one threshold handling."""
    rng = np.random.default_rng(12345)
    for _ in range(150):
        n_id, n_ood = rng.integers(1, 60, 2)
        a = rng.integers(0, rng.integers(1, 8), n_id).astype(np.float64)
        b = (rng.integers(0, rng.integers(1, 8), n_ood) - rng.integers(0, 3)).astype(np.float64)
        got, want = ood_metrics(a, b), sklearn_metrics(a, b)
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-12), (key, a, b)


def test_fpr95_openood_matches_plain_definition_without_ties():
    rng = np.random.default_rng(7)
    for n_id, n_ood in [(100, 100), (57, 913), (1000, 20)]:
        a, b = rng.normal(1, 1, n_id), rng.normal(0, 1, n_ood)
        assert ood_metrics(a, b)["fpr95_openood"] == pytest.approx(
            fpr95_openood_plain(a, b), abs=1e-15
        )


def test_fpr95_openood_reproduces_roc_curve_point_dropping():
    # Every score level holds one ID and one OOD sample: the ROC curve is a straight
    # diagonal, sklearn's drop_intermediate keeps only its end points, and OpenOOD
    # therefore reports FPR = 1 where the plain operating point gives 0.95.
    levels = np.arange(100, dtype=np.float64)
    got = ood_metrics(levels, levels)
    assert fpr95_openood_plain(levels, levels) == pytest.approx(0.95)
    assert fpr95_openood_reference(levels, levels) == 1.0
    assert got["fpr95_openood"] == 1.0
    assert got["fpr95"] == pytest.approx(0.95)
    assert got["auroc"] == pytest.approx(0.5)


def test_fpr95_exact_at_95_percent_boundary():
    # 20 ID scores: t must be the 19th highest (19/20 = 95% exactly), not the 20th.
    a = np.arange(1, 21, dtype=np.float64)  # 1..20; t = 2
    b = np.array([1.0, 1.5, 2.0, 2.5])
    assert ood_metrics(a, b)["fpr95"] == pytest.approx(2 / 4)
    assert ood_metrics(a, b)["fpr95"] == fpr95_reference(a, b)


# ---------------------------------------------------------------- hand-made cases


def test_perfect_separation():
    r = ood_metrics(torch.tensor([2.0, 3.0, 4.0]), torch.tensor([-1.0, 0.0, 1.0]))
    assert r == {
        "fpr95": 0.0, "auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95_openood": 0.0,
        "aupr_in_openood": 1.0, "aupr_out_openood": 1.0,
    }  # fmt: skip


def test_reversed():
    r = ood_metrics(np.array([-1.0, 0.0]), np.array([1.0, 2.0, 3.0]))
    assert r["auroc"] == 0.0
    assert r["fpr95"] == 1.0
    assert r["fpr95_openood"] == 1.0
    # AP of a worst ranking: ID found last, at precision 1/4 then 2/5.
    assert r["aupr_in"] == pytest.approx(0.5 * (1 / 4 + 2 / 5))


def test_all_scores_equal():
    r = ood_metrics(np.full(10, 0.3), np.full(30, 0.3))
    assert r["auroc"] == 0.5
    assert r["fpr95"] == 1.0
    assert r["fpr95_openood"] == 1.0
    assert r["aupr_in"] == pytest.approx(10 / 40)
    assert r["aupr_out"] == pytest.approx(30 / 40)


def test_input_types_and_dtypes_agree():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1, 1, 500).astype(np.float32), rng.normal(0, 1, 400).astype(np.float32)
    base = ood_metrics(a, b)
    assert ood_metrics(torch.from_numpy(a), torch.from_numpy(b)) == base
    assert ood_metrics(a.astype(np.float64), b.astype(np.float64)) == base
    assert ood_metrics(torch.from_numpy(a).half(), torch.from_numpy(b).half()).keys() == KEYS
    assert ood_metrics(list(a), list(b)) == base
    ai, bi = rng.integers(0, 5, 50), rng.integers(0, 5, 60)
    assert ood_metrics(ai, bi) == ood_metrics(ai.astype(float), bi.astype(float))


def test_raw_scores_are_not_squashed():
    # torchmetrics' public binary functions sigmoid scores outside [0, 1]; in float32,
    # sigmoid(20) == sigmoid(21) == 1, which would tie these perfectly separated sets.
    r = ood_metrics(torch.tensor([21.0, 22.0, 23.0]), torch.tensor([18.0, 19.0, 20.0]))
    assert r["auroc"] == 1.0
    assert r["fpr95"] == 0.0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "id_scores,ood_scores,match",
    [
        ([], [1.0, 2.0], "got 0 ID scores and 2 OOD scores"),
        ([1.0, 2.0], [], "got 2 ID scores and 0 OOD scores"),
        (np.array([1.0, np.nan]), [0.0], "1 NaN and 0 infinite values among the 2 ID"),
        ([1.0], torch.tensor([0.0, float("nan"), float("-inf")]), "1 NaN and 1 infinite"),
        (np.ones((3, 2)), [0.0], "1-D ID scores"),
    ],
)
def test_bad_inputs_raise_clear_error(id_scores, ood_scores, match):
    with pytest.raises(OodlabError, match=match) as info:
        ood_metrics(id_scores, ood_scores)
    assert "ood_metrics" in str(info.value)


# ---------------------------------------------------------------- OODMetrics


def test_metric_accumulates_like_concatenation():
    rng = np.random.default_rng(11)
    metric = OODMetrics()
    all_id, all_ood = [], []
    for i in range(5):
        n = int(rng.integers(1, 200))
        scores = torch.from_numpy(np.round(rng.normal(0, 1, n), 1))
        is_id = torch.from_numpy(rng.random(n) < 0.6)
        metric.update(scores, is_id)
        all_id.append(scores[is_id])
        all_ood.append(scores[~is_id])
        if i == 2:  # a whole batch of one kind, flagged with a plain bool
            extra = torch.from_numpy(rng.normal(-1, 1, 50))
            metric.update(extra, False)
            all_ood.append(extra)
    want = ood_metrics(torch.cat(all_id), torch.cat(all_ood))
    assert metric.compute() == want


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric OODMetrics")
def test_metric_clone_reset_and_errors():
    metric = OODMetrics()
    other = metric.clone()
    metric.update(torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([1, 1, 0, 0]))
    assert metric.compute()["auroc"] == 1.0
    other.update(torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([0, 0, 1, 1]))
    assert other.compute()["auroc"] == 0.0
    assert metric.compute()["auroc"] == 1.0  # the clone has its own state
    metric.reset()
    with pytest.raises(OodlabError, match="got 0 ID scores and 0 OOD scores"):
        metric.compute()
    metric.update(torch.tensor([1.0, 2.0]), True)
    with pytest.raises(OodlabError, match="0 OOD scores"):
        metric.compute()
    with pytest.raises(OodlabError, match="one is_id flag per score"):
        metric.update(torch.tensor([1.0, 2.0]), torch.tensor([True]))
    with pytest.raises(OodlabError, match="NaN"):
        metric.update(torch.tensor([float("nan")]), True)
