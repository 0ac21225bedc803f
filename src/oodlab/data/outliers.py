"""Outlier sets for outlier exposure (``outliers=``), and the on-device outlier batches.

An outlier set is auxiliary training data the OE losses (``loss=oe``, ``energy_oe``, ``mixoe``)
push towards low confidence. It is never an OOD *test* set: results.json records which one a
run trained with (``run.outliers``), so that no report compares a model that saw a test
distribution in training with one that did not.

Sets (``conf/outliers/<name>.yaml``):

- ``offline``: built from packaged data, for the default MNIST-5k experiment. Three kinds of
  image in equal shares: procedural geometric shapes (``skimage.draw.random_shapes``:
  rectangles, circles, ellipses, triangles), procedural binary blobs
  (``skimage.data.binary_blobs``, a new random field per image) and random crops of
  scikit-image's microscopy and retinal images (``cell``, ``immunohistochemistry``,
  ``retina``, ``microaneurysms``). The MNIST-5k suite (conf/ood/mnist5k.yaml) tests on crops of
  brick/grass/gravel textures, crops of natural photographs (camera, astronaut, coffee,
  chelsea, rocket, china, flower), letters rendered from fonts, Gaussian and uniform noise,
  and validates on transformed MNIST-5k validation digits: none of those source images is
  used here, and none of those kinds (textures, photographs of scenes and objects, glyphs,
  i.i.d. noise, digits) either, so training on this set does not teach the test sets.
- ``tiny_images_300k``: the 300K Random Images of Hendrycks et al.'s Outlier Exposure code
  (``300K_random_images.npy``, 32x32 RGB; the auxiliary set of the OE and Energy papers'
  CIFAR experiments), md5-verified (the md5 pytorch-ood pins).
- ``openood_tin597``: OpenOOD v1.5's CIFAR auxiliary set,
  ``benchmark_imglist/<cifar10|cifar100>/train_tin597.txt`` over ``images_classic/tin597``
  (597 TinyImageNet classes without CIFAR overlap), as its ``cifar10_oe.yml`` reads it.
- ``openood_imagenet800``: OpenOOD v1.5's ImageNet-200 auxiliary set,
  ``benchmark_imglist/imagenet200/train_imagenet800.txt`` over ``images_largescale/imagenet_1k``
  (the 800 ImageNet-1k classes outside ImageNet-200).

OpenOOD publishes no checksums: its zips are checked structurally (member CRCs), and every
listed image must exist and decode.

:class:`OutlierBatches` keeps the set as one uint8 tensor on the training device and draws
each step's batch there, by indexing, like the ID batches (oodlab.data.loaders): batch ``b``
of epoch ``e`` is a fixed slice of a stream of permutations seeded by (seed, epoch), so a
resumed run draws the same outliers as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from oodlab.data.types import ImageTensors
from oodlab.errors import ConfigError

log = logging.getLogger(__name__)

Shape = Sequence[int]

#: scikit-image's microscopy / retinal images, all shipped with the package (no download)
MICROSCOPY_SOURCES = ("cell", "immunohistochemistry", "retina", "microaneurysms")
#: the kinds of the offline set, in equal shares
OFFLINE_KINDS = ("shapes", "blobs", "microscopy")

#: what a task built without an ``outliers`` config (the Python API, tests) trains the OE
#: losses with: conf/outliers/offline.yaml's set at 1000 images, uncached
DEFAULT_OUTLIERS: dict[str, Any] = {
    "name": "offline",
    "auto": True,
    "set": {
        "_target_": "oodlab.data.outliers.offline_outliers",
        "_partial_": True,
        "n": 1000,
        "seed": 4242,
    },
    "ratio": None,
    "seed": 0,
    "cache_dir": None,
}

TINY_IMAGES_300K = {
    "dataset": "300K Random Images (Outlier Exposure)",
    "filename": "300K_random_images.npy",
    "url": "https://people.eecs.berkeley.edu/~hendrycks/300K_random_images.npy",
    "md5": "64ca64357de98351f28454274a112dc3",
}
#: OpenOOD v1.5's Google Drive ids (scripts/download/download.py)
OPENOOD_AUX = {
    "tin597": ("images_classic", "1R0d8zBcUxWNXz6CPXanobniiIfQbpKzn"),
    "imagenet_1k": ("images_largescale", "1i1ipLDFARR-JZ9argXd2-0a6DXwVhXEj"),
}


# ---------------------------------------------------------------------------------------------
# the offline set
# ---------------------------------------------------------------------------------------------


def _check(n: int, shape: Shape) -> tuple[int, int, int]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("outliers.set.n", n, "a positive integer")
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _as_tensor(images: list[Image.Image], channels: int) -> Tensor:
    if channels not in (1, 3):
        raise ValueError(f"outlier sets are built for 1- or 3-channel images, not {channels}")
    mode = "L" if channels == 1 else "RGB"
    arr = np.stack([np.asarray(im.convert(mode)) for im in images])
    if channels == 1:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def _shapes(rng: np.random.Generator, size: int) -> Image.Image:
    from skimage.draw import random_shapes

    img, _ = random_shapes(
        (size, size),
        max_shapes=int(rng.integers(1, 5)),
        min_size=max(2, size // 8),
        max_size=max(3, size // 2),
        channel_axis=-1,
        intensity_range=((0, 230),),
        allow_overlap=True,
        rng=int(rng.integers(2**31)),
    )
    if rng.random() < 0.5:  # dark background half of the time (MNIST digits are white on black)
        img = 255 - img
    return Image.fromarray(img)


def _blobs(rng: np.random.Generator, size: int) -> Image.Image:
    from skimage.data import binary_blobs

    blobs = binary_blobs(
        length=size,
        blob_size_fraction=float(rng.uniform(0.05, 0.3)),
        volume_fraction=float(rng.uniform(0.1, 0.6)),
        rng=int(rng.integers(2**31)),
    )
    img = np.where(blobs, int(rng.integers(128, 256)), int(rng.integers(0, 96))).astype(np.uint8)
    return Image.fromarray(img)


def _microscopy_pictures() -> list[Image.Image]:
    import skimage.data

    return [Image.fromarray(getattr(skimage.data, name)()) for name in MICROSCOPY_SOURCES]


def _crop(rng: np.random.Generator, pic: Image.Image, min_crop: int) -> Image.Image:
    side = min(pic.size)
    size = int(rng.integers(min(min_crop, side), side + 1))
    left = int(rng.integers(0, pic.size[0] - size + 1))
    top = int(rng.integers(0, pic.size[1] - size + 1))
    return pic.crop((left, top, left + size, top + size))


def offline_outliers(*, shape: Shape, n: int = 5000, seed: int = 0) -> ImageTensors:
    """``n`` images at the ID ``shape`` (C, H, W): shapes, blobs and microscopy crops in
    equal shares (see the module docstring for why these and not others), deterministic for
    a ``seed``. Drawn at 64x64 (shapes, blobs) or cropped, then resized with bicubic."""
    channels, height, width = _check(n, shape)
    rng = np.random.default_rng(seed)
    pictures = _microscopy_pictures()
    images = []
    for i in range(n):
        kind = OFFLINE_KINDS[i % len(OFFLINE_KINDS)]
        if kind == "shapes":
            im = _shapes(rng, 64)
        elif kind == "blobs":
            im = _blobs(rng, 64)
        else:
            im = _crop(rng, pictures[int(rng.integers(len(pictures)))], 24)
        images.append(
            im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC, reducing_gap=2.0)
        )
    order = rng.permutation(n)
    return ImageTensors.unlabeled(_as_tensor([images[i] for i in order], channels))


# ---------------------------------------------------------------------------------------------
# the papers' sets
# ---------------------------------------------------------------------------------------------


def _decode(paths: list[str], shape: Shape, fit: str, num_threads: int | None) -> Tensor:
    from oodlab.data.imaging import decode_files

    return decode_files(paths, shape, fit, num_threads)


def _sample(total: int, n: int | None, seed: int) -> list[int]:
    from oodlab.data.imaging import sample_indices

    return list(sample_indices(total, n, seed, "outliers.set.n"))


def tiny_images_300k(
    *,
    shape: Shape,
    root: str = "data",
    n: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> ImageTensors:
    """Hendrycks et al.'s 300K Random Images, md5-verified, resized to ``shape`` if needed."""
    from oodlab.data.downloads import Archive, fetch_archive

    channels, height, width = _check(1 if n is None else n, shape)
    folder = Path(root).expanduser() / "outliers"
    archive = Archive(
        TINY_IMAGES_300K["dataset"],
        TINY_IMAGES_300K["filename"],
        url=TINY_IMAGES_300K["url"],
        md5=TINY_IMAGES_300K["md5"],
    )
    how = f"Download {archive.url} (md5 {archive.md5}) and put {archive.filename} in {folder}."
    folder.mkdir(parents=True, exist_ok=True)
    path = fetch_archive(archive, folder, download, how)
    data = np.load(path, mmap_mode="r")  # (300000, 32, 32, 3) uint8
    index = _sample(data.shape[0], n, seed)
    arr = np.asarray(data[np.sort(np.asarray(index, dtype=np.int64))])
    if (height, width) != arr.shape[1:3] or channels != 3:
        pics = [Image.fromarray(a).resize((width, height), Image.Resampling.BICUBIC) for a in arr]
        return ImageTensors.unlabeled(_as_tensor(pics, channels))
    return ImageTensors.unlabeled(torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))))


