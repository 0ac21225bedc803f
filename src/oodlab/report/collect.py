"""Reading a sweep: every results.json below one or more directories, as one table of runs.

A run's *setting* is what was run, seed excluded: the loss, its own parameters (from
run.loss_params, so a key a head ignores never splits a setting), the dataset, the backbone,
and the command-line overrides that change anything else. The *swept keys* are the setting
keys whose values differ across the successful runs; reports group runs by them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from oodlab.errors import MissingResultsError
from oodlab.outputs.record import HOW_A_JOB_RAN, RESULTS_FILE, RunRecord

#: overrides already described by a run field (loss, loss.* via run.loss_params, dataset and
#: backbone via their group choices) or that only move files and loggers around or say how a
#: job was run (resumed, verbose)
COVERED_GROUP_CHOICES = frozenset({"loss", "data", "model", "arm"})
IGNORED_OVERRIDE_ROOTS = HOW_A_JOB_RAN | {
    "seed",
    "loss",
    "hydra",
    "paths",
    "logger",
    "callbacks",
    "hparams_search",
    "sweep",
}
SETTING_RUN_FIELDS = ("loss", "dataset", "backbone")
LOSS_PARAM_PREFIX = "loss."
#: a key a setting lacks (CE has no tau); shown as "-"
ABSENT = None


@dataclass
class Sweep:
    """All runs found below ``dirs``.

    ``runs`` has one row per results.json: ``run_dir``, ``status`` ("ok" or "failed"),
    ``error``, ``seed``, ``setting`` (a JSON key naming the setting), one column per setting
    key, and the metrics: ``id/acc``, ``id/ece``, ``val/objective`` and
    ``ood/<score>/<set>/<metric>``. ``results`` maps each run_dir to its parsed results.json.
    """

    dirs: list[Path]
    runs: pd.DataFrame
    swept_keys: list[str]
    #: setting keys every successful run shares, with their value (the table's caption)
    fixed: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(repr=False)

    @property
    def ok(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "ok"]

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "ok"]

    @property
    def scores(self) -> list[str]:
        """OOD score names in the order the runs report them."""
        names: dict[str, None] = {}
        for res in self.results.values():
            names |= dict.fromkeys(res.get("ood") or {})
        return list(names)

    @property
    def overview(self) -> pd.DataFrame:
        """One line per run: where, status, seed, swept keys, objective, ID accuracy, error."""
        columns = [
            "run_dir",
            "status",
            "seed",
            *self.swept_keys,
            "val/objective",
            "id/acc",
            "error",
        ]
        return self.runs[[c for c in columns if c in self.runs.columns]]

    def setting_label(self, setting: str, keys: Sequence[str] | None = None) -> str:
        """``loss=logitnorm tau=0.04`` for a setting key, naming only the swept keys."""
        row = self.runs[self.runs["setting"] == setting].iloc[0]
        return describe(row, self.swept_keys if keys is None else keys)


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every results.json at or below the given directories (or the files themselves)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.name == RESULTS_FILE:
            found.append(path)
        elif path.is_dir():
            found += sorted(path.rglob(RESULTS_FILE), key=_natural_key)
        else:
            raise MissingResultsError(
                f"{path} does not exist"
                f"{' (resolved: ' + str(path.resolve()) + ')' if not path.is_absolute() else ''}. "
                "Give a multirun directory, e.g. logs/multiruns/<date>, "
                "made by `python src/train.py -m ...`."
            )
    if not found:
        looked = ", ".join(str(p) for p in paths)
        raise MissingResultsError(
            f"Found no {RESULTS_FILE} below {looked}. Run a sweep first: "
            "`python src/train.py -m loss=ce,logitnorm seed=0,1,2`."
        )
    return list(dict.fromkeys(p.resolve() for p in found))


def _natural_key(path: Path) -> list[Any]:
    """Job directories 0, 1, ..., 10 in numeric order."""
    return [int(part) if part.isdigit() else part for part in path.parts]


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["loss.tau=0.04", "+x=1"]`` -> ``{"loss.tau": 0.04, "x": 1}`` via Hydra's own parser."""
    parsed: dict[str, Any] = {}
    try:
        items = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return {str(o): "?" for o in overrides}
    for item in items:
        value = "<deleted>" if item.is_delete() else item.value()
        if not isinstance(value, (str, int, float, bool, type(None))):
            value = item.get_value_element_as_str()
        parsed[item.key_or_group] = value
    return parsed


