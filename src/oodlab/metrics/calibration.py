"""Calibration: ECE, NLL, temperature scaling and the reliability diagram's bins.

ECE is 15 equal-width bins over the max-softmax confidence, L1 norm
(the bin-size-weighted mean |accuracy - confidence|), computed by torchmetrics'
``MulticlassCalibrationError``. Bins are ``[i/15, (i+1)/15)``; a confidence of exactly
1.0 belongs to the last bin (see ``_probabilities``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassCalibrationError

from oodlab.errors import CalibrationInputError

__all__ = [
    "CalibrationInputError",
    "calibration_report",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "reliability_bins",
]

N_BINS = 15

# Temperatures are searched in [1/1000, 1000].
_LOG_T_BOUND = math.log(1000.0)

# The largest float32 below 1. torchmetrics casts confidences to float32 and gives a
# confidence of exactly 1.0 a bin of its own (bucketize(right=True) over the 16 bin
# edges puts 1.0 past the last edge), so a saturated softmax would be scored in a 16th
# bin. Capping probabilities here keeps it in the last of the 15 bins.
_BELOW_ONE_F32 = 1.0 - 2.0**-24


def _inputs(logits, targets, caller: str) -> tuple[Tensor, Tensor]:
    """Validate and return (N, K) float64 logits and (N,) int64 targets on the CPU/device."""
    x = logits.detach() if isinstance(logits, Tensor) else torch.as_tensor(np.asarray(logits))
    y = targets.detach() if isinstance(targets, Tensor) else torch.as_tensor(np.asarray(targets))
    if x.ndim != 2 or x.shape[1] < 2:
        raise CalibrationInputError(
            f"{caller} needs logits of shape (N, K) with K >= 2 classes; got {tuple(x.shape)}."
        )
    y = y.reshape(-1).to(x.device)
    if x.shape[0] == 0:
        raise CalibrationInputError(f"{caller} needs at least one sample; got 0.")
    if y.numel() != x.shape[0]:
        raise CalibrationInputError(
            f"{caller} needs one target per row of logits; got {x.shape[0]} rows and "
            f"{y.numel()} targets."
        )
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise CalibrationInputError(f"{caller} needs integer class targets.")
    y = y.long()
    k = x.shape[1]
    if bool(((y < 0) | (y >= k)).any()):
        raise CalibrationInputError(
            f"{caller} needs targets in [0, {k - 1}] for {k} classes; got values from "
            f"{int(y.min())} to {int(y.max())}."
        )
    x = x.double()
    if not bool(torch.isfinite(x).all()):
        raise CalibrationInputError(f"{caller} needs finite logits; got NaN or infinite values.")
    return x, y


def _probabilities(logits: Tensor) -> Tensor:
    """Softmax in float64, capped just below 1 (see ``_BELOW_ONE_F32``).

    We softmax ourselves because torchmetrics only applies softmax when some input lies
    outside [0, 1]; logits that all happen to lie in [0, 1] would be taken for
    probabilities.
    """
    return torch.softmax(logits, dim=1).clamp_(max=_BELOW_ONE_F32)


def expected_calibration_error(logits, targets, n_bins: int = N_BINS) -> float:
    """Top-label ECE (L1) with ``n_bins`` equal-width bins over max-softmax confidence.

    Args:
        logits: (N, K) raw logits.
        targets: (N,) integer class labels.
        n_bins: number of equal-width bins in [0, 1] (15 by the contract).
    """
    x, y = _inputs(logits, targets, "expected_calibration_error")
    metric = MulticlassCalibrationError(num_classes=x.shape[1], n_bins=n_bins, norm="l1").to(
        x.device
    )
    return float(metric(_probabilities(x), y))


def nll(logits, targets) -> float:
    """Mean negative log-likelihood (cross-entropy) of the softmax, in float64."""
    x, y = _inputs(logits, targets, "nll")
    return float(F.cross_entropy(x, y))


def _nll_at(x: Tensor, y: Tensor, log_t: float) -> float:
    return float(F.cross_entropy(x * math.exp(-log_t), y))


def _golden_section(x: Tensor, y: Tensor, lo: float, hi: float, tol: float = 1e-7) -> float:
    """Minimise NLL over log T in [lo, hi]; NLL is unimodal in log T (convex in 1/T)."""
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = _nll_at(x, y, c), _nll_at(x, y, d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = _nll_at(x, y, c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = _nll_at(x, y, d)
    return (a + b) / 2.0


def fit_temperature(val_logits, val_targets, max_iter: int = 100) -> float:
    """Temperature scaling: the T > 0 minimising the NLL of ``softmax(logits / T)``.

    Optimises log T with L-BFGS (strong Wolfe line search) in float64, starting at T = 1.
    If L-BFGS does not end at a stationary point inside [1e-3, 1e3] that is at least as
    good as T = 1, a golden-section search over log T in [-ln 1000, ln 1000] takes over
    (the NLL is unimodal in log T). The result always lies in [1e-3, 1e3]. In the
    degenerate case where every validation prediction is correct with a margin, the NLL
    keeps falling as T -> 0 and the result is just some T < 1 at which the NLL (and its
    gradient) is already negligible.
    """
    x, y = _inputs(val_logits, val_targets, "fit_temperature")
    log_t = torch.zeros(1, dtype=torch.float64, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x * torch.exp(-log_t), y)
        loss.backward()
        return loss

    try:
        opt.step(closure)
        best = float(log_t.detach())
    except RuntimeError:
        best = float("nan")
    ok = math.isfinite(best) and abs(best) <= _LOG_T_BOUND
    if ok:
        # L-BFGS must have reached a stationary point no worse than T = 1.
        check = log_t.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(x * torch.exp(-check), y)
        (grad,) = torch.autograd.grad(loss, check)
        ok = float(loss.detach()) <= _nll_at(x, y, 0.0) + 1e-12 and abs(float(grad)) < 1e-6
    if not ok:
        best = _golden_section(x, y, -_LOG_T_BOUND, _LOG_T_BOUND)
    best = min(max(best, -_LOG_T_BOUND), _LOG_T_BOUND)
    return math.exp(best)


def calibration_report(val_logits, val_targets, test_logits, test_targets) -> dict[str, float]:
    """Fit a temperature on the validation set and report ECE/NLL on the test set.

    Returns ``temperature``, ``ece_before``, ``ece_after``, ``nll_before``, ``nll_after``.
    """
    t = fit_temperature(val_logits, val_targets)
    x, y = _inputs(test_logits, test_targets, "calibration_report")
    return {
        "temperature": t,
        "ece_before": expected_calibration_error(x, y),
        "ece_after": expected_calibration_error(x / t, y),
        "nll_before": nll(x, y),
        "nll_after": nll(x / t, y),
    }


def reliability_bins(logits, targets, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per-bin accuracy, mean confidence and count, binned exactly as the ECE.

    Returns arrays of length ``n_bins``: ``edges`` (n_bins + 1), ``accuracy``,
    ``confidence`` and ``count`` (empty bins have accuracy and confidence 0).
    """
    x, y = _inputs(logits, targets, "reliability_bins")
    conf, pred = _probabilities(x).max(dim=1)
    conf = conf.float()  # as torchmetrics' ECE does
    acc = pred.eq(y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
    # bin i holds [edges[i], edges[i+1]); confidences stay below 1 (_probabilities)
    index = (torch.bucketize(conf, edges, right=True) - 1).clamp_(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(
        0, index, torch.ones_like(acc)
    )
    acc_sum = torch.zeros_like(count).index_add_(0, index, acc)
    conf_sum = torch.zeros_like(count).index_add_(0, index, conf.double())
    filled = count.clamp_min(1)
    return {
        "edges": edges.cpu().double().numpy(),
        "accuracy": (acc_sum / filled).cpu().numpy(),
        "confidence": (conf_sum / filled).cpu().numpy(),
        "count": count.cpu().numpy().astype(np.int64),
    }
