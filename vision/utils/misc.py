"""Small helpers every script shares: errors that mean "bad input", logging,
atomic file writes, argparse number types, and the script entry wrapper.

Exit codes used by every script: 0 ok, 1 failure (the work ran and found a
problem, or an unexpected error), 2 bad usage or bad input (``UserError``).
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = logging.getLogger(__name__)


class UserError(Exception):
    """Bad input from the user (file, flag, dataset): printed as one line, exit 2."""


class Failure(Exception):
    """The work ran but failed (a check did not pass): printed as one line, exit 1."""


def str2bool(s: str) -> bool:
    """argparse type accepting the usual spellings of true/false (upstream compatible)."""
    v = str(s).strip().lower()
    if v in ("yes", "true", "t", "y", "1"):
        return True
    if v in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


def _number(kind: Callable[[str], Any], lo: float | None, hi: float | None, lo_open: bool, hi_open: bool = False):
    def parse(s: str):
        try:
            v = kind(s)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {s!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo}, got {s}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi}, got {s}")
        return v

    parse.__name__ = kind.__name__
    return parse


def positive_int(s: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(int, 1, None, False)(s)


def non_negative_int(s: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(int, 0, None, False)(s)


def positive_float(s: str) -> float:
    """argparse type: a finite float > 0."""
    return _number(float, 0.0, None, True)(s)


def non_negative_float(s: str) -> float:
    """argparse type: a finite float >= 0."""
    return _number(float, 0.0, None, False)(s)


def unit_float(s: str) -> float:
    """argparse type: a finite float in [0, 1]."""
    return _number(float, 0.0, 1.0, False)(s)


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type factory: an integer in [lo, hi]."""
    return _number(int, lo, hi, False)


