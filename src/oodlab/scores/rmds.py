"""Relative Mahalanobis distance (Ren et al., 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import (
    chunks,
    class_covariance,
    class_means,
    compute_device,
    compute_dtype,
    exact_matmul,
    feature_mean,
    pinv_whitening,
    second_moment,
    train_outputs,
)
from oodlab.scores.base import Outputs, Score, register_score

__all__ = ["RMDS", "class_means"]


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
        self.device = compute_device(model)
        dtype = compute_dtype(self.device)
        classes, means = class_means(features, labels)
        whitening = pinv_whitening(class_covariance(features, labels, classes, means, self.device))
        known = labels >= 0
        if bool(known.all()):
            global_mean = feature_mean(features, self.device)
            background_cov = second_moment(features, global_mean, self.device)
        else:  # over the labelled rows, without copying them out
            counts = torch.bincount(
                torch.searchsorted(classes, labels[known]), minlength=len(classes)
            )
            global_mean = (means * counts[:, None].double()).sum(dim=0) / int(known.sum())
            everyone = global_mean.expand(len(classes), -1)
            background_cov = class_covariance(features, labels, classes, everyone, self.device)
        background = pinv_whitening(background_cov)
        self.whitening = whitening.to(self.device, dtype)
        self.means = (means @ whitening).to(self.device, dtype)
        self.background = background.to(self.device, dtype)
        self.background_mean = (global_mean @ background).to(self.device, dtype)

    def score(self, outputs: Outputs) -> Tensor:
        scores = []
        dtype = compute_dtype(self.device)
        with exact_matmul():
            for h in chunks(outputs.features, device=self.device, dtype=dtype):
                z = h @ self.whitening
                d2 = torch.cdist(
                    z, self.means, compute_mode="donot_use_mm_for_euclid_dist"
                ).square()
                background = (h @ self.background - self.background_mean).square().sum(dim=1)
                scores.append((-d2.amin(dim=1) + background).cpu())
        return torch.cat(scores).float() if scores else outputs.features.new_zeros(0).float()
