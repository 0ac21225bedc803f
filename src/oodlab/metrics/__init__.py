"""Metrics: OOD detection (FPR95, AUROC, AUPR) and calibration (ECE, NLL, temperature).

Conventions (the README's Metrics section): ID is the positive class, a higher score means
more in-distribution, and every value is a fraction in [0, 1].
"""

from oodlab.metrics.calibration import (
    CalibrationInputError,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
)
from oodlab.metrics.ood import METRIC_KEYS, OODMetrics, OodMetricsInputError, ood_metrics

__all__ = [
    "METRIC_KEYS",
    "CalibrationInputError",
    "OODMetrics",
    "OodMetricsInputError",
    "calibration_report",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "ood_metrics",
    "reliability_bins",
]
