"""The run record: what one run did and measured, as results.json holds it.

:class:`RunRecord` is the one typed form of results.json. Training, ``src/eval.py``, the
failure path and ``oodlab.evaluate`` build it with :func:`build_record`; the sweep report reads
it back with :meth:`RunRecord.read`; loggers receive :meth:`RunRecord.flatten`. The README's
"Run record" section documents every key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oodlab._infra.io import atomic_write_json
from oodlab.evaluation.choice import Choice

if TYPE_CHECKING:
    from oodlab.evaluation.engine import Evaluation

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
#: overrides that say how a job ran (resumed, verbose, with plots), not what it ran: a resumed
#: job is the same job, and the report never makes them a setting
HOW_A_JOB_RAN = frozenset({"resume", "ckpt_path", "verbose_third_party", "plots"})
#: per-epoch curves of the OOD monitor: epoch, mean logit norm on train / ID val / one OOD set,
#: and the mean training loss
HISTORY_KEYS = ("epoch", "train", "val_id", "ood", "train_loss")


def empty_history() -> dict[str, list[float]]:
    return {key: [] for key in HISTORY_KEYS}


@dataclass
class RunInfo:
    """results.json's ``run`` section: what ran, where, and how long."""

    loss: str | None = None
    loss_params: dict[str, Any] = field(default_factory=dict)
    backbone: str | None = None
    dataset: str | None = None
    seed: int | None = None
    epochs: int | None = None
    wall_s: float | None = None
    device: str | None = None
    experiment: str | None = None
    overrides: list[str] = field(default_factory=list)
    #: the classifier's classes (LogitNorm's loss bound depends on them)
    num_classes: int | None = None
    #: evaluation of a saved model: the weights it read, and the processes it ran on
    checkpoint: str | None = None
    processes: int | None = None
    #: the outlier set an outlier-exposure loss trained with (``outliers=``); absent: none
    outliers: str | None = None
    #: the resize, crop, interpolation, mean and std images were evaluated with, and where they
    #: came from (pretrained weights' own transforms); absent: the data's in-memory tensors
    preprocessing: dict[str, Any] | None = None
    #: how streamed images were read: decoding workers and decoder (requested, used, why);
    #: absent: in-memory tensors
    loading: dict[str, Any] | None = None
    #: keys this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)

    OPTIONAL = ("checkpoint", "processes", "num_classes", "outliers", "preprocessing", "loading")

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for key in self.OPTIONAL:
            if data[key] is None:
                del data[key]
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunInfo:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass
class RunRecord:
    """One run's results.json. ``status`` is ``ok``, ``failed`` (with ``error`` and
    ``traceback``) or ``interrupted`` (stopped by a signal; a checkpoint was saved)."""

    run: RunInfo = field(default_factory=RunInfo)
    status: str = "ok"
    #: ID test split: dataset, n, acc, ece
    id: dict[str, Any] | None = None
    #: per score, per OOD set (and mean rows): fpr95, auroc, aupr_in, aupr_out, ...
    ood: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    logit_norm: dict[str, list[float]] | None = None
    #: training's validation-pair history and the sweep objective
    val: dict[str, Any] | None = None
    #: per score: the validation grid and the chosen hyperparameters
    scores: dict[str, Choice] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    #: one line per problem a reader of the numbers must know (a degenerate validation pair)
    warnings: list[str] = field(default_factory=list)
    #: the evaluation cache, when the run used one: ``dir``, ``dtype`` and ``sets``, per
    #: dataset (id_test, each OOD set, id_val, val_ood, id_train) ``hit`` (read, no forward
    #: pass), ``miss`` (inferred and written), ``uncached`` (no cheap key) or ``given``
    cache: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    schema: int = SCHEMA_VERSION
    #: the raw scores and cached outputs behind the numbers; never written
    evaluation: Evaluation | None = field(default=None, repr=False, compare=False)

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": self.schema, "status": self.status}
        if self.status != "ok":
            data |= {"error": self.error, "traceback": self.traceback}
        data["run"] = self.run.to_json()
        if self.id is None and not self.ood:
            return data
        data |= {"id": self.id, "ood": self.ood, "logit_norm": self.logit_norm}
        if self.val is not None:
            data["val"] = self.val
        data["scores"] = {name: choice.to_json() for name, choice in self.scores.items()}
        data["calibration"] = self.calibration
        data["warnings"] = list(self.warnings)
        if self.cache is not None:
            data["cache"] = self.cache
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Also reads every results.json written since schema 1 (absent keys take defaults)."""
        return cls(
            run=RunInfo.from_json(data.get("run") or {}),
            status=data.get("status", "ok"),
            id=data.get("id"),
            ood=dict(data.get("ood") or {}),
            logit_norm=data.get("logit_norm"),
            val=data.get("val"),
            scores={
                name: Choice.from_json(name, c) for name, c in (data.get("scores") or {}).items()
            },
            calibration=data.get("calibration"),
            warnings=list(data.get("warnings") or []),
            cache=data.get("cache"),
            error=data.get("error"),
            traceback=data.get("traceback"),
            schema=int(data.get("schema", SCHEMA_VERSION)),
        )

    def write(self, run_dir: str | Path) -> Path:
        """``<run_dir>/results.json``, written atomically."""
        return atomic_write_json(Path(run_dir) / RESULTS_FILE, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """From a results.json file or the run directory holding one."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        with path.open() as fh:
            return cls.from_json(json.load(fh))

    # -- flat views -----------------------------------------------------------------------------
    def flatten(self, prefix: str | None = None) -> dict[str, float]:
        """Every metric under one flat key, NaN where absent.

        Without ``prefix`` (the report's keys): ``id/acc``, ``id/ece``, ``val/objective`` and
        ``ood/<score>/<set>/<metric>``. With ``prefix="test/"`` (what loggers receive): the
        test metrics only, as ``test/acc``, ``test/ece`` and ``test/<score>/<set>/<metric>``.
        """
        flat: dict[str, Any] = {}
        id_part = self.id or {}
        for key in ("acc", "ece"):
            if key in id_part:
                flat[f"{prefix or 'id/'}{key}"] = id_part[key]
        if prefix is None and self.val is not None and "objective_value" in self.val:
            flat["val/objective"] = self.val["objective_value"]
        for score, per_set in self.ood.items():
            for set_name, metrics in per_set.items():
                for metric, value in metrics.items():
                    if metric != "n":
                        flat[f"{prefix or 'ood/'}{score}/{set_name}/{metric}"] = value
        return {k: (math.nan if v is None else float(v)) for k, v in flat.items()}


def build_record(
    run: RunInfo,
    *,
    status: str = "ok",
    evaluation: Evaluation | None = None,
    history: Mapping[str, list[float]] | None = None,
    val: Mapping[str, Any] | None = None,
    error: str | None = None,
    traceback: str | None = None,
) -> RunRecord:
    """The record of a run: the same function for training, evaluation and failures."""
    record = RunRecord(
        run=run,
        status=status,
        error=error,
        traceback=traceback,
        val=dict(val) if val is not None else None,
    )
    if evaluation is not None:
        record.id = dict(evaluation.id)
        record.ood = evaluation.ood
        record.logit_norm = {k: list(v) for k, v in (history or empty_history()).items()}
        record.scores = dict(evaluation.choices)
        record.calibration = evaluation.calibration
        record.warnings = list(evaluation.warnings)
        record.cache = evaluation.cache
        record.evaluation = evaluation
    return record
