"""SHE: simplified Hopfield energy (Zhang et al., ICLR 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oodlab.scores._posthoc import CHUNK, chunks, one_of, train_outputs
from oodlab.scores.base import HParam, Outputs, Score, register_score


@register_score
class SHE(Score):
    """Similarity of the feature to the stored pattern of its predicted class.

    Zhang, Fu, Liu, Wang and Chen, "Out-of-Distribution Detection based on In-Distribution
    Data Patterns Memorization with Modern Hopfield Energy" (ICLR 2023); OpenOOD v1.5
    openood/postprocessors/she_postprocessor.py. The pattern of class ``c`` is the mean
    feature of the ID training samples labelled ``c`` *and* predicted as ``c``; score
    ``= <h, pattern_{argmax f}>`` (``metric=inner_product``), or ``-||h - pattern||``
    (``euclidean``) or the cosine (``cosine``), OpenOOD's three choices.

    ``metric``: ``inner_product`` (the paper's energy; OpenOOD configs/postprocessors/she.yml);
    grid (inner_product,), OpenOOD has no sweep. A class with no correctly classified training
    sample gets a zero pattern, so samples predicted as it score 0 under the inner product
    (OpenOOD's mean over no samples is NaN).
    """

    name = "she"
    paper = "Zhang et al., ICLR 2023"
    needs_train = True
    needs_features = True
    spec: ClassVar[dict[str, HParam]] = {
        "metric": HParam(
            "inner_product", ("inner_product",), one_of("inner_product", "euclidean", "cosine")
        ),
    }

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = train_outputs(self, train)
        k = train.logits.shape[1]
        sums = torch.zeros(k, train.features.shape[1], dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.float64)
        for i, block in zip(range(0, len(train.features), CHUNK), chunks(train.features)):
            labels = train.labels[i : i + len(block)]
            correct = labels == train.logits[i : i + len(block)].argmax(dim=1)
            sums.index_add_(0, labels[correct], block[correct])
            counts.index_add_(
                0, labels[correct], torch.ones(int(correct.sum()), dtype=torch.float64)
            )
        self.patterns = sums / counts.clamp_min(1)[:, None]

    def score(self, outputs: Outputs) -> Tensor:
        metric = self._hparams["metric"]
        scores = []
        for i, h in zip(range(0, len(outputs.features), CHUNK), chunks(outputs.features)):
            pattern = self.patterns[outputs.logits[i : i + len(h)].argmax(dim=1)]
            if metric == "inner_product":
                scores.append((h * pattern).sum(dim=1))
            elif metric == "euclidean":
                scores.append(-(h - pattern).norm(dim=1))
            else:
                scores.append(torch.cosine_similarity(h, pattern, dim=1))
        return torch.cat(scores).float() if scores else outputs.features.new_zeros(0)
