"""DICE: directed sparsification of the last layer (Sun & Li, ECCV 2022)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import (
    energy,
    feature_mean,
    linear_weights,
    model_head,
    train_outputs,
)
from oodlab.scores.base import HParam, Outputs, Score, percentile, register_score, run_head


@register_score
class DICE(Score):
    """Energy of the last layer with only its largest contributions kept.

    Sun and Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection" (ECCV
    2022); official code deeplearning-wisc/dice (models/route.py ``RouteDICE``), OpenOOD v1.5
    openood/postprocessors/dice_postprocessor.py. The contribution of unit ``i`` to class
    ``c`` is ``V_ci = mean_h_i * W_ci`` with ``mean_h`` the ID training split's mean feature;
    the weights with ``V_ci`` strictly above the ``p``-th percentile of all of ``V``
    (``np.percentile``, linear interpolation) are kept, the others zeroed, and the score is
    ``logsumexp(W_masked h + b)`` (the bias is kept). The head re-runs on the cached features.

    ``p``: 90 by default, the paper's and the official demo-cifar.sh value (``--p 90``; 70 for
    ImageNet in demo-imagenet.sh) and OpenOOD's configs/postprocessors/dice.yml; grid (90,),
    OpenOOD's ``p_list``.
    """

    name = "dice"
    paper = "Sun & Li, ECCV 2022"
    needs_train = True
    needs_features = True
    needs_head = True
    spec: ClassVar[dict[str, HParam]] = {"p": HParam(90.0, (90.0,), percentile)}

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = train_outputs(self, train)
        weight, bias = linear_weights(self, model)
        contribution = feature_mean(train.features)[None, :] * weight
        threshold = np.percentile(contribution.numpy(), self._hparams["p"])
        masked = torch.where(contribution > threshold, weight, 0.0)
        device = next(model_head(model).parameters(), torch.empty(0)).device
        self.layer = nn.Linear(weight.shape[1], weight.shape[0]).to(device)
        with torch.no_grad():
            self.layer.weight.copy_(masked)
            self.layer.bias.copy_(bias)

    def score(self, outputs: Outputs) -> Tensor:
        return energy(run_head(self.layer, outputs.features.float())).float()
