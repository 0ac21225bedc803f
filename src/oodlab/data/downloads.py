"""Getting datasets onto disk: torchvision's downloaders, the authors' archives, checksums.

Nothing here is called unless a dataset is missing. With no network, every failure becomes a
:class:`MissingDataError` that names the dataset, the folder it looked in and how to get the
data, never a urllib traceback.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from torchvision.datasets.utils import (
    download_file_from_google_drive,
    download_url,
    extract_archive,
)

from oodlab.errors import CorruptDataError, MissingDataError

log = logging.getLogger(__name__)
T = TypeVar("T")
EXTRACTED_MARKER = ".oodlab-extracted"


@dataclass(frozen=True)
class Archive:
    """One published archive. A checksum of None means none is published: the archive is then
    checked for structure (a readable tar/zip, and zip's per-member CRCs) instead."""

    dataset: str
    filename: str
    url: str | None = None
    gdrive_id: str | None = None
    md5: str | None = None
    sha256: str | None = None

    @property
    def source(self) -> str:
        return self.url or f"https://drive.google.com/file/d/{self.gdrive_id}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_archive(path: Path, archive: Archive) -> None:
    """Raise CorruptDataError unless ``path`` matches the published checksum (or, with none
    published, opens as a tar or zip whose members pass their own CRC checks)."""
    for algorithm, expected in (("sha256", archive.sha256), ("md5", archive.md5)):
        if expected:
            actual = _digest(path, algorithm)
            if actual != expected.lower():
                raise CorruptDataError(
                    f"Checksum mismatch for {archive.dataset} archive {path}: expected {algorithm} "
                    f"{expected}, got {actual}. Delete the file and download it again from "
                    f"{archive.source}."
                )
            return
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise CorruptDataError(
                    f"{archive.dataset} archive {path} is corrupt: member {bad} fails its CRC."
                )
        else:
            with tarfile.open(path) as tf:
                if not tf.getmembers():
                    raise CorruptDataError(f"{archive.dataset} archive {path} is empty.")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CorruptDataError(
            f"{archive.dataset} archive {path} is not a readable tar or zip file ({_reason(exc)}). "
            f"Delete it and download it again from {archive.source}."
        ) from exc


def fetch_archive(archive: Archive, root: Path, download: bool, how_to_get: str) -> Path:
    """The verified archive file under ``root``, downloading it if allowed and missing."""
    path = Path(root) / archive.filename
    if not path.is_file():
        if not download:
            raise MissingDataError(
                archive.dataset,
                str(path),
                f"{how_to_get} Or set download=true to fetch {archive.source}.",
            )
        try:
            if archive.gdrive_id:
                download_file_from_google_drive(archive.gdrive_id, str(root), archive.filename)
            else:
                download_url(str(archive.url), str(root), archive.filename)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise MissingDataError(
                archive.dataset,
                str(path),
                f"Downloading {archive.source} failed ({_reason(exc)}). {how_to_get}",
            ) from exc
    verify_archive(path, archive)
    return path


def extract_once(archive_path: Path, destination: Path) -> Path:
    """Extract into ``destination`` exactly once; concurrent sweep jobs never see half a tree."""
    destination = Path(destination)
    if (destination / EXTRACTED_MARKER).exists():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    try:
        log.info("extracting %s -> %s", archive_path, destination)
        extract_archive(str(archive_path), str(staging))
        (staging / EXTRACTED_MARKER).touch()
        if destination.exists():
            # another process finished first, or a stale partial copy: keep the complete one
            if (destination / EXTRACTED_MARKER).exists():
                return destination
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return destination


def ensure_extracted(
    archive: Archive, root: Path, download: bool, how_to_get: str, into: str | None = None
) -> Path:
    """Fetch, verify and extract ``archive``; returns the folder it was extracted into."""
    root = Path(root)
    destination = root / (into or Path(archive.filename).name.split(".")[0])
    if destination.resolve() == root.resolve():
        raise ValueError("an archive is extracted into its own sub-folder, never into root itself")
    if (destination / EXTRACTED_MARKER).exists():
        return destination
    return extract_once(fetch_archive(archive, root, download, how_to_get), destination)


def open_torchvision(
    dataset: str, root: Path, factory: Callable[[bool], T], download: bool, how_to_get: str
) -> T:
    """Build a torchvision dataset from local files, downloading only if they are missing.

    ``factory(download)`` constructs the dataset. torchvision reports missing files as a
    RuntimeError and a failed download as a urllib/OS error; both become MissingDataError.
    """
    try:
        return factory(False)
    except (RuntimeError, OSError) as exc:
        if not download:
            raise MissingDataError(
                dataset,
                str(root),
                f"{how_to_get} Or set download=true to let torchvision fetch it.",
            ) from exc
    log.info("downloading %s into %s", dataset, root)
    try:
        return factory(True)
    except Exception as exc:
        raise MissingDataError(
            dataset, str(root), f"Downloading it failed ({_reason(exc)}). {how_to_get}"
        ) from exc
