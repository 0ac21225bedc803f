"""Keep freed host memory for reuse instead of handing it back to the kernel.

glibc serves allocations above a threshold (128 kB to 32 MB, adapting) with fresh mmap()s
and returns them on free(), so every training step's activations are page-faulted in anew:
in the default run on two CPU cores that was 2-3 million page faults and 3-8 s of system
time. Raising the mmap threshold to its maximum and disabling trimming keeps those blocks in
the heap. Linux with glibc only; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

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
