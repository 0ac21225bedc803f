"""What the OpenOOD-style post-hoc scores share: the head's linear map, training statistics
accumulated in float64 chunks (no float64 copy of a whole feature matrix), a pseudo-inverse
whitening, the energy, and top-k selection with a fixed tie order.

Not a score module (its name starts with ``_``, so ``oodlab.scores`` does not import it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from oodlab.errors import ConfigError
from oodlab.scores.base import Outputs, Score, positive_int
from oodlab.scores.gradient import linear_layer

#: rows per chunk when a statistic or a score is accumulated over features
CHUNK = 8192


def train_outputs(score: Score, train: Outputs | None) -> Outputs:
    if train is None or len(train.features) == 0:
        raise ValueError(
            f"score {score.name!r} fits statistics on the ID training split, but none was given"
        )
    return train


def val_outputs(score: Score, val: Outputs | None) -> Outputs:
    if val is None or len(val.logits) == 0:
        raise ValueError(
            f"score {score.name!r} fits on the ID validation split, but none was given "
            "(id_val= in oodlab.evaluate)"
        )
    return val


def linear_weights(score: Score, model: nn.Module) -> tuple[Tensor, Tensor]:
    """The head's weight (K, D) and bias (K,) as float64 CPU tensors (a zero bias when the
    layer has none); a ConfigError when the head is not one linear map."""
    head = model_head(model)
    layer = linear_layer(head)
    if layer is None:
        raise ConfigError(
            "eval.scores",
            score.name,
            f"a score for a model whose last layer is one nn.Linear ({score.name} reads its "
            f"weights; this model's head is {type(head).__name__})",
        )
    weight = layer.weight.detach().to("cpu", torch.float64)
    bias = (
        torch.zeros(len(weight), dtype=torch.float64)
        if layer.bias is None
        else layer.bias.detach().to("cpu", torch.float64)
    )
    return weight, bias


def model_head(model: nn.Module) -> nn.Module:
    """``model.head``, the last layer evaluation exposes (see oodlab.evaluation.model)."""
    head = model.head
    if not isinstance(head, nn.Module):
        raise TypeError(f"model.head must be an nn.Module, not {type(head).__name__}")
    return head


def chunks(x: Tensor, size: int = CHUNK):
    """Row blocks of ``x`` in float64."""
    for i in range(0, len(x), size):
        yield x[i : i + size].double()


def feature_mean(features: Tensor) -> Tensor:
    """The mean row, accumulated in float64."""
    total = torch.zeros(features.shape[1], dtype=torch.float64)
    for block in chunks(features):
        total += block.sum(dim=0)
    return total / len(features)


def second_moment(features: Tensor, centre: Tensor) -> Tensor:
    """``(1/N) sum_i (h_i - c)(h_i - c)^T`` (D, D) in float64; ``centre`` is (D,) or one row
    per sample (N, D)."""
    d = features.shape[1]
    total = torch.zeros(d, d, dtype=torch.float64)
    for i, block in zip(range(0, len(features), CHUNK), chunks(features)):
        c = centre if centre.ndim == 1 else centre[i : i + len(block)]
        centred = block - c
        total += centred.T @ centred
    return total / len(features)


def pinv_whitening(covariance: Tensor) -> Tensor:
    """``W`` (D, r) with ``W W^T`` the pseudo-inverse of a symmetric PSD matrix, with scipy's
    ``pinvh`` cut-off (eigenvalues at most ``max|λ| * D * eps`` dropped), as sklearn's
    ``EmpiricalCovariance.precision_``."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    cutoff = eigenvalues.abs().max() * max(covariance.shape) * torch.finfo(torch.float64).eps
    kept = eigenvalues > cutoff
    return eigenvectors[:, kept] / eigenvalues[kept].sqrt()


def energy(logits: Tensor) -> Tensor:
    return torch.logsumexp(logits.double(), dim=1)


def kept_count(n: int, percentile: float) -> int:
    """How many of ``n`` activations ASH and SCALE keep: ``n - round(n * p / 100)``, rounding
    half to even as the official ``np.round``."""
    return n - int(np.round(n * percentile / 100.0))


def top_k_mask(x: Tensor, k: int) -> Tensor:
    """A boolean mask of the ``k`` largest entries of each row. Equal values are taken in
    column order (a stable sort), so ties at the boundary are broken by the lower index; the
    official code's ``torch.topk`` leaves that order unspecified."""
    mask = torch.zeros_like(x, dtype=torch.bool)
    if k > 0:
        order = torch.sort(x, dim=1, descending=True, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask


def optional_positive_int(key: str, value: Any) -> int | None:
    """None, or an integer >= 1."""
    return None if value is None else positive_int(key, value)


def one_of(*choices: str):
    """A check that accepts exactly one of ``choices``."""

    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(key, value, f"one of {', '.join(choices)}")
        return value

    return check
