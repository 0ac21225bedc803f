"""OOD detection metrics: FPR95, AUROC, AUPR-In, AUPR-Out.

Conventions (the README's Metrics section): a higher score means more in-distribution, and
in-distribution (ID) is the positive class. All values are fractions in [0, 1].

Every metric is derived from a single exact binary curve: the scores are sorted once, and
for each distinct score ``u_1 > u_2 > ... > u_m`` we count the ID scores ``T_i`` and the
OOD scores ``F_i`` that are ``>= u_i`` (int64 cumulative sums, exact at any size). Equal
scores are grouped into one threshold, exactly as scikit-learn and torchmetrics' exact
curves (``thresholds=None``) do. The areas and rates are then computed from those integer
counts in int64/float64.

The curve is computed here rather than through torchmetrics' binary functions: their
functional forms apply a sigmoid to any input outside [0, 1], which merges distinct raw
scores (sigmoid saturates in float32), and the few lines of the sort are all we need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from oodlab.errors import OodMetricsInputError

__all__ = ["METRIC_KEYS", "OODMetrics", "OodMetricsInputError", "ood_metrics"]

#: the keys :func:`ood_metrics` returns, in results.json order
METRIC_KEYS = (
    "fpr95",
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr95_openood",
    "aupr_in_openood",
    "aupr_out_openood",
)

#: The recall level of FPR95.
TPR_LEVEL_PERCENT = 95

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _as_scores(x: ArrayLike, what: str, caller: str = "ood_metrics") -> Tensor:
    """Return ``x`` as a detached 1-D floating tensor, checking shape and finiteness."""
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise OodMetricsInputError(
                f"{caller} needs 1-D numeric {what} scores; could not convert a "
                f"{type(x).__name__}: {err}"
            ) from err
    if t.ndim != 1:
        raise OodMetricsInputError(
            f"{caller} needs 1-D {what} scores (one score per sample); got shape "
            f"{tuple(t.shape)}. Flatten or select the score column first."
        )
    if t.is_complex():
        raise OodMetricsInputError(f"{caller} needs real-valued {what} scores; got {t.dtype}.")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()  # exact; sorting half precision on CPU is slow or unsupported
    elif not t.is_floating_point():
        t = t.double()  # ints and bools
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise OodMetricsInputError(
            f"{caller} needs finite scores; got {n_nan} NaN and {n_inf} infinite values "
            f"among the {t.numel()} {what} scores."
        )
    return t


def _check_both(id_scores: Tensor, ood_scores: Tensor, caller: str) -> None:
    if id_scores.numel() == 0 or ood_scores.numel() == 0:
        raise OodMetricsInputError(
            f"{caller} needs at least one ID and one OOD score; got "
            f"{id_scores.numel()} ID scores and {ood_scores.numel()} OOD scores."
        )


def _curve_counts(id_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative ID/OOD counts at every distinct threshold, highest threshold first.

    Returns int64 tensors ``T`` and ``F`` of length ``m + 1`` with ``T[0] = F[0] = 0``;
    ``T[i]`` / ``F[i]`` are the numbers of ID / OOD scores ``>= u_i``, where
    ``u_1 > ... > u_m`` are the distinct scores. ``T[m] = P`` and ``F[m] = N``.
    """
    dtype = torch.promote_types(id_scores.dtype, ood_scores.dtype)
    device = id_scores.device
    scores = torch.cat([id_scores.to(dtype), ood_scores.to(device=device, dtype=dtype)])
    is_id = torch.zeros(scores.numel(), dtype=torch.int64, device=device)
    is_id[: id_scores.numel()] = 1
    order = torch.argsort(scores, descending=True)
    sorted_scores = scores[order]
    # the last position of each run of equal scores is one threshold
    ends = torch.nonzero(sorted_scores[1:] != sorted_scores[:-1]).squeeze(1)
    ends = torch.cat([ends, torch.tensor([scores.numel() - 1], device=device)])
    tps = torch.cumsum(is_id[order], 0)[ends]
    fps = ends + 1 - tps
    zero = torch.zeros(1, dtype=torch.int64, device=device)
    return torch.cat([zero, tps]), torch.cat([zero, fps])


