"""scores.npz: a run's raw test scores, kept so sweep reports can draw score histograms.

Keys are ``id/<score>`` (the ID test split) and ``ood/<score>/<set>`` (each OOD test set),
float32, compressed: about 100 kB for the default experiment.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from oodlab._infra.io import atomic_write_bytes
from oodlab.errors import MissingFileError

SCORES_FILE = "scores.npz"


def _array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def save_scores(
    run_dir: str | Path, id_scores: Mapping[str, Any], ood_scores: Mapping[str, Mapping[str, Any]]
) -> Path:
    arrays: dict[str, Any] = {f"id/{score}": _array(values) for score, values in id_scores.items()}
    for score, per_set in ood_scores.items():
        arrays |= {
            f"ood/{score}/{set_name}": _array(values) for set_name, values in per_set.items()
        }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(Path(run_dir) / SCORES_FILE, buffer.getvalue())


def load_scores(
    run_dir: str | Path,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """``(id_scores, ood_scores)`` as saved by :func:`save_scores`."""
    path = Path(run_dir) / SCORES_FILE
    if not path.exists():
        raise MissingFileError(
            "The run's scores",
            str(path),
            "Runs save scores.npz since the sweep reports were added; re-run the job to get it.",
        )
    id_scores: dict[str, np.ndarray] = {}
    ood_scores: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            part, score, *rest = key.split("/")
            if part == "id":
                id_scores[score] = data[key]
            else:
                ood_scores.setdefault(score, {})[rest[0]] = data[key]
    return id_scores, ood_scores
