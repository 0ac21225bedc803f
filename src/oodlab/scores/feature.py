"""Scores that read the penultimate features, with statistics fitted on the ID training split."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from oodlab.errors import ConfigError
from oodlab.scores.base import (
    HParam,
    Outputs,
    Score,
    percentile,
    positive_int,
    register_score,
    run_head,
)


def _train_outputs(score: Score, train: Outputs | None) -> Outputs:
    if train is None or len(train.features) == 0:
        raise ValueError(
            f"score {score.name!r} fits statistics on the ID training split, but none was given"
        )
    return train


@register_score
class ReAct(Score):
    """Energy of the head applied to features clipped at a percentile of training activations.

    Sun, Guo and Li, "ReAct: Out-of-distribution Detection With Rectified Activations"
    (NeurIPS 2021). The threshold ``c`` is the ``percentile``-th percentile of every
    activation (all samples and units together) of the ID training split, as in the official
    code (``np.percentile(activation_log.flatten(), 90)``); score ``= logsumexp(head(min(h, c)))``.
    """

    name = "react"
    paper = "Sun et al., NeurIPS 2021"
    needs_train = True
    needs_features = True
    needs_head = True
    spec: ClassVar[dict[str, HParam]] = {
        "percentile": HParam(90.0, (85.0, 90.0, 95.0, 99.0), percentile)
    }

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = _train_outputs(self, train)
        self.head: nn.Module = model.head
        activations = train.features.float().numpy().ravel()
        self.threshold = float(np.percentile(activations, self._hparams["percentile"]))

    def score(self, outputs: Outputs) -> Tensor:
        logits = run_head(self.head, outputs.features.float().clamp(max=self.threshold))
        return torch.logsumexp(logits, dim=1)


@register_score
class Mahalanobis(Score):
    """Minus the smallest squared Mahalanobis distance to a class mean, shared covariance.

    Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
    Adversarial Attacks" (NeurIPS 2018), penultimate layer only, without their input
    preprocessing and feature ensemble. Class means and the tied covariance
    ``(1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` come from the ID training split. A
    singular covariance (dead ReLU units, fewer samples than dimensions) is pseudo-inverted
    with scipy's ``pinvh`` cut-off, as sklearn's ``EmpiricalCovariance`` (used by the official
    code) does. Score ``= max_c -(h - mu_c)^T S^+ (h - mu_c)``; the official code's factor 1/2
    and a square root would not change any metric.
    """

    name = "mahalanobis"
    paper = "Lee et al., NeurIPS 2018"
    needs_train = True
    needs_features = True

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = _train_outputs(self, train)
        features = train.features.double()
        labels = train.labels
        classes = torch.unique(labels[labels >= 0])
        means = torch.stack([features[labels == c].mean(dim=0) for c in classes])
        index = torch.searchsorted(classes, labels)
        centred = features - means[index]
        covariance = centred.T @ centred / len(features)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        cutoff = eigenvalues.abs().max() * max(covariance.shape) * torch.finfo(torch.float64).eps
        kept = eigenvalues > cutoff
        # S^+ = W W^T, so the distance is a Euclidean distance after projecting onto W
        self.whitening = eigenvectors[:, kept] / eigenvalues[kept].sqrt()
        self.means = means @ self.whitening

    def score(self, outputs: Outputs) -> Tensor:
        scores = []
        for i in range(0, len(outputs.features), 4096):
            z = outputs.features[i : i + 4096].double() @ self.whitening
            # direct differences, not the |a|^2 + |b|^2 - 2ab expansion, which cancels badly
            d2 = torch.cdist(z, self.means, compute_mode="donot_use_mm_for_euclid_dist").square()
            scores.append(-d2.amin(dim=1))
        return torch.cat(scores).float() if scores else outputs.features.new_zeros(0)


@register_score
class KNN(Score):
    """Minus the distance to the k-th nearest L2-normalised training feature.

    Sun et al., "Out-of-Distribution Detection with Deep Nearest Neighbors" (ICML 2022). The
    official code (faiss ``IndexFlatL2``) negates the *squared* distance; the distance itself
    ranks samples identically. ``k = 50`` is the paper's CIFAR-10 value.
    """

    name = "knn"
    paper = "Sun et al., ICML 2022"
    needs_train = True
    needs_features = True
    spec: ClassVar[dict[str, HParam]] = {"k": HParam(50, (1, 10, 50, 100, 200), positive_int)}
    chunk_rows = 512

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = _train_outputs(self, train)
        k = self._hparams["k"]
        if k > len(train.features):
            raise ConfigError(
                f"eval.params.{self.name}.k",
                k,
                f"at most the {len(train.features)} training samples",
            )
        # The search runs where the model runs (a GPU makes a 50k-image bank cheap), in float64:
        # 2 - 2 cos cancels badly near 0, and float32 matmuls may run as TF32 on a GPU.
        device = next(model.parameters(), torch.empty(0)).device
        self.bank = normalize_rows(train.features.double().to(device))

    def score(self, outputs: Outputs) -> Tensor:
        k = self._hparams["k"]
        kth = []
        for i in range(0, len(outputs.features), self.chunk_rows):
            query = normalize_rows(
                outputs.features[i : i + self.chunk_rows].double().to(self.bank.device)
            )
            kth.append((query @ self.bank.T).topk(k, dim=1).values[:, -1].cpu())
        if not kth:
            return outputs.features.new_zeros(0)
        # unit vectors: |a - b|^2 = 2 - 2 a.b
        return -(2.0 - 2.0 * torch.cat(kth)).clamp_min(0.0).sqrt().float()


def normalize_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)
