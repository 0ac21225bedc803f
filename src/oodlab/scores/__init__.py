"""Post-hoc OOD scores. Every score gives one value per sample; higher means more in-distribution.

Every module of this package whose name does not start with ``_`` is imported here, and each
registers its scores with ``@register_score``. A new score is therefore one module (a
:class:`Score` subclass with ``name``, ``spec`` and ``score``) and nothing else: no line to add
here, in ``conf/eval/default.yaml`` (its defaults and grid come from ``spec``), or in the
tests (tests/test_scores.py runs its generic checks on every registered score).
"""

import importlib
import pkgutil

from oodlab.scores.base import SCORES, HParam, Outputs, Score, grid_settings, register_score

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


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
