"""Post-training OOD evaluation: inference once per dataset, every score from shared outputs.

Each dataset (ID test, ID val, every OOD set, the validation OOD set, and the ID training split
when a score fits statistics) is run through the network once; logits and penultimate
features are cached and shared by every score. Only ODIN runs the network again (with input
gradients); GradNorm and ReAct re-run just the head on the cached features.

Under DDP each process runs a contiguous block of whole batches, and the blocks are gathered
in rank order without padding: every sample is computed exactly once, in the same batch as in
a single process, so the metrics equal the single-process ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from oodlab._infra.errors import ConfigError
from oodlab.data.augment import Normalize
from oodlab.data.types import ImageTensors
from oodlab.metrics import calibration_report, expected_calibration_error, ood_metrics
from oodlab.scores import SCORES, Outputs, Score
from oodlab.selection import Choice, check_scores, choose

log = logging.getLogger(__name__)

METRIC_KEYS = ("fpr95", "auroc", "aupr_in", "aupr_out", "fpr95_openood")


# -- sharding -------------------------------------------------------------------------------
def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def shard_batches(length: int, batch_size: int, world: int, rank: int) -> list[tuple[int, int]]:
    """This rank's batches: a contiguous block of the single-process batches, unpadded."""
    n_batches = math.ceil(length / batch_size)
    per = math.ceil(n_batches / world) if n_batches else 0
    first, last = min(rank * per, n_batches), min((rank + 1) * per, n_batches)
    return [(b * batch_size, min((b + 1) * batch_size, length)) for b in range(first, last)]


def gather_rows(local: Tensor) -> Tensor:
    """Concatenate every rank's rows in rank order (shards may differ in length)."""
    world, _ = _world()
    if world == 1:
        return local
    size = torch.tensor([local.shape[0]], device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, sizes)])


# -- inference ------------------------------------------------------------------------------
@torch.no_grad()
def infer(
    model: nn.Module, normalize: Normalize, data: ImageTensors, batch_size: int = 512, device: torch.device | str = "cpu"
) -> Outputs:
    """Logits and penultimate features of every sample, computed once."""
    world, rank = _world()
    was_training = model.training
    model.eval()
    logits, features = [], []
    for start, stop in shard_batches(len(data), batch_size, world, rank):
        out, feats = model.forward_with_features(normalize(data.images[start:stop].to(device)))
        logits.append(out.float())
        features.append(feats.float())
    model.train(was_training)
    head = getattr(model, "head", None)
    local_logits = torch.cat(logits) if logits else torch.zeros(0, getattr(head, "num_classes", 0), device=device)
    local_feats = torch.cat(features) if features else torch.zeros(0, getattr(head, "in_features", 0), device=device)
    return Outputs(logits=gather_rows(local_logits).cpu(), features=gather_rows(local_feats).cpu(), labels=data.labels)


def score_settings_with_model(
    score_cls: type[Score],
    settings: list[dict[str, Any]],
    model: nn.Module,
    normalize: Normalize,
    data: ImageTensors,
    batch_size: int,
    device: torch.device | str,
) -> list[Tensor]:
    """Run the network again (with input gradients) for a ``needs_model`` score, one tensor per
    setting; the settings share each batch's forward and gradient passes."""
    world, rank = _world()
    was_training = model.training
    model.eval()
    per_setting: list[list[Tensor]] = [[] for _ in settings]
    for start, stop in shard_batches(len(data), batch_size, world, rank):
        images = normalize(data.images[start:stop].to(device))
        for values, scores in zip(per_setting, score_cls.score_inputs_grid(model, images, normalize.std, settings)):
            values.append(scores.detach().float())
    model.train(was_training)
    return [gather_rows(torch.cat(v) if v else torch.zeros(0, device=device)).cpu() for v in per_setting]


def mean_over_sets(per_set: Mapping[str, Mapping[str, float]], names: list[str] | None = None) -> dict[str, float]:
    names = list(per_set) if names is None else [n for n in names if n in per_set]
    return {k: float(sum(per_set[n][k] for n in names) / len(names)) for k in METRIC_KEYS if names}


@dataclass
class Evaluation:
    """Everything one evaluation produced: the results.json sections and the raw scores for plots."""

    id: dict[str, Any]
    ood: dict[str, dict[str, dict[str, float]]]
    id_scores: dict[str, Tensor] = field(default_factory=dict)
    ood_scores: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    outputs: dict[str, Outputs] = field(default_factory=dict)
    #: per score: the grid searched on the validation pair and the values chosen
    choices: dict[str, Choice] = field(default_factory=dict)
    #: temperature scaling fitted on ID val: ECE and NLL on ID test before and after
    calibration: dict[str, Any] | None = None

    def sections(self) -> dict[str, Any]:
        """The results.json sections beyond ``id`` and ``ood``."""
        return {
            "scores": {name: choice.to_json() for name, choice in self.choices.items()},
            "calibration": self.calibration,
        }


class _Runner:
    """Scores a dataset with one score: on the cached outputs, or by re-running the network."""

    def __init__(self, model: nn.Module, normalize: Normalize, batch_size: int, device: torch.device | str):
        self.model, self.normalize, self.batch_size, self.device = model, normalize, batch_size, device

    def many(
        self,
        cls: type[Score],
        settings: list[dict[str, Any]],
        fitted: list[Score],
        data: ImageTensors,
        outputs: Outputs,
    ) -> list[Tensor]:
        if cls.needs_model:
            return score_settings_with_model(
                cls, settings, self.model, self.normalize, data, self.batch_size, self.device
            )
        return [score.score(outputs) for score in fitted]


