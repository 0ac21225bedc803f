"""oodlab: train image classifiers that know when they don't know.

``oodlab.evaluate`` scores any classifier on ID and OOD data (see oodlab.api);
``oodlab.evaluate_outputs`` scores outputs already inferred (``oodlab.Outputs``: logits,
features, labels; or evaluation-cache directories) without a model. ``oodlab.RunRecord`` is
what both return and what results.json holds. All load on first use, so importing oodlab (as
the command lines do before parsing their arguments) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "evaluate": "oodlab.api",
    "evaluate_outputs": "oodlab.api",
    "Outputs": "oodlab.scores.base",
    "RunRecord": "oodlab.outputs.record",
    "RunInfo": "oodlab.outputs.record",
}
__all__ = ["Outputs", "RunInfo", "RunRecord", "__version__", "evaluate", "evaluate_outputs"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oodlab' has no attribute {name!r}")
