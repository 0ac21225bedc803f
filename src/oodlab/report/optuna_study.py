"""Optuna studies of the hyperparameter searches (conf/hparams_search/): their storage and
their trials as a table.

``hydra.sweeper.storage`` in conf/hparams_search/tau_optuna.yaml is instantiated from
:func:`sqlite_storage`: the same file and study name on the next run resume the study.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from oodlab.errors import MissingFileError

if TYPE_CHECKING:
    import pandas as pd


def sqlite_storage(path: str | Path) -> Any:
    """An Optuna RDB storage in the SQLite file ``path``, creating its folder.

    SQLite creates a missing database file but not a missing folder, and the Optuna sweeper
    opens the study before any job has made the log directory.
    """
    import optuna

    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


def load_study(path: str | Path, study_name: str) -> Any:
    import optuna

    path = Path(path)
    if not path.exists():
        raise MissingFileError(
            f"Optuna study {study_name!r}",
            str(path),
            "Run the search first: `python src/train.py hparams_search=tau_optuna`.",
        )
    return optuna.load_study(study_name=study_name, storage=f"sqlite:///{path.resolve()}")


def study_frame(path: str | Path, study_name: str) -> pd.DataFrame:
    """One row per trial: number, state (COMPLETE / FAIL / RUNNING), value and params."""
    return load_study(path, study_name).trials_dataframe(
        attrs=("number", "state", "value", "params", "datetime_start")
    )
