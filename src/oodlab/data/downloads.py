"""Getting datasets onto disk: torchvision's downloaders, the authors' archives, checksums.

Nothing here is called unless a dataset is missing. With no network, every failure becomes a
:class:`MissingDataError` that names the dataset, the folder it looked in and how to get the
data, never a urllib traceback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
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


# -- resumable downloads (large archives: OpenOOD's ImageNet OOD sets) ----------------------
GDRIVE_URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"


class DownloadRefused(OSError):
    """The server answered with a web page instead of the file (Google Drive's "quota
    exceeded" or virus-scan pages)."""


def download_resumable(
    url: str,
    path: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``path``, continuing ``<path>.part`` with an HTTP ``Range`` request
    where an earlier attempt stopped (a server that ignores the range sends the whole file
    again, and the part is restarted). The checksum, when given, is verified before the file
    takes its name; on a mismatch the partial file is deleted and CorruptDataError raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "oodlab"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not have:  # 416: the part is already the whole file
            raise
        response = None
    if response is not None:
        with response:
            status = getattr(response, "status", None)
            resumed = have and status == 206
            content_type = response.headers.get("Content-Type", "") or ""
            if content_type.startswith("text/html"):
                raise DownloadRefused(f"{url} answered with a web page, not the file")
            if have and not resumed:
                log.info("%s ignored the range request: downloading it again", url)
            elif resumed:
                log.info("resuming %s at byte %d", url, have)
            with part.open("ab" if resumed else "wb") as fh:
                shutil.copyfileobj(response, fh, chunk)
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = _digest(part, algorithm)
            if actual != expected.lower():
                part.unlink()
                raise CorruptDataError(
                    f"Checksum mismatch for {url} (saved as {path}): expected {algorithm} "
                    f"{expected}, got {actual}. The partial file was deleted; run again to "
                    "download it again."
                )
            break
    os.replace(part, path)
    return path


def download_gdrive(file_id: str, path: Path, *, md5: str | None = None) -> Path:
    """A Google Drive file, with gdown (``pip install 'oodlab[openood]'``, resumable) where
    installed, else through Drive's direct download URL (resumable by HTTP range)."""
    try:
        import gdown
    except ImportError:
        return download_resumable(GDRIVE_URL.format(id=file_id), path, md5=md5)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = gdown.download(id=file_id, output=str(path), quiet=False, resume=True)
    except TypeError:  # a gdown without resume
        result = gdown.download(id=file_id, output=str(path), quiet=False)
    if not result or not path.is_file():
        raise DownloadRefused(f"gdown could not download Google Drive file {file_id}")
    if md5 and _digest(path, "md5") != md5.lower():
        actual = _digest(path, "md5")
        path.unlink()
        raise CorruptDataError(
            f"Checksum mismatch for {path}: expected md5 {md5}, got {actual}; deleted it, run "
            "again to download it again."
        )
    return path


def fetch_file(archive: Archive, path: Path, download: bool, manual: str) -> Path:
    """``archive`` at exactly ``path``: used as it is when present (and verified), else
    downloaded, resumably, if allowed. ``manual`` says how to get it by hand; every failure is
    one MissingDataError that names the file, the URL and where the file goes."""
    path = Path(path)
    if not path.is_file():
        where = f"Download {archive.source} (in a browser if needed) to {path} and run again."
        if not download:
            raise MissingDataError(archive.dataset, str(path), f"{where} {manual}".strip())
        log.info("downloading %s -> %s", archive.source, path)
        try:
            if archive.gdrive_id:
                download_gdrive(archive.gdrive_id, path, md5=archive.md5)
            else:
                download_resumable(str(archive.url), path, md5=archive.md5, sha256=archive.sha256)
        except CorruptDataError:
            raise
        except Exception as exc:
            raise MissingDataError(
                archive.dataset,
                str(path),
                f"Downloading {archive.source} failed ({_reason(exc)}). {where} {manual}".strip(),
            ) from exc
    verify_archive(path, archive)
    return path
