"""ELogitNorm: Ding, Liu, Unger and Eilertsen, "Enhancing Out-of-Distribution Detection with
Extended Logit Normalization", CVPR 2026 (arXiv:2504.11434). Official code:
github.com/limchaos/ElogitNorm (read here as its mirror limchaos/ELogitNormOOD:
``elogitnorm_loss.py`` and ``openood/trainers/elogitnorm_trainer.py``).

LogitNorm divides the logits by ``tau * ||f||``; ELogitNorm divides them by the sample's mean
distance to the decision boundaries between its predicted class ``c`` and every class ``j``:

    s_i = (1/K) sum_j |f_ic - f_ij| / ||w_c - w_j||,    loss = CE(f_i / s_i, y_i)

``f`` are the logits (bias included), ``w`` the rows of the linear layer's weight and ``c`` the
argmax of ``f_i``. Computed exactly as the official code does:

- the mean runs over all K classes, ``j = c`` included (its term is 0, because the official
  code adds the identity to the matrix of weight distances, so the diagonal is 0 / 1): the
  paper's "average distance to the decision boundaries" reads as a mean over the K - 1 other
  classes, which would be ``K / (K - 1)`` times larger. We follow the code;
- no hyperparameter (the paper calls the method hyperparameter-free);
- the gradient flows through ``s`` (logits and weights), not detached;
- evaluation sees the raw logits ``f``.

One numerical difference: ``s`` is clamped at 1e-7, so a row of identical logits (the
official code's 0/0) gives a finite loss; no other value changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from oodlab.losses._ops import cross_entropy, no_autocast
from oodlab.losses.base import fp32, register_loss
from oodlab.losses.ce import LinearHead

#: lower bound of the per-sample scale (identical logits would give 0)
SCALE_EPS = 1e-7


@register_loss
class ELogitNormHead(LinearHead):
    """``loss = CE(f / s(f, W), y)`` with ``s`` the mean logit gap to the predicted class over
    the weight distance (see the module docstring); evaluation sees ``f = W x + b``."""

    name = "elogitnorm"
    default_score = "msp"

    def scale(self, logits: Tensor) -> Tensor:
        """``s_i`` (N, 1), fp32."""
        with no_autocast(logits):
            f = fp32(logits)
            w = fp32(self.fc.weight)
            k = w.shape[0]
            dist = torch.linalg.vector_norm(w.unsqueeze(1) - w.unsqueeze(0), dim=2)
            dist = dist + torch.eye(k, device=dist.device, dtype=dist.dtype)
            top, pred = f.max(dim=1)
            gaps = (f - top.unsqueeze(1)).abs()
            return (gaps / dist[pred]).mean(dim=1, keepdim=True).clamp_min(SCALE_EPS)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        with no_autocast(logits):
            f = fp32(logits)
            return cross_entropy(f / self.scale(f), targets)

    def hparams(self) -> dict[str, Any]:
        return {}
