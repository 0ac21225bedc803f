"""CIFAR/SVHN/MNIST/DTD through torchvision, ODIN's and OpenOOD's archives, and the offline
MNIST-5k RGB set: all from fake local files in tmp_path. The network is blocked in every
test that could reach it, which is also how the no-network error messages are proven."""

from __future__ import annotations

import hashlib
import pickle
import socket
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.svhn
from PIL import Image

from oodlab.data.downloads import Archive
from oodlab.data.imaging import fit_tensor, match_channels, sample_indices
from oodlab.data.sources import archives
from oodlab.data.sources.archives import odin_ood_set, openood_ood_set
from oodlab.data.sources.mnist5k import mnist5k_ood_set
from oodlab.data.sources.torchvision_sets import load_torchvision_id, torchvision_ood_set
from oodlab.errors import ConfigError, CorruptDataError, MissingDataError, UnknownNameError


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# -- fake torchvision layouts ---------------------------------------------------------------
def write_fake_cifar10(root: Path, per_batch: int = 6) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        data[:, :1024] = (
            np.array(labels, dtype=np.uint8)[:, None] * 20
        )  # red plane encodes the label
        with (folder / name).open("wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
    with (folder / "batches.meta").open("wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)


def write_fake_mnist(root: Path, n: int = 5) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        images = np.full((n, 28, 28), 255, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            np.array([2049, n], dtype=">i4").tobytes() + np.arange(n, dtype=np.uint8).tobytes()
        )


def write_fake_dtd(root: Path) -> None:
    base = root / "dtd" / "dtd"
    names = []
    for cls in ("banded", "woven"):
        for i in range(3):
            path = base / "images" / cls / f"{cls}_{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((90, 120, 3), 60 * i, dtype=np.uint8)).save(path)
            names.append(f"{cls}/{cls}_{i}.jpg")
    (base / "labels").mkdir(parents=True)
    for split, part in (("train", names[:2]), ("val", names[2:4]), ("test", names[4:])):
        (base / "labels" / f"{split}1.txt").write_text("\n".join(part) + "\n")


@pytest.fixture
def trust_torchvision_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake files cannot match torchvision's md5s; everything else about loading is real."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", lambda *a, **k: True)


def test_cifar10_from_local_pickles(tmp_path: Path, trust_torchvision_files, no_network):
    write_fake_cifar10(tmp_path / "data")
    data = load_torchvision_id(
        "cifar10",
        root=str(tmp_path / "data"),
        val_size=10,
        split_seed=1,
        cache_dir=str(tmp_path / "cache"),
    )
    assert data.name == "cifar10" and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (20, 10, 6)
    assert data.train.images.shape[1:] == (3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.val.labels.bincount(minlength=10).tolist() == [1] * 10  # stratified
    # the pixel layout survived the HWC -> CHW conversion: red plane == 20 * label
    assert torch.equal(data.test.images[:, 0, 0, 0].long(), data.test.labels * 20)
    assert data.mean == (0.4914, 0.4822, 0.4465)
    assert (tmp_path / "cache" / "torchvision" / "cifar10-train.pt").is_file()
    subset = load_torchvision_id(
        "cifar10",
        root=str(tmp_path / "data"),
        val_size=10,
        train_subset=10,
        cache_dir=str(tmp_path / "cache"),
    )
    assert subset.train.labels.bincount(minlength=10).tolist() == [1] * 10


def test_svhn_from_local_mat(tmp_path: Path, trust_torchvision_files, no_network):
    from scipy.io import savemat

    folder = tmp_path / "data" / "svhn"
    folder.mkdir(parents=True)
    for split, n in (("train", 20), ("test", 12)):
        x = np.random.default_rng(n).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # SVHN stores digit 0 as 10
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    data = load_torchvision_id(
        "svhn", root=str(tmp_path / "data"), val_size=10, cache_dir=str(tmp_path / "c")
    )
    assert (len(data.train), len(data.test)) == (10, 12)
    assert data.test.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    ood = torchvision_ood_set(
        shape=(1, 16, 16),
        name="svhn",
        root=str(tmp_path / "data"),
        n=5,
        cache_dir=str(tmp_path / "c"),
    )
    assert ood.images.shape == (5, 1, 16, 16) and (ood.labels == -1).all()


def test_mnist_and_dtd_ood_sets_fit_the_id_shape(tmp_path: Path, no_network):
    write_fake_mnist(tmp_path / "data")
    write_fake_dtd(tmp_path / "data")
    mnist = torchvision_ood_set(
        shape=(3, 32, 32),
        name="mnist",
        split="all",
        root=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "c"),
    )
    assert mnist.images.shape == (10, 3, 32, 32) and int(mnist.images.min()) == 255
    textures = torchvision_ood_set(
        shape=(3, 32, 32), name="dtd", split="all", root=str(tmp_path / "data")
    )
    assert textures.images.shape == (6, 3, 32, 32)
    with pytest.raises(ConfigError, match="split"):
        torchvision_ood_set(
            shape=(3, 32, 32), name="dtd", split="extra", root=str(tmp_path / "data")
        )
    with pytest.raises(UnknownNameError, match="Choices"):
        torchvision_ood_set(shape=(3, 32, 32), name="lsun", root=str(tmp_path / "data"))


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_missing_id_data_without_network_names_dataset_path_and_source(
    tmp_path: Path, no_network, name
):
    root = tmp_path / "empty"
    with pytest.raises(MissingDataError) as err:
        load_torchvision_id(name, root=str(root), cache_dir=str(tmp_path / "c"))
    message = str(err.value)
    assert f"'{name}'" in message and str(root) in message
    assert "Downloading it failed" in message and "network access is disabled" in message
    assert "http" in message and "Traceback" not in message and "\n" not in message
    with pytest.raises(MissingDataError, match="download=true"):
        load_torchvision_id(name, root=str(root), download=False, cache_dir=str(tmp_path / "c"))


@pytest.mark.parametrize("name,split", [("mnist", "test"), ("dtd", "all"), ("places365", "val")])
def test_missing_ood_data_without_network(tmp_path: Path, no_network, name, split):
    with pytest.raises(MissingDataError, match=rf"'{name}' not found in {tmp_path}"):
        torchvision_ood_set(
            shape=(3, 32, 32),
            name=name,
            split=split,
            root=str(tmp_path),
            cache_dir=str(tmp_path / "c"),
        )


# -- ODIN archives ------------------------------------------------------------------------------
def make_tarball(path: Path, folder: str, n: int, size: int = 36) -> str:
    src = path.parent / f"src_{folder}"
    for i in range(n):
        (src / folder / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 10 * i, dtype=np.uint8)).save(
            src / folder / folder / f"{i}.jpg"
        )
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / folder, arcname=folder)
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_odin_archive_is_md5_verified_then_extracted(tmp_path: Path, monkeypatch, no_network):
    folder = tmp_path / "data" / "odin"
    folder.mkdir(parents=True)
    md5 = make_tarball(folder / "LSUN_resize.tar.gz", "LSUN_resize", n=6)
    real = archives.ODIN_ARCHIVES["lsun_resize"]
    monkeypatch.setitem(
        archives.ODIN_ARCHIVES,
        "lsun_resize",
        Archive(real.dataset, real.filename, url=real.url, md5="0" * 32),
    )
    with pytest.raises(CorruptDataError, match=r"Checksum mismatch.*expected md5 0{32}"):
        odin_ood_set(shape=(3, 32, 32), name="lsun_resize", root=str(tmp_path / "data"))
    monkeypatch.setitem(
        archives.ODIN_ARCHIVES,
        "lsun_resize",
        Archive(real.dataset, real.filename, url=real.url, md5=md5),
    )
    ood = odin_ood_set(
        shape=(3, 32, 32), name="lsun_resize", root=str(tmp_path / "data"), n=4, seed=2
    )
    assert ood.images.shape == (4, 3, 32, 32)
    assert (folder / "lsun_resize" / ".oodlab-extracted").is_file()


