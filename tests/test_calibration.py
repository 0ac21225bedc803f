"""Calibration metrics: ECE, NLL, temperature scaling, reliability diagram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oodlab.errors import OodlabError
from oodlab.metrics import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
)
from oodlab.outputs.plots import reliability_diagram


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece_reference(logits: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> float:
    """Independent ECE: n_bins equal-width bins [i/n, (i+1)/n) over max-softmax
    confidence, 1.0 in the last bin, sum over bins of |acc - conf| * (bin size / N)."""
    probs = softmax_np(logits.astype(np.float64))
    conf = probs.max(axis=1).astype(np.float32).astype(np.float64)
    correct = probs.argmax(axis=1) == targets
    ece = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        in_bin = (conf >= lo) & ((conf < hi) if i < n_bins - 1 else (conf <= hi))
        if in_bin.any():
            ece += abs(correct[in_bin].mean() - conf[in_bin].mean()) * in_bin.mean()
    return float(ece)


def sample_problem(n: int, k: int, seed: int, scale: float = 2.0):
    """True logits and labels drawn from softmax(true logits): calibrated at T = 1."""
    g = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    targets = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=g).squeeze(1)
    return true_logits, targets


# ---------------------------------------------------------------- ECE and NLL


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [0.5, 3.0, 8.0])
def test_ece_matches_numpy(seed, scale):
    logits, targets = sample_problem(3000, 10, seed, scale)
    logits = logits.float()
    got = expected_calibration_error(logits, targets)
    want = ece_reference(logits.numpy(), targets.numpy())
    assert got == pytest.approx(want, abs=1e-6)
    assert 0.0 <= got <= 1.0


def test_ece_other_bin_count():
    logits, targets = sample_problem(2000, 5, 3, 3.0)
    got = expected_calibration_error(logits, targets, n_bins=10)
    assert got == pytest.approx(ece_reference(logits.numpy(), targets.numpy(), 10), abs=1e-6)
    assert got != pytest.approx(expected_calibration_error(logits, targets), abs=1e-9)


def test_ece_saturated_confidence_stays_in_15_bins():
    # torchmetrics on its own scores confidences of exactly 1.0 (float32) in a 16th bin
    # of their own; the contract's 15 bins put them in the last bin, [14/15, 1].
    # 10 samples at confidence 1.0, half right; 10 at confidence 0.95, all right.
    saturated = torch.tensor([[60.0, 0.0]]).repeat(10, 1)
    p95 = torch.tensor([[math.log(19.0), 0.0]]).repeat(10, 1)
    logits = torch.cat([saturated, p95])
    targets = torch.tensor([0, 1] * 5 + [0] * 10)
    # one bin: accuracy 0.75, confidence 0.975 (a 16th bin would give 0.25 + 0.025)
    want = 0.225
    assert ece_reference(logits.numpy(), targets.numpy()) == pytest.approx(want, abs=1e-6)
    assert expected_calibration_error(logits, targets) == pytest.approx(want, abs=1e-6)


def test_ece_softmaxes_logits_that_look_like_probabilities():
    # All logits inside [0, 1]: torchmetrics would take them for probabilities.
    g = torch.Generator().manual_seed(0)
    logits = torch.rand(500, 4, generator=g)
    targets = torch.randint(0, 4, (500,), generator=g)
    got = expected_calibration_error(logits, targets)
    assert got == pytest.approx(ece_reference(logits.numpy(), targets.numpy()), abs=1e-6)


def test_nll_matches_numpy():
    logits, targets = sample_problem(500, 7, 5)
    probs = softmax_np(logits.numpy())
    want = -np.mean(np.log(probs[np.arange(500), targets.numpy()]))
    assert nll(logits, targets) == pytest.approx(want, rel=1e-12)
    assert nll(logits.numpy(), targets.numpy()) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------- temperature scaling


@pytest.mark.parametrize("true_t", [3.0, 1.0, 1 / 3])
def test_fit_temperature_recovers_known_temperature(true_t):
    true_logits, targets = sample_problem(6000, 10, 6)
    t = fit_temperature(true_logits * true_t, targets)
    assert t == pytest.approx(true_t, rel=0.1)


def test_fit_temperature_is_the_nll_minimum():
    true_logits, targets = sample_problem(2000, 10, 7)
    logits = true_logits * 3
    t = fit_temperature(logits, targets)
    best = nll(logits / t, targets)
    for factor in (0.98, 1.02):
        assert best <= nll(logits / (t * factor), targets)


def test_fit_temperature_fallback_search(monkeypatch):
    true_logits, targets = sample_problem(2000, 10, 8)
    want = fit_temperature(true_logits * 3, targets)

    def broken_step(self, closure):
        raise RuntimeError("L-BFGS failed")

    monkeypatch.setattr(torch.optim.LBFGS, "step", broken_step)
    assert fit_temperature(true_logits * 3, targets) == pytest.approx(want, rel=1e-5)


def test_fit_temperature_degenerate_all_correct():
    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0], [8.0, -3.0]])
    t = fit_temperature(logits, torch.tensor([0, 1, 0]))
    assert math.isfinite(t)
    assert 1e-3 <= t < 1.0


def test_calibration_report_on_overconfident_logits():
    true_logits, targets = sample_problem(6000, 10, 9)
    logits = true_logits * 3
    report = calibration_report(logits[:3000], targets[:3000], logits[3000:], targets[3000:])
    assert set(report) == {"temperature", "ece_before", "ece_after", "nll_before", "nll_after"}
    assert report["temperature"] == pytest.approx(3.0, rel=0.15)
    assert report["nll_after"] < report["nll_before"] - 0.2
    assert report["ece_after"] < report["ece_before"] / 3
    assert report["nll_before"] == pytest.approx(nll(logits[3000:], targets[3000:]))


@pytest.mark.parametrize(
    "logits,targets,match",
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "shape \\(N, K\\)"),
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), "one target per row"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), "targets in \\[0, 2\\]"),
        (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), "finite logits"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "at least one sample"),
    ],
)
def test_bad_inputs_raise_clear_error(logits, targets, match):
    for fn in (expected_calibration_error, nll, fit_temperature):
        with pytest.raises(OodlabError, match=match):
            fn(logits, targets)


# ---------------------------------------------------------------- reliability diagram


def test_reliability_bins_agree_with_ece():
    logits, targets = sample_problem(1500, 10, 10, 4.0)
    bins = reliability_bins(logits, targets)
    assert len(bins["edges"]) == 16 and len(bins["count"]) == 15
    assert bins["count"].sum() == 1500
    ece = np.sum(np.abs(bins["accuracy"] - bins["confidence"]) * bins["count"]) / 1500
    assert ece == pytest.approx(expected_calibration_error(logits, targets), abs=1e-6)


def test_reliability_diagram_writes_png(tmp_path):
    logits, targets = sample_problem(800, 10, 11, 4.0)
    out = reliability_diagram(logits, targets, tmp_path / "plots" / "rel.png", title="CE")
    assert out == tmp_path / "plots" / "rel.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000


@pytest.mark.parametrize(
    ("loss", "before", "after", "noted"),
    [
        ("logitnorm", 0.485, 0.0083, True),
        ("logitnorm", 0.021, 0.005, False),
        ("ce", 0.30, 0.01, False),
    ],
)
def test_console_explains_a_high_raw_ece_of_logitnorm_only(loss, before, after, noted):
    from oodlab.outputs.console import LOGITNORM_ECE_NOTE, caption
    from oodlab.outputs.record import RunInfo, RunRecord

    record = RunRecord(
        run=RunInfo(loss=loss),
        id={"acc": 0.97, "n": 1000, "ece": before},
        calibration={"temperature": 0.2, "ece_before": before, "ece_after": after},
    )
    text = caption(record)
    assert (
        f"ECE {100 * before:.2f}% (raw logits), {100 * after:.2f}% after temperature scaling"
        in text
    )
    assert (LOGITNORM_ECE_NOTE in text) is noted