def openood_outliers(
    *,
    shape: Shape,
    benchmark: str = "cifar10",
    root: str = "data",
    n: int | None = None,
    seed: int = 0,
    fit: str = "resize_crop",
    download: bool = True,
    num_threads: int | None = None,
) -> ImageTensors:
    """OpenOOD v1.5's auxiliary (OE) set of ``benchmark``: ``train_tin597.txt`` for cifar10
    and cifar100, ``train_imagenet800.txt`` for imagenet200."""
    from oodlab.data.downloads import Archive
    from oodlab.data.sources.archives import openood_list_files

    lists = {"cifar10": "tin597", "cifar100": "tin597", "imagenet200": "imagenet_1k"}
    if benchmark not in lists:
        raise ConfigError("outliers.set.benchmark", benchmark, "cifar10, cifar100 or imagenet200")
    images_name = lists[benchmark]
    list_file = "train_tin597.txt" if images_name == "tin597" else "train_imagenet800.txt"
    folder_kind, gdrive_id = OPENOOD_AUX[images_name]
    base = Path(root).expanduser() / "openood"
    how = (
        f"Run OpenOOD's scripts/download/download.py, put benchmark_imglist.zip and "
        f"{folder_kind}/{images_name}.zip in {base}, or install gdown "
        "(pip install 'oodlab[openood]') to let oodlab fetch them."
    )
    archive = Archive(f"OpenOOD {images_name}", f"{images_name}.zip", gdrive_id=gdrive_id)
    paths = openood_list_files(
        base,
        f"{benchmark}/{list_file}",
        archive,
        images_name,
        n=n,
        seed=seed,
        download=download,
        how=how,
        key="outliers.set.n",
    )
    return ImageTensors.unlabeled(_decode(paths, shape, fit, num_threads))


