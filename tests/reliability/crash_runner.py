"""Run a script with test-only crash hooks, so a crash test can SIGKILL it at an exact moment.

    python3 tests/reliability/crash_runner.py train_ssd.py ARGS...      (env vars below)

Why: the interesting moments (half of a checkpoint written, the temp file complete but not
renamed yet, a folder moved into place but not marked done) last microseconds. A hook here
prints one ``CRASH-HOOK ...`` line to stderr and then sleeps, so the test that reads stderr kills
the process inside that window every time. Nothing in the project's own code knows about this;
the hooks wrap ``os.replace``, ``os.unlink``, ``open``/``os.fdopen`` writes and
``tempfile.mkstemp`` in the child process only.

Environment (regular expressions are matched against the file's base name):

- ``CRASH_HOOK_REPLACE=RE``   pause before ``os.replace(src, dst)`` when ``dst`` matches
- ``CRASH_HOOK_UNLINK=RE``    pause before ``os.unlink(path)`` when ``path`` matches
- ``CRASH_HOOK_WRITE=RE``     pause inside a write to a file whose name matches (the temp file of
  ``atomic_write`` is ``.NAME.xxxx.tmp``, so a final name matches it too), once
  ``CRASH_HOOK_WRITE_BYTES`` (default 1) bytes of it are written and flushed to the OS
- ``CRASH_HOOK_SKIP=N``       let the first N matching events pass (default 0)
- ``CRASH_HOOK_SLEEP=S``      how long a pause lasts (default 120 s: the test kills long before)
- ``CRASH_HOOK_FAIL=RE``      writing (or creating) a matching file fails with
  ``OSError(CRASH_HOOK_FAIL_ERRNO)`` (a name from ``errno``: ENOSPC, EACCES, EROFS; default
  ENOSPC) after ``CRASH_HOOK_FAIL_AFTER`` bytes (default 0 = at creation); every matching file
  after the first ``CRASH_HOOK_SKIP`` fails, like a disk that stays full
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import re
import runpy
import sys
import tempfile
import threading
import time

PREFIX = "CRASH-HOOK"
_lock = threading.Lock()
_seen = {"n": 0}


def _say(message: str) -> None:
    sys.stderr.write(f"{PREFIX} {message}\n")
    sys.stderr.flush()


def _match(rx: re.Pattern | None, path) -> bool:
    if rx is None:
        return False
    try:
        name = os.path.basename(os.fsdecode(os.fspath(path)))
    except TypeError:  # an int file descriptor
        return False
    return rx.search(name) is not None


def _event(kind: str, detail: str) -> None:
    """A matching event: pause unless it is one of the first CRASH_HOOK_SKIP."""
    with _lock:
        _seen["n"] += 1
        n = _seen["n"]
    if n <= int(os.environ.get("CRASH_HOOK_SKIP", "0")):
        return
    _say(f"{kind} {detail}")
    time.sleep(float(os.environ.get("CRASH_HOOK_SLEEP", "120")))


def _env_rx(name: str) -> re.Pattern | None:
    value = os.environ.get(name)
    return re.compile(value) if value else None


class _HookedFile:
    """A writable file object that pauses (or fails) once enough bytes went through it."""

    def __init__(self, f, path: str, pause_at: int | None, fail_at: int | None, fail_errno: int):
        self._f, self._path = f, path
        self._pause_at, self._fail_at, self._errno = pause_at, fail_at, fail_errno
        self._written = 0

    def write(self, data):
        if self._fail_at is not None and self._written + len(data) > self._fail_at:
            keep = max(0, self._fail_at - self._written)
            if keep:
                self._f.write(data[:keep])
                self._written += keep
            raise OSError(self._errno, os.strerror(self._errno), self._path)
        n = self._f.write(data)
        self._written += len(data)
        if self._pause_at is not None and self._written >= self._pause_at:
            self._pause_at = None
            self._f.flush()
            _event("write", f"{self._path} {self._written}")
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)


def install() -> None:
    replace_rx, unlink_rx = _env_rx("CRASH_HOOK_REPLACE"), _env_rx("CRASH_HOOK_UNLINK")
    write_rx, fail_rx = _env_rx("CRASH_HOOK_WRITE"), _env_rx("CRASH_HOOK_FAIL")
    pause_bytes = int(os.environ.get("CRASH_HOOK_WRITE_BYTES", "1"))
    fail_after = int(os.environ.get("CRASH_HOOK_FAIL_AFTER", "0"))
    fail_errno = getattr(errno, os.environ.get("CRASH_HOOK_FAIL_ERRNO", "ENOSPC"))
    fail_skip = {"n": int(os.environ.get("CRASH_HOOK_SKIP", "0"))} if fail_rx else {"n": 0}

    def should_fail(path) -> bool:
        if not _match(fail_rx, path):
            return False
        with _lock:
            fail_skip["n"] -= 1
            return fail_skip["n"] < 0

    if replace_rx is not None:
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if _match(replace_rx, dst):
                _event("replace", f"{os.fspath(src)} -> {os.fspath(dst)}")
            return real_replace(src, dst, *a, **k)
        os.replace = replace

    if unlink_rx is not None:
        real_unlink = os.unlink

        def unlink(path, *a, **k):
            if _match(unlink_rx, path):
                _event("unlink", os.fspath(path))
            return real_unlink(path, *a, **k)
        os.unlink = unlink
        os.remove = unlink

    if write_rx is None and fail_rx is None:
        return

    def wrap(f, path: str):
        pause = pause_bytes if _match(write_rx, path) else None
        fail = fail_after if fail_after > 0 and should_fail(path) else None
        return f if pause is None and fail is None else _HookedFile(f, path, pause, fail, fail_errno)

    def fail_at_creation(path) -> None:
        if fail_after == 0 and should_fail(path):
            raise OSError(fail_errno, os.strerror(fail_errno), os.fspath(path))

    real_open, real_fdopen, real_mkstemp = builtins.open, os.fdopen, tempfile.mkstemp

    def hooked_open(file, mode="r", *a, **k):
        writing = not isinstance(file, int) and any(c in mode for c in "wax+")
        if writing:
            fail_at_creation(file)
        f = real_open(file, mode, *a, **k)
        return wrap(f, os.fspath(file)) if writing else f

    def hooked_fdopen(fd, mode="r", *a, **k):
        f = real_fdopen(fd, mode, *a, **k)
        if not any(c in mode for c in "wax+"):
            return f
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return f
        return wrap(f, path)

    def hooked_mkstemp(suffix=None, prefix=None, dir=None, text=False):
        fd, path = real_mkstemp(suffix, prefix, dir, text)
        try:
            fail_at_creation(path)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        return fd, path

    builtins.open = io.open = hooked_open
    os.fdopen = hooked_fdopen
    tempfile.mkstemp = hooked_mkstemp


# ---------------------------------------------------------------------------- test side
# (importing this module installs nothing; these start and watch a hooked child process)

RUNNER = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(RUNNER)))


class Child:
    """A script started through this runner, its stderr collected line by line in a thread."""

    def __init__(self, script: str, args, hooks: dict[str, str] | None = None, env: dict | None = None):
        import subprocess
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {}), **(hooks or {})}
        self.proc = subprocess.Popen([sys.executable, RUNNER, os.path.join(REPO, script), *map(str, args)],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=full_env)
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s,), daemon=True)
                         for s in (self.proc.stderr, self.proc.stdout)]
        for t in self._readers:
            t.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    @property
    def text(self) -> str:
        with self._new:
            return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 120) -> str:
        """The first output line containing ``needle``; AssertionError if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._new:
            while True:
                for line in self.lines[seen:]:
                    if needle in line:
                        return line
                seen = len(self.lines)
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._readers):
                    raise AssertionError(f"process ended (exit {self.proc.returncode}) before {needle!r}:\n"
                                         + "".join(self.lines[-40:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {needle!r} within {timeout} s:\n" + "".join(self.lines[-40:]))
                self._new.wait(min(left, 0.5))

    def kill(self) -> int:
        """SIGKILL (no handler runs, nothing is flushed) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait(timeout=60)
        for t in self._readers:
            t.join(timeout=10)
        return rc

    def wait(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=10)
        return rc


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: crash_runner.py SCRIPT [ARGS...]")
    script = os.path.abspath(sys.argv[1])
    sys.argv = [script, *sys.argv[2:]]
    sys.path[0] = os.path.dirname(script)
    install()
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
