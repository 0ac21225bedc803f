"""OpenOOD v1.5's ImageNet-1k and ImageNet-200 benchmarks, streamed from OpenOOD's layout.

Facts from Jingkang50/OpenOOD (``openood/evaluation_api/datasets.py``, ``configs/datasets/
imagenet*/``, ``scripts/download/download.py``):

* One data root holds ``benchmark_imglist/<imagenet|imagenet200>/*.txt`` (``path label`` lines),
  ``images_largescale/`` (``imagenet_1k/{train,val}``, ``ssb_hard``, ``ninco``, ``inaturalist``,
  ``openimage_o``) and ``images_classic/texture``; list entries are relative to
  ``images_largescale/`` (Textures: ``images_classic/``).
* ID: ``train_<b>.txt``, ``val_<b>.txt``, ``test_<b>.txt`` (ImageNet-1k: ``imagenet``,
  ImageNet-200: ``imagenet200``), all over ``imagenet_1k/`` (train from ImageNet's train
  images, val and test from its validation images).
* OOD: near SSB-hard and NINCO, far iNaturalist, Textures and OpenImage-O
  (``test_<name>.txt``); the validation OOD set is ``val_openimage_o.txt``.
* Google Drive ids of the zips (below). OpenOOD publishes no checksums or sizes, and none
  could be computed here, so none is pinned: zips are checked structurally (every member's
  CRC) and every list's files are checked to exist before a run starts.

ImageNet-1k's images are not redistributable: oodlab never downloads them. Put your copy at
``<root>/images_largescale/imagenet_1k/{train,val}`` (train/<wnid>/*.JPEG; val flat, as
OpenOOD has it, or in <wnid>/ folders as ImageNet's usual val preparation leaves it) or point
``imagenet_dir`` at a folder holding ``train/`` and ``val/``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oodlab.data.downloads import Archive, extract_once, fetch_file
from oodlab.data.preprocessing import Preprocessing
from oodlab.data.sources.image_list import (
    ImageListDataset,
    as_preprocessing,
    list_dataset,
    read_image_list,
)
from oodlab.data.streaming import StreamOptions
from oodlab.data.types import SplitData
from oodlab.errors import ConfigError, MissingDataError, UnknownNameError

log = logging.getLogger(__name__)

#: oodlab's benchmark name -> OpenOOD's folder in benchmark_imglist/
BENCHMARKS = {"imagenet1k": "imagenet", "imagenet200": "imagenet200"}
#: OOD set -> (OpenOOD's images folder, its archive's name there)
OOD_SETS = {
    "ssb_hard": ("images_largescale", "ssb_hard"),
    "ninco": ("images_largescale", "ninco"),
    "inaturalist": ("images_largescale", "inaturalist"),
    "textures": ("images_classic", "texture"),
    "openimage_o": ("images_largescale", "openimage_o"),
}
GDRIVE_IDS = {
    "benchmark_imglist": "1lI1j0_fDDvjIt9JlWAw09X8ks-yrR_H1",
    "ssb_hard": "1PzkA-WGG8Z18h0ooL_pDdz9cO-DCIouE",
    "ninco": "1Z82cmvIB0eghTehxOGP5VTdLt7OD3nk6",
    "inaturalist": "1zfLfMvoUD0CUlKNnkk7LgxZZBnTBipdj",
    "texture": "1OSz1m3hHfVWbRdmMwKbUzoU8Hg9UKcam",
    "openimage_o": "1VUFXnB_z70uHfdgJG2E_pjYOcEgqM7tE",
}
IMAGENET_HOW = (
    "ImageNet-1k's images are not redistributable: get them from https://image-net.org and put "
    "them at {base}/train/<wnid>/*.JPEG and {base}/val/*.JPEG (or val/<wnid>/), or set "
    "data.dataset.imagenet_dir to a folder holding train/ and val/."
)
GDRIVE_HOW = (
    "If Google Drive refuses (quota exceeded), open https://drive.google.com/file/d/{gid} in a "
    "browser, save the file as {path}, and run again: oodlab checks and extracts it. Or "
    "install gdown (pip install 'oodlab[openood]')."
)


def _archive(name: str) -> Archive:
    return Archive(f"OpenOOD {name}", f"{name}.zip", gdrive_id=GDRIVE_IDS[name])


def _benchmark(benchmark: str) -> str:
    if benchmark not in BENCHMARKS:
        raise UnknownNameError("OpenOOD ImageNet benchmark", benchmark, BENCHMARKS)
    return BENCHMARKS[benchmark]


def _extract_beside(zip_path: Path, destination: Path) -> None:
    log.info("extracting %s -> %s", zip_path, destination)
    extract_once(zip_path, destination)


def imglist_dir(root: str | Path, download: bool = True) -> Path:
    """``<root>/benchmark_imglist`` (fetched and extracted from OpenOOD's zip if missing)."""
    root = Path(root).expanduser()
    folder = root / "benchmark_imglist"
    for candidate in (folder / "benchmark_imglist", folder):
        if (candidate / "imagenet").is_dir() or (candidate / "imagenet200").is_dir():
            return candidate
    zip_path = root / "benchmark_imglist.zip"
    how = GDRIVE_HOW.format(gid=GDRIVE_IDS["benchmark_imglist"], path=zip_path)
    fetch_file(_archive("benchmark_imglist"), zip_path, download, how)
    staging = root / ".benchmark_imglist"
    _extract_beside(zip_path, staging)
    inner = staging / "benchmark_imglist" if (staging / "benchmark_imglist").is_dir() else staging
    if not folder.exists():
        inner.rename(folder)
    return folder


def _list(root: Path, benchmark: str, file: str | None, default: str, download: bool) -> Path:
    """A list file: ``file`` (absolute, or relative to ``root``) or OpenOOD's ``default``."""
    if file:
        path = Path(file).expanduser()
        return path if path.is_absolute() else root / path
    return imglist_dir(root, download) / _benchmark(benchmark) / default


def _ood_images(root: Path, name: str, download: bool) -> Path:
    """The folder OpenOOD's list entries of ``name`` are relative to; its zip is fetched to
    ``<root>/<images folder>/<archive>.zip`` and extracted beside it when the images are
    missing."""
    folder, archive = OOD_SETS[name]
    base = root / folder
    if (base / archive).is_dir() and any((base / archive).iterdir()):
        return base
    zip_path = base / f"{archive}.zip"
    how = GDRIVE_HOW.format(gid=GDRIVE_IDS[archive], path=zip_path)
    fetch_file(_archive(archive), zip_path, download, how)
    _extract_beside(zip_path, base / archive)
    return base


def openood_imagenet_ood_set(
    *,
    shape: Sequence[int],
    name: str,
    benchmark: str = "imagenet1k",
    split: str = "test",
    root: str = "data/openood",
    list: str | None = None,
    n: int | None = None,
    seed: int = 0,
    download: bool = True,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    options: StreamOptions | None = None,
) -> ImageListDataset:
    """One OOD set of OpenOOD v1.5's ImageNet benchmarks (``split=val``: its validation OOD
    list, ``val_<name>.txt``), streamed with the ID data's ``preprocessing``."""
    from oodlab.data.sources.image_list import _ood_preprocessing

    if name not in OOD_SETS:
        raise UnknownNameError("OpenOOD ImageNet OOD set", name, OOD_SETS)
    if split not in ("test", "val"):
        raise ConfigError("ood.sets.<name>.split", split, "test or val")
    base = Path(root).expanduser()
    list_path = _list(base, benchmark, list, f"{split}_{name}.txt", download)
    images = _ood_images(base, name, download)
    folder, archive = OOD_SETS[name]
    data = list_dataset(
        list_path,
        images,
        _ood_preprocessing(shape, preprocessing),
        channels=int(shape[0]),
        name=f"OpenOOD {name}",
        n=n,
        seed=seed,
        options=options,
        prefix_fallback=True,
        how_to_get=(
            f"The image list {list_path} names it: the {archive} images go in "
            f"{base / folder / archive}. "
            + GDRIVE_HOW.format(gid=GDRIVE_IDS[archive], path=base / folder / f"{archive}.zip")
        ),
    )
    data.labels.fill_(-1)
    return data


def _wnids(entries: Sequence[tuple[str, int]]) -> dict[int, str]:
    """label -> WordNet id, from training entries ``imagenet_1k/train/<wnid>/<file>``."""
    found: dict[int, str] = {}
    for path, label in entries:
        parts = Path(path).parts
        if len(parts) >= 3 and label not in found:
            found[label] = parts[-2]
    return found


def _imagenet_split(
    list_path: Path,
    base: Path,
    pre: Preprocessing,
    wnids: Mapping[int, str],
    *,
    name: str,
    how: str,
    options: StreamOptions,
    check: bool = True,
) -> ImageListDataset:
    """One ID split: entries ``imagenet_1k/<train|val>/...`` under ``base`` (the folder
    holding train/ and val/); a flat val/ entry falls back to val/<wnid>/<file>."""
    entries = read_image_list(list_path)
    if not entries:
        raise MissingDataError(name, str(list_path), "The image list is empty.")

    def strip(entry: str) -> Path:
        parts = Path(entry).parts
        return Path(*parts[1:]) if parts and parts[0] == "imagenet_1k" else Path(entry)

    files = [base / strip(path) for path, _ in entries]
    first_val = next((i for i, (p, _) in enumerate(entries) if "/val/" in f"/{p}"), None)
    if first_val is not None and not files[first_val].is_file():
        label = entries[first_val][1]
        nested = files[first_val].parent / wnids.get(label, "?") / files[first_val].name
        if nested.is_file():  # val/<wnid>/<file>: ImageNet's usual val preparation
            files = [
                f.parent / wnids.get(lab, "?") / f.name if "/val/" in f"/{p}" else f
                for f, (p, lab) in zip(files, entries, strict=True)
            ]
    data = ImageListDataset(
        files,
        [label for _, label in entries],
        pre,
        classes=tuple(wnids.get(i, str(i)) for i in range(max(wnids, default=-1) + 1)),
        name=name,
        options=options,
        how_to_get=how,
    )
    if check:
        data.check_files()
    return data


def load_openood_imagenet(
    *,
    benchmark: str = "imagenet1k",
    root: str = "data/openood",
    imagenet_dir: str | None = None,
    train_list: str | None = None,
    val_list: str | None = None,
    test_list: str | None = None,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    download: bool = True,
    check_train: bool = False,
    num_workers: int | None = None,
    decode: str = "auto",
) -> SplitData:
    """ImageNet-1k or ImageNet-200 as OpenOOD v1.5 splits it (``data=imagenet1k``,
    ``data=imagenet200``). The image lists are downloaded if missing (``download``); the
    images are yours (see the module docstring). ``check_train=False`` (the default) lets an
    evaluation start without ImageNet's training images: only training and scores that fit
    training statistics (knn, mahalanobis, react, ...) read them, and fail then, naming the
    folder."""
    folder = _benchmark(benchmark)
    base_root = Path(root).expanduser()
    base = (
        Path(imagenet_dir).expanduser()
        if imagenet_dir
        else base_root / "images_largescale" / "imagenet_1k"
    )
    pre = as_preprocessing(preprocessing, "data.dataset.preprocessing")
    options = StreamOptions(num_workers=num_workers, decode=decode)
    paths = {
        split: _list(base_root, benchmark, given, f"{split}_{folder}.txt", download)
        for split, given in (("train", train_list), ("val", val_list), ("test", test_list))
    }
    train_entries = read_image_list(paths["train"])
    wnids = _wnids(train_entries)
    how = IMAGENET_HOW.format(base=base)
    common: dict[str, Any] = dict(name=benchmark, how=how, options=options)
    train = _imagenet_split(paths["train"], base, pre, wnids, check=check_train, **common)
    if not check_train and len(train) and not Path(train.file(0)).is_file():
        log.warning(
            "%s (needed for training and train-fitted scores only)", train.missing(train.file(0))
        )
    val = _imagenet_split(paths["val"], base, pre, wnids, **common)
    test = _imagenet_split(paths["test"], base, pre, wnids, **common)
    return SplitData(
        name=benchmark,
        train=train,
        val=val,
        test=test,
        mean=pre.mean,
        std=pre.std,
        preprocessing=pre,
    )
