"""Your own images: an image folder as the ID dataset and any folder as an OOD set, from
Python and from the command-line syntax the docs give, plus their errors and caching."""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oodlab.data.sources import folder as folder_module
from oodlab.data.sources.folder import folder_ood_set, load_image_folder
from oodlab.errors import ConfigError, CorruptDataError, MissingDataError

CLASSES = ("cat", "dog", "eel")


def _write_image(
    path: Path, value: int, size: tuple[int, int] = (40, 36), mode: str = "RGB"
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    # a class-dependent mean colour, so the decoded pixels tell the classes apart
    array = np.clip(rng.normal(value, 10, shape), 0, 255).astype(np.uint8)
    Image.fromarray(array, mode).save(path)


def make_class_folder(root: Path, per_class: int = 10, split_dirs: bool = False) -> Path:
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            split = ("test" if i < per_class // 5 else "train") if split_dirs else ""
            ext = ".png" if i % 2 else ".jpg"
            _write_image(root / split / name / f"{i:03d}{ext}", 40 + 80 * c)
    return root


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    return make_class_folder(tmp_path / "my_imgs")


def test_flat_folder_splits_are_stratified_and_sized(class_folder: Path, tmp_path: Path):
    data = load_image_folder(
        str(class_folder), image_size=16, val_size=3, test_size=6, root=str(tmp_path / "d")
    )
    assert data.name == "my_imgs" and data.num_classes == 3
    assert data.train.classes == CLASSES
    assert (len(data.train), len(data.val), len(data.test)) == (21, 3, 6)
    assert data.train.images.dtype == torch.uint8 and data.shape == (3, 16, 16)
    assert data.test.labels.bincount().tolist() == [2, 2, 2]
    assert data.val.labels.bincount().tolist() == [1, 1, 1]
    # no image is in two splits (every file has its own noise)
    rows = {
        bytes(x.numpy().tobytes())
        for part in (data.train, data.val, data.test)
        for x in part.images
    }
    assert len(rows) == 30
    # mean/std were computed on the training images, and the class colours survive decoding
    red = data.train.images[:, 0].float().mean(dim=(1, 2))
    assert red[data.train.labels == 0].mean() < red[data.train.labels == 2].mean() - 100
    assert 0.2 < data.mean[0] < 0.7 and all(s > 0 for s in data.std)


def test_split_folders_train_subset_and_given_stats(tmp_path: Path):
    root = make_class_folder(tmp_path / "split", per_class=10, split_dirs=True)
    data = load_image_folder(
        str(root),
        image_size=8,
        val_size=0.25,
        train_subset=9,
        split_seed=3,
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        name="pets",
        root=str(tmp_path / "d"),
    )
    assert data.name == "pets"
    assert len(data.test) == 6  # the test/ folder, untouched
    assert len(data.val) == 6 and data.train.labels.bincount().tolist() == [3, 3, 3]
    assert data.mean == (0.5, 0.5, 0.5)


def test_greyscale_and_rectangular_size(class_folder: Path, tmp_path: Path):
    data = load_image_folder(
        str(class_folder), image_size=[12, 20], channels=1, root=str(tmp_path / "d")
    )
    assert data.shape == (1, 12, 20) and len(data.mean) == 1


def test_cache_is_reused_and_invalidated_by_new_files(
    class_folder: Path, tmp_path: Path, monkeypatch
):
    kwargs = dict(image_size=8, val_size=3, test_size=3, root=str(tmp_path / "d"))
    first = load_image_folder(str(class_folder), **kwargs)
    calls = []
    real = folder_module.decode_files
    monkeypatch.setattr(
        folder_module, "decode_files", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    again = load_image_folder(str(class_folder), **kwargs)
    assert calls == [] and torch.equal(first.train.images, again.train.images)
    _write_image(class_folder / "dog" / "new.png", 120)
    grown = load_image_folder(str(class_folder), **kwargs)
    assert calls == [1] and len(grown.train) + len(grown.val) + len(grown.test) == 31


def test_archive_is_extracted_once(class_folder: Path, tmp_path: Path):
    archive = tmp_path / "my_imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(class_folder, arcname="my_imgs")
    data = load_image_folder(
        str(archive), image_size=8, val_size=3, test_size=3, root=str(tmp_path / "d")
    )
    assert (
        data.num_classes == 3
        and (tmp_path / "d" / "extracted" / "my_imgs" / "my_imgs" / "cat").is_dir()
    )


def test_corrupt_image_is_named(class_folder: Path, tmp_path: Path):
    bad = class_folder / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(CorruptDataError, match=r"broken\.jpg"):
        load_image_folder(str(class_folder), image_size=8, root=str(tmp_path / "d"))


def test_bad_paths_and_values_give_one_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data\.dataset\.path"):
        load_image_folder(None)
    with pytest.raises(MissingDataError, match=r"nowhere.*one sub-folder per class"):
        load_image_folder(str(tmp_path / "nowhere"))
    (tmp_path / "one" / "only").mkdir(parents=True)
    _write_image(tmp_path / "one" / "only" / "a.png", 3)
    with pytest.raises(ConfigError, match="at least 2 class"):
        load_image_folder(str(tmp_path / "one"))
    with pytest.raises(ConfigError, match="image_size"):
        load_image_folder(str(tmp_path / "one"), image_size=0)


def test_folder_ood_set_reads_any_depth_and_fits_shape(tmp_path: Path):
    root = tmp_path / "other"
    for i in range(7):
        _write_image(
            root / ("deep/er" if i % 2 else "") / f"{i}.png", 200, size=(50 + i, 30), mode="L"
        )
    (root / "notes.txt").write_text("not an image")
    ood = folder_ood_set(shape=(3, 16, 16), path=str(root), root=str(tmp_path / "d"))
    assert ood.images.shape == (7, 3, 16, 16) and (ood.labels == -1).all()
    # grey -> RGB by repetition
    assert torch.equal(ood.images[:, 0], ood.images[:, 2])
    sampled = folder_ood_set(shape=(1, 8, 8), path=str(root), n=4, seed=1, root=str(tmp_path / "d"))
    assert sampled.images.shape == (4, 1, 8, 8)
    with pytest.raises(MissingDataError, match="no image files"):
        folder_ood_set(shape=(3, 8, 8), path=str(tmp_path / "d" / "cache" / "ood"))


def test_command_line_syntax_trains_on_folders(compose_cfg, class_folder: Path, tmp_path: Path):
    """The exact syntax docs/data.md gives (data=folder ..., +ood_set@ood.sets.<name>=folder ...),
    on top of the quick CIFAR experiment and its offline suite with named groups."""
    from oodlab.run.train import train

    other = tmp_path / "other"
    for i in range(12):
        _write_image(other / f"{i}.jpg", 250)
    small = [
        f"ood.sets.{s}.n=40" for s in ("mnist5k_rgb", "textures", "photos", "gaussian", "uniform")
    ]
    cfg = compose_cfg(
        [
            "experiment=cifar10_quick",
            "data=folder",
            f"data.dataset.path={class_folder}",
            "data.dataset.image_size=16",
            "data.dataset.val_size=3",
            "data.dataset.test_size=6",
            "+ood_set@ood.sets.mine=folder",
            f"ood.sets.mine.path={other}",
            *small,
            "ood.val.n=40",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "logger=none",
            "plots=false",
            "~callbacks.progress_bar",
            "~callbacks.model_checkpoint",
        ]
    )
    results, _ = train(cfg)
    assert results["run"]["dataset"] == "my_imgs" and results["run"]["backbone"] == "small_cnn"
    assert results["id"]["n"] == 6
    msp = results["ood"]["msp"]
    assert msp["mine"]["n"] == 12 and msp["mnist5k_rgb"]["n"] == 40
    assert {"mean", "mean_real", "mean_noise"} <= set(msp)
    assert msp["mean_noise"]["auroc"] == pytest.approx(
        (msp["gaussian"]["auroc"] + msp["uniform"]["auroc"]) / 2
    )
    on_disk = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert "mine" in on_disk["ood"]["energy"]


def test_folder_with_the_default_ood_suite(compose_cfg, class_folder: Path):
    """docs/data.md's first folder command: the default (MNIST-5k) OOD suite, whose validation set
    of transformed digits then keeps MNIST-5k's own split whatever the folder's split is."""
    from oodlab.run.train import train

    cfg = compose_cfg(
        [
            "debug=fast",
            "data=folder",
            f"data.dataset.path={class_folder}",
            "data.dataset.image_size=16",
        ]
    )
    assert cfg.data.dataset.val_size == 0.1  # a fraction: meaningless to MNIST-5k's loader
    results, _ = train(cfg)
    assert results["status"] == "ok" and results["run"]["dataset"] == "my_imgs"
    assert "textures" in results["ood"]["msp"]


def test_a_checkpoint_is_evaluated_at_the_size_it_was_trained_at(
    compose_cfg, class_folder: Path, tmp_path: Path
):
    from oodlab.run.evaluate import evaluate_checkpoint
    from oodlab.run.train import train

    folder = ["debug=fast", "data=folder", f"data.dataset.path={class_folder}"]
    train(compose_cfg([*folder, "data.dataset.image_size=16"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = compose_cfg(
        [*folder, "data.dataset.image_size=24", f"ckpt_path={ckpt}"], config_name="eval"
    )
    with pytest.raises(
        ConfigError,
        match=r"images of 16x16 pixels, as the checkpoint was trained on \(these are 24x24",
    ):
        evaluate_checkpoint(cfg)
    same = compose_cfg(
        [*folder, "data.dataset.image_size=16", f"ckpt_path={ckpt}"], config_name="eval"
    )
    assert evaluate_checkpoint(same)[0]["status"] == "ok"


def test_missing_folder_is_one_line_on_the_command_line(compose_cfg, tmp_path: Path, capsys):
    from oodlab.cli import guarded
    from oodlab.run.train import train

    cfg = compose_cfg(["data=folder", f"data.dataset.path={tmp_path / 'absent'}", "logger=none"])
    with pytest.raises(SystemExit):
        guarded(lambda: train(cfg), cfg)
    err = " ".join(capsys.readouterr().err.split())  # undo the console's line wrapping
    assert err.startswith("error: Dataset 'image folder' not found in") and "absent" in err
    assert "Traceback" not in err and "one sub-folder per class" in err


def test_decode_errors_name_the_file_even_from_threads(tmp_path: Path):
    from oodlab.data.imaging import decode_files

    paths = []
    for i in range(80):
        p = tmp_path / f"{i}.png"
        _write_image(p, i)
        paths.append(str(p))
    (tmp_path / "50.png").write_bytes(io.BytesIO(b"garbage").getvalue())
    with pytest.raises(CorruptDataError, match=r"50\.png"):
        decode_files(paths, (3, 8, 8), num_threads=4)
