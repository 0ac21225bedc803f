"""Loss heads: what turns penultimate features into logits, and logits into a training loss.

``hydra.utils.instantiate(cfg.loss, in_features=D, num_classes=K)`` builds one of these
(``conf/loss/<name>.yaml``); :data:`LOSSES` maps each name to its class.
"""

from __future__ import annotations

from oodlab.losses.base import LossHead
from oodlab.losses.ce import CrossEntropyHead, LinearHead
from oodlab.losses.dismax import DisMaxHead
from oodlab.losses.isomax import IsoMaxHead, IsoMaxPlusHead
from oodlab.losses.logit_penalty import LogitPenaltyHead
from oodlab.losses.logitnorm import LogitNormHead

LOSSES: dict[str, type[LossHead]] = {
    cls.name: cls
    for cls in (
        CrossEntropyHead,
        LogitNormHead,
        LogitPenaltyHead,
        IsoMaxHead,
        IsoMaxPlusHead,
        DisMaxHead,
    )
}

__all__ = [
    "LOSSES",
    "CrossEntropyHead",
    "DisMaxHead",
    "IsoMaxHead",
    "IsoMaxPlusHead",
    "LinearHead",
    "LogitNormHead",
    "LogitPenaltyHead",
    "LossHead",
]