def test_missing_odin_archive_names_the_url_and_md5(tmp_path: Path, no_network):
    with pytest.raises(MissingDataError) as err:
        odin_ood_set(shape=(3, 32, 32), name="isun", root=str(tmp_path))
    message = str(err.value)
    assert "'iSUN'" in message and str(tmp_path / "odin") in message
    assert "dropbox.com" in message and archives.ODIN_ARCHIVES["isun"].md5 in message


def test_published_checksums_are_pinned():
    for archive in archives.ODIN_ARCHIVES.values():
        assert (
            archive.md5
            and len(archive.md5) == 32
            and archive.url.startswith("https://www.dropbox.com/")
        )
    # OpenOOD publishes none: left unknown rather than invented
    assert all(a.md5 is None and a.sha256 is None for a in archives.OPENOOD_IMAGES.values())


# -- OpenOOD image lists -------------------------------------------------------------------------
def make_openood(base: Path, wrapped: bool) -> None:
    base.mkdir(parents=True)
    with zipfile.ZipFile(base / "benchmark_imglist.zip", "w") as zf:
        zf.writestr(
            "benchmark_imglist/cifar10/test_tin.txt",
            "".join(f"tin/test/{i}.png -1\n" for i in range(5)),
        )
    with zipfile.ZipFile(base / "tin.zip", "w") as zf:
        for i in range(7):  # two images the list does not name
            buffer = __import__("io").BytesIO()
            Image.fromarray(np.full((64, 64, 3), i, dtype=np.uint8)).save(buffer, format="PNG")
            zf.writestr(f"{'tin/' if wrapped else ''}test/{i}.png", buffer.getvalue())


