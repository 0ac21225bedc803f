"""Post-hoc OOD scores. Every score gives one value per sample; higher means more in-distribution."""

from oodlab.scores import feature as _feature  # noqa: F401  (each module registers its scores)
from oodlab.scores import gradient as _gradient  # noqa: F401
from oodlab.scores import head as _head  # noqa: F401
from oodlab.scores import logit as _logit  # noqa: F401
from oodlab.scores.base import SCORES, HParam, Outputs, Score, grid_settings, register_score


def create_score(name: str, **hparams) -> Score:
    return SCORES.get(name)(**hparams)


__all__ = [
    "SCORES",
    "HParam",
    "Outputs",
    "Score",
    "create_score",
    "grid_settings",
    "register_score",
]
