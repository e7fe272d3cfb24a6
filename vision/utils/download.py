"""Downloading big files robustly and unpacking zip archives safely.

Shared by ``coco_downloader.py`` and ``open_images_downloader.py``. Why it is more
than ``requests.get``: COCO's archives are tens of GB, so a dropped connection
must resume where it stopped (HTTP ``Range`` into ``NAME.part``), transient
server errors must be retried with backoff, the final name must only ever hold a
complete file (length checked, or the content when the length is unknown; never
an HTML page), a stalled or trickling connection must fail and a Ctrl-C must end
it at once, two runs must not share a folder, and an archive must never write
outside its target folder (zip-slip), create symlinks, forge the tools' state
files, or leave a half-extracted folder that looks done.

Library code: no CLI parsing; errors are ``Failure`` (exit 1) subclasses that
name the URL or file, so scripts can let them through ``run_main``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import filecmp
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
from tqdm import tqdm

from vision.utils.file_set import JOURNAL_SUFFIX, PENDING_SUFFIX
from vision.utils.misc import Failure, UserError, atomic_write_json, remove_stale_temp_files

log = logging.getLogger(__name__)

# HTTP statuses worth retrying: the server or a proxy is overloaded or flaky.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_EXC = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                  urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError,
                  ConnectionError, TimeoutError)
_CHUNK = 1 << 20
T = TypeVar("T")
MARKER_PREFIX = ".extracted-"
_TMP_PREFIX = ".extract-"
# Names the tools keep their state under, at the top of a dataset folder (markers, temp folders,
# the lock, setup_coco's ".validated-SPLIT"). No archive member may create or overwrite one.
TOOL_STATE_PREFIXES = (MARKER_PREFIX, _TMP_PREFIX, ".validated-", ".download.lock")


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
    """A corrupt or unsafe archive; the message names the file (and member). ``corrupt``:
    the file itself is damaged (a download gone wrong), not refused for its content."""

    def __init__(self, message: str, *, corrupt: bool = False):
        super().__init__(message)
        self.corrupt = corrupt


DEFAULT_MIN_RATE = 1024.0  # bytes/s: far below any real mirror, far above a stuck trickle


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``retries`` extra attempts after the first, waiting
    ``backoff * 2**(n-1)`` seconds (capped) before retry n; ``timeout`` seconds without
    data fail a connection, and so does less than ``min_rate`` bytes/s over ``timeout`` s."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0
    min_rate: float = DEFAULT_MIN_RATE  # bytes/s averaged over ``timeout`` seconds; 0 = no rule

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
    """Count one failed attempt; sleep before the next or raise when retries are used up.
    After a stop (Ctrl-C) there is no next attempt: the failure was the stop closing it."""
    if stop is not None and stop.is_set():
        raise DownloadCancelled()
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


def move_aside(path: str | os.PathLike, why: str) -> Path:
    """Rename a bad file that sits under a final name to ``NAME.bad`` (replacing an older one)
    and say so, so the next run fetches it again instead of failing on it forever."""
    path = Path(path)
    bad = path.with_name(path.name + ".bad")
    os.replace(path, bad)
    log.warning("%s: %s; moved it to %s, it will be downloaded again", path, why, bad.name)
    return bad


Verifier = Callable[[Path], "str | None"]


@dataclass
class _Transfer:
    """The state of one ``download_file`` call, shared by its steps."""

    url: str
    dest: Path
    part: Path
    retry: RetryPolicy
    stop: threading.Event | None
    total: int | None             # bytes the complete file has, once known
    verify: Verifier | None
    allow_html: bool
    bar: tqdm | None = None

    def cancelled(self) -> bool:
        return self.stop is not None and self.stop.is_set()


def _partial_size(t: _Transfer) -> int:
    """Bytes already in ``.part``; a ``.part`` larger than the file is dropped."""
    have = t.part.stat().st_size if t.part.exists() else 0
    if t.total is not None and have > t.total:
        log.warning("%s is larger than %s (%d > %d bytes); starting over", t.part, t.url, have, t.total)
        t.part.unlink()
        have = 0
    return have


def _request_headers(t: _Transfer, have: int) -> dict[str, str]:
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        log.info("resuming %s at %s", t.dest.name, format_bytes(have))
    return headers


def _accept_response(t: _Transfer, r: requests.Response, have: int) -> tuple[str, int] | None:
    """Check the answer; return (file mode, bytes kept) for the body, or None when a 416 says
    the ``.part`` is already complete. Raises ``_Transient`` / ``DownloadError``."""
    if r.status_code == 416 and have:
        full = _content_range_total(r.headers.get("Content-Range"))
        if full is not None and full == have and (t.total is None or t.total == full):
            t.total = full
            return None
        log.warning("%s: server refused to resume at byte %d; starting over", t.url, have)
        t.part.unlink()
        raise _Transient("range not satisfiable")
    if r.status_code >= 400:
        raise _status_error(t.url, r)
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype == "text/html" and not t.allow_html:
        raise DownloadError(t.url, f"{t.url} answered HTTP {r.status_code} with an HTML page, not the file (an "
                                   "error or login page, or a wrong mirror); nothing kept", status=None)
    if r.status_code == 206 and have:
        start = _content_range_start(r.headers.get("Content-Range"))
        if start != have:
            t.part.unlink()
            raise _Transient(f"server resumed at byte {start}, asked for {have}")
        full = _content_range_total(r.headers.get("Content-Range"))
        mode = "ab"
    else:
        if have:
            log.info("%s: server ignored the Range request; downloading from the start", t.url)
        have = 0
        full = _raw_length(r)
        mode = "wb"
    if full is not None:
        if t.total is not None and full != t.total:
            with contextlib.suppress(OSError):
                t.part.unlink()
            raise DownloadError(t.url, f"size mismatch for {t.url}: expected {t.total} bytes, server "
                                       f"says {full}; the partial file was deleted")
        t.total = full
    return mode, have


# Every socket a download thread opens is remembered (per thread), so a stop can shut it down
# from another thread: that wakes a recv blocked on a stalled server at once, whether it waits
# for the response headers or for the body. Sessions must come from ``new_session``.
_thread_sockets = threading.local()


def _sockets_of_this_thread() -> list:
    if not hasattr(_thread_sockets, "socks"):
        _thread_sockets.socks = []
    return _thread_sockets.socks


def _remember(sock) -> None:
    socks = _sockets_of_this_thread()
    socks[:] = [s for s in socks if s.fileno() != -1]  # forget closed ones
    socks.append(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _remember(self.sock)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _remember(self.sock)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _StoppableAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def new_session() -> requests.Session:
    """A ``requests.Session`` whose connections a ``stop`` can cut (see ``download_file``)."""
    session = requests.Session()
    adapter = _StoppableAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@contextlib.contextmanager
def _unblocked_by_stop(stop: threading.Event | None) -> Iterator[None]:
    """While this thread talks to the server, a watcher shuts its sockets down within 0.1 s of
    ``stop`` being set, so a stalled server cannot hold a Ctrl-C for the whole --timeout."""
    if stop is None:
        yield
        return
    socks = _sockets_of_this_thread()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if stop.is_set():
                for sock in list(socks):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    watcher = threading.Thread(target=watch, name="download-stop-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _stream_body(t: _Transfer, r: requests.Response, mode: str, chunk_size: int) -> None:
    """Append the body to ``.part``; fail a connection slower than ``retry.min_rate`` bytes/s
    over a ``retry.timeout`` window (a trickle never trips the idle timeout)."""
    window = max(t.retry.timeout, 0.001)
    w_start, w_bytes = time.monotonic(), 0
    with open(t.part, mode) as f:
        for chunk in _body_chunks(r, chunk_size):
            if t.cancelled():
                raise DownloadCancelled()
            f.write(chunk)
            if t.bar is not None:
                t.bar.update(len(chunk))
            w_bytes += len(chunk)
            now = time.monotonic()
            if now - w_start >= window:
                rate = w_bytes / (now - w_start)
                if rate < t.retry.min_rate:
                    raise _Transient(f"too slow: {rate:.0f} B/s over the last {now - w_start:.1f} s, less than "
                                     f"the minimum rate of {t.retry.min_rate:.0f} B/s")
                w_start, w_bytes = now, 0
    if t.cancelled():
        raise DownloadCancelled()


def _complete(t: _Transfer) -> bool:
    """After the body: True when ``.part`` holds the whole file (size, then ``verify``).
    A file of unknown length counts only when ``verify`` vouches for it."""
    size = t.part.stat().st_size
    if t.total is not None and size < t.total:
        raise _Transient(f"connection closed after {size} of {t.total} bytes")
    if t.total is not None and size > t.total:
        t.part.unlink()
        raise DownloadError(t.url, f"size mismatch for {t.url}: got {size} bytes, expected {t.total}; "
                                   "the partial file was deleted")
    if t.verify is None:
        if t.total is None:
            t.part.unlink()
            raise DownloadError(t.url, f"{t.url}: the server did not say how long the file is and nothing can "
                                       "check its content; not kept", permanent=False)
        return True
    problem = t.verify(t.part)
    if problem is None:
        t.total = size
        return True
    t.part.unlink()
    if t.total is None:  # most likely cut short: a clean close is all the server told us
        raise _Transient(f"incomplete or damaged ({problem}; the server gave no length to check)")
    raise DownloadError(t.url, f"{t.url}: the downloaded file is damaged ({problem}) although its size is what "
                               "the server announced; not kept", permanent=False)


def _new_bar(t: _Transfer, have: int, progress: bool | None, desc: str | None, position: int | None) -> None:
    if t.bar is None:
        t.bar = tqdm(total=t.total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=desc or t.dest.name, position=position, leave=True, dynamic_ncols=True,
                     disable=None if progress is None else not progress)
    else:
        t.bar.reset(total=t.total)
        t.bar.update(have)


def download_file(url: str, dest: str | os.PathLike, *, session: requests.Session | None = None,
                  retry: RetryPolicy = RetryPolicy(), expected_size: int | None = None,
                  progress: bool | None = True, desc: str | None = None, position: int | None = None,
                  stop: threading.Event | None = None, chunk_size: int = _CHUNK,
                  verify: Verifier | None = None, allow_html: bool = False) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part``.

    The ``.part`` file is renamed to ``dest`` only when it is known complete: its size
    equals the size the server announced (``Content-Length`` / ``Content-Range``) and
    ``expected_size`` if given, and ``verify(part)`` (returns a problem or None)
    passes. Without a length from the server only ``verify`` can vouch for the file;
    without ``verify`` such a download is refused. An HTML answer is refused unless
    ``allow_html``. Connection errors, short bodies, a rate below ``retry.min_rate``
    and 5xx/429 are retried per ``retry`` (resuming with ``Range``); a 4xx or a size
    mismatch raises ``DownloadError`` naming the URL. ``progress``: True = a tqdm
    byte bar, None = only when stderr is a terminal, False = none. ``stop`` (an
    Event) cancels within about 0.1 s, even while a stalled server holds back the
    headers or the body (a ``session`` must then come from ``new_session``). Returns ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    t = _Transfer(url, dest, part_path(dest), retry, stop, expected_size, verify, allow_html)
    own_session = session is None
    http = new_session() if own_session else session
    attempt = 0
    try:
        while True:
            if t.cancelled():
                raise DownloadCancelled()
            have = _partial_size(t)
            if t.total is not None and have == t.total and have > 0 and _complete(t):
                break  # complete .part from an earlier run that stopped before the rename
            try:
                with _unblocked_by_stop(stop), \
                        http.get(url, headers=_request_headers(t, have), stream=True, timeout=retry.timeout) as r:
                    accepted = _accept_response(t, r, have)
                    if accepted is None:
                        if _complete(t):
                            break
                        continue
                    mode, have = accepted
                    _new_bar(t, have, progress, desc, position)
                    _stream_body(t, r, mode, chunk_size)
                if _complete(t):
                    break
            except (_Transient, *_TRANSIENT_EXC) as e:
                attempt = _retrying(url, retry, stop, attempt, e, t.part)
    finally:
        if t.bar is not None:
            t.bar.close()
        if own_session:
            http.close()
    os.replace(t.part, dest)
    return dest


def run_parallel(tasks: Sequence[T], work: Callable[[T, threading.Event], object], workers: int,
                 on_done: Callable[[T, BaseException | None], None], grace: float = 2.0) -> None:
    """Run ``work(task, stop)`` for every task in ``workers`` threads; ``on_done(task, error)``
    in the calling thread as each ends.

    Ctrl-C sets ``stop`` (downloads end within about a second, partial files kept) and
    waits up to ``grace`` seconds for the threads; a second Ctrl-C, or threads still stuck
    after that, end the process at once (exit 130) -- a Ctrl-C is never ignored.
    """
    stop = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks) or 1)))
    futures = {pool.submit(work, task, stop): task for task in tasks}
    try:
        for fut in concurrent.futures.as_completed(futures):
            on_done(futures[fut], fut.exception())
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        log.warning("interrupted: stopping the downloads; partial files are kept as .part and resume next time")
        try:
            _, pending = concurrent.futures.wait(futures, timeout=grace)
        except KeyboardInterrupt:
            pending = {None}
        if pending:
            log.error("interrupted; quitting without waiting for %s",
                      "the downloads" if None in pending else f"{len(pending)} stuck download(s)")
            logging.shutdown()
            os._exit(130)
        raise
    finally:
        pool.shutdown(wait=True)


# --------------------------------------------------------------------------- one run per folder

LOCK_NAME = ".download.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``fcntl.flock`` on ``FOLDER/.download.lock``):
    two downloaders writing the same ``.part`` files would destroy each other's work. The
    kernel drops the lock when the process dies, so a killed run never blocks the next."""
    path = Path(folder) / LOCK_NAME
    try:
        f = open(path, "a+")
    except OSError as e:
        raise Failure(f"cannot create the lock file {path}: {e.strerror or e}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip()
            raise Failure(f"another download is running in {folder}" + (f" (process {pid})" if pid else "")
                          + "; wait for it to finish, or stop it, then run again") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
    if parts[0].startswith(TOOL_STATE_PREFIXES):
        return "it would create or overwrite this project's own state file (a marker or lock)"
    if any(p.startswith(".") and p.endswith((PENDING_SUFFIX, JOURNAL_SUFFIX)) for p in parts):
        return ("it would create a pending file or commit journal of this project's tools (the next "
                "fix_coco_annotations.py run would act on it)")
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


def is_extracted(target_dir: str | os.PathLike, zip_name: str, expect: Sequence[str] = ()) -> bool:
    """True when ``zip_name`` was extracted into ``target_dir`` and what it vouches for is still
    there: the top-level entries the marker records and the caller's ``expect`` paths. A marker
    whose folder was deleted does not count (and is removed, so the archive is fetched again)."""
    marker = extraction_marker(target_dir, zip_name)
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("top_level", [])
        if not isinstance(recorded, list):
            recorded = []
    except (ValueError, OSError, AttributeError):
        recorded = []
    gone = [p for p in [*expect, *[str(r) for r in recorded]] if not (Path(target_dir) / p).exists()]
    if gone:
        log.warning("%s was marked extracted, but %s is gone; it will be extracted again", zip_name,
                    Path(target_dir) / gone[0])
        with contextlib.suppress(OSError):
            marker.unlink()
        return False
    return True


def zip_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a readable zip (its central directory, at the very end, is missing
    or broken -- a cut download), or None. Cheap: reads the directory, not the data."""
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        return f"not a valid zip archive: {e}"
    return None


KEPT_SUFFIX = ".before-extract"


def _move_merge(src: Path, dst: Path) -> list[Path]:
    """Move the contents of folder ``src`` into ``dst``, merging folders that exist
    (COCO's two annotation zips both contain ``annotations/``) and replacing files. A file
    there with other content (an annotation file fixed or edited since the last extraction)
    is first kept as ``NAME.before-extract``; returns those kept copies."""
    kept: list[Path] = []
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if target.is_dir() and not target.is_symlink():
                kept += _move_merge(entry, target)
                continue
            if target.exists() or target.is_symlink():
                raise ArchiveError(f"cannot extract folder {entry.name!r} into {dst}: a file with that name exists")
            os.replace(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                raise ArchiveError(f"cannot extract file {entry.name!r} into {dst}: a folder with that name exists")
            if target.is_file() and not target.is_symlink() and not filecmp.cmp(entry, target, shallow=False):
                copy, i = target.with_name(target.name + KEPT_SUFFIX), 0
                while copy.exists() or copy.is_symlink():  # never over an older kept copy
                    i += 1
                    copy = target.with_name(f"{target.name}{KEPT_SUFFIX}.{i}")
                os.replace(target, copy)
                kept.append(copy)
            os.replace(entry, target)
    return kept


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
        raise ArchiveError(f"{zip_path} is not a valid zip archive (corrupt or incomplete download: {e})",
                           corrupt=True) from None
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
            kept = _move_merge(tmp, target)
            if kept:
                log.warning("%s: %d file(s) there held other content and were replaced; the old versions are "
                            "kept as NAME%s (first: %s)", zip_path.name, len(kept), KEPT_SUFFIX, kept[0])
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            raise ArchiveError(f"{zip_path} is corrupt (member {current!r}: {e})", corrupt=True) from None
        except OSError as e:  # disk full, folder not writable: the archive itself is fine
            raise _extract_failure(zip_path, target, e) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        atomic_write_json(extraction_marker(target, zip_path.name),
                          {"archive": zip_path.name, "members": len(members),
                           "top_level": sorted(_top_level(members)),
                           "bytes": sum(m.file_size for m in members), "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    except OSError as e:
        raise _extract_failure(zip_path, target, e) from None
    return len(members)


def _top_level(members: list[zipfile.ZipInfo]) -> set[str]:
    """The first path component of every member: what the extraction marker vouches for."""
    out = set()
    for info in members:
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if parts:
            out.add(parts[0])
    return out


def _extract_failure(zip_path: Path, target: Path, e: OSError) -> Failure:
    where = f" ({e.filename})" if e.filename else ""
    return Failure(f"cannot extract {zip_path} into {target}: {e.strerror or e}{where}; it is not marked "
                   "extracted and the zip is kept: fix that and run again")

