"""Downloading big files robustly and unpacking zip archives safely.

Shared by ``coco_downloader.py`` and ``open_images_downloader.py``. Why it is more
than ``requests.get``: COCO's archives are tens of GB, so a dropped connection
must resume where it stopped (HTTP ``Range`` into ``NAME.part``), transient
server errors must be retried with backoff, the final name must only ever hold a
complete file, and an archive must never write outside its target folder
(zip-slip), create symlinks, or leave a half-extracted folder that looks done.

Library code: no CLI parsing; errors are ``Failure`` (exit 1) subclasses that
name the URL or file, so scripts can let them through ``run_main``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import requests
import urllib3
from tqdm import tqdm

from vision.utils.misc import Failure, UserError, atomic_write_json, remove_stale_temp_files

log = logging.getLogger(__name__)

# HTTP statuses worth retrying: the server or a proxy is overloaded or flaky.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_EXC = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                  urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError,
                  ConnectionError, TimeoutError)
_CHUNK = 1 << 20
MARKER_PREFIX = ".extracted-"
_TMP_PREFIX = ".extract-"


class DownloadError(Failure):
    """A download that failed for good (404, size mismatch, retries used up); names the URL."""

    def __init__(self, url: str, message: str, *, status: int | None = None, permanent: bool = True):
        super().__init__(message)
        self.url = url
        self.status = status
        self.permanent = permanent


class DownloadCancelled(Exception):
    """Raised inside a worker when the caller set the stop event (Ctrl-C)."""


class ArchiveError(Failure):
    """A corrupt or unsafe archive; the message names the file (and member)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``retries`` extra attempts after the first, waiting
    ``backoff * 2**(n-1)`` seconds (capped) before retry n; ``timeout`` per request."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2.0 ** min(max(0, attempt - 1), 64))  # no float overflow


class _Transient(Exception):
    """Internal: a failure worth retrying (5xx, short body)."""


# --------------------------------------------------------------------------- URLs


