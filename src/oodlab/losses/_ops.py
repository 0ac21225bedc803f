"""Numerical building blocks shared by the loss heads.

Everything here runs in fp32 (float64 stays float64) with autocast switched off, and has a
finite gradient at the non-smooth points the heads can hit in practice: a zero feature
vector, and a feature vector sitting exactly on a prototype.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor

from oodlab._infra.validate import boolean, non_negative, positive  # noqa: F401  (the heads import them from here)
from oodlab.losses.base import fp32

#: squared distances are clamped to this before the square root (distance >= 1e-6)
DIST_EPS = 1e-12
#: vectors shorter than this normalise to zero (with a zero gradient)
NORM_EPS = 1e-12


def no_autocast(t: Tensor) -> AbstractContextManager:
    """A region where autocast is off on ``t``'s device."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in fp32.

    ``targets`` are class indices (N,) or probabilities (N, K) (DisMax's fractional
    probabilities); for one-hot probabilities both forms give the same value and gradient.
    """
    with no_autocast(logits):
        log_p = F.log_softmax(fp32(logits), dim=1)
        if targets.ndim == 1:
            return F.nll_loss(log_p, targets.long())
        if targets.shape != log_p.shape:
            raise ValueError(
                f"soft targets must have the logits' shape {tuple(log_p.shape)}, "
                f"got {tuple(targets.shape)}"
            )
        return -(targets.to(log_p.dtype) * log_p).sum(dim=1).mean()


def l2_normalize(x: Tensor, eps: float = NORM_EPS) -> Tensor:
    """Rows of ``x`` divided by their L2 norm, in fp32.

    Same values as ``F.normalize`` (a zero row stays zero), but the gradient at a row
    shorter than ``eps`` is 0 instead of ``1/eps`` (1e12 for ``F.normalize``).
    """
    with no_autocast(x):
        x = fp32(x)
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)  # its gradient at 0 is 0
        return torch.where(norm > eps, x / norm.clamp_min(eps), torch.zeros_like(x))


def euclidean_distances(x: Tensor, prototypes: Tensor, eps: float = DIST_EPS) -> Tensor:
    """(N, K) matrix of ``||x_i - p_j||_2``, in fp32.

    Computed from the differences (not the ``|x|^2 + |p|^2 - 2 x.p`` expansion, which loses
    precision near zero distance, where trained features end up), as the official IsoMax and
    DisMax code does. The squared distance is clamped at ``eps`` before the square root, so
    the gradient at zero distance is 0 rather than NaN. Memory is O(N * K * D).
    """
    with no_autocast(x):
        diff = fp32(x).unsqueeze(1) - fp32(prototypes).unsqueeze(0)
        return diff.pow(2).sum(dim=2).clamp_min(eps).sqrt()


def sample_beta(alpha: float, beta: float, device: torch.device) -> Tensor:
    """One draw of Beta(alpha, beta) as a 0-d fp32 tensor on ``device``, drawn there (no host
    read; torch's generator, so ``seed_everything`` makes it reproducible)."""
    a = torch.tensor(float(alpha), device=device)
    b = torch.tensor(float(beta), device=device)
    return torch.distributions.Beta(a, b, validate_args=False).sample()


def one_hot_probabilities(
    targets: Tensor, num_classes: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Class indices (N,) as one-hot rows of ``dtype``; probabilities (N, K) as ``dtype``, or
    as their own dtype when it is wider (float64 stays float64)."""
    if targets.ndim == 1:
        return F.one_hot(targets.long(), num_classes).to(dtype)
    return targets.to(torch.promote_types(fp32(targets).dtype, dtype))
