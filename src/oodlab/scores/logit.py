"""Scores that read only the logits."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from oodlab.scores.base import HParam, Outputs, Score, positive_float, register_score


def negative_entropy(logits: Tensor) -> Tensor:
    """``sum_j p_j log p_j`` of softmax(logits), finite for any finite or -inf logits.

    The log-probabilities are clamped at log(smallest normal float): a probability that
    underflows to 0 then contributes 0 * finite = 0 rather than the 0 * -inf = NaN of the
    official IsoMax/DisMax code.
    """
    logp = logits.float().log_softmax(dim=1)
    logp = logp.clamp_min(torch.finfo(logp.dtype).min / 2)
    return (logp.exp() * logp).sum(dim=1)


@register_score
class MSP(Score):
    """Maximum softmax probability."""

    name = "msp"
    paper = "Hendrycks & Gimpel, ICLR 2017"

    def score(self, outputs: Outputs) -> Tensor:
        return outputs.logits.float().softmax(dim=1).amax(dim=1)


@register_score
class MaxLogit(Score):
    """Maximum logit."""

    name = "maxlogit"
    paper = "Hendrycks et al., ICML 2022"

    def score(self, outputs: Outputs) -> Tensor:
        return outputs.logits.float().amax(dim=1)


@register_score
class Energy(Score):
    """Negative free energy ``T * logsumexp(f / T)``."""

    name = "energy"
    paper = "Liu et al., NeurIPS 2020"
    spec: ClassVar[dict[str, HParam]] = {
        "temperature": HParam(1.0, (1.0, 2.0, 5.0, 10.0), positive_float)
    }

    def score(self, outputs: Outputs) -> Tensor:
        t = self._hparams["temperature"]
        return t * torch.logsumexp(outputs.logits.float() / t, dim=1)


@register_score
class NegEntropy(Score):
    """Negative predictive entropy of softmax(f)."""

    name = "entropy"
    paper = "Shannon entropy of the softmax (baseline)"

    def score(self, outputs: Outputs) -> Tensor:
        return negative_entropy(outputs.logits)
