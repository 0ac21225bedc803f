"""Relative Mahalanobis distance (Ren et al., 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import (
    CHUNK,
    chunks,
    feature_mean,
    pinv_whitening,
    second_moment,
    train_outputs,
)
from oodlab.scores.base import Outputs, Score, register_score


def class_means(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The classes present among ``labels >= 0`` and their mean features (float64)."""
    classes = torch.unique(labels[labels >= 0])
    index = torch.searchsorted(classes, labels.clamp_min(0))
    sums = torch.zeros(len(classes), features.shape[1], dtype=torch.float64)
    counts = torch.zeros(len(classes), dtype=torch.float64)
    for i, block in zip(range(0, len(features), CHUNK), chunks(features)):
        rows = index[i : i + len(block)]
        known = labels[i : i + len(block)] >= 0
        sums.index_add_(0, rows[known], block[known])
        counts.index_add_(0, rows[known], torch.ones(int(known.sum()), dtype=torch.float64))
    return classes, sums / counts[:, None]


@register_score
class RMDS(Score):
    """The class Mahalanobis score relative to a class-agnostic Gaussian:
    ``max_c [-(h - mu_c)^T S^+ (h - mu_c) + (h - mu_0)^T S0^+ (h - mu_0)]``.

    Ren, Fort, Liu, Roy, Padhy and Lakshminarayanan, "A Simple Fix to Mahalanobis Distance for
    Improving Near-OOD Detection" (arXiv 2106.09022, 2021); OpenOOD v1.5
    openood/postprocessors/rmds_postprocessor.py (configs/postprocessors/rmds.yml: no
    hyperparameters). ``mu_c`` and the tied covariance ``S`` (``1/N``, class-centred) as in
    ``mahalanobis``; ``mu_0`` and ``S0`` the mean and covariance of the whole ID training
    split. Pseudo-inverses use scipy's ``pinvh`` cut-off, as sklearn's
    ``EmpiricalCovariance.precision_`` in OpenOOD, so a singular covariance (dead units, fewer
    samples than dimensions) is handled. OpenOOD fits in float32; this fits in float64,
    accumulating the covariances over chunks. A class without training samples is left out
    (OpenOOD's mean of no samples is NaN).
    """

    name = "rmds"
    paper = "Ren et al., 2021"
    needs_train = True
    needs_features = True

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = train_outputs(self, train)
        features, labels = train.features, train.labels
        known = labels >= 0
        if not bool(known.all()):
            features, labels = features[known], labels[known]
        classes, means = class_means(features, labels)
        centres = means[torch.searchsorted(classes, labels)]
        self.whitening = pinv_whitening(second_moment(features, centres))
        self.means = means @ self.whitening
        global_mean = feature_mean(features)
        self.background = pinv_whitening(second_moment(features, global_mean))
        self.background_mean = global_mean @ self.background

    def score(self, outputs: Outputs) -> Tensor:
        scores = []
        for h in chunks(outputs.features):
            z = h @ self.whitening
            d2 = torch.cdist(z, self.means, compute_mode="donot_use_mm_for_euclid_dist").square()
            background = (h @ self.background - self.background_mean).square().sum(dim=1)
            scores.append(-d2.amin(dim=1) + background)
        return torch.cat(scores).float() if scores else outputs.features.new_zeros(0)
