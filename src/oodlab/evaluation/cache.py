"""The evaluation cache: each dataset's logits, features and labels, inferred once, on disk.

A later evaluation of the same model on the same data (other scores, other grids, from
``src/eval.py`` or the Python API) reads them back and runs no forward pass.

Layout, under ``eval.cache.dir`` (default ``<paths.cache_dir>/outputs``)::

    <dir>/<model key>/<set name>-<entry key>/
        manifest.json      what the entry holds; written last
        logits.npy         (N, K) float32 or float16 (eval.cache.dtype)
        features.npy       (N, D) the same dtype
        labels.npy         (N,) int64, -1 where none

An entry is written into a temporary sibling directory, in shards of ``shard_rows`` rows
appended to each ``.npy`` file (so a 1.28 M-image training split never sits in memory), and
renamed into place after the last shard and the manifest: a crash leaves a ``.tmp-*``
directory that is never read, never a readable half entry. Arrays are read back memory-mapped
(oodlab.scores._posthoc.map_rows): scores read them in row chunks, without a copy.

The key (:class:`CacheKey`) is cheap to compute and changes with every input that changes the
outputs:

* the model: its class, how its features are read, and a hash of its state dict (every
  parameter and persistent buffer; about 0.2 s for a ResNet-50);
* the input transform: the normalisation module's class and buffers (mean, std), and the
  decode preprocessing (``Preprocessing.key()``) where the run has one;
* the data: for in-memory tensors a hash of their bytes (remembered per tensor and version, so
  a training set is hashed once per process); for a dataset that defines ``cache_key()``
  (image lists: the list file's hash, the files' sizes and mtimes) that key. Data without
  either (an arbitrary Dataset or DataLoader) is not cached: its entry in results.json says
  ``uncached``;
* the cache dtype and the format version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from oodlab.errors import ConfigError
from oodlab.scores import Outputs
from oodlab.scores._posthoc import map_rows

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = ("logits", "features", "labels")
DTYPES = {"float32": np.float32, "float16": np.float16}
#: the largest finite float16: a larger output refuses a float16 cache
FLOAT16_MAX = 65504.0


@dataclass(frozen=True)
class CacheSettings:
    """``eval.cache``: where entries live, whether to use them, and their precision."""

    dir: Path
    enabled: bool = True
    dtype: str = "float32"
    shard_rows: int = 65536

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", Path(self.dir).expanduser())
        if self.dtype not in DTYPES:
            raise ConfigError("eval.cache.dtype", self.dtype, f"one of {', '.join(DTYPES)}")
        if int(self.shard_rows) < 1:
            raise ConfigError("eval.cache.shard_rows", self.shard_rows, "an integer >= 1")

    @classmethod
    def from_config(
        cls, section: Mapping[str, Any] | None, default_dir: str | Path
    ) -> CacheSettings:
        """From the ``eval.cache`` config section; ``dir: null`` is ``default_dir``."""
        section = dict(section or {})
        return cls(
            dir=Path(section.get("dir") or default_dir),
            enabled=bool(section.get("enabled", True)),
            dtype=str(section.get("dtype", "float32")),
            shard_rows=int(section.get("shard_rows", 65536)),
        )


def as_cache(cache: CacheSettings | str | Path | Mapping[str, Any] | None) -> CacheSettings | None:
    """``oodlab.evaluate``'s ``cache=``: settings, a directory, a mapping, or None (off)."""
    if cache is None or isinstance(cache, CacheSettings):
        return cache if cache is None or cache.enabled else None
    if isinstance(cache, (str, Path)):
        return CacheSettings(Path(cache))
    if isinstance(cache, Mapping):
        settings = CacheSettings.from_config(cache, cache.get("dir") or "")
        if not cache.get("dir"):
            raise ConfigError("cache.dir", None, "the directory of the evaluation cache")
        return settings if settings.enabled else None
    raise ConfigError("cache", type(cache).__name__, "a directory, a mapping or CacheSettings")


# -- hashing -------------------------------------------------------------------------------------
def _digest() -> Any:
    return hashlib.blake2b(digest_size=16)


def _update_tensor(h: Any, t: Tensor) -> None:
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


#: (id, data pointer, shape, version) of a tensor -> its hash, so a large in-memory set is
#: hashed once per process (the version changes with every in-place write)
_TENSOR_HASHES: dict[tuple[int, int, tuple[int, ...], int], str] = {}


def tensor_hash(t: Tensor) -> str:
    """A hash of a tensor's dtype, shape and bytes."""
    ident = (id(t), t.data_ptr(), tuple(t.shape), t._version)
    known = _TENSOR_HASHES.get(ident)
    if known is None:
        h = _digest()
        _update_tensor(h, t)
        known = _TENSOR_HASHES[ident] = h.hexdigest()
    return known


