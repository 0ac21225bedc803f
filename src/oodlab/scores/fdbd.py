"""fDBD: feature distance to the decision boundaries (Liu & Qin, ICML 2024)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oodlab._infra.validate import boolean
from oodlab.scores._posthoc import CHUNK, feature_mean, linear_weights, train_outputs
from oodlab.scores.base import HParam, Outputs, Score, register_score

#: a feature at the normalising centre gets this norm instead of 0 (a finite, large score)
MIN_NORM = 1e-12


@register_score
class FDBD(Score):
    """Mean distance from the feature to the decision boundaries of the predicted class,
    regularised by the feature's distance to the training mean.

    Liu and Qin, "Fast Decision Boundary based Out-of-Distribution Detector" (ICML 2024);
    official code litianliu/fDBD-OOD (run_cifar.py, run_imagenet.py), OpenOOD v1.5
    openood/postprocessors/fdbd_postprocessor.py. With ``c = argmax f`` and ``f = W h + b``:

        score = sum_{j != c} |f_c - f_j| / ||w_c - w_j||  /  ||h - mu||,

    ``|f_c - f_j| / ||w_c - w_j||`` being the distance from ``h`` to the boundary between
    ``c`` and ``j`` and ``mu`` the ID training split's mean feature. The paper averages over
    the ``K - 1`` other classes; the codes sum (the same ranking).

    ``distance_as_normalizer``: True by default (divide by ``||h - mu||``, the paper and the
    official code); False divides by ``||h||``, the alternative OpenOOD adds. Grid
    (True, False), OpenOOD configs/postprocessors/fdbd.yml (``distance_as_normalizer_list``).

    Two rows of ``W`` that are equal have no boundary: their term is 0 (the official code
    divides by 0). A zero normaliser is replaced by 1e-12 so the score stays finite.
    """

    name = "fdbd"
    paper = "Liu & Qin, ICML 2024"
    needs_train = True
    needs_features = True
    needs_head = True
    spec: ClassVar[dict[str, HParam]] = {
        "distance_as_normalizer": HParam(True, (True, False), boolean),
    }

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = train_outputs(self, train)
        weight, _ = linear_weights(self, model)
        self.train_mean = feature_mean(train.features)
        # ||w_c - w_j|| from direct differences (one class at a time: K x D memory)
        distances = torch.stack([(weight - w).norm(dim=1) for w in weight])
        self.inverse_distance = torch.where(
            distances > 0, 1.0 / distances.clamp_min(torch.finfo(torch.float64).tiny), 0.0
        )

    def score(self, outputs: Outputs) -> Tensor:
        centre = self.train_mean if self._hparams["distance_as_normalizer"] else 0.0
        scores = []
        for i in range(0, len(outputs.logits), CHUNK):
            f = outputs.logits[i : i + CHUNK].double()
            h = outputs.features[i : i + CHUNK].double()
            top, predicted = f.max(dim=1)
            to_boundaries = ((top[:, None] - f).abs() * self.inverse_distance[predicted]).sum(1)
            scores.append(to_boundaries / (h - centre).norm(dim=1).clamp_min(MIN_NORM))
        return torch.cat(scores).float() if scores else outputs.logits.new_zeros(0)
