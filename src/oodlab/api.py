"""``oodlab.evaluate``: OOD evaluation of any classifier, the function every command line calls.

    record = oodlab.evaluate(model, id_test, {"svhn": svhn, "noise": noise},
                             scores=["msp", "energy", "knn"], id_val=id_val, val_ood=val_ood,
                             id_train=id_train)
    record.ood["energy"]["svhn"]["fpr95"]

``oodlab.evaluate_outputs`` evaluates outputs already inferred (``oodlab.Outputs``, or the
directories of the evaluation cache), without a model, for every score that does not re-run
the network.

See docs/python-api.md for what each argument accepts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from oodlab._infra.distributed import world
from oodlab.errors import ConfigError
from oodlab.evaluation.cache import CacheKey, CacheSettings, OutputCache, as_cache, read_entry
from oodlab.evaluation.engine import Inference, run_evaluation
from oodlab.evaluation.inputs import as_eval_set
from oodlab.evaluation.model import as_scoring_model, in_eval_mode
from oodlab.evaluation.selection import plan_scores
from oodlab.models.transforms import Normalize
from oodlab.outputs.record import RunInfo, RunRecord, build_record
from oodlab.scores import Outputs

ScoresArg = Sequence[str] | Mapping[str, Mapping[str, Any] | None]
#: the own score of a classifier without an oodlab head: CE's
PLAIN_CLASSIFIER_SCORE = "msp"


def resolve_scores(
    scores: ScoresArg, params: Mapping[str, Mapping[str, Any]] | None, default_score: str | None
) -> dict[str, dict[str, Any]]:
    """{score name: fixed hyperparameters}. ``default`` names the model head's own score (IsoMax's
    ``es``, ...); for a model without an oodlab loss head (a plain linear classifier, as CE
    trains) it is ``msp``."""
    if isinstance(scores, str):
        scores = [scores]
    given = dict(scores) if isinstance(scores, Mapping) else {str(name): None for name in scores}
    resolved: dict[str, dict[str, Any]] = {}
    for name, fixed in given.items():
        if name == "default":
            name = default_score or PLAIN_CLASSIFIER_SCORE
        resolved.setdefault(name, {**dict((params or {}).get(name) or {}), **dict(fixed or {})})
    if not resolved:
        raise ConfigError("scores", list(given), "a non-empty list of score names")
    return resolved


def as_normalize(
    normalize: nn.Module | tuple[Sequence[float], Sequence[float]] | None,
) -> nn.Module:
    """uint8 images become [0, 1] floats; then ``(x - mean) / std`` when given."""
    if normalize is None:
        return Normalize((0.0,), (1.0,))
    if isinstance(normalize, nn.Module):
        return normalize
    mean, std = normalize
    return Normalize(tuple(mean), tuple(std))


def evaluate(
    model: nn.Module,
    id_data: Any,
    ood_sets: Mapping[str, Any],
    scores: ScoresArg = ("msp",),
    *,
    id_val: Any = None,
    val_ood: Any = None,
    id_train: Any = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    normalize: nn.Module | tuple[Sequence[float], Sequence[float]] | None = None,
    head: str | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    mean_exclude: Sequence[str] = (),
    batch_size: int = 512,
    device: torch.device | str | None = None,
    dataset: str = "id",
    run: RunInfo | None = None,
    cache: CacheSettings | str | Path | Mapping[str, Any] | None = None,
    preprocessing: Any = None,
) -> RunRecord:
    """Score ``id_data`` and every OOD set with every score; return the run record.

    Args:
        model: any ``nn.Module`` returning logits (timm, torchvision, oodlab). Feature scores
            (knn, mahalanobis, react, gradnorm) also read penultimate features: through
            timm's ``forward_features``/``forward_head``, or the input of the last layer
            (``head``: its module name; guessed as ``fc``, ``classifier``, ``head`` or the
            last ``nn.Linear``).
        id_data: the ID test set. Data arguments take a tensor of images, an
            ``(images, labels)`` pair, a ``Dataset`` or a ``DataLoader``; uint8 images are
            divided by 255, then ``normalize`` applies.
        ood_sets: {name: OOD test set}.
        scores: score names, or {name: fixed hyperparameters}.
        id_val, val_ood: the validation pair; every hyperparameter not fixed is chosen on it
            (lowest FPR95, ties to the higher AUROC). Without it, published defaults are used.
        id_train: the ID training split, for scores that fit statistics (react,
            mahalanobis, knn).
        params: {score: fixed hyperparameters}; grids: {score: {key: values}} to search.
        normalize: ``(mean, std)`` per channel, or a module; None: inputs are used as given.
        groups: {group: [set names]} gives ``mean_<group>`` rows; ``mean_exclude`` leaves
            sets out of the ``mean`` row.
        dataset: the ID dataset's name in the record; run: the record's ``run`` section.
        cache: the evaluation cache (oodlab.evaluation.cache): a directory, ``{"dir": ...,
            "dtype": "float16"}`` or :class:`CacheSettings`. Each dataset whose outputs are
            there is read, not inferred; the others are inferred and written. None: off.
            ``record.cache`` says which sets were hits.
        preprocessing: how the images were decoded (an ``oodlab.data.preprocessing.
            Preprocessing``, or any string), part of the cache key; ``normalize`` is always.

    Returns:
        The :class:`RunRecord` that results.json holds; ``record.evaluation`` keeps the raw
        scores (``id_scores``, ``ood_scores``) and the cached outputs.
    """
    start = time.time()
    net = as_scoring_model(model, head)
    plans = plan_scores(
        resolve_scores(scores, params, getattr(net.head, "default_score", None)),
        grids,
        params=params,
    )
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    normalizer = as_normalize(normalize).to(device)
    inference = Inference(net, normalizer, batch_size, torch.device(device))
    settings = as_cache(cache)
    output_cache = None
    if settings is not None:
        key = CacheKey.of(net, normalizer, settings.dtype, preprocessing)
        output_cache = OutputCache(settings, key)
    # the caller's model, not the wrapper, keeps its mode (and each submodule's) afterwards
    with in_eval_mode(model):
        evaluation = run_evaluation(
            inference,
            plans,
            as_eval_set(id_data, "id_data"),
            {name: as_eval_set(data, f"ood_sets.{name}") for name, data in ood_sets.items()},
            dataset=dataset,
            id_train=None if id_train is None else as_eval_set(id_train, "id_train"),
            id_val=None if id_val is None else as_eval_set(id_val, "id_val"),
            val_ood=None if val_ood is None else as_eval_set(val_ood, "val_ood"),
            mean_exclude=mean_exclude,
            groups=groups,
            cache=output_cache,
        )
    if run is None:
        run = RunInfo(
            backbone=type(model).__name__,
            dataset=dataset,
            wall_s=round(time.time() - start, 2),
            device=torch.device(device).type,
            processes=world()[0],
        )
    return build_record(run, evaluation=evaluation)


OutputsArg = Outputs | str | Path


def as_outputs(value: OutputsArg, what: str) -> Outputs:
    """An :class:`Outputs`, or the directory of one evaluation-cache entry (memory-mapped)."""
    if isinstance(value, Outputs):
        return value
    if isinstance(value, (str, Path)):
        return read_entry(value)
    raise ConfigError(what, type(value).__name__, "oodlab.Outputs or a cache entry directory")


class HeadOnly(nn.Module):
    """What scores read from a model when there is none: its last layer (``head``), and the
    device the scores' chunks run on."""

    def __init__(self, head: nn.Module | None, device: torch.device):
        super().__init__()
        self.head = head.to(device) if head is not None else None
        self.anchor = nn.Parameter(torch.empty(0, device=device), requires_grad=False)


