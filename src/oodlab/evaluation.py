"""Post-training OOD evaluation: inference once per dataset, every score from shared outputs.

Under DDP each process scores a contiguous, unpadded shard and the shards are gathered in
order, so the metrics equal the single-process ones exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from oodlab.data.augment import Normalize
from oodlab.data.batches import shard_bounds
from oodlab.data.types import ImageTensors
from oodlab.metrics import expected_calibration_error, ood_metrics
from oodlab.scores import Outputs, Score, create_score

log = logging.getLogger(__name__)

METRIC_KEYS = ("fpr95", "auroc", "aupr_in", "aupr_out", "fpr95_openood")


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _gather_rows(local: Tensor, total: int) -> Tensor:
    """Concatenate per-rank contiguous shards (of unequal length) back into dataset order."""
    world, _ = _world()
    if world == 1:
        return local
    per = -(-total // world)
    padded = local.new_zeros((per, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    rows = [part[: max(0, min(per, total - r * per))] for r, part in enumerate(parts)]
    return torch.cat(rows)


@torch.no_grad()
def infer(
    model: nn.Module, normalize: Normalize, data: ImageTensors, batch_size: int = 512, device: torch.device | str = "cpu"
) -> Outputs:
    """Logits and penultimate features of every sample, computed once."""
    world, rank = _world()
    start, stop = shard_bounds(len(data), world, rank)
    was_training = model.training
    model.eval()
    logits, features = [], []
    for i in range(start, stop, batch_size):
        x = normalize(data.images[i : min(i + batch_size, stop)].to(device))
        out, feats = model.forward_with_features(x)
        logits.append(out.float())
        features.append(feats.float())
    model.train(was_training)
    num_classes = getattr(getattr(model, "head", None), "num_classes", 0)
    dim = getattr(getattr(model, "head", None), "in_features", 0)
    local_logits = torch.cat(logits) if logits else torch.zeros(0, num_classes, device=device)
    local_feats = torch.cat(features) if features else torch.zeros(0, dim, device=device)
    return Outputs(
        logits=_gather_rows(local_logits, len(data)).cpu(),
        features=_gather_rows(local_feats, len(data)).cpu(),
        labels=data.labels,
    )


def score_with_model(
    score: Score, model: nn.Module, normalize: Normalize, data: ImageTensors, batch_size: int, device
) -> Tensor:
    """For ODIN/GradNorm: re-run the network (with gradients) on each shard."""
    world, rank = _world()
    start, stop = shard_bounds(len(data), world, rank)
    was_training = model.training
    model.eval()
    values = [
        score.score_inputs(model, normalize(data.images[i : min(i + batch_size, stop)].to(device))).detach().float()
        for i in range(start, stop, batch_size)
    ]
    model.train(was_training)
    local = torch.cat(values) if values else torch.zeros(0, device=device)
    return _gather_rows(local, len(data)).cpu()


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


def evaluate(
    model: nn.Module,
    normalize: Normalize,
    id_test: ImageTensors,
    ood_sets: Mapping[str, ImageTensors],
    scores: Mapping[str, Mapping[str, Any]],
    *,
    dataset_name: str,
    id_train: ImageTensors | None = None,
    mean_exclude: list[str] | tuple[str, ...] = (),
    groups: Mapping[str, list[str]] | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> Evaluation:
    score_objs = {name: create_score(name, **dict(hp or {})) for name, hp in scores.items()}
    outputs = {"id": infer(model, normalize, id_test, batch_size, device)}
    for name, data in ood_sets.items():
        outputs[name] = infer(model, normalize, data, batch_size, device)

    needs_train = any(type(s).fit is not Score.fit for s in score_objs.values())
    if needs_train:
        if id_train is None:
            raise ValueError("a score fits training statistics but no training split was given")
        train_out = infer(model, normalize, id_train, batch_size, device)
        for s in score_objs.values():
            s.fit(train_out, model)

    id_out = outputs["id"]
    id_result = {
        "dataset": dataset_name,
        "n": len(id_test),
        "acc": float((id_out.logits.argmax(1) == id_out.labels).float().mean()),
        "ece": expected_calibration_error(id_out.logits, id_out.labels, n_bins=15),
    }

    result = Evaluation(id=id_result, ood={}, outputs=outputs)
    for score_name, score in score_objs.items():
        def run(key: str, data: ImageTensors, score: Score = score) -> Tensor:
            if score.needs_model:
                return score_with_model(score, model, normalize, data, batch_size, device)
            return score.score(outputs[key])

        id_scores = run("id", id_test)
        per_set: dict[str, dict[str, float]] = {}
        result.ood_scores[score_name] = {}
        for set_name, data in ood_sets.items():
            ood_scores = run(set_name, data)
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
