"""What the OpenOOD-style post-hoc scores share: the head's linear map, training statistics
accumulated over row chunks (no float64 copy of a whole feature matrix), a pseudo-inverse
whitening, the energy, and top-k selection with a fixed tie order.

Scaling to ImageNet-sized banks (1.28 M x 2,048 features, memory-mapped from the evaluation
cache): every statistic is read in blocks of :data:`CHUNK` rows, so memory is bounded by the
chunk, not the bank. On the CPU the blocks are computed in float64 (the scores' reference
precision); on a GPU in float32 with TF32 off (:func:`exact_matmul`), accumulated in float64.
Blocks of a tensor that :func:`oodlab.scores._posthoc.map_rows` mapped from a file are dropped
from the process's resident pages once read (``madvise(MADV_DONTNEED)``), so reading a bank
never makes the whole file resident.

Not a score module (its name starts with ``_``, so ``oodlab.scores`` does not import it).
"""

from __future__ import annotations

import contextlib
import mmap
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from oodlab.errors import ConfigError
from oodlab.scores.base import Outputs, Score, positive_int
from oodlab.scores.gradient import linear_layer

#: rows per chunk when a statistic or a score is accumulated over features
CHUNK = 8192


def train_outputs(score: Score, train: Outputs | None) -> Outputs:
    if train is None or len(train.features) == 0:
        raise ValueError(
            f"score {score.name!r} fits statistics on the ID training split, but none was given"
        )
    return train


def val_outputs(score: Score, val: Outputs | None) -> Outputs:
    if val is None or len(val.logits) == 0:
        raise ValueError(
            f"score {score.name!r} fits on the ID validation split, but none was given "
            "(id_val= in oodlab.evaluate)"
        )
    return val


def linear_weights(score: Score, model: nn.Module) -> tuple[Tensor, Tensor]:
    """The head's weight (K, D) and bias (K,) as float64 CPU tensors (a zero bias when the
    layer has none); a ConfigError when the head is not one linear map."""
    head = model_head(model)
    layer = linear_layer(head)
    if layer is None:
        raise ConfigError(
            "eval.scores",
            score.name,
            f"a score for a model whose last layer is one nn.Linear ({score.name} reads its "
            f"weights; this model's head is {type(head).__name__})",
        )
    weight = layer.weight.detach().to("cpu", torch.float64)
    bias = (
        torch.zeros(len(weight), dtype=torch.float64)
        if layer.bias is None
        else layer.bias.detach().to("cpu", torch.float64)
    )
    return weight, bias


def model_head(model: nn.Module) -> nn.Module:
    """``model.head``, the last layer evaluation exposes (see oodlab.evaluation.model)."""
    head = model.head
    if not isinstance(head, nn.Module):
        raise TypeError(f"model.head must be an nn.Module, not {type(head).__name__}")
    return head


# -- memory-mapped rows ----------------------------------------------------------------------
#: storage address -> (the mmap, the address of its first byte) of tensors map_rows made
_MAPPED: dict[int, tuple[mmap.mmap, int]] = {}


def map_rows(path: str | Path) -> Tensor:
    """The array in the ``.npy`` file ``path`` as a CPU tensor backed by the file (a private,
    copy-on-write map: nothing is read until used, a write never reaches the file). Blocks
    that :func:`chunks` reads from it are released from resident memory after use."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array cannot be mapped by rows")
        count = int(np.prod(shape))
        if count == 0:
            return torch.from_numpy(np.zeros(shape, dtype=dtype))
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    array = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset).reshape(shape)
    tensor = torch.from_numpy(array)
    address = tensor.untyped_storage().data_ptr()
    _MAPPED[address] = (mapped, address - offset)
    weakref.finalize(array, _MAPPED.pop, address, None)
    return tensor


def release_rows(x: Tensor, start: int, stop: int) -> None:
    """Drop rows ``start:stop`` of a tensor :func:`map_rows` made from the process's resident
    pages (they are read again from the file if used again); a no-op for any other tensor."""
    entry = _MAPPED.get(x.untyped_storage().data_ptr()) if x.device.type == "cpu" else None
    if entry is None or stop <= start or not x[start:stop].is_contiguous():
        return
    mapped, base = entry
    first = x[start:stop].data_ptr() - base
    last = first + (stop - start) * x[0].numel() * x.element_size()
    page = mmap.PAGESIZE
    lo, hi = -(-first // page) * page, last // page * page
    if hi > lo:
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


# -- where and in what precision the chunks run -------------------------------------------------
def compute_device(model: nn.Module | None) -> torch.device:
    """The device of the model's parameters (the CPU for a model without any)."""
    if model is None:
        return torch.device("cpu")
    return next(model.parameters(), torch.empty(0)).device


