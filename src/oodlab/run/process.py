"""Every process-wide setting a run makes, in one place, each with its reason.

The command lines call :func:`configure` first; the Python API (``oodlab.evaluate``) makes
none of these settings, so a notebook or a user's own process is never changed.

Memory. glibc serves allocations above a threshold (128 kB to 32 MB, adapting) with fresh
mmap()s and returns them on free(), so every training step's activations were page-faulted
in anew: 2-3 million page faults and 3-8 s of system time in the default run on two CPU
cores. Raising the mmap threshold to its maximum and disabling trimming keeps those blocks in
the heap (Linux with glibc only; elsewhere nothing changes).

The collector. Importing torch, Lightning, timm and W&B creates millions of objects that live
as long as the process, and every full collection scans them all: 8 during those imports
(0.9 s in the default run) and one at interpreter exit (1.5 s). The collector is paused while
the libraries load and what they created is frozen (``gc.freeze``) out of later scans;
objects created by runs are collected as before.

Quiet. Each message silenced below is one every run printed without telling the user
anything they can act on; ``verbose_third_party=true`` keeps them all.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit systems)
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024

#: warnings raised inside third-party code, by message
NOISY_WARNINGS = (
    r".*LeafSpec.*",  # torch's pytree deprecation, from Lightning's own code
    r".*on_after_batch_transfer.*",  # Lightning's notice about our (intended) batch hook
    r".*does not have many workers.*",  # no DataLoader workers: batches are indexed tensors
    r".*The number of training batches.*is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",  # resuming writes where it resumed
)
#: log records dropped by message, (logger, pattern): Lightning announces the first MLflow
#: run of a store, which creates its experiment, as a warning printed twice
NOISY_RECORDS = (
    (r"lightning.pytorch.loggers.mlflow", r"Experiment with name .* not found\. Creating it"),
)
#: loggers whose INFO lines are set-up chatter: alembic's "setup plugin" (Optuna's and MLflow's
#: SQLite stores), MLflow's database creation, Lightning's "GPU available" and tips
CHATTY_LOGGERS = (
    "alembic",
    "alembic.runtime.migration",
    "mlflow",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
#: environment defaults (a value the user set is kept), with their reasons
QUIET_ENVIRONMENT = {
    # MLflow configures its own loggers when imported, after the loggers above are set
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # W&B: no banner, no 30-line run summary, no "anonymous setting" warning
    "WANDB_SILENT": "true",
    # W&B's console capture wraps stdout and stderr of every run; WANDB_CONSOLE=auto turns it on
    "WANDB_CONSOLE": "off",
}


def configure(cfg: DictConfig) -> None:
    """The settings of a command-line run, before its libraries load."""
    quiet_third_party(not cfg.get("verbose_third_party", False))
    keep_freed_memory()
    skip_final_collection()


def quiet_third_party(enabled: bool = True) -> None:
    if not enabled:
        return
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, pattern in NOISY_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(pattern))
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


class _DropMessage(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def keep_freed_memory() -> bool:
    """Keep freed host memory in the heap (see the module docstring); True when glibc took it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD)
    ok &= mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    ok &= mallopt(M_TOP_PAD, 64 * 1024 * 1024)
    return bool(ok)


_state = {"imports_frozen": False, "exit_freeze": False}


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Imports inside the block run with the cyclic collector paused; what exists afterwards
    is frozen out of later collections. Only the process's first use pauses anything."""
    first = not _state["imports_frozen"]
    enabled = gc.isenabled()
    if first:
        gc.disable()
    try:
        yield
    finally:
        if first:
            _state["imports_frozen"] = True
            gc.freeze()
            if enabled:
                gc.enable()


def skip_final_collection() -> None:
    """At exit, freeze the heap so the interpreter's last full collection has nothing to scan.

    Registered once; atexit handlers run in reverse order of registration, so this one runs
    after those of the libraries (W&B's flush) and just before the interpreter tears down.
    """
    if not _state["exit_freeze"]:
        _state["exit_freeze"] = True
        atexit.register(gc.freeze)
