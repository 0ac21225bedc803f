"""``oodlab.evaluate``: OOD evaluation of any classifier, the function every command line calls.

    record = oodlab.evaluate(model, id_test, {"svhn": svhn, "noise": noise},
                             scores=["msp", "energy", "knn"], id_val=id_val, val_ood=val_ood,
                             id_train=id_train)
    record.ood["energy"]["svhn"]["fpr95"]

See the README's "Python API" section for what each argument accepts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from oodlab._infra.distributed import world
from oodlab.errors import ConfigError
from oodlab.evaluation.engine import Inference, run_evaluation
from oodlab.evaluation.inputs import as_eval_set
from oodlab.evaluation.model import as_scoring_model, in_eval_mode
from oodlab.evaluation.selection import plan_scores
from oodlab.models.transforms import Normalize
from oodlab.outputs.record import RunInfo, RunRecord, build_record

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
    inference = Inference(net, as_normalize(normalize).to(device), batch_size, torch.device(device))
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