#: the dtype chunks are computed in, per device type: float64 on the CPU (the reference
#: precision), float32 on a GPU under :func:`exact_matmul` (its error against float64:
#: docs/performance.md). benchmarks/feature_scores.py sets the CPU's to float32 to measure it.
PRECISION: dict[str, torch.dtype] = {"cpu": torch.float64, "cuda": torch.float32}


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the chunks on ``device`` (:data:`PRECISION`; float32 elsewhere)."""
    return PRECISION.get(device.type, torch.float32)


@contextlib.contextmanager
def exact_matmul() -> Iterator[None]:
    """float32 matmuls in full float32 for the block (TF32 off), the previous setting back
    afterwards: Lightning and users often switch TF32 on, which costs about 3 decimal digits."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def chunks(
    x: Tensor,
    size: int = CHUNK,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> Iterator[Tensor]:
    """Row blocks of ``x`` in ``dtype`` (float64 by default) on ``device`` (the CPU by
    default). Blocks of a memory-mapped tensor leave resident memory once the next is read."""
    for i in range(0, len(x), size):
        block = x[i : i + size]
        yield block.to(device=device or torch.device("cpu"), dtype=dtype)
        release_rows(x, i, i + len(block))


def feature_mean(features: Tensor, device: torch.device | None = None) -> Tensor:
    """The mean row, accumulated in float64 (returned on the CPU)."""
    total = torch.zeros(features.shape[1], dtype=torch.float64, device=device)
    dtype = compute_dtype(device or torch.device("cpu"))
    for block in chunks(features, device=device, dtype=dtype):
        total += block.sum(dim=0, dtype=torch.float64)
    return (total / len(features)).cpu()


def second_moment(
    features: Tensor,
    centre: Tensor | Callable[[int, int], Tensor],
    device: torch.device | None = None,
) -> Tensor:
    """``(1/N) sum_i (h_i - c_i)(h_i - c_i)^T`` (D, D) in float64 on the CPU. ``centre`` is
    one row (D,) for every sample, one row per sample (N, D), or a function of the block's
    rows ``(start, stop)`` giving their centres (class means, without an (N, D) matrix). Each
    block's product runs in :func:`compute_dtype` on ``device``; the sum is float64."""
    d = features.shape[1]
    device = device or torch.device("cpu")
    dtype = compute_dtype(device)
    total = torch.zeros(d, d, dtype=torch.float64, device=device)
    with exact_matmul():
        for i, block in zip(
            range(0, len(features), CHUNK), chunks(features, device=device, dtype=dtype)
        ):
            if callable(centre):
                c = centre(i, i + len(block))
            else:
                c = centre if centre.ndim == 1 else centre[i : i + len(block)]
            centred = block - c.to(device, dtype)
            total += (centred.T @ centred).double()
    return (total / len(features)).cpu()