def float_range(lo: float, hi: float, lo_open: bool = True, hi_open: bool = False) -> Callable[[str], float]:
    """argparse type factory: a finite float in (lo, hi] (``lo_open=False``: [lo, ...;
    ``hi_open=True``: ..., hi))."""
    return _number(float, lo, hi, lo_open, hi_open)


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every script: bad usage is one line, ``PROG: error: WHAT (see --help)``, exit 2.

    argparse prints its whole usage block (29 lines for train_ssd.py) before the error; in a log
    that hides the one line that matters. ``--help`` still shows the usage.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after each option's help, except where it says nothing: a default of None
    (the help says what happens) and on-off switches (``(default: True)`` after ``--no-thing``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return action.help or ""
        return super()._get_help_string(action)


def add_log_level_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", "--log_level", default="info",
                        type=str.lower,
                        choices=["debug", "info", "warning", "error", "critical"],
                        help="logging verbosity (default: %(default)s)")


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, not the stream it was made
    with: code that swaps stderr (a notebook, a test's capture, a wrapper) never logs into a closed file."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=[_CurrentStderrHandler()],
        force=True,
    )


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``main`` and turn the known error kinds into one line + exit code.

    ``UserError`` -> exit 2, ``Failure`` -> exit 1, Ctrl-C -> 130. Anything else is a
    bug: it is logged with its traceback (so it can be reported) and exits 1.
    """
    try:
        rc = main(argv)
        return EXIT_OK if rc is None else int(rc)
    except UserError as e:
        logging.getLogger("pytorch-ssd").error("%s", e)
        return EXIT_USAGE
    except Failure as e:
        logging.getLogger("pytorch-ssd").error("%s", e)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        logging.getLogger("pytorch-ssd").error("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        if e.filename is None:  # not about a path: a bug or the system, keep its traceback
            raise
        # a path the scripts' own checks did not foresee (disk full, removed mid-run, read-only mount):
        # one line naming it rather than a traceback
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        logging.getLogger("pytorch-ssd").error("%s: %s", where, e.strerror or type(e).__name__)
        return EXIT_FAILURE
    except (MemoryError, RuntimeError) as e:
        where = out_of_memory(e)
        if where is None:
            raise
        logging.getLogger("pytorch-ssd").error("out of %s memory (%s): lower --batch-size, or --workers (each "
                                               "DataLoader worker is a process of its own); --workers 0 uses "
                                               "the least", where, _first_line(e))
        return EXIT_FAILURE


OOM_KILLED_WORKER = "killed by signal: Killed"  # DataLoader's message when the kernel's OOM killer struck


def out_of_memory(e: BaseException) -> str | None:
    """``"GPU"`` / ``"host"`` when ``e`` says memory ran out (CUDA allocator, CPU allocator, a
    DataLoader worker killed by the kernel's OOM killer), else None. Torch is not imported here:
    a script that never loaded it cannot have a torch error."""
    torch = sys.modules.get("torch")
    cuda_oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    if cuda_oom is not None and isinstance(e, cuda_oom):
        return "GPU"
    if isinstance(e, MemoryError):
        return "host"
    text = str(e)
    if "CUDA out of memory" in text or "CUDA error: out of memory" in text:
        return "GPU"
    if "can't allocate memory" in text or (OOM_KILLED_WORKER in text and "DataLoader worker" in text):
        return "host"
    return None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", fsync: bool = True, **kwargs) -> Iterator[IO]:
    """Write ``path`` through a temp file in the same folder, then rename over it.

    Readers see either the old file or the complete new one, never a partial
    file, even if the process is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files ``atomic_write(path)`` left when its process was killed mid-write.

    A killed writer cannot clean up after itself, and each leftover is as big as the file
    (a checkpoint, a COCO annotation file). Call it before writing ``path`` again, from the one
    process that writes it (another process writing ``path`` at the same moment would lose its
    temp file). Returns what was deleted.
    """
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
            log.info("removed %s, left by an interrupted write", stale)
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, turning every way it can be broken into a one-line UserError."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {p}") from None
    except IsADirectoryError:
        raise UserError(f"{what} is a folder, expected a file: {p}") from None
    except PermissionError:
        raise UserError(f"{what} is not readable (permission denied): {p}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} is not valid JSON: {p}: {e}") from None
    except RecursionError:  # e.g. "[[[[..." 100,000 deep: Python's parser gives up
        raise UserError(f"{what} is not valid JSON: {p}: nested too deeply") from None


# ---- upstream's names (qfgaohao / dusty-nv / kaboom-labs ``vision.utils.misc``) --------------------------

class Timer:
    """Upstream's named stopwatch: ``start(key)``, then ``end(key)`` -> seconds since that start.

    ``end`` of a key never started raises ``KeyError`` (upstream raised a bare Exception).
    """

    def __init__(self) -> None:
        self.clock: dict[str, float] = {}

    def start(self, key: str = "default") -> None:
        self.clock[key] = time.perf_counter()

    def end(self, key: str = "default") -> float:
        if key not in self.clock:
            raise KeyError(f"{key} is not in the clock.")
        return time.perf_counter() - self.clock.pop(key)


def store_labels(path: str | os.PathLike, labels: Iterable[str]) -> None:
    """Upstream's labels writer: the names one a line, atomically, blank names left out (a blank
    line would be a class to detectNet). ``vision.utils.labels.write_labels`` checks the names
    first (BACKGROUND first, no duplicates) and then writes through this."""
    names = [str(n).strip() for n in labels]
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{n}\n" for n in names if n))


def freeze_net_layers(net: Any) -> None:
    """Upstream's: stop gradients for every parameter of ``net`` (an ``nn.Module``)."""
    for p in net.parameters():
        p.requires_grad_(False)

def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of every DataLoader: workers ignore SIGINT and SIGTERM.

    ``timeout``, SLURM, container stops and a terminal's Ctrl-C signal the whole process group.
    PyTorch gives each worker a SIGTERM handler that kills it (before ``worker_init_fn`` runs,
    so this replaces it), and the main process then dies of "DataLoader worker ... is killed by
    signal". Workers must keep working instead: the main process decides (finishes its step,
    saves, exits 0) and shuts them down; a worker whose parent is gone exits by itself.
    """
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
