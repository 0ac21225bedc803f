"""Outlier sets and on-device outlier batches (oodlab.data.outliers), and the run record's
``run.outliers``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from oodlab.data.outliers import OutlierBatches, offline_outliers, outlier_batch_size
from oodlab.errors import ConfigError, MissingDataError
from oodlab.outputs.record import RunRecord

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_offline_set_is_deterministic_and_shaped():
    a = offline_outliers(shape=(1, 28, 28), n=30, seed=1)
    b = offline_outliers(shape=(1, 28, 28), n=30, seed=1)
    assert a.images.shape == (30, 1, 28, 28) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and (a.labels == -1).all()
    rgb = offline_outliers(shape=(3, 32, 32), n=6, seed=1)
    assert rgb.images.shape == (6, 3, 32, 32)
    assert a.images.float().std() > 10  # not blank


def test_offline_set_uses_no_source_of_the_mnist5k_suite():
    """The suite's crops come from these scikit-image / scikit-learn pictures; the offline
    outliers from none of them."""
    from oodlab.data import outliers

    suite = OmegaConf.load(CONF / "ood" / "mnist5k.yaml")
    used = {"brick", "grass", "gravel", "camera", "astronaut", "coffee", "chelsea", "rocket"}
    used |= {"china", "flower"}
    assert not used & set(outliers.MICROSCOPY_SOURCES)
    assert "digit_transforms" in str(suite.defaults)


def test_batches_cycle_through_every_image_once_per_pass():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    batches = OutlierBatches(images, batch_size=4, seed=0)
    seen = torch.cat([batches.batch(0, s) for s in range(5)]).flatten().tolist()
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    # the same (epoch, step) gives the same batch; another epoch another order
    assert torch.equal(batches.batch(0, 3), OutlierBatches(images, 4, seed=0).batch(0, 3))
    assert not all(torch.equal(batches.batch(0, s), batches.batch(1, s)) for s in range(3))


def test_batch_size_from_ratio():
    assert outlier_batch_size(None, 2.0, 128) == 256
    assert outlier_batch_size(0.5, 2.0, 128) == 64
    with pytest.raises(ConfigError, match=r"outliers\.ratio"):
        outlier_batch_size(0, 2.0, 128)


def test_missing_tiny_images_is_one_line(tmp_path):
    from oodlab.data.outliers import tiny_images_300k

    with pytest.raises(MissingDataError) as info:
        tiny_images_300k(shape=(3, 32, 32), root=str(tmp_path), download=False)
    message = str(info.value)
    assert "\n" not in message and "300K_random_images.npy" in message
    assert str(tmp_path / "outliers") in message


def test_old_records_load_without_outliers_and_new_ones_keep_it():
    old = RunRecord.from_json(
        json.loads((Path(__file__).parent / "data" / "results_v0.1.json").read_text())
    )
    assert old.run.outliers is None and "outliers" not in old.run.to_json()
    record = RunRecord.from_json({**old.to_json(), "run": {**old.run.to_json(), "outliers": "x"}})
    assert record.run.outliers == "x" and record.run.to_json()["outliers"] == "x"


def test_oe_losses_default_to_the_offline_set(compose_cfg):
    cfg = compose_cfg(["loss=oe"])
    assert cfg.outliers.name == "offline" and cfg.outliers.auto
    assert compose_cfg(["loss=oe", "outliers=none"]).outliers.set is None


@pytest.mark.parametrize("loss", ["oe", "mixoe", "regmixup"])
def test_outlier_and_mixing_steps_never_wait_for_the_device(loss, compose_cfg, monkeypatch):
    from test_fast_path import guard_host_reads

    from oodlab.callbacks.ood_monitor import OODMonitor
    from oodlab.run.train import train
    from oodlab.task import OODClassificationTask

    without_syncs = guard_host_reads(monkeypatch)
    monkeypatch.setattr(
        OODClassificationTask, "training_step", without_syncs(OODClassificationTask.training_step)
    )
    monkeypatch.setattr(
        OODMonitor, "on_train_batch_end", without_syncs(OODMonitor.on_train_batch_end)
    )
    cfg = compose_cfg(["debug=fast", f"loss={loss}", "outliers.set.n=64"])
    results, _ = train(cfg)
    assert results["status"] == "ok"