def _min_count(level_percent: int, n: int) -> int:
    """Smallest integer k with k / n >= level_percent / 100 (exact integer arithmetic)."""
    return -((-level_percent * n) // 100)


def _metrics_from_counts(tps: Tensor, fps: Tensor) -> dict[str, float]:
    n_pos = int(tps[-1])  # ID
    n_neg = int(fps[-1])  # OOD
    d_tps = tps[1:] - tps[:-1]
    d_fps = fps[1:] - fps[:-1]

    # AUROC: trapezoids on the (F, T) step curve, summed exactly in int64.
    twice_area = int(torch.sum(d_fps * (tps[1:] + tps[:-1])))
    auroc = twice_area / (2 * n_pos * n_neg)

    # AUPR-In (average precision, ID positive): sum over thresholds of
    # delta-recall * precision, precision = T / (T + F) at that threshold.
    t_hi, f_hi = tps[1:].double(), fps[1:].double()
    aupr_in = float(torch.sum(d_tps.double() * (t_hi / (t_hi + f_hi)))) / n_pos

    # AUPR-Out (OOD positive, scores negated) from the same counts: flagging every
    # sample with score <= u_{k+1} catches N - F[k] OOD and P - T[k] ID samples, and the
    # recall step at that threshold is F[k+1] - F[k], for k = 0 .. m-1.
    t_lo, f_lo = tps[:-1].double(), fps[:-1].double()
    caught = n_neg - f_lo
    aupr_out = float(torch.sum(d_fps.double() * (caught / (caught + (n_pos - t_lo))))) / n_neg

    # FPR95 (LogitNorm / Energy papers): the first threshold, from the top, at which at
    # least 95% of ID scores are >= it; report the OOD fraction >= it.
    need_id = _min_count(TPR_LEVEL_PERCENT, n_pos)
    i = int(torch.searchsorted(tps, torch.tensor([need_id], device=tps.device)))
    fpr95 = int(fps[i]) / n_neg

    # FPR95, OpenOOD v1.5: sklearn.metrics.roc_curve(is_ood, -score) and the FPR at the
    # first point with TPR >= 0.95. On our curve that point is the largest k with
    # N - F[k] >= ceil(0.95 N), i.e. F[k] <= N - ceil(0.95 N); its FPR is (P - T[k]) / P.
    # roc_curve's default drop_intermediate=True removes interior points that are
    # collinear with both neighbours; if k is such a point, OpenOOD reports the next
    # kept point towards k = 0 (more OOD flagged). We reproduce that so the numbers match.
    budget = n_neg - _min_count(TPR_LEVEL_PERCENT, n_neg)
    k = int(torch.searchsorted(fps, torch.tensor([budget], device=fps.device), right=True)) - 1
    k = _last_kept_point(tps, fps, k)
    fpr95_openood = (n_pos - int(tps[k])) / n_pos

    # AUPR as OpenOOD computes it: sklearn's auc(recall, precision), the trapezoid rule over
    # the precision-recall points, with the (recall 0, precision 1) end point that
    # precision_recall_curve appends. ID positive: thresholds from the top, (T/P, T/(T+F)).
    aupr_in_openood = _trapezoid(t_hi / n_pos, t_hi / (t_hi + f_hi))
    # OOD positive: flagging scores <= u_{k+1} for k = m-1 .. 0 (recall increasing).
    caught_up = caught.flip(0)
    aupr_out_openood = _trapezoid(
        caught_up / n_neg, caught_up / (caught_up + (n_pos - t_lo.flip(0)))
    )

    return {
        "fpr95": fpr95,
        "auroc": auroc,
        "aupr_in": aupr_in,
        "aupr_out": aupr_out,
        "fpr95_openood": fpr95_openood,
        "aupr_in_openood": aupr_in_openood,
        "aupr_out_openood": aupr_out_openood,
    }


def _trapezoid(recall: Tensor, precision: Tensor) -> float:
    """Area under a precision-recall curve given with recall increasing, starting from the
    point (0, 1), by the trapezoid rule (as ``sklearn.metrics.auc``)."""
    x = torch.cat([recall.new_zeros(1), recall])
    y = torch.cat([precision.new_ones(1), precision])
    return float(torch.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2)


def _last_kept_point(tps: Tensor, fps: Tensor, k: int) -> int:
    """Largest index ``<= k`` that sklearn's ``drop_intermediate`` keeps.

    Index ``k`` (1 <= k <= m-2) is dropped when both ``F`` and ``T`` have a zero second
    difference there, i.e. the point is on the straight line through its neighbours.
    Index 0 and m-1 are always kept (they are roc_curve's last and first points).
    """
    m = tps.numel() - 1
    if k < 1 or k > m - 2:
        return k

    def collinear(lo: int, hi: int) -> Tensor:  # second differences at indices lo..hi
        return (fps[lo - 1 : hi] + fps[lo + 1 : hi + 2] == 2 * fps[lo : hi + 1]) & (
            tps[lo - 1 : hi] + tps[lo + 1 : hi + 2] == 2 * tps[lo : hi + 1]
        )

    if not bool(collinear(k, k)[0]):
        return k
    flat = collinear(1, k)
    kept = torch.nonzero(~flat)
    return int(kept[-1]) + 1 if kept.numel() else 0


@torch.no_grad()
def ood_metrics(id_scores: ArrayLike, ood_scores: ArrayLike) -> dict[str, float]:
    """OOD detection metrics for one ID set against one OOD set.

    Args:
        id_scores: 1-D scores of in-distribution samples (tensor, array or sequence).
        ood_scores: 1-D scores of out-of-distribution samples. Higher means more ID.

    Returns:
        A dict of floats in [0, 1]:

        - ``fpr95``: fraction of OOD scores ``>= t``, where ``t`` is the largest value
          with at least 95% of ID scores ``>= t`` (LogitNorm / Energy papers).
        - ``auroc``: area under the ROC curve, ID positive (= ``roc_auc_score``).
        - ``aupr_in``: average precision, ID positive (= ``average_precision_score``).
        - ``aupr_out``: average precision, OOD positive, scores negated.
        - ``fpr95_openood``: OpenOOD v1.5's FPR@95: OOD positive, scores negated,
          the fraction of ID samples flagged at the first ROC point where 95% of OOD
          samples are flagged (including roc_curve's ``drop_intermediate`` effect).
        - ``aupr_in_openood`` / ``aupr_out_openood``: OpenOOD's AUPR, the trapezoid
          ``sklearn.metrics.auc(recall, precision)`` of the precision-recall curve, ID / OOD
          positive (``aupr_in`` / ``aupr_out`` are average precision, a step sum).

    Raises:
        OodMetricsInputError: an empty ID or OOD set, non-finite scores, or not 1-D.
    """
    id_t = _as_scores(id_scores, "ID")
    ood_t = _as_scores(ood_scores, "OOD")
    _check_both(id_t, ood_t, "ood_metrics")
    tps, fps = _curve_counts(id_t, ood_t)
    return _metrics_from_counts(tps, fps)


def _cat_state(state: Tensor | list[Tensor]) -> Tensor:
    """Concatenate a cat-state (a list before sync, a tensor after), promoting dtypes."""
    if isinstance(state, Tensor):
        return state.reshape(-1)
    if not state:
        return torch.zeros(0, dtype=torch.float64)
    dtype = state[0].dtype
    for s in state[1:]:
        dtype = torch.promote_types(dtype, s.dtype)
    return torch.cat([s.reshape(-1).to(dtype) for s in state])


class OODMetrics(Metric):
    """Accumulates ID and OOD scores over batches; ``compute()`` returns ``ood_metrics``.

    ``update(scores, is_id)`` takes 1-D scores and either a boolean mask of the same
    length (True for ID samples) or a single bool for the whole batch. States are
    concatenated across processes (``dist_reduce_fx="cat"``). ``clone()`` gives an
    independent copy, e.g. one per stage or OOD set.
    """

    is_differentiable = False
    higher_is_better: bool | None = None
    full_state_update = False

    id_scores: list[Tensor]
    ood_scores: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("id_scores", default=[], dist_reduce_fx="cat")
        self.add_state("ood_scores", default=[], dist_reduce_fx="cat")

    def update(self, scores: ArrayLike, is_id: ArrayLike | bool) -> None:
        s = _as_scores(scores, "batch", caller="OODMetrics.update")
        if isinstance(is_id, bool | np.bool_):
            (self.id_scores if is_id else self.ood_scores).append(s)
            return
        mask = is_id.detach() if isinstance(is_id, Tensor) else torch.as_tensor(np.asarray(is_id))
        mask = mask.reshape(-1).to(device=s.device)
        if mask.numel() != s.numel():
            raise OodMetricsInputError(
                f"OODMetrics.update needs one is_id flag per score; got {s.numel()} scores "
                f"and {mask.numel()} flags."
            )
        if mask.dtype != torch.bool:
            if bool(((mask != 0) & (mask != 1)).any()):
                raise OodMetricsInputError(
                    "OODMetrics.update needs is_id as booleans or 0/1 values."
                )
            mask = mask.bool()
        self.id_scores.append(s[mask])
        self.ood_scores.append(s[~mask])

    def compute(self) -> dict[str, float]:
        id_t = _cat_state(self.id_scores)
        ood_t = _cat_state(self.ood_scores)
        _check_both(id_t, ood_t, "OODMetrics.compute")
        with torch.no_grad():
            tps, fps = _curve_counts(id_t, ood_t)
            return _metrics_from_counts(tps, fps)