def module_hash(module: nn.Module) -> str:
    """A hash of a module's class, its state dict, its buffers (persistent or not) and the
    configuration of every submodule that shapes its forward without being a weight: each
    one's ``extra_repr`` and a loss head's ``hparams()`` (T2FNorm's ``eval_scale`` changes
    ``head(features)`` and no weight; equal weights alone must not hit the cache)."""
    h = _digest()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, sub in module.named_modules():
        h.update(f"module:{name}:{type(sub).__module__}.{type(sub).__qualname__}".encode())
        h.update(sub.extra_repr().encode())
        hparams = getattr(type(sub), "hparams", None)
        if callable(hparams) and not isinstance(hparams, property):
            h.update(repr(sorted(sub.hparams().items())).encode())
    for name, value in module.state_dict().items():
        h.update(name.encode())
        if isinstance(value, Tensor):
            _update_tensor(h, value)
        else:
            h.update(repr(value).encode())
    for name, buffer in module.named_buffers():
        h.update(b"buffer:" + name.encode())
        _update_tensor(h, buffer)
    return h.hexdigest()


def files_key(paths: Iterable[str | Path], list_file: str | Path | None = None) -> str:
    """A cheap key for an image list: the list file's bytes, and every image's path, size and
    mtime (a stat per file, no image read). For datasets' ``cache_key()``."""
    h = _digest()
    if list_file is not None:
        h.update(Path(list_file).read_bytes())
    for path in paths:
        stat = os.stat(path)
        h.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


def data_key(data: Any) -> str | None:
    """The key of an evaluation set, or None when it has no cheap one (not cached)."""
    own = getattr(data, "cache_key", None)
    if callable(own):
        value = own()
        return None if value is None else str(value)
    images = getattr(data, "images", None)
    labels = getattr(data, "labels", None)
    if isinstance(images, Tensor) and isinstance(labels, Tensor):
        return f"tensors:{tensor_hash(images)}:{tensor_hash(labels)}"
    inner = getattr(data, "dataset", None)  # a Dataset or DataLoader with a key of its own
    if inner is not None and inner is not data:
        return data_key(inner)
    return None


@dataclass(frozen=True)
class CacheKey:
    """The key of one model and input transform; :meth:`entry` adds one dataset."""

    model: str
    transform: str
    dtype: str

    @classmethod
    def of(
        cls,
        net: nn.Module,
        normalize: nn.Module,
        dtype: str,
        preprocessing: Any = None,
    ) -> CacheKey:
        """``net`` is the scoring model (oodlab.evaluation.model.ScoringModel)."""
        inner = getattr(net, "model", net)
        h = _digest()
        h.update(f"v{FORMAT_VERSION}:{getattr(net, 'kind', '')}:".encode())
        h.update(module_hash(inner).encode())
        transform = _digest()
        transform.update(module_hash(normalize).encode())
        if preprocessing is not None:
            key = preprocessing.key() if hasattr(preprocessing, "key") else str(preprocessing)
            transform.update(b"preprocessing:" + key.encode())
        return cls(h.hexdigest(), transform.hexdigest(), dtype)

    def entry(self, name: str, data: str) -> tuple[str, str]:
        """(model directory, entry directory) names for the dataset ``name`` keyed ``data``."""
        h = _digest()
        h.update(f"{self.transform}:{self.dtype}:{data}".encode())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]
        return self.model, f"{safe}-{h.hexdigest()}"