# ---------------------------------------------------------------------------------------------
# building and drawing
# ---------------------------------------------------------------------------------------------


def outlier_set_name(cfg: Mapping[str, Any] | None) -> str | None:
    """The name results.json records (``run.outliers``); None for ``outliers=none``."""
    if not cfg or not cfg.get("set"):
        return None
    return str(cfg.get("name") or cfg["set"].get("_target_", "custom").rsplit(".", 1)[-1])


def build_outlier_set(
    cfg: Mapping[str, Any], shape: Shape, cache_dir: str | Path | None = None
) -> ImageTensors:
    """The images of ``cfg["set"]`` (a ``_partial_`` builder config) at the ID ``shape``,
    cached under ``cache_dir/outliers`` by a hash of the config and the shape."""
    from oodlab._infra.instantiate import instantiate

    set_cfg = dict(cfg["set"])
    builder = instantiate(set_cfg, _convert_="all")
    if cache_dir is None:
        return builder(shape=tuple(shape))
    from oodlab.data.cache import cached_tensors

    key = hashlib.sha1((repr(sorted(set_cfg.items())) + repr(tuple(shape))).encode()).hexdigest()
    name = outlier_set_name(cfg) or "outliers"

    def build() -> dict[str, Tensor]:
        data = builder(shape=tuple(shape))
        return {"images": data.images, "labels": data.labels}

    arrays = cached_tensors(Path(cache_dir) / "outliers" / f"{name}-{key[:16]}.pt", build)
    return ImageTensors(arrays["images"], arrays["labels"])


def outlier_batch_size(ratio: float | None, default_ratio: float, id_batch_size: int) -> int:
    """``round(ratio x ID batch size)``, at least 1; ``ratio`` None takes the loss's default."""
    r = default_ratio if ratio is None else ratio
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0:
        raise ConfigError("outliers.ratio", ratio, "a number > 0 (or null: the loss's default)")
    return max(1, round(float(r) * id_batch_size))


class OutlierBatches:
    """Outlier batches drawn on the device from one uint8 tensor ``images`` (M, C, H, W).

    Batch ``step`` of ``epoch`` holds items ``[step * B, (step + 1) * B)`` of an endless
    stream of permutations of the M images (permutation ``k`` of ``epoch`` seeded by
    ``(seed, epoch, k)``): every image comes once before any comes twice, the batches of an
    epoch are known without replaying earlier steps, and nothing is read back from the
    device (the permutations are built on the CPU once and copied over).
    """

    def __init__(self, images: Tensor, batch_size: int, seed: int = 0):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"outlier images must be uint8 (M>0, C, H, W), got {images.shape}")
        self.images = images
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._perms: dict[tuple[int, int], Tensor] = {}

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> OutlierBatches:
        self.images = self.images.to(device)
        self._perms = {}
        return self

    def _perm(self, epoch: int, k: int) -> Tensor:
        key = (epoch, k)
        if key not in self._perms:
            if len(self._perms) > 64:  # keep only the current epoch's permutations
                self._perms = {kk: v for kk, v in self._perms.items() if kk[0] == epoch}
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_033 + k)
            self._perms[key] = torch.randperm(len(self), generator=g).to(self.images.device)
        return self._perms[key]

    def indices(self, epoch: int, step: int) -> Tensor:
        m, b = len(self), self.batch_size
        start, stop = step * b, (step + 1) * b
        parts = []
        while start < stop:
            k, offset = divmod(start, m)
            take = min(stop - start, m - offset)
            parts.append(self._perm(epoch, k)[offset : offset + take])
            start += take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def batch(self, epoch: int, step: int) -> Tensor:
        """The uint8 images (B, C, H, W) of ``step`` in ``epoch``, on the images' device."""
        return self.images[self.indices(epoch, step)]
