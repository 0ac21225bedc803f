"""Process-wide memory settings of a run (oodlab.run.process)."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from oodlab.run import process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_allocator_settings():
    assert process.keep_freed_memory() is True


def test_library_imports_run_without_the_collector_and_end_frozen(monkeypatch):
    monkeypatch.setitem(process._state, "imports_frozen", False)
    gc.unfreeze()
    assert gc.isenabled()
    try:
        with process.long_lived_imports():
            paused = not gc.isenabled()
            survivors = [[i] for i in range(1000)]  # stands for the libraries' objects
        assert paused and gc.isenabled()
        assert gc.get_freeze_count() >= len(survivors)
        with process.long_lived_imports():  # later uses change nothing
            assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_the_heap_is_frozen_before_the_interpreter_exits():
    """atexit runs handlers last-registered first: a handler registered before ours sees the heap
    after ours froze it."""
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from oodlab.run.process import skip_final_collection\n"
        "skip_final_collection(); skip_final_collection()\n"
        "print('before', gc.get_freeze_count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["before", "0", "frozen", "True"]
