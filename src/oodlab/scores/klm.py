"""KL matching (Hendrycks et al., ICML 2022)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import CHUNK, val_outputs
from oodlab.scores.base import Outputs, Score, register_score


@register_score
class KLMatching(Score):
    """Minus the smallest KL divergence from the sample's softmax to a class template.

    Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt and Song, "Scaling
    Out-of-Distribution Detection for Real-World Settings" (ICML 2022); OpenOOD v1.5
    openood/postprocessors/kl_matching_postprocessor.py (configs/postprocessors/klm.yml: no
    hyperparameters). The template ``d_k`` is the mean softmax of the ID *validation* samples
    predicted as class ``k`` (OpenOOD fits on ``id_loader_dict['val']``, so this score has
    ``needs_val``); score ``= -min_k KL(p || d_k)``, ``p`` the sample's softmax
    (``scipy.stats.entropy(p, d_k)`` in OpenOOD).

    Computed in log space (``log d_k`` is a logsumexp of log-probabilities), so a probability
    that underflows never makes a template 0 and every score is finite. A class no validation
    sample is predicted as has no template; OpenOOD gives it a one-hot template, whose KL is
    infinite for every softmax that is not exactly one-hot, so it never matches: here it is
    left out of the minimum.
    """

    name = "klm"
    paper = "Hendrycks et al., ICML 2022"
    needs_val = True

    def fit(self, train: Outputs | None, model: nn.Module, *, val: Outputs | None = None) -> None:
        val = val_outputs(self, val)
        log_p = val.logits.double().log_softmax(dim=1)
        predicted = log_p.argmax(dim=1)
        templates = []
        for k in range(log_p.shape[1]):
            rows = log_p[predicted == k]
            if len(rows):
                templates.append(torch.logsumexp(rows, dim=0) - math.log(len(rows)))
        self.log_templates = torch.stack(templates)  # (T, K)

    def score(self, outputs: Outputs) -> Tensor:
        scores = []
        for i in range(0, len(outputs.logits), CHUNK):
            log_p = outputs.logits[i : i + CHUNK].double().log_softmax(dim=1)
            p = log_p.exp()
            # KL(p || d_k) = sum_j p_j log p_j - sum_j p_j log d_kj
            kl = (p * log_p).sum(dim=1, keepdim=True) - p @ self.log_templates.T
            scores.append(-kl.amin(dim=1))
        return torch.cat(scores).float() if scores else outputs.logits.new_zeros(0)
