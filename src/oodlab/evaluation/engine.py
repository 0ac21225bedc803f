"""Post-training OOD evaluation, top to bottom.

1. Infer each dataset once: ID test, ID val, every OOD set, the validation OOD set, and the
   ID training split when a score fits statistics. Logits and penultimate features are
   cached and shared by every score.
2. Choose each score's hyperparameters on the validation pair, from scores computed on it.
3. Score the test sets with the chosen settings.
4. Calibrate: temperature scaling fitted on ID val, reported on ID test.
5. Build the tables: per score and OOD set, plus the means over sets and named groups.

With an evaluation cache (oodlab.evaluation.cache) step 1 reads every dataset whose entry
exists and runs the network only on the others, writing their entries as it goes;
``Evaluation.cache`` says which sets were hits. A set given as :class:`Outputs`
(``oodlab.evaluate_outputs``) is used as it is.

Only ODIN runs the network again (with input gradients); GradNorm and ReAct re-run just the
last layer on the cached features. Under DDP each process runs a contiguous block of whole
batches and the blocks are gathered in rank order (oodlab._infra.distributed), so the metrics
equal a single process's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from oodlab._infra.distributed import gather_rows, world
from oodlab.errors import ConfigError
from oodlab.evaluation.cache import EntryWriter, OutputCache, as_cached_precision, data_key
from oodlab.evaluation.inputs import EvalSet, my_batches
from oodlab.evaluation.model import ScoringModel, in_eval_mode
from oodlab.evaluation.selection import Choice, ScorePlan, choose
from oodlab.metrics import calibration_report, expected_calibration_error, ood_metrics
from oodlab.metrics.ood import METRIC_KEYS
from oodlab.scores import Outputs, Score

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Everything one evaluation produced: the results.json sections and the raw scores."""

    id: dict[str, Any]
    ood: dict[str, dict[str, dict[str, float]]]
    #: per score: the grid searched on the validation pair and the values chosen
    choices: dict[str, Choice] = field(default_factory=dict)
    #: temperature scaling fitted on ID val: ECE and NLL on ID test before and after
    calibration: dict[str, Any] | None = None
    #: one line per score whose validation pair could not choose (see selection.py)
    warnings: list[str] = field(default_factory=list)
    id_scores: dict[str, Tensor] = field(default_factory=dict)
    ood_scores: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    outputs: dict[str, Outputs] = field(default_factory=dict, repr=False)
    #: the evaluation cache: its directory and dtype, and per dataset ``hit``, ``miss``
    #: (inferred and written), ``uncached`` (no cheap key) or ``given`` (outputs passed in);
    #: None without a cache
    cache: dict[str, Any] | None = None

    def sections(self) -> dict[str, Any]:
        """The results.json sections beyond ``id`` and ``ood``."""
        return {
            "scores": {name: choice.to_json() for name, choice in self.choices.items()},
            "calibration": self.calibration,
        }


@dataclass(frozen=True)
class Inference:
    """How to run the network: the model, its input transform, batch size and device."""

    net: ScoringModel
    normalize: nn.Module
    batch_size: int
    device: torch.device


# -- 1. inference ---------------------------------------------------------------------------
@torch.no_grad()
def infer(run: Inference, data: EvalSet, sink: EntryWriter | None = None) -> Outputs:
    """Logits, penultimate features and labels of every sample, computed once. With a
    ``sink`` (one process only) each batch goes to the cache entry as it comes, nothing is
    kept in memory, and the entry is returned as read back (memory-mapped)."""
    logits, features, labels = [], [], []
    with in_eval_mode(run.net):
        for images, y in my_batches(data, run.batch_size):
            out, feats = run.net.forward_with_features(run.normalize(images.to(run.device)))
            if sink is not None:
                sink.append(out, feats, y)
                continue
            logits.append(out.float())
            features.append(feats.float())
            labels.append(y.to(run.device))
        if sink is not None:
            path = sink.commit()
            if path is not None:
                from oodlab.evaluation.cache import read_entry

                return read_entry(path)
            return infer(run, data)  # the data gave fewer rows than its length: in memory
        if not logits:  # this process's block is empty (more processes than batches): shapes only
            first, _ = next(data.batches(run.batch_size, range(1)))
            out, feats = run.net.forward_with_features(run.normalize(first[:1].to(run.device)))
            logits, features, labels = (
                [out.float()[:0]],
                [feats.float()[:0]],
                [torch.zeros(0, dtype=torch.long, device=run.device)],
            )
    return Outputs(
        logits=gather_rows(torch.cat(logits)).cpu(),
        features=gather_rows(torch.cat(features)).cpu(),
        labels=gather_rows(torch.cat(labels)).cpu(),
    )


