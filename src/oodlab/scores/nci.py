"""NCI: the Neural Collapse inspired detector (Liu & Qin, CVPR 2025)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import (
    CHUNK,
    feature_mean,
    linear_weights,
    train_outputs,
)
from oodlab.scores.base import HParam, Outputs, Score, non_negative_float, register_score

#: a feature equal to the training mean gets this distance instead of 0 (its pScore is 0)
MIN_NORM = 1e-12


@register_score
class NCI(Score):
    """Proximity of the centred feature to the predicted class's weight vector, plus an L1
    norm filter: ``w_c . (h - mu) / ||h - mu|| + alpha ||h||_1`` with ``c = argmax f``.

    Liu and Qin, "Detecting Out-of-Distribution through the Lens of Neural Collapse" (CVPR
    2025); official code litianliu/NCI-OOD (an OpenOOD fork), whose
    openood/postprocessors/nci_postprocessor.py is the same file as OpenOOD v1.5's. ``mu`` is
    the ID training split's mean feature and ``w_c`` the head's weight row of ``c``. Only the
    weight is used (no bias), and ``w_c`` is not normalised: the official code's pScore is
    ``||w_c||`` times the cosine between ``w_c`` and ``h - mu`` that the paper describes as
    the proximity. This follows the code.

    ``alpha``: 0.0001 by default, grid (0.0001, 0.001, 0.01, 0.1): the official and OpenOOD
    configs/postprocessors/nci.yml (``alpha``, ``alpha_list``). A feature exactly at ``mu``
    gets pScore 0 (the official code divides 0 by 0).
    """

    name = "nci"
    paper = "Liu & Qin, CVPR 2025"
    needs_train = True
    needs_features = True
    needs_head = True
    spec: ClassVar[dict[str, HParam]] = {
        "alpha": HParam(0.0001, (0.0001, 0.001, 0.01, 0.1), non_negative_float),
    }

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = train_outputs(self, train)
        self.weight, _ = linear_weights(self, model)
        self.train_mean = feature_mean(train.features)

    def score(self, outputs: Outputs) -> Tensor:
        alpha = self._hparams["alpha"]
        scores = []
        for i in range(0, len(outputs.features), CHUNK):
            h = outputs.features[i : i + CHUNK].double()
            w = self.weight[outputs.logits[i : i + CHUNK].argmax(dim=1)]
            centred = h - self.train_mean
            proximity = (w * centred).sum(dim=1) / centred.norm(dim=1).clamp_min(MIN_NORM)
            scores.append(proximity + alpha * h.abs().sum(dim=1))
        return torch.cat(scores).float() if scores else outputs.features.new_zeros(0)