@pytest.mark.parametrize("wrapped", [True, False])
def test_openood_list_selects_its_images(tmp_path: Path, no_network, wrapped):
    make_openood(tmp_path / "openood", wrapped)
    ood = openood_ood_set(shape=(3, 32, 32), name="tin", root=str(tmp_path))
    assert ood.images.shape == (5, 3, 32, 32)
    assert ood.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_openood_corrupt_zip_and_missing_archive(tmp_path: Path, no_network):
    make_openood(tmp_path / "openood", wrapped=True)
    data = bytearray((tmp_path / "openood" / "tin.zip").read_bytes())
    data[60:80] = b"\x00" * 20  # inside the first member's data: its CRC no longer matches
    (tmp_path / "openood" / "tin.zip").write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="tin"):
        openood_ood_set(shape=(3, 32, 32), name="tin", root=str(tmp_path))
    with pytest.raises(MissingDataError, match=r"OpenOOD benchmark_imglist.*download\.py"):
        openood_ood_set(shape=(3, 32, 32), name="places365", root=str(tmp_path / "elsewhere"))


# -- offline set and image helpers ---------------------------------------------------------------
def test_mnist5k_rgb_is_real_digits_at_cifar_shape(data_dir: Path):
    ood = mnist5k_ood_set(shape=(3, 32, 32), root=str(data_dir))
    assert ood.images.shape == (5000, 3, 32, 32)
    assert torch.equal(ood.images[:, 0], ood.images[:, 1])
    # digits: dark background, bright strokes
    assert (
        ood.images[:, :, 0, 0].float().mean() < 5
        and ood.images.amax(dim=(1, 2, 3)).float().mean() > 200
    )