class OutputSource:
    """Where each dataset's outputs come from: given, the cache, or one inference pass.

    Every key is looked up before anything is inferred or written, so that under DDP all
    processes agree on which sets to infer (an entry another process writes meanwhile does
    not change this run's plan)."""

    def __init__(self, run: Inference | None, cache: OutputCache | None):
        self.run, self.cache = run, cache
        self.status: dict[str, str] = {}
        self._plan: dict[str, tuple[str | None, Outputs | None]] = {}

    def plan(self, sets: Mapping[str, EvalSet | Outputs | None]) -> None:
        for name, data in sets.items():
            if data is None:
                continue
            if isinstance(data, Outputs):
                self.status[name] = "given"
                continue
            key = data_key(data) if self.cache is not None else None
            hit = self.cache.load(name, key) if self.cache is not None and key else None
            self._plan[name] = (key, hit)
            self.status[name] = "hit" if hit is not None else "miss" if key else "uncached"
            if hit is not None:
                log.info(
                    "cache: %s read from %s", name, self.cache and self.cache.path(name, key or "")
                )

    def get(self, name: str, data: EvalSet | Outputs) -> Outputs:
        if isinstance(data, Outputs):
            return data
        key, hit = self._plan.get(name, (None, None))
        if hit is not None:
            return hit
        if self.run is None:
            raise ValueError(f"{name}: outputs are needed but there is no model to infer them")
        if self.cache is None or key is None:
            return infer(self.run, data)
        world_size, rank = world()
        if world_size == 1:
            return infer(self.run, data, self.cache.writer(name, key, len(data)))
        outputs = infer(self.run, data)
        if rank == 0:
            return self.cache.store(name, key, outputs)
        return as_cached_precision(outputs, self.cache.settings.dtype)

    def record(self) -> dict[str, Any] | None:
        if self.cache is None:
            return None
        return {
            "dir": str(self.cache.settings.dir),
            "dtype": self.cache.settings.dtype,
            "sets": dict(self.status),
        }


def rerun_scores(
    run: Inference, cls: type[Score], settings: list[dict[str, Any]], data: EvalSet
) -> list[Tensor]:
    """Run the network again for a ``needs_model`` score, one tensor per setting; the
    settings share each batch's forward and gradient passes."""
    per_setting: list[list[Tensor]] = [[] for _ in settings]
    with in_eval_mode(run.net):
        for images, _ in my_batches(data, run.batch_size):
            inputs = run.normalize(images.to(run.device))
            for values, scores in zip(
                per_setting, cls.score_inputs_grid(run.net, inputs, input_std(run), settings)
            ):
                values.append(scores.detach().float())
    return [
        gather_rows(torch.cat(v) if v else torch.zeros(0, device=run.device)).cpu()
        for v in per_setting
    ]


def score_datasets(
    run: Inference,
    cls: type[Score],
    settings: list[dict[str, Any]],
    datasets: Mapping[str, tuple[EvalSet | Outputs, Outputs]],
    train: Outputs | None,
    val: Outputs | None = None,
) -> list[dict[str, Tensor]]:
    """For each setting, the scores of every dataset: from the cached outputs (fitted once per
    setting), or by re-running the network for ``needs_model`` scores. ``val`` (the ID val
    outputs) goes to ``needs_val`` scores only."""
    if cls.needs_model:
        per_set = {}
        for name, (data, _) in datasets.items():
            if isinstance(data, Outputs):
                raise ValueError(f"score {cls.name!r} re-runs the network: it needs the data")
            per_set[name] = rerun_scores(run, cls, settings, data)
        return [{name: per_set[name][i] for name in datasets} for i in range(len(settings))]
    scored = []
    for setting in settings:
        score = cls(**setting)
        extra = {"val": val} if cls.needs_val else {}
        score.fit(train if cls.needs_train else None, run.net, **extra)
        scored.append({name: score.score(outputs) for name, (_, outputs) in datasets.items()})
    return scored


def mean_over_sets(
    per_set: Mapping[str, Mapping[str, float]], names: Sequence[str] | None = None
) -> dict[str, float]:
    names = list(per_set) if names is None else [n for n in names if n in per_set]
    return {k: float(sum(per_set[n][k] for n in names) / len(names)) for k in METRIC_KEYS if names}


def check_groups(groups: Mapping[str, Sequence[str]], ood_sets: Mapping[str, Any]) -> None:
    for name, members in groups.items():
        if any(s not in ood_sets for s in members):
            raise ConfigError(
                f"ood.groups.{name}", list(members), f"a list of OOD sets among {sorted(ood_sets)}"
            )