def check_url(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL, else raise ``UserError``."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"not an http(s) URL: {url!r} (expected e.g. http://host/path/)")
    return str(url)


def url_join(base: str, rel: str) -> str:
    """``base`` + ``rel`` with exactly one slash between them (``urljoin`` would drop
    the last path segment of a base without a trailing slash)."""
    return base.rstrip("/") + "/" + rel.lstrip("/")


# --------------------------------------------------------------------------- disk space


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def format_bytes(n: float) -> str:
    """Human-readable size: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def ensure_free_space(path: str | os.PathLike, needed: int, what: str) -> None:
    """Raise ``Failure`` with the numbers when ``needed`` bytes would not fit at ``path``."""
    free = free_bytes(path)
    if needed > free:
        raise Failure(f"not enough free disk space in {path} for {what}: need {format_bytes(needed)}, "
                      f"{format_bytes(free)} free ({format_bytes(needed - free)} short)")


# --------------------------------------------------------------------------- HTTP


def _content_range_total(value: str | None) -> int | None:
    """Total size from a ``Content-Range`` header (``bytes 0-9/100`` or ``bytes */100``)."""
    m = re.match(r"\s*bytes\s+(?:\d+-\d+|\*)/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def _raw_length(r: requests.Response) -> int | None:
    """Content-Length if it describes the bytes we will write (no content encoding)."""
    enc = r.headers.get("Content-Encoding", "identity").strip().lower()
    if enc not in ("", "identity"):
        return None
    try:
        n = int(r.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
    return n if n >= 0 else None


def _status_error(url: str, r: requests.Response) -> Exception:
    if r.status_code in TRANSIENT_STATUS or r.status_code >= 500:
        return _Transient(f"HTTP {r.status_code} {r.reason}")
    return DownloadError(url, f"HTTP {r.status_code} {r.reason or ''}".rstrip() + f" for {url}",
                         status=r.status_code, permanent=True)


def _sleep(seconds: float, stop: threading.Event | None) -> None:
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise DownloadCancelled()


def _retrying(url: str, retry: RetryPolicy, stop: threading.Event | None, attempt: int, err: BaseException,
              part: Path | None = None) -> int:
    """Count one failed attempt; sleep before the next or raise when retries are used up."""
    attempt += 1
    if attempt > retry.retries:
        kept = f"; the partial file {part} is kept, run again to resume" if part is not None and part.exists() else ""
        raise DownloadError(url, f"giving up on {url} after {attempt} attempts: {err}{kept}",
                            permanent=False) from None
    delay = retry.delay(attempt)
    log.warning("%s: %s; retry %d/%d in %.2g s", url, err, attempt, retry.retries, delay)
    _sleep(delay, stop)
    return attempt


def remote_size(url: str, *, session: requests.Session | None = None, retry: RetryPolicy = RetryPolicy(),
                stop: threading.Event | None = None) -> int | None:
    """Size in bytes of ``url`` from a HEAD request (None when the server does not say).

    A 404 (or other 4xx) raises ``DownloadError``; transient errors are retried.
    """
    http = session or requests
    attempt = 0
    while True:
        try:
            r = http.head(url, allow_redirects=True, timeout=retry.timeout,
                          headers={"Accept-Encoding": "identity"})
            if r.status_code in (405, 501):  # HEAD not supported: size unknown, GET will tell
                return None
            if r.status_code >= 400:
                raise _status_error(url, r)
            return _raw_length(r)
        except (_Transient, *_TRANSIENT_EXC) as e:
            attempt = _retrying(url, retry, stop, attempt, e)


def _body_chunks(r: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """The response body as it arrives. ``read1`` (urllib3 >= 2) hands over every byte
    received before a dropped connection, so the ``.part`` resumes exactly there;
    ``iter_content`` would lose the last incomplete chunk."""
    read1 = getattr(r.raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        yield from r.iter_content(chunk_size)
        return
    while True:
        chunk = read1(chunk_size, decode_content=True)
        if not chunk:
            return
        yield chunk


def part_path(dest: str | os.PathLike) -> Path:
    """Where the incomplete download of ``dest`` lives until it is complete."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download_file(url: str, dest: str | os.PathLike, *, session: requests.Session | None = None,
                  retry: RetryPolicy = RetryPolicy(), expected_size: int | None = None,
                  progress: bool | None = True, desc: str | None = None, position: int | None = None,
                  stop: threading.Event | None = None, chunk_size: int = _CHUNK) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part``.

    The ``.part`` file is renamed to ``dest`` only when its size equals the size the
    server announced (``Content-Length`` / ``Content-Range``) and ``expected_size``
    if given. Connection errors, short bodies and 5xx/429 are retried per ``retry``
    (each retry resumes with a ``Range`` request); a 4xx or a size mismatch raises
    ``DownloadError`` naming the URL. ``progress``: True = a tqdm byte bar, None =
    only when stderr is a terminal, False = none. ``stop`` (an Event) cancels.
    Returns ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    http = session or requests
    total = expected_size
    attempt = 0
    bar: tqdm | None = None
    try:
        while True:
            if stop is not None and stop.is_set():
                raise DownloadCancelled()
            have = part.stat().st_size if part.exists() else 0
            if total is not None and have == total and have > 0:
                break  # complete .part from an earlier run that stopped before the rename
            if total is not None and have > total:
                log.warning("%s is larger than %s (%d > %d bytes); starting over", part, url, have, total)
                part.unlink()
                have = 0
            headers = {"Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
                log.info("resuming %s at %s", dest.name, format_bytes(have))
            try:
                with http.get(url, headers=headers, stream=True, timeout=retry.timeout) as r:
                    if r.status_code == 416 and have:
                        full = _content_range_total(r.headers.get("Content-Range"))
                        if full is not None and full == have and (total is None or total == full):
                            total = full
                            break
                        log.warning("%s: server refused to resume at byte %d; starting over", url, have)
                        part.unlink()
                        raise _Transient("range not satisfiable")
                    if r.status_code >= 400:
                        raise _status_error(url, r)
                    length = _raw_length(r)
                    if r.status_code == 206 and have:
                        start = _content_range_start(r.headers.get("Content-Range"))
                        if start != have:
                            part.unlink()
                            raise _Transient(f"server resumed at byte {start}, asked for {have}")
                        full = _content_range_total(r.headers.get("Content-Range"))
                        mode = "ab"
                    else:
                        if have:
                            log.info("%s: server ignored the Range request; downloading from the start", url)
                        have = 0
                        full = length
                        mode = "wb"
                    if full is not None:
                        if total is not None and full != total:
                            with contextlib.suppress(OSError):
                                part.unlink()
                            raise DownloadError(url, f"size mismatch for {url}: expected {total} bytes, server "
                                                     f"says {full}; the partial file was deleted")
                        total = full
                    if bar is None:
                        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                   desc=desc or dest.name, position=position, leave=True, dynamic_ncols=True,
                                   disable=None if progress is None else not progress)
                    else:
                        bar.reset(total=total)
                        bar.update(have)
                    with open(part, mode) as f:
                        for chunk in _body_chunks(r, chunk_size):
                            if stop is not None and stop.is_set():
                                raise DownloadCancelled()
                            f.write(chunk)
                            bar.update(len(chunk))
                size = part.stat().st_size
                if total is None or size == total:
                    if total is None:
                        total = size  # length unknown: the server closing cleanly is all we have
                    break
                if size < total:
                    raise _Transient(f"connection closed after {size} of {total} bytes")
                part.unlink()
                raise DownloadError(url, f"size mismatch for {url}: got {size} bytes, expected {total}; "
                                         "the partial file was deleted")
            except (_Transient, *_TRANSIENT_EXC) as e:
                attempt = _retrying(url, retry, stop, attempt, e, part)
    finally:
        if bar is not None:
            bar.close()
    if expected_size is not None and total != expected_size:  # pragma: no cover - guarded above
        raise DownloadError(url, f"size mismatch for {url}: got {total} bytes, expected {expected_size}")
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- zip archives


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is unsafe to extract, or None."""
    name = info.filename
    if "\x00" in name:
        return "NUL byte in its name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "absolute path"
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "path escapes the target folder"
    if not parts:
        return "empty name"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver stored no file type
    if kind == stat.S_IFLNK:
        return "symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special file (device, fifo or socket)"
    return None


def check_zip_members(zf: zipfile.ZipFile, zip_path: str | os.PathLike) -> list[zipfile.ZipInfo]:
    """Return the members, or raise ``ArchiveError`` naming the first unsafe one.

    Unsafe = absolute path, ``..`` escaping the target folder, symlink or special file.
    The whole archive is refused: nothing is extracted.
    """
    members = zf.infolist()
    for info in members:
        why = _member_problem(info)
        if why:
            raise ArchiveError(f"refusing to extract {zip_path}: member {info.filename!r} is unsafe ({why})")
    return members


def extraction_marker(target_dir: str | os.PathLike, zip_name: str) -> Path:
    """The file whose presence says ``zip_name`` was fully extracted into ``target_dir``."""
    return Path(target_dir) / f"{MARKER_PREFIX}{zip_name}"


def is_extracted(target_dir: str | os.PathLike, zip_name: str) -> bool:
    return extraction_marker(target_dir, zip_name).is_file()


def _move_merge(src: Path, dst: Path) -> None:
    """Move the contents of folder ``src`` into ``dst``, merging folders that exist
    (COCO's two annotation zips both contain ``annotations/``) and replacing files."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if target.is_dir() and not target.is_symlink():
                _move_merge(entry, target)
                continue
            if target.exists() or target.is_symlink():
                raise ArchiveError(f"cannot extract folder {entry.name!r} into {dst}: a file with that name exists")
            os.replace(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                raise ArchiveError(f"cannot extract file {entry.name!r} into {dst}: a folder with that name exists")
            os.replace(entry, target)


def _remove_stale_temp(target: Path, zip_name: str) -> None:
    for stale in target.glob(f"{_TMP_PREFIX}{zip_name}-*"):
        log.info("removing %s left by an interrupted extraction", stale)
        shutil.rmtree(stale, ignore_errors=True)


def extract_zip(zip_path: str | os.PathLike, target_dir: str | os.PathLike, *,
                progress: bool | None = True, check_space: bool = True) -> int:
    """Safely extract ``zip_path`` into ``target_dir`` and mark it done; return the member count.

    Every member is checked first (see ``check_zip_members``); the archive is
    extracted into a temporary folder inside ``target_dir`` and only then moved into
    place, and the marker (``.extracted-<zip name>``) is written last, so an
    interrupted run is redone next time rather than trusted. A corrupt archive
    raises ``ArchiveError`` naming the file.
    """
    zip_path = Path(zip_path)
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp(target, zip_path.name)
    remove_stale_temp_files(extraction_marker(target, zip_path.name))
    try:
        zf = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise ArchiveError(f"archive not found: {zip_path}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ArchiveError(f"{zip_path} is not a valid zip archive (corrupt or incomplete download: {e}); "
                           "delete it and download it again") from None
    with zf:
        members = check_zip_members(zf, zip_path)
        if check_space:
            ensure_free_space(target, sum(m.file_size for m in members), f"extracting {zip_path.name}")
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{zip_path.name}-", dir=target))
        current = ""
        try:
            with tqdm(total=sum(m.file_size for m in members), unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"unzip {zip_path.name}", dynamic_ncols=True,
                      disable=None if progress is None else not progress) as bar:
                for info in members:
                    current = info.filename
                    rel = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
                    out = tmp.joinpath(*rel)
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                    bar.update(info.file_size)
            _move_merge(tmp, target)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            raise ArchiveError(f"{zip_path} is corrupt (member {current!r}: {e}); "
                               "delete it and download it again") from None
        except OSError as e:  # disk full, folder not writable: the archive itself is fine
            raise _extract_failure(zip_path, target, e) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        atomic_write_json(extraction_marker(target, zip_path.name),
                          {"archive": zip_path.name, "members": len(members),
                           "bytes": sum(m.file_size for m in members), "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    except OSError as e:
        raise _extract_failure(zip_path, target, e) from None
    return len(members)


def _extract_failure(zip_path: Path, target: Path, e: OSError) -> Failure:
    where = f" ({e.filename})" if e.filename else ""
    return Failure(f"cannot extract {zip_path} into {target}: {e.strerror or e}{where}; it is not marked "
                   "extracted and the zip is kept: fix that and run again")

