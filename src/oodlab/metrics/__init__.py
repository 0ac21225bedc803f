"""Metrics: OOD detection (FPR95, AUROC, AUPR) and calibration (ECE, NLL, temperature).

Conventions are those of CONTRACT.md: ID is the positive class, a higher score means
more in-distribution, and every value is a fraction in [0, 1].
"""

from oodlab.metrics.calibration import (
    CalibrationInputError,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    reliability_diagram,
)
from oodlab.metrics.ood import OODMetrics, OodMetricsInputError, ood_metrics

__all__ = [
    "CalibrationInputError",
    "OODMetrics",
    "OodMetricsInputError",
    "calibration_report",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "ood_metrics",
    "reliability_bins",
    "reliability_diagram",
]
