"""Post-hoc OOD scores. Higher means more in-distribution (CONTRACT.md)."""

from oodlab.scores import logit as _logit  # noqa: F401  (registers the logit scores)
from oodlab.scores.base import SCORES, Outputs, Score, register_score


def create_score(name: str, **hparams) -> Score:
    return SCORES.get(name)(**hparams)


__all__ = ["SCORES", "Outputs", "Score", "create_score", "register_score"]
