"""The fast path runs on the CPU too: device-resident batches, channels_last, bf16 autocast and
torch.compile, and a training step that never reads a value back from the device."""

from __future__ import annotations

import pytest
import torch

from oodlab.callbacks.ood_monitor import OODMonitor
from oodlab.run.train import train
from oodlab.task import OODClassificationTask

SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")


def guard_host_reads(monkeypatch):
    """Make every host read of a tensor raise while a wrapped function runs; returns the wrapper."""
    guarded = {"on": False}

    def refuse(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if guarded["on"]:
                raise AssertionError(f"Tensor.{name} in the training step")
            return original(self, *args, **kwargs)

        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, refuse(name))

    def without_syncs(fn):
        def wrapper(*args, **kwargs):
            guarded["on"] = True
            try:
                return fn(*args, **kwargs)
            finally:
                guarded["on"] = False

        return wrapper

    return without_syncs


def test_the_guard_catches_a_host_read(monkeypatch):
    without_syncs = guard_host_reads(monkeypatch)
    with pytest.raises(AssertionError, match=r"Tensor\.item"):
        without_syncs(lambda: torch.ones(2).sum().item())()
    assert torch.ones(2).sum().item() == 2.0  # outside the wrapped call nothing changes


def test_the_training_step_never_waits_for_the_device(compose_cfg, monkeypatch):
    """Every way of reading a tensor's value on the host is refused inside the training step
    and the monitor's batch hook (on a GPU each would stall the step)."""
    without_syncs = guard_host_reads(monkeypatch)
    monkeypatch.setattr(
        OODClassificationTask, "training_step", without_syncs(OODClassificationTask.training_step)
    )
    monkeypatch.setattr(
        OODMonitor, "on_train_batch_end", without_syncs(OODMonitor.on_train_batch_end)
    )
    results, _ = train(compose_cfg(["debug=fast", "trainer.limit_train_batches=5"]))
    assert results["status"] == "ok"


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.precision=bf16-mixed"],
        ["channels_last=false"],
        pytest.param(["compile=true"], marks=pytest.mark.slow),
    ],
    ids=["bf16", "contiguous", "compile"],
)
def test_fast_path_options_run_on_the_cpu(compose_cfg, overrides):
    results, _ = train(compose_cfg(["debug=fast", "trainer.accelerator=cpu", *overrides]))
    assert results["status"] == "ok" and 0.0 <= results["id"]["acc"] <= 1.0


def test_channels_last_is_used_by_default(compose_cfg):
    cfg = compose_cfg(["debug=fast"])
    assert cfg.channels_last is True
    from oodlab.run.build import build_datamodule, build_task

    task = build_task(cfg, build_datamodule(cfg))
    conv = next(m for m in task.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