# -- reading and writing ---------------------------------------------------------------------------
def read_entry(path: str | Path) -> Outputs:
    """The outputs of one cache entry (a directory holding ``manifest.json``), memory-mapped."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise ConfigError(
            "outputs", str(path), "a cache entry directory (one holding manifest.json)"
        )
    meta = json.loads(manifest.read_text())
    if meta.get("version") != FORMAT_VERSION:
        raise ConfigError("outputs", str(path), f"a cache entry of format {FORMAT_VERSION}")
    logits, features = map_rows(path / "logits.npy"), map_rows(path / "features.npy")
    labels = torch.from_numpy(np.load(path / "labels.npy"))
    if not len(logits) == len(features) == len(labels) == meta["rows"]:
        raise ConfigError("outputs", str(path), "a complete cache entry")
    return Outputs(logits=logits, features=features, labels=labels)


class EntryWriter:
    """Appends rows to one entry's arrays in a temporary directory; :meth:`commit` renames
    it into place. Rows arrive in order; every ``shard_rows`` rows the files are flushed."""

    def __init__(self, final: Path, rows: int, settings: CacheSettings, meta: Mapping[str, Any]):
        self.final, self.rows, self.settings = final, rows, settings
        self.meta = dict(meta)
        self.tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        self.files: dict[str, Any] = {}
        self.written = 0
        self.since_flush = 0
        self.dtype = DTYPES[settings.dtype]

    def _open(self, name: str, width: int | None, dtype: Any) -> Any:
        fh = open(self.tmp / f"{name}.npy", "wb")  # noqa: SIM115 (closed in commit/abort)
        shape = (self.rows,) if width is None else (self.rows, width)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(fh, {**header, "shape": shape})
        return fh

    def append(self, logits: Tensor, features: Tensor, labels: Tensor) -> None:
        if not self.files:
            self.files = {
                "logits": self._open("logits", logits.shape[1], self.dtype),
                "features": self._open("features", features.shape[1], self.dtype),
                "labels": self._open("labels", None, np.int64),
            }
        if self.written + len(labels) > self.rows:
            raise ValueError(f"more rows than the {self.rows} announced")
        for name, values in (("logits", logits), ("features", features)):
            array = values.detach().float().cpu().numpy()
            if self.dtype == np.float16 and np.abs(array).max(initial=0.0) > FLOAT16_MAX:
                raise ConfigError(
                    "eval.cache.dtype",
                    "float16",
                    f"float32: the {name} exceed float16's range ({FLOAT16_MAX:g})",
                )
            self.files[name].write(np.ascontiguousarray(array.astype(self.dtype)).tobytes())
        self.files["labels"].write(labels.detach().cpu().numpy().astype(np.int64).tobytes())
        self.written += len(labels)
        self.since_flush += len(labels)
        if self.since_flush >= self.settings.shard_rows:  # one shard complete
            for fh in self.files.values():
                fh.flush()
            self.since_flush = 0

    def commit(self) -> Path | None:
        """Close the files, write the manifest and rename the entry into place; None (and no
        entry) when the rows fall short of those announced."""
        for fh in self.files.values():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        if self.written != self.rows or not self.files:
            log.warning(
                "cache: %s got %d of %d rows, not cached", self.final, self.written, self.rows
            )
            self.abort()
            return None
        meta = {
            **self.meta,
            "version": FORMAT_VERSION,
            "rows": self.rows,
            "dtype": self.settings.dtype,
            "shard_rows": self.settings.shard_rows,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(meta, indent=1))
        try:
            os.rename(self.tmp, self.final)
        except OSError:  # another process committed the same entry first: theirs is as good
            self.abort()
        return self.final if (self.final / MANIFEST).is_file() else None

    def abort(self) -> None:
        for fh in self.files.values():
            if not fh.closed:
                fh.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class OutputCache:
    """Entries of one model and input transform under ``settings.dir``."""

    def __init__(self, settings: CacheSettings, key: CacheKey):
        self.settings, self.key = settings, key

    def path(self, name: str, data: str) -> Path:
        model_dir, entry = self.key.entry(name, data)
        return self.settings.dir / model_dir / entry

    def load(self, name: str, data: str) -> Outputs | None:
        path = self.path(name, data)
        if not (path / MANIFEST).is_file():
            return None
        try:
            return read_entry(path)
        except (ConfigError, OSError, ValueError, KeyError) as error:
            log.warning("cache: ignoring unreadable entry %s (%s)", path, error)
            return None

    def writer(self, name: str, data: str, rows: int) -> EntryWriter:
        path = self.path(name, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        return EntryWriter(path, rows, self.settings, {"name": name, "data": data})

    def store(self, name: str, data: str, outputs: Outputs) -> Outputs:
        """Write outputs already in memory (the gathered rows of a DDP run); returns them as
        read back, so every process scores the cached precision."""
        writer = self.writer(name, data, len(outputs.labels))
        try:
            for i in range(0, len(outputs.labels), self.settings.shard_rows):
                rows = slice(i, i + self.settings.shard_rows)
                writer.append(outputs.logits[rows], outputs.features[rows], outputs.labels[rows])
            path = writer.commit()
        except BaseException:
            writer.abort()
            raise
        return read_entry(path) if path is not None else outputs


def as_cached_precision(outputs: Outputs, dtype: str) -> Outputs:
    """``outputs`` rounded to the cache's dtype, as a process that does not write reads them."""
    if dtype == "float32":
        return outputs
    half = torch.float16
    return Outputs(outputs.logits.to(half), outputs.features.to(half), outputs.labels)


def eval_cache(cfg: Any) -> CacheSettings | None:
    """The ``eval.cache`` settings of a composed run config (``dir: null`` is
    ``<paths.cache_dir>/outputs``), or None when disabled or absent."""
    section = cfg.eval.get("cache") if "eval" in cfg else None
    if section is None or not section.get("enabled", True):
        return None
    return CacheSettings.from_config(section, Path(str(cfg.paths.cache_dir)) / "outputs")