def class_means(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The classes present among ``labels >= 0`` and their mean features (float64),
    accumulated over chunks."""
    classes = torch.unique(labels[labels >= 0])
    index = torch.searchsorted(classes, labels.clamp_min(0))
    sums = torch.zeros(len(classes), features.shape[1], dtype=torch.float64)
    counts = torch.zeros(len(classes), dtype=torch.float64)
    for i, block in zip(range(0, len(features), CHUNK), chunks(features)):
        rows = index[i : i + len(block)]
        known = labels[i : i + len(block)] >= 0
        sums.index_add_(0, rows[known], block[known])
        counts.index_add_(0, rows[known], torch.ones(int(known.sum()), dtype=torch.float64))
    return classes, sums / counts[:, None]


def class_covariance(
    features: Tensor,
    labels: Tensor,
    classes: Tensor,
    means: Tensor,
    device: torch.device | None = None,
) -> Tensor:
    """The tied class covariance ``(1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` over the
    labelled rows (``labels >= 0``), accumulated over chunks; unlabelled rows are skipped
    without copying the labelled ones out."""
    known = labels >= 0
    index = torch.searchsorted(classes, labels.clamp_min(0))
    d = features.shape[1]
    device = device or torch.device("cpu")
    dtype = compute_dtype(device)
    means_on = means.to(device, dtype)
    total = torch.zeros(d, d, dtype=torch.float64, device=device)
    with exact_matmul():
        for i, block in zip(
            range(0, len(features), CHUNK), chunks(features, device=device, dtype=dtype)
        ):
            rows = known[i : i + len(block)].to(device)
            centred = block - means_on[index[i : i + len(block)].to(device)]
            if not bool(rows.all()):
                centred = centred[rows]
            total += (centred.T @ centred).double()
    return (total / int(known.sum())).cpu()


# -- exact percentiles of all values, in chunks -------------------------------------------------
def chunked_percentile(x: Tensor, q: float, sample_rows: int = 8192) -> float:
    """``np.percentile(x.ravel(), q)`` (linear interpolation) without a copy of ``x``.

    The two order statistics around the percentile's position are found in one pass over the
    rows: a sample of rows brackets them, the pass counts the values below, at and above the
    bracket and collects only those strictly inside it (ties at the bracket's ends are
    counted, never collected), and the ranks are looked up exactly. A bracket that misses
    (an unlucky sample) is widened and the pass repeated. Memory: the sample and the values
    inside the bracket, about 1% of the values with the default sample."""
    n = x.numel()
    if n == 0:
        raise ValueError("the percentile of no values")
    position = q / 100.0 * (n - 1)
    lo_rank = int(np.floor(position))
    hi_rank = min(lo_rank + 1, n - 1)
    rows = len(x)
    picked = torch.randperm(rows, generator=torch.Generator().manual_seed(0))[:sample_rows]
    sample = x[picked.sort().values].float().flatten().sort().values
    margin = max(4.0 / np.sqrt(len(sample)), 5e-4) + 1.0 / len(sample)
    while True:
        lo_frac, hi_frac = max(q / 100.0 - margin, 0.0), min(q / 100.0 + margin, 1.0)
        if lo_frac == 0.0 and hi_frac == 1.0:
            lo_v, hi_v = -np.inf, np.inf
        else:
            lo_v = float(sample[int(lo_frac * (len(sample) - 1))]) if lo_frac > 0 else -np.inf
            top = int(np.ceil(hi_frac * (len(sample) - 1)))
            hi_v = float(sample[top]) if hi_frac < 1 else np.inf
        below = at_lo = at_hi = 0
        inside = []
        for block in chunks(x, dtype=torch.float64):
            values = block.flatten()
            below += int((values < lo_v).sum())
            at_lo += int((values == lo_v).sum())
            if hi_v != lo_v:
                at_hi += int((values == hi_v).sum())
            inside.append(values[(values > lo_v) & (values < hi_v)])
        middle = torch.cat(inside).sort().values

        counts = (below, at_lo, middle, at_hi, lo_v, hi_v)
        a, b = value_at(lo_rank, *counts), value_at(hi_rank, *counts)
        if a is not None and b is not None and np.isfinite(a) and np.isfinite(b):
            return lerp(a, b, position - lo_rank)
        margin *= 4.0


def value_at(
    rank: int, below: int, at_lo: int, middle: Tensor, at_hi: int, lo_v: float, hi_v: float
) -> float | None:
    """The value of ``rank`` in the sorted values: ``below`` values under ``lo_v``, ``at_lo``
    equal to it, the sorted ``middle`` strictly between, ``at_hi`` equal to ``hi_v``; None
    outside that bracket."""
    r = rank - below
    if r < 0:
        return None
    if r < at_lo:
        return lo_v
    r -= at_lo
    if r < len(middle):
        return float(middle[r])
    r -= len(middle)
    return hi_v if r < at_hi else None


def lerp(a: float, b: float, t: float) -> float:
    """numpy's percentile interpolation (``numpy.lib._function_base_impl._lerp``)."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


# -- nearest neighbours by chunked matmul -------------------------------------------------------
def top_k_similarities(
    queries: Tensor,
    bank: Tensor,
    k: int,
    *,
    bank_scale: Tensor | None = None,
    bank_rows: int = 16384,
) -> Tensor:
    """The ``k`` largest inner products of every row of ``queries`` with the rows of
    ``bank`` (descending), by matmul against bank blocks and a running top-k: memory is
    ``queries x bank_rows``, whatever the bank's size. ``bank_scale`` (N,) multiplies bank row
    ``j``'s products (1/||b_j|| for cosines without a normalised copy of the bank). The
    blocks run in ``queries``' dtype on its device."""
    best: Tensor | None = None
    with exact_matmul():
        for j in range(0, len(bank), bank_rows):
            block = bank[j : j + bank_rows].to(queries.device, queries.dtype)
            similarity = queries @ block.T
            if bank_scale is not None:
                similarity *= bank_scale[j : j + len(block)].to(queries.device, queries.dtype)
            if best is not None:
                similarity = torch.cat([best, similarity], dim=1)
            best = similarity.topk(min(k, similarity.shape[1]), dim=1).values
            release_rows(bank, j, j + len(block))
    if best is None:
        return queries.new_zeros(len(queries), 0)
    return best


def pinv_whitening(covariance: Tensor) -> Tensor:
    """``W`` (D, r) with ``W W^T`` the pseudo-inverse of a symmetric PSD matrix, with scipy's
    ``pinvh`` cut-off (eigenvalues at most ``max|λ| * D * eps`` dropped), as sklearn's
    ``EmpiricalCovariance.precision_``."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    cutoff = eigenvalues.abs().max() * max(covariance.shape) * torch.finfo(torch.float64).eps
    kept = eigenvalues > cutoff
    return eigenvectors[:, kept] / eigenvalues[kept].sqrt()


def energy(logits: Tensor) -> Tensor:
    return torch.logsumexp(logits.double(), dim=1)


def kept_count(n: int, percentile: float) -> int:
    """How many of ``n`` activations ASH and SCALE keep: ``n - round(n * p / 100)``, rounding
    half to even as the official ``np.round``."""
    return n - int(np.round(n * percentile / 100.0))


def top_k_mask(x: Tensor, k: int) -> Tensor:
    """A boolean mask of the ``k`` largest entries of each row. Equal values are taken in
    column order (a stable sort), so ties at the boundary are broken by the lower index; the
    official code's ``torch.topk`` leaves that order unspecified."""
    mask = torch.zeros_like(x, dtype=torch.bool)
    if k > 0:
        order = torch.sort(x, dim=1, descending=True, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask


def optional_positive_int(key: str, value: Any) -> int | None:
    """None, or an integer >= 1."""
    return None if value is None else positive_int(key, value)


def one_of(*choices: str):
    """A check that accepts exactly one of ``choices``."""

    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(key, value, f"one of {', '.join(choices)}")
        return value

    return check
