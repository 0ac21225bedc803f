"""Scores that read the penultimate features, with statistics fitted on the ID training split.

Every fit reads the training features in row chunks (oodlab.scores._posthoc), so a
memory-mapped ImageNet-sized bank is never copied whole: ReAct's percentile is found exactly
in one pass, Mahalanobis' covariance is accumulated, and KNN searches by chunked matmul with a
running top-k.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from oodlab._infra.validate import in_range
from oodlab.errors import ConfigError
from oodlab.scores._posthoc import (
    CHUNK,
    chunked_percentile,
    chunks,
    class_covariance,
    class_means,
    compute_device,
    compute_dtype,
    exact_matmul,
    pinv_whitening,
    top_k_similarities,
)
from oodlab.scores.base import (
    HParam,
    Outputs,
    Score,
    percentile,
    positive_int,
    register_score,
    run_head,
)

#: the seed of KNN's bank subsample (``knn_subset``), so a run is reproducible
BANK_SEED = 0
#: ``knn_subset`` never draws a bank smaller than this (ImageNet's 1% is 12,811 rows): on a
#: small training split the subsample would leave too few neighbours per class
MIN_BANK = 10_000


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
    The percentile is exact (numpy's linear interpolation) and found over row chunks, without
    a flattened copy of the activations.
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
        # nn.Module.__getattr__ is typed Tensor | Module; the head is a module
        self.head: nn.Module = model.head  # type: ignore[assignment]
        self.threshold = chunked_percentile(train.features, self._hparams["percentile"])

    def score(self, outputs: Outputs) -> Tensor:
        scores = [
            torch.logsumexp(run_head(self.head, block.clamp(max=self.threshold)), dim=1)
            for block in chunks(outputs.features, dtype=torch.float32)
        ]
        return torch.cat(scores) if scores else outputs.features.new_zeros(0).float()


@register_score
class Mahalanobis(Score):
    """Minus the smallest squared Mahalanobis distance to a class mean, shared covariance.

    Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
    Adversarial Attacks" (NeurIPS 2018), penultimate layer only, without their input
    preprocessing and feature ensemble. Class means and the tied covariance
    ``(1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` come from the ID training split,
    accumulated over row chunks (float64 on the CPU; float32 blocks summed in float64 on a
    GPU). A singular covariance (dead ReLU units, fewer samples than dimensions) is
    pseudo-inverted with scipy's ``pinvh`` cut-off, as sklearn's ``EmpiricalCovariance``
    (used by the official code) does. Score ``= max_c -(h - mu_c)^T S^+ (h - mu_c)``; the
    official code's factor 1/2 and a square root would not change any metric.
    """

    name = "mahalanobis"
    paper = "Lee et al., NeurIPS 2018"
    needs_train = True
    needs_features = True
    chunk_rows = 4096

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = _train_outputs(self, train)
        self.device = compute_device(model)
        classes, means = class_means(train.features, train.labels)
        covariance = class_covariance(train.features, train.labels, classes, means, self.device)
        # S^+ = W W^T, so the distance is a Euclidean distance after projecting onto W
        dtype = compute_dtype(self.device)
        whitening = pinv_whitening(covariance)
        self.whitening = whitening.to(self.device, dtype)
        self.means = (means @ whitening).to(self.device, dtype)

    def score(self, outputs: Outputs) -> Tensor:
        scores = []
        dtype = compute_dtype(self.device)
        with exact_matmul():
            for h in chunks(outputs.features, self.chunk_rows, device=self.device, dtype=dtype):
                z = h @ self.whitening
                # direct differences, not the |a|^2 + |b|^2 - 2ab expansion, which cancels badly
                d2 = torch.cdist(
                    z, self.means, compute_mode="donot_use_mm_for_euclid_dist"
                ).square()
                scores.append(-d2.amin(dim=1).cpu())
        return torch.cat(scores).float() if scores else outputs.features.new_zeros(0).float()


@register_score
class KNN(Score):
    """Minus the distance to the k-th nearest L2-normalised training feature.

    Sun et al., "Out-of-Distribution Detection with Deep Nearest Neighbors" (ICML 2022). The
    official code (faiss ``IndexFlatL2``) negates the *squared* distance; the distance itself
    ranks samples identically. ``k = 50`` is the paper's CIFAR-10 value; ``knn_subset`` is
    the paper's ImageNet economy (a 1% bank).

    The search is an exact matmul of normalised query chunks against bank blocks with a
    running top-k (:func:`oodlab.scores._posthoc.top_k_similarities`): memory is bounded by
    the chunks, not the bank. On the CPU the training features are the bank as they are (a
    memory-mapped cache is read block by block, no copy), scaled by their inverse norms, in
    float64 (``2 - 2 cos`` cancels badly near 0). On a GPU the normalised bank is stored
    there once in :attr:`bank_dtype` (float32; float16 halves it) and searched in float32
    with TF32 off.
    """

    name = "knn"
    paper = "Sun et al., ICML 2022"
    needs_train = True
    needs_features = True
    spec: ClassVar[dict[str, HParam]] = {"k": HParam(50, (1, 10, 50, 100, 200), positive_int)}
    #: query rows per chunk, bank rows per block
    chunk_rows = 2048
    bank_rows = 8192
    #: how the normalised bank is stored on a GPU
    bank_dtype: ClassVar[torch.dtype] = torch.float32

    def bank_features(self, train: Outputs) -> Tensor:
        """The training features the bank holds: all of them."""
        return train.features

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = _train_outputs(self, train)
        k = self._hparams["k"]
        if k > len(train.features):
            raise ConfigError(
                f"eval.params.{self.name}.k",
                k,
                f"at most the {len(train.features)} training samples",
            )
        features = self.bank_features(train)
        self.device = compute_device(model)
        self.dtype = compute_dtype(self.device)
        inverse_norms = torch.cat(
            [
                1.0 / block.norm(dim=1).clamp_min(1e-12)
                for block in chunks(features, device=self.device, dtype=self.dtype)
            ]
        )
        self.bank_scale: Tensor | None
        if self.device.type == "cpu":
            self.bank, self.bank_scale = features, inverse_norms
        else:
            bank = torch.empty(features.shape, dtype=self.bank_dtype, device=self.device)
            for i, block in zip(
                range(0, len(features), CHUNK),
                chunks(features, device=self.device, dtype=self.dtype),
            ):
                bank[i : i + len(block)] = block * inverse_norms[i : i + len(block), None]
            self.bank, self.bank_scale = bank, None

    def score(self, outputs: Outputs) -> Tensor:
        k = self._hparams["k"]
        kth = []
        for query in chunks(
            outputs.features, self.chunk_rows, device=self.device, dtype=self.dtype
        ):
            query = query / query.norm(dim=1, keepdim=True).clamp_min(1e-12)
            top = top_k_similarities(
                query, self.bank, k, bank_scale=self.bank_scale, bank_rows=self.bank_rows
            )
            kth.append(top[:, -1].double().cpu())
        if not kth:
            return outputs.features.new_zeros(0).float()
        # unit vectors: |a - b|^2 = 2 - 2 a.b
        return -(2.0 - 2.0 * torch.cat(kth)).clamp_min(0.0).sqrt().float()


def bank_ratio(key: str, value: Any) -> float:
    return in_range(key, value, 0, 1, closed="right", what="a fraction")


@register_score
class KNNSubset(KNN):
    """KNN against a random ``alpha`` fraction of the training features: the economy Sun et
    al. (ICML 2022) use on ImageNet (``alpha = 1%``, ``k = 10``, their Table 2 "KNN
    (alpha = 1%)"; ``k = 1000`` goes with the full bank). The bank is
    ``max(int(alpha N), min(N, MIN_BANK))`` rows (MIN_BANK = 10,000: on a training split under
    a million rows the subsample keeps 10,000, or all of a smaller one) drawn with a fixed seed
    (the paper samples without one); grids ``k`` as ``knn``, ``alpha`` (0.01,)."""

    name = "knn_subset"
    paper = "Sun et al., ICML 2022 (1% bank)"
    spec: ClassVar[dict[str, HParam]] = {
        "k": HParam(10, (1, 10, 50, 100, 200), positive_int),
        "alpha": HParam(0.01, (0.01,), bank_ratio),
    }

    def bank_features(self, train: Outputs) -> Tensor:
        n, k = len(train.features), self._hparams["k"]
        size = max(int(self._hparams["alpha"] * n), min(n, MIN_BANK), k)
        picked = torch.randperm(n, generator=torch.Generator().manual_seed(BANK_SEED))[:size]
        return train.features[picked.sort().values]


def normalize_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)
