"""Process memory of a run: freed host memory is kept for reuse, and the garbage collector
leaves the libraries' objects alone.

Freed memory.

glibc serves allocations above a threshold (128 kB to 32 MB, adapting) with fresh mmap()s
and returns them on free(), so every training step's activations are page-faulted in anew:
in the default run on two CPU cores that was 2-3 million page faults and 3-8 s of system
time. Raising the mmap threshold to its maximum and disabling trimming keeps those blocks in
the heap. Linux with glibc only; elsewhere this does nothing.

The collector. Importing torch, Lightning, timm and W&B creates millions of objects that live
as long as the process. Python's cyclic collector still scans all of them at every full
collection: 8 full collections during those imports (0.9 s in the default run) and one more
at interpreter exit (1.5 s). Pausing the collector while the libraries load and freezing
(``gc.freeze``) what they created takes them out of every later scan; objects created by runs
are collected as before.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit systems)
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """True when glibc took the settings."""
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


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Imports inside the block run with the cyclic collector paused; what exists afterwards
    is frozen out of later collections. Only the process's first use pauses anything."""
    first = not getattr(long_lived_imports, "done", False)
    enabled = gc.isenabled()
    if first:
        gc.disable()
    try:
        yield
    finally:
        if first:
            long_lived_imports.done = True  # type: ignore[attr-defined]
            gc.freeze()
            if enabled:
                gc.enable()


def skip_final_collection() -> None:
    """At exit, freeze the heap so the interpreter's last full collection has nothing to scan.

    Registered once; atexit handlers run in reverse order of registration, so this one runs
    after those of the libraries (W&B's flush) and just before the interpreter tears down.
    """
    if not getattr(skip_final_collection, "registered", False):
        skip_final_collection.registered = True  # type: ignore[attr-defined]
        atexit.register(gc.freeze)