def test_digit_transforms_use_validation_digits_only(data_dir: Path):
    from oodlab.data.sources.mnist5k import (
        DIGIT_TRANSFORMS,
        load_mnist5k,
        mnist5k_digit_transforms,
    )

    for kind in (*DIGIT_TRANSFORMS, "mix+rot90+blur"):
        ood = mnist5k_digit_transforms(
            shape=(1, 28, 28), root=str(data_dir), kind=kind, n=30, seed=1
        )
        again = mnist5k_digit_transforms(
            shape=(1, 28, 28), root=str(data_dir), kind=kind, n=30, seed=1
        )
        assert ood.images.shape == (30, 1, 28, 28) and torch.equal(ood.images, again.images)
        assert (ood.labels == -1).all()
    # rotated validation digits are rotations of validation digits, never of test digits
    split = load_mnist5k(data_dir)
    rot = mnist5k_digit_transforms(
        shape=(1, 28, 28), root=str(data_dir), kind="rot90", n=20, seed=2
    ).images
    val = {t.rot90(k, (1, 2)).numpy().tobytes() for t in split.val.images for k in (1, -1)}
    assert all(r.numpy().tobytes() in val for r in rot)
    assert mnist5k_digit_transforms(shape=(3, 32, 32), root=str(data_dir), n=4).images.shape == (
        4,
        3,
        32,
        32,
    )
    with pytest.raises(ConfigError, match="never test"):
        mnist5k_digit_transforms(shape=(1, 28, 28), root=str(data_dir), split="test")
    with pytest.raises(UnknownNameError):
        mnist5k_digit_transforms(shape=(1, 28, 28), root=str(data_dir), kind="nope")


def test_fit_and_channel_helpers():
    grey = (
        torch.arange(28 * 28, dtype=torch.float32)
        .div(28 * 28 / 255)
        .to(torch.uint8)
        .view(1, 1, 28, 28)
    )
    up = fit_tensor(grey, (3, 32, 32))
    assert up.shape == (1, 3, 32, 32) and torch.equal(up[:, 0], up[:, 2])
    wide = torch.zeros(2, 3, 20, 40, dtype=torch.uint8)
    wide[..., 10:30] = 200  # the centre survives a resize_crop to a square
    square = fit_tensor(wide, (3, 10, 10))
    assert square.shape == (2, 3, 10, 10) and square[..., 2:8].float().mean() == pytest.approx(
        200, abs=1
    )
    rgb = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert int(match_channels(rgb, 1)) == 76  # ITU-R 601 luma of pure red
    assert sample_indices(10, None, 0).tolist() == list(range(10))
    assert sample_indices(10, 50, 0).tolist() == list(range(10))
    picked = sample_indices(100, 5, 3)
    assert picked.tolist() == sample_indices(100, 5, 3).tolist() and len(set(picked)) == 5
    with pytest.raises(ConfigError, match="n"):
        sample_indices(10, 0, 0)


@pytest.mark.parametrize("wrapped", [True, False])
def test_openood_outlier_set_reads_its_list_from_the_same_archives(
    tmp_path: Path, no_network, wrapped
):
    """outliers=openood_tin597: train_tin597.txt over tin597.zip, read as the OOD sets are."""
    from oodlab.data.outliers import openood_outliers

    base = tmp_path / "openood"
    base.mkdir(parents=True)
    with zipfile.ZipFile(base / "benchmark_imglist.zip", "w") as zf:
        zf.writestr(
            "benchmark_imglist/cifar10/train_tin597.txt",
            "".join(f"tin597/train/{i}.png\n" for i in range(6)),
        )
    with zipfile.ZipFile(base / "tin597.zip", "w") as zf:
        for i in range(6):
            buffer = __import__("io").BytesIO()
            Image.fromarray(np.full((40, 40, 3), 10 * i, dtype=np.uint8)).save(buffer, "PNG")
            zf.writestr(f"{'tin597/' if wrapped else ''}train/{i}.png", buffer.getvalue())
    outliers = openood_outliers(shape=(3, 32, 32), root=str(tmp_path), n=4, seed=0)
    assert outliers.images.shape == (4, 3, 32, 32) and (outliers.labels == -1).all()
    assert set(outliers.images[:, 0, 0, 0].tolist()) <= {0, 10, 20, 30, 40, 50}
    with pytest.raises(MissingDataError, match=r"train_imagenet800|imagenet_1k"):
        openood_outliers(shape=(3, 32, 32), benchmark="imagenet200", root=str(tmp_path))
