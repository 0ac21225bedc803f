"""OOD sets torchvision does not have, from the archives the papers' code downloads.

* ODIN's tarballs (facebookresearch/odin README), used unchanged by the OE, Energy, LogitNorm
  and IsoMax code: LSUN (crop), LSUN (resize), iSUN, TinyImageNet (crop/resize). The ODIN
  authors publish no checksums; the md5s below are the ones pytorch-ood
  (kkirchheim/pytorch-ood, ``dataset/img/odin.py``) and detectors (edadaltocg/detectors,
  ``data/isun.py``, ``data/lsun_r_c.py``, ``data/tiny_imagenet_r_c.py``) pin and verify.
* OpenOOD v1.5's benchmark image lists and image zips (Jingkang50/OpenOOD,
  ``scripts/download/download.py``; Google Drive ids). OpenOOD publishes no checksums and no
  sizes, so those archives are checked structurally instead: every zip member must pass its
  CRC, every listed image must exist and decode, and the count must match the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from oodlab.data.downloads import Archive, ensure_extracted
from oodlab.data.imaging import decode_files, sample_indices
from oodlab.data.sources.folder import list_images
from oodlab.data.types import ImageTensors
from oodlab.errors import ConfigError, MissingDataError, UnknownNameError

ODIN_ARCHIVES: dict[str, Archive] = {
    "lsun_crop": Archive(
        "LSUN (crop)",
        "LSUN.tar.gz",
        url="https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz?dl=1",
        md5="458a0a0ab8e5f1cb4516d7400568e460",
    ),
    "lsun_resize": Archive(
        "LSUN (resize)",
        "LSUN_resize.tar.gz",
        url="https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz?dl=1",
        md5="278b7b31c8cb7e804a1465a8ce03a2dc",
    ),
    "isun": Archive(
        "iSUN",
        "iSUN.tar.gz",
        url="https://www.dropbox.com/s/ssz7qxfqae0cca5/iSUN.tar.gz?dl=1",
        md5="be77b0f2c26fda898afac5f99645ee70",
    ),
    "tin_crop": Archive(
        "TinyImageNet (crop)",
        "Imagenet.tar.gz",
        url="https://www.dropbox.com/s/avgm2u562itwpkl/Imagenet.tar.gz?dl=1",
        md5="7c0827e4246c3718a5ee076e999e52e5",
    ),
    "tin_resize": Archive(
        "TinyImageNet (resize)",
        "Imagenet_resize.tar.gz",
        url="https://www.dropbox.com/s/kp3my3412u5k9rl/Imagenet_resize.tar.gz?dl=1",
        md5="0f9ff11d45babf2eff5fe12281d1ac31",
    ),
}

OPENOOD_IMGLIST = Archive(
    "OpenOOD benchmark_imglist",
    "benchmark_imglist.zip",
    gdrive_id="1lI1j0_fDDvjIt9JlWAw09X8ks-yrR_H1",
)
# images_classic/<name>.zip; checksums unknown (not published by OpenOOD)
OPENOOD_IMAGES: dict[str, Archive] = {
    name: Archive(f"OpenOOD {name}", f"{name}.zip", gdrive_id=gid)
    for name, gid in {
        "tin": "1PZ-ixyx52U989IKsMA2OT-24fToTrelC",
        "places365": "1Ec-LRSTf6u5vEctKX9vRp9OA6tqnJ0Ay",
        "texture": "1OSz1m3hHfVWbRdmMwKbUzoU8Hg9UKcam",
        "mnist": "1CCHAGWqA1KJTFFswuF9cbhmB-j98Y1Sb",
        "svhn": "1DQfc11HOtB1nEwqS4pWUFp8vtQ3DczvI",
        "cifar10": "1Co32RiiWe16lTaiOU6JMMnyUYS41IlO1",
        "cifar100": "1PGKheHUsf29leJPPGuXqzLBMwl8qMF8_",
    }.items()
}


def _odin_how_to_get(archive: Archive, folder: Path) -> str:
    return (
        f"Download {archive.url} (md5 {archive.md5}) and put {archive.filename} in {folder}; "
        "oodlab verifies and extracts it."
    )


def odin_ood_set(
    *,
    shape: Sequence[int],
    name: str,
    root: str = "data",
    n: int | None = None,
    seed: int = 0,
    fit: str = "resize_crop",
    download: bool = True,
    num_threads: int | None = None,
) -> ImageTensors:
    """One of ODIN's OOD tarballs (LSUN-C/R, iSUN, TinyImageNet-C/R), md5-verified, as an OOD
    set."""
    if name not in ODIN_ARCHIVES:
        raise UnknownNameError("ODIN OOD set", name, ODIN_ARCHIVES)
    archive = ODIN_ARCHIVES[name]
    folder = Path(root).expanduser() / "odin"
    extracted = ensure_extracted(
        archive, folder, download, _odin_how_to_get(archive, folder), into=name
    )
    files = list_images(extracted)
    if not files:
        raise MissingDataError(
            archive.dataset,
            str(extracted),
            "The archive held no images; delete the folder and retry.",
        )
    chosen = [files[i] for i in sample_indices(len(files), n, seed, "ood.sets.<name>.n")]
    return ImageTensors.unlabeled(decode_files(chosen, shape, fit, num_threads))


def _read_imglist(path: Path) -> list[str]:
    if not path.is_file():
        raise MissingDataError(
            "OpenOOD image list",
            str(path),
            "The benchmark_imglist archive lacks this list; "
            "check the benchmark and name (e.g. benchmark=cifar10, name=tin).",
        )
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def openood_ood_set(
    *,
    shape: Sequence[int],
    name: str,
    benchmark: str = "cifar10",
    root: str = "data",
    n: int | None = None,
    seed: int = 0,
    fit: str = "resize_crop",
    download: bool = True,
    num_threads: int | None = None,
) -> ImageTensors:
    """An OOD set exactly as OpenOOD v1.5 lists it:
    ``benchmark_imglist/<benchmark>/test_<name>.txt`` over the images of
    ``images_classic/<name>`` (laid out as OpenOOD's download script does)."""
    if name not in OPENOOD_IMAGES:
        raise UnknownNameError("OpenOOD image set", name, OPENOOD_IMAGES)
    if benchmark not in ("cifar10", "cifar100"):
        raise ConfigError("ood.sets.<name>.benchmark", benchmark, "cifar10 or cifar100")
    base = Path(root).expanduser() / "openood"
    how = (
        "Run OpenOOD's scripts/download/download.py --contents datasets, put "
        f"benchmark_imglist.zip and images_classic/{name}.zip in {base}, or install gdown "
        "(pip install 'oodlab[openood]') to let oodlab fetch them."
    )
    paths = openood_list_files(
        base,
        f"{benchmark}/test_{name}.txt",
        OPENOOD_IMAGES[name],
        name,
        n=n,
        seed=seed,
        download=download,
        how=how,
        key="ood.sets.<name>.n",
    )
    return ImageTensors.unlabeled(decode_files(paths, shape, fit, num_threads))


def openood_list_files(
    base: Path,
    list_file: str,
    images_archive: Archive,
    name: str,
    *,
    n: int | None,
    seed: int,
    download: bool,
    how: str,
    key: str,
) -> list[str]:
    """The image files an OpenOOD list (``benchmark_imglist/<list_file>``) names, a fixed
    random ``n`` of them, with both archives extracted under ``base`` (fetched when missing):
    the OOD test sets and the outlier-exposure sets read their images this way."""
    lists = _inner(
        ensure_extracted(OPENOOD_IMGLIST, base, download, how, into="imglist"), "benchmark_imglist"
    )
    images = ensure_extracted(images_archive, base, download, how, into=f"images_{name}")
    entries = _read_imglist(lists / list_file)
    chosen = [entries[i] for i in sample_indices(len(entries), n, seed, key)]
    prefix = _entry_root(images, chosen[0], name, how) if chosen else images
    paths = []
    for entry in chosen:
        path = prefix / Path(entry).relative_to(Path(entry).parts[0])
        if not path.is_file():
            raise MissingDataError(
                f"OpenOOD {name}",
                str(path),
                f"The image list names it but the archive lacks it. {how}",
            )
        paths.append(str(path))
    return paths


def _inner(folder: Path, name: str) -> Path:
    """``folder/name`` if the archive wrapped its content in a folder of that name, else
    ``folder``."""
    return folder / name if (folder / name).is_dir() else folder


def _entry_root(images: Path, entry: str, name: str, how: str) -> Path:
    """The folder that stands for the first component of OpenOOD's list entries
    (``<name>/...``, relative to its images_classic/), whether or not the zip wrapped its
    content in a ``<name>/`` folder."""
    rest = Path(entry).relative_to(Path(entry).parts[0])
    for candidate in (images / Path(entry).parts[0], images):
        if (candidate / rest).is_file():
            return candidate
    raise MissingDataError(
        f"OpenOOD {name}",
        str(images / entry),
        f"The image list names it but the archive lacks it. {how}",
    )
