"""Head-specific scores: the ones the IsoMax, IsoMax+ and DisMax papers evaluate with.

Each loss head names its score in ``default_score`` (oodlab.losses). All three read the plain
logits the head returns in evaluation (no entropic scale).
"""

from __future__ import annotations

from torch import Tensor

from oodlab.scores.base import Outputs, Score, register_score
from oodlab.scores.logit import MaxLogit, NegEntropy, negative_entropy


@register_score
class EntropicScore(NegEntropy):
    """ES: negative entropy of softmax(logits), for IsoMax (``sum_j p_j log p_j``). Same
    computation as ``entropy``; its own name because it is IsoMax's published score."""

    name = "es"
    paper = "Macedo et al., IJCNN 2021 (IsoMax)"


@register_score
class MinimumDistanceScore(MaxLogit):
    """MDS: the max logit, i.e. minus the smallest scaled distance to a prototype, for IsoMax+.
    Same computation as ``maxlogit``; its own name because it is IsoMax+'s published score."""

    name = "mds"
    paper = "Macedo & Ludermir, 2021 (IsoMax+)"


@register_score
class MaxMeanLogitEntropyScore(Score):
    """MMLES: max logit + mean logit - entropy of softmax(logits), for DisMax."""

    name = "mmles"
    paper = "Macedo et al., 2022 (DisMax)"

    def score(self, outputs: Outputs) -> Tensor:
        logits = outputs.logits.float()
        return logits.amax(dim=1) + logits.mean(dim=1) + negative_entropy(logits)