def run_evaluation(
    run: Inference,
    plans: Mapping[str, ScorePlan],
    id_test: EvalSet | Outputs,
    ood_sets: Mapping[str, EvalSet | Outputs],
    *,
    dataset: str = "id",
    id_train: EvalSet | Outputs | None = None,
    id_val: EvalSet | Outputs | None = None,
    val_ood: EvalSet | Outputs | None = None,
    mean_exclude: Sequence[str] = (),
    groups: Mapping[str, Sequence[str]] | None = None,
    cache: OutputCache | None = None,
) -> Evaluation:
    """Score every dataset with every planned score (see the module docstring for the steps).

    Without a validation pair (``id_val`` and ``val_ood``) the published defaults are used.
    Statistics (ReAct, Mahalanobis, KNN) come from ``id_train``. A dataset may be given as
    its :class:`Outputs` instead of data; ``cache`` reads and writes the others' outputs.
    """
    groups = dict(groups or {})
    check_groups(groups, ood_sets)
    needs_train = any(plan.cls.needs_train for plan in plans.values())
    if needs_train and id_train is None:
        raise ValueError("a score fits training statistics but no training split was given")
    needs_val = any(plan.cls.needs_val for plan in plans.values())
    if needs_val and id_val is None:
        raise ValueError("a score fits on the ID validation split but no id_val was given")
    has_pair = id_val is not None and val_ood is not None

    # 1. infer each dataset once (or read it from the cache)
    source = OutputSource(run, cache)
    source.plan(
        {
            "id_test": id_test,
            **ood_sets,
            "id_val": id_val if has_pair or needs_val else None,
            "val_ood": val_ood if has_pair else None,
            "id_train": id_train if needs_train else None,
        }
    )
    test_sets: dict[str, EvalSet | Outputs] = {"id": id_test, **ood_sets}
    outputs = {
        name: source.get("id_test" if name == "id" else name, data)
        for name, data in test_sets.items()
    }
    val_pair = None
    if has_pair:
        assert id_val is not None and val_ood is not None
        val_pair = {
            "val_id": (id_val, source.get("id_val", id_val)),
            "val_ood": (val_ood, source.get("val_ood", val_ood)),
        }
    train = source.get("id_train", id_train) if needs_train and id_train is not None else None
    # ID val outputs for needs_val scores (temperature scaling, KL matching): the validation
    # pair's, or ID val inferred alone when there is no validation OOD set
    val = None
    if needs_val:
        assert id_val is not None
        val = val_pair["val_id"][1] if val_pair is not None else source.get("id_val", id_val)

    # 2. choose on the validation pair
    choices = {}
    for name, plan in plans.items():
        val_scores = None
        if val_pair is not None:
            per_setting = score_datasets(run, plan.cls, plan.settings, val_pair, train, val)
            val_scores = [(s["val_id"], s["val_ood"]) for s in per_setting]
        choices[name] = choose(plan, val_scores)
        log.info(
            "score %s: %s (val fpr95 %s)",
            name,
            choices[name].chosen,
            (choices[name].val or {}).get("fpr95"),
        )

    degenerate = [f"{name}: {c.degenerate}" for name, c in choices.items() if c.degenerate]
    if degenerate:
        log.warning(
            "The validation pair cannot choose score settings (%s). Its OOD set is too easy, "
            "too hard or looks more in-distribution than the ID data; choose another validation "
            "OOD set "
            "(ood.val on the command line, val_ood= in oodlab.evaluate).",
            "; ".join(degenerate),
        )

    # 3. score the test sets
    datasets = {name: (data, outputs[name]) for name, data in test_sets.items()}
    scored = {
        name: score_datasets(run, plan.cls, [choices[name].chosen], datasets, train, val)[0]
        for name, plan in plans.items()
    }

    # 4. calibrate
    id_out = outputs["id"]
    labelled = bool((id_out.labels >= 0).all()) and len(id_out.labels) > 0
    calibration = None
    if labelled and val_pair is not None and bool((val_pair["val_id"][1].labels >= 0).all()):
        val_out = val_pair["val_id"][1]
        calibration = {
            "fitted_on": "val",
            "evaluated_on": "test",
            "n_bins": 15,
            **calibration_report(val_out.logits, val_out.labels, id_out.logits, id_out.labels),
        }

    # 5. the tables
    ood_table: dict[str, dict[str, dict[str, float]]] = {}
    for name, per_dataset in scored.items():
        per_set = {
            s: {"n": len(outputs[s].labels), **ood_metrics(per_dataset["id"], per_dataset[s])}
            for s in ood_sets
        }
        table: dict[str, dict[str, float]] = dict(per_set)
        table["mean"] = mean_over_sets(per_set, [s for s in per_set if s not in set(mean_exclude)])
        for group, members in groups.items():
            table[f"mean_{group}"] = mean_over_sets(per_set, list(members))
        ood_table[name] = table
    return Evaluation(
        id={
            "dataset": dataset,
            "n": len(id_out.labels),
            "acc": float((id_out.logits.argmax(1) == id_out.labels).float().mean())
            if labelled
            else None,
            "ece": expected_calibration_error(id_out.logits, id_out.labels, n_bins=15)
            if labelled
            else None,
        },
        ood=ood_table,
        choices=choices,
        calibration=calibration,
        warnings=[f"degenerate validation pair for {line}" for line in degenerate],
        id_scores={name: s["id"] for name, s in scored.items()},
        ood_scores={
            name: {s: per_dataset[s] for s in ood_sets} for name, per_dataset in scored.items()
        },
        outputs=outputs,
        cache=source.record(),
    )


def input_std(run: Inference) -> Tensor:
    """The per-channel std (1, C, 1, 1) of the run's input normalisation (ODIN's step size)."""
    return cast(Tensor, run.normalize.std)  # a registered buffer