def as_head(head: nn.Module | tuple[Any, Any] | None) -> nn.Module | None:
    """An ``nn.Module`` head as it is; a ``(weight (K, D), bias (K,) or None)`` pair as the
    ``nn.Linear`` it defines."""
    if head is None or isinstance(head, nn.Module):
        return head
    if isinstance(head, tuple) and len(head) == 2:
        weight = torch.as_tensor(head[0]).detach().float()
        bias = None if head[1] is None else torch.as_tensor(head[1]).detach().float()
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer
    raise ConfigError("head", type(head).__name__, "an nn.Module or a (weight, bias) pair")


def evaluate_outputs(
    id_test: OutputsArg,
    ood_sets: Mapping[str, OutputsArg],
    scores: ScoresArg = ("msp",),
    *,
    id_train: OutputsArg | None = None,
    id_val: OutputsArg | None = None,
    val_ood: OutputsArg | None = None,
    head: nn.Module | tuple[Any, Any] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    mean_exclude: Sequence[str] = (),
    device: torch.device | str | None = None,
    dataset: str = "id",
    run: RunInfo | None = None,
) -> RunRecord:
    """:func:`evaluate` on outputs already inferred: no model, no forward pass.

    Args:
        id_test, ood_sets, id_train, id_val, val_ood: each an ``oodlab.Outputs(logits=...,
            features=..., labels=...)`` or the directory of an evaluation-cache entry (see
            oodlab.evaluation.cache), with the roles they have in :func:`evaluate`.
        head: the final linear layer, for the scores that read it (react, vim, gradnorm,
            dice, ...): an ``nn.Linear`` (or any head module), or a ``(weight, bias)`` pair.
        device: where the scores' chunks run (the head's device by default, else the CPU).
        scores, params, grids, groups, mean_exclude, dataset, run: as in :func:`evaluate`.

    Returns:
        The same :class:`RunRecord` as :func:`evaluate`, hyperparameters chosen on the
        validation pair only. A score that re-runs the network (odin) is refused, naming it;
        so is a score that reads the head when none is given.
    """
    start = time.time()
    layer = as_head(head)
    if device is None:
        device = next(layer.parameters(), torch.empty(0)).device if layer is not None else "cpu"
    device = torch.device(device)
    plans = plan_scores(
        resolve_scores(scores, params, getattr(layer, "default_score", None)),
        grids,
        params=params,
    )
    need_model = sorted(name for name, plan in plans.items() if plan.cls.needs_model)
    if need_model:
        raise ConfigError(
            "scores",
            need_model,
            "scores that read cached outputs: these re-run the network, so they need a "
            "model (oodlab.evaluate)",
        )
    need_head = sorted(name for name, plan in plans.items() if plan.cls.needs_head)
    if need_head and layer is None:
        raise ConfigError(
            "head", None, f"the final linear layer: {', '.join(need_head)} read it (head=)"
        )
    net = HeadOnly(layer, device)
    inference = Inference(net, nn.Identity(), 1, device)  # type: ignore[arg-type]
    with in_eval_mode(net):
        evaluation = run_evaluation(
            inference,
            plans,
            as_outputs(id_test, "id_test"),
            {name: as_outputs(o, f"ood_sets.{name}") for name, o in ood_sets.items()},
            dataset=dataset,
            id_train=None if id_train is None else as_outputs(id_train, "id_train"),
            id_val=None if id_val is None else as_outputs(id_val, "id_val"),
            val_ood=None if val_ood is None else as_outputs(val_ood, "val_ood"),
            mean_exclude=mean_exclude,
            groups=groups,
        )
    if run is None:
        run = RunInfo(
            backbone=None,
            dataset=dataset,
            wall_s=round(time.time() - start, 2),
            device=device.type,
            processes=1,
        )
    return build_record(run, evaluation=evaluation)