def evaluate(
    model: nn.Module,
    normalize: Normalize,
    id_test: ImageTensors,
    ood_sets: Mapping[str, ImageTensors],
    scores: Mapping[str, Mapping[str, Any] | None],
    *,
    dataset_name: str,
    id_train: ImageTensors | None = None,
    id_val: ImageTensors | None = None,
    val_ood: ImageTensors | None = None,
    grids: Mapping[str, Mapping[str, list[Any]]] | None = None,
    mean_exclude: list[str] | tuple[str, ...] = (),
    groups: Mapping[str, list[str]] | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> Evaluation:
    """Score every dataset with every score in ``scores`` ({name: fixed hyperparameters}).

    Hyperparameters not fixed there are searched over ``grids`` (eval.grids; the score's
    default grid otherwise) on the validation pair (``id_val``, ``val_ood``); without a
    validation pair the published defaults are used. Statistics come from ``id_train``.
    """
    spaces = check_scores(scores, grids)  # bad names and values fail here, before any inference
    classes = {name: SCORES.get(name) for name in scores}
    fixed = {name: dict(hp or {}) for name, hp in scores.items()}
    for name, group_sets in (groups or {}).items():
        missing = [s for s in group_sets if s not in ood_sets]
        if missing:
            raise ConfigError(f"ood.groups.{name}", list(group_sets), f"a list of OOD sets among {sorted(ood_sets)}")

    outputs = {"id": infer(model, normalize, id_test, batch_size, device)}
    for name, data in ood_sets.items():
        outputs[name] = infer(model, normalize, data, batch_size, device)
    val_id_out = infer(model, normalize, id_val, batch_size, device) if id_val is not None else None
    val_ood_out = infer(model, normalize, val_ood, batch_size, device) if val_ood is not None else None
    train_out = None
    if any(cls.needs_train for cls in classes.values()):
        if id_train is None:
            raise ValueError("a score fits training statistics but no training split was given")
        train_out = infer(model, normalize, id_train, batch_size, device)

    id_out = outputs["id"]
    result = Evaluation(
        id={
            "dataset": dataset_name,
            "n": len(id_test),
            "acc": float((id_out.logits.argmax(1) == id_out.labels).float().mean()),
            "ece": expected_calibration_error(id_out.logits, id_out.labels, n_bins=15),
        },
        ood={},
        outputs=outputs,
    )
    if val_id_out is not None:
        result.calibration = {
            "fitted_on": "val",
            "evaluated_on": "test",
            "n_bins": 15,
            **calibration_report(val_id_out.logits, val_id_out.labels, id_out.logits, id_out.labels),
        }
    runner = _Runner(model, normalize, batch_size, device)

    def fitted(cls: type[Score], setting: dict[str, Any]) -> Score:
        score = cls(**setting)
        score.fit(train_out if cls.needs_train else None, model)
        return score

    for score_name, cls in classes.items():

        def on_val_pair(settings: list[dict[str, Any]], cls: type[Score] = cls) -> list[tuple[Tensor, Tensor]]:
            assert id_val is not None and val_ood is not None and val_id_out is not None and val_ood_out is not None
            if cls.needs_model:
                id_scores = runner.many(cls, settings, [], id_val, val_id_out)
                ood_scores = runner.many(cls, settings, [], val_ood, val_ood_out)
                return list(zip(id_scores, ood_scores))
            pairs = []
            for setting in settings:
                score = fitted(cls, setting)
                pairs.append((score.score(val_id_out), score.score(val_ood_out)))
            return pairs

        has_val_pair = val_id_out is not None and val_ood_out is not None
        choice = choose(score_name, fixed[score_name], spaces[score_name], on_val_pair if has_val_pair else None)
        result.choices[score_name] = choice
        log.info("score %s: %s (val fpr95 %s)", score_name, choice.chosen, choice.val and choice.val["fpr95"])
        # refitted rather than kept from the search: one fitted KNN bank in memory at a time
        score = fitted(cls, choice.chosen)

        def run(outs: Outputs, data: ImageTensors, score: Score = score, cls: type[Score] = cls) -> Tensor:
            return runner.many(cls, [score.hparams()], [score], data, outs)[0]

        id_scores = run(outputs["id"], id_test)
        per_set: dict[str, dict[str, float]] = {}
        result.ood_scores[score_name] = {}
        for set_name, data in ood_sets.items():
            ood_scores = run(outputs[set_name], data)
            result.ood_scores[score_name][set_name] = ood_scores
            per_set[set_name] = {"n": len(data), **ood_metrics(id_scores, ood_scores)}
        result.id_scores[score_name] = id_scores
        mean_names = [n for n in per_set if n not in set(mean_exclude)]
        table: dict[str, dict[str, float]] = dict(per_set)
        table["mean"] = mean_over_sets(per_set, mean_names)
        for group, members in (groups or {}).items():
            table[f"mean_{group}"] = mean_over_sets(per_set, list(members))
        result.ood[score_name] = table
    return result
