"""Scores that read only the logits."""

from __future__ import annotations

import torch
from torch import Tensor

from oodlab.scores.base import Outputs, Score, register_score


@register_score
class MSP(Score):
    """Maximum softmax probability (Hendrycks & Gimpel, 2017)."""

    name = "msp"

    def score(self, outputs: Outputs) -> Tensor:
        return outputs.logits.float().softmax(dim=1).amax(dim=1)


@register_score
class MaxLogit(Score):
    """Maximum logit (Hendrycks et al., 2022)."""

    name = "maxlogit"

    def score(self, outputs: Outputs) -> Tensor:
        return outputs.logits.float().amax(dim=1)


@register_score
class Energy(Score):
    """Negative free energy T·logsumexp(f/T) (Liu et al., 2020)."""

    name = "energy"
    grid = {"temperature": [1.0]}

    def score(self, outputs: Outputs) -> Tensor:
        t = float(self._hparams["temperature"])
        return t * torch.logsumexp(outputs.logits.float() / t, dim=1)


@register_score
class NegEntropy(Score):
    """Negative predictive entropy of softmax(f)."""

    name = "entropy"

    def score(self, outputs: Outputs) -> Tensor:
        logp = outputs.logits.float().log_softmax(dim=1)
        return (logp.exp() * logp).sum(dim=1)