def distinct_overrides(runs_overrides: Sequence[Sequence[str]]) -> list[str]:
    """Each run's overrides without those every run shares, the seed, and those that only move
    files or loggers: what tells a run apart from the others of the report."""
    shared = set.intersection(*map(set, runs_overrides)) if len(runs_overrides) > 1 else set()
    compact = []
    for overrides in runs_overrides:
        keys = list(parse_overrides(overrides))
        kept = [
            text
            for key, text in zip(keys, overrides)
            if text not in shared
            and (_root(key) == "loss" or _root(key) not in IGNORED_OVERRIDE_ROOTS)
        ]
        compact.append(" ".join(kept))
    return compact


def _root(key: str) -> str:
    return key.replace("/", ".").split(".")[0]


def is_setting_override(key: str) -> bool:
    if key in COVERED_GROUP_CHOICES:
        return False
    return _root(key) not in IGNORED_OVERRIDE_ROOTS


def run_setting(results: Mapping[str, Any]) -> dict[str, Any]:
    """What a run ran, seed excluded (see the module docstring)."""
    run = results.get("run") or {}
    overrides = parse_overrides(run.get("overrides") or [])
    if results.get("status", "ok") == "ok":
        setting = {key: run.get(key) for key in SETTING_RUN_FIELDS}
        setting |= {f"{LOSS_PARAM_PREFIX}{k}": v for k, v in (run.get("loss_params") or {}).items()}
    else:
        # a failed job recorded only its overrides: its loss and loss params come from there
        setting = {"loss": overrides.get("loss")}
        setting |= {k: v for k, v in overrides.items() if k.startswith(LOSS_PARAM_PREFIX)}
    setting |= {k: v for k, v in overrides.items() if is_setting_override(k)}
    return setting


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def swept_keys(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Setting keys whose values differ across runs, plus ``loss`` (every table names it)."""
    keys: dict[str, None] = {"loss": None}
    for setting in settings:
        keys |= dict.fromkeys(setting)
    differing = [
        k for k in keys if len({json.dumps(_hashable(s.get(k)), default=str) for s in settings}) > 1
    ]
    return ["loss", *[k for k in differing if k != "loss"]]


def describe(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        value = row.get(key)
        if value is ABSENT or (isinstance(value, float) and math.isnan(value)):
            continue
        name = key.removeprefix(LOSS_PARAM_PREFIX)
        parts.append(
            str(value)
            if key == "loss"
            else f"{name}={value:.4g}"
            if isinstance(value, float)
            else f"{name}={value}"
        )
    return " ".join(parts) or "default"


def load_sweep(paths: str | Path | Iterable[str | Path]) -> Sweep:
    """Read every results.json below ``paths`` (one directory or several)."""
    dirs = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    files = find_results(dirs)
    records, settings, results = [], [], {}
    for path in files:
        record = RunRecord.read(path)
        res = record.to_json()
        run_dir = str(path.parent)
        results[run_dir] = res
        setting = run_setting(res)
        settings.append(setting)
        run = res.get("run") or {}
        records.append(
            {
                "run_dir": run_dir,
                "status": res.get("status", "ok"),
                "error": res.get("error"),
                "seed": run.get("seed"),
                "overrides": " ".join(run.get("overrides") or []),
                **record.flatten(),
            }
        )
    ok_settings = [s for s, r in zip(settings, records) if r["status"] == "ok"] or settings
    keys = swept_keys(ok_settings)
    all_keys = list(dict.fromkeys(k for s in settings for k in s))
    for row, setting in zip(records, settings):
        for key in all_keys:
            row[key] = setting.get(key, ABSENT)
        row["setting"] = json.dumps({k: _hashable(setting.get(k)) for k in keys}, default=str)
    runs_overrides = [(r.get("run") or {}).get("overrides") or [] for r in results.values()]
    for row, changed in zip(records, distinct_overrides(runs_overrides)):
        row["changed"] = changed
    front = ["run_dir", "status", "error", "seed", *keys, "setting", "changed", "overrides"]
    runs = pd.DataFrame.from_records(records)
    runs = runs[[*front, *[c for c in runs.columns if c not in front]]]
    fixed = {
        k: ok_settings[0].get(k)
        for k in all_keys
        if k not in keys and all(k in s for s in ok_settings)
    }
    return Sweep(dirs=dirs, runs=runs, swept_keys=keys, fixed=fixed, results=results)


def sweep_group_name(path: str | Path) -> str:
    """The W&B group the jobs of a multirun share: the sweep directory's name (oodlab.cli)."""
    return Path(path).resolve().name


def saved_config(run_dir: str | Path) -> dict[str, Any]:
    """The composed config a job ran with (Hydra's .hydra/config.yaml), or {} if absent."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]
