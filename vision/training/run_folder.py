"""The files of a training run's checkpoint folder other than the checkpoints themselves.

- ``args.json``: ``{"args": {...every resolved argument...}, "class_names": [...], "version": str,
  "created": iso time, "updated": iso time}``; what ``--resume`` rebuilds the run from.
- ``labels.txt``: the class names, BACKGROUND first (``vision.utils.labels``).
- ``metrics.jsonl``: one JSON object per epoch (train/val losses, mAP, lr, images/s, time), each
  carrying the ``run_id`` of the run that wrote it.

Every run has an identity, ``run_id`` (``new_run_id``, drawn when a new run starts), stored in
``args.json``, in every checkpoint and in every metrics line. A folder holds one run:
``existing_run`` says whether a folder already holds one (a new run there is refused, or the
old one moved aside by ``archive_run``), and ``--resume`` loads only checkpoints of the
folder's own run id (``vision.training.checkpoint.find_latest_valid_checkpoint``).

After an epoch's checkpoint is saved the run still links ``best.pth`` and appends the epoch's
line to ``metrics.jsonl``; ``finish_saved_epoch`` redoes both when a run was killed in between.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vision.training.checkpoint import BEST_NAME, TrainingCheckpoint, link_best, list_checkpoints
from vision.utils.labels import write_labels
from vision.utils.misc import Failure, UserError, atomic_write, atomic_write_json, read_json

log = logging.getLogger(__name__)

ARGS_FILE = "args.json"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.jsonl"


def project_version() -> str:
    """The package version (``vision.__version__`` when the lead defines it)."""
    import vision
    return str(getattr(vision, "__version__", "unknown"))


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def new_run_id() -> str:
    """A fresh run identity (32 hex digits), drawn once when a new run starts."""
    return uuid.uuid4().hex


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """Prove a file can be written in ``folder`` (or, if it does not exist yet, in its nearest
    existing parent) without creating it: a start that fails later (bad data, a wrong
    ``--pretrained-ssd``) leaves no empty folder behind. UserError otherwise."""
    folder = Path(folder)
    probe_in = folder
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    try:
        if not probe_in.is_dir():
            what = "checkpoint folder" if probe_in == folder else f"checkpoint folder {folder}: its parent"
            raise UserError(f"{what} is a file, not a folder: {probe_in}")
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"checkpoint folder is not writable: {folder}: {e.strerror or e}") from None
    return folder


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (UserError otherwise)."""
    folder = check_writable_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"checkpoint folder is not writable: {folder}: {e.strerror or e}") from None
    return folder


# The files of a run (besides its checkpoints): what ``existing_run`` looks for, ``archive_run`` moves.
RUN_FILES = (ARGS_FILE, LABELS_FILE, METRICS_FILE, BEST_NAME, "tensorboard", "inputs", "profile-trace.json",
             "profile-summary.txt")


@dataclass(frozen=True)
class ExistingRun:
    """What a folder holds of a run: its id, net and start time from ``args.json`` (None where there is
    no readable one) and the run's files found."""
    run_id: str | None
    net: str | None
    created: str | None
    files: tuple[Path, ...]

    def describe(self) -> str:
        if self.net is None and self.run_id is None and self.created is None:
            names = ", ".join(p.name for p in self.files[:3]) + (", ..." if len(self.files) > 3 else "")
            return f"another run's files ({names})"
        return (f"run {self.run_id or '(no id: written before run ids)'} (net {self.net or '?'}, "
                f"created {self.created or '?'})")


def existing_run(folder: str | os.PathLike) -> ExistingRun | None:
    """The run ``folder`` already holds (``args.json``, checkpoints, ``best.pth`` or ``metrics.jsonl``), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    outputs_only = ("tensorboard", "inputs", LABELS_FILE)  # archived with the run, but no run by themselves
    files = [folder / n for n in RUN_FILES if (folder / n).exists() and n not in outputs_only]
    files += list_checkpoints(folder)
    if not files:
        return None
    run_id = net = created = None
    try:
        data = json.loads((folder / ARGS_FILE).read_text(encoding="utf-8"))
        run_id, created = data.get("run_id"), data.get("created")
        net = (data.get("args") or {}).get("net")
    except (OSError, ValueError, AttributeError):
        pass
    return ExistingRun(run_id, net, created, tuple(files))


def archive_run(folder: str | os.PathLike, run: ExistingRun) -> Path:
    """Move the run in ``folder`` (its files and checkpoints; nothing is deleted) into
    ``folder/archived-<run id or time>/``, for ``--archive-old-run``.

    The files are renamed (same file system: each move is atomic) into a hidden ``.archiving-*``
    folder, which is renamed to its final name once all are in: an interrupted archive leaves
    every file either in the folder or in the hidden one, and a rerun finishes it under a new name.
    """
    folder = Path(folder)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"archived-{run.run_id[:12] if run.run_id else stamp}"
    dest = folder / name
    n = 1
    while dest.exists():
        n += 1
        dest = folder / f"{name}-{n}"
    staging = folder / f".archiving-{dest.name}"
    moved = 0
    try:
        staging.mkdir()
        for p in [folder / n for n in RUN_FILES] + list_checkpoints(folder):
            if p.exists() or p.is_symlink():
                os.replace(p, staging / p.name)
                moved += 1
        os.replace(staging, dest)
    except OSError as e:
        raise Failure(f"cannot archive the old run in {folder}: {e.strerror or e} ({moved} files moved to "
                      f"{staging}; nothing was deleted)") from None
    log.warning("--archive-old-run: moved %s (%d files) to %s", run.describe(), moved, dest)
    return dest


def read_args_json(folder: str | os.PathLike) -> dict[str, Any]:
    """The saved run description; a folder without one is not a resumable run (UserError)."""
    path = Path(folder) / ARGS_FILE
    if not path.is_file():
        raise UserError(f"--resume {folder}: no {ARGS_FILE} there, so it is not a checkpoint folder of this "
                        f"project (to start from plain weights use --pretrained-ssd)")
    data = read_json(path, what="training arguments file")
    if not isinstance(data, dict) or not isinstance(data.get("args"), dict):
        raise UserError(f"{path}: not a training arguments file (no \"args\" object)")
    return data


def write_run_description(folder: str | os.PathLike, args: Mapping[str, Any], class_names: Sequence[str],
                          created: str | None = None, run_id: str | None = None) -> None:
    """Write ``args.json`` (keeping its first ``created`` time) and ``labels.txt``, creating the folder."""
    folder = Path(folder)
    with _writing(folder / ARGS_FILE):
        folder.mkdir(parents=True, exist_ok=True)
    if created is None:
        try:
            created = json.loads((folder / ARGS_FILE).read_text(encoding="utf-8")).get("created")
        except (OSError, ValueError, AttributeError):
            created = None
    now = now_iso()
    with _writing(folder / ARGS_FILE):
        atomic_write_json(folder / ARGS_FILE, {
            "run_id": run_id,
            "args": dict(args),
            "class_names": list(class_names),
            "version": project_version(),
            "created": created or now,
            "updated": now,
        })
    with _writing(folder / LABELS_FILE):
        write_labels(folder / LABELS_FILE, class_names)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write (disk full, folder no longer writable) as one line saying so (exit 1)."""
    try:
        yield
    except OSError as e:
        raise Failure(f"cannot write {path}: {e.strerror or e}; the file is unchanged and the checkpoints are "
                      f"intact: free space or fix the folder, then continue with --resume {path.parent}") from None


def read_metrics(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (unparsable lines are skipped)."""
    path = Path(folder) / METRICS_FILE
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def append_metrics(folder: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Add one epoch's line, replacing lines of that epoch or later (left by a run that was resumed
    from an earlier checkpoint). The file is rewritten atomically: it is small (one line an epoch)."""
    epoch = record.get("epoch")
    old = read_metrics(folder)
    others = {r.get("run_id") for r in old} - {record.get("run_id")}
    if others:  # never mix two runs' numbers (a new run refuses such a folder at its start)
        raise Failure(f"{Path(folder) / METRICS_FILE} holds lines of another run ({', '.join(map(str, others))}); "
                      f"not adding run {record.get('run_id')}'s: move the file away, then --resume {folder}")
    kept = [r for r in old if epoch is None or r.get("epoch", -1) < epoch]
    path = Path(folder) / METRICS_FILE
    with _writing(path), atomic_write(path, "w", encoding="utf-8") as f:
        for r in [*kept, dict(record)]:
            f.write(json.dumps(r, default=float) + "\n")


def finish_saved_epoch(folder: str | os.PathLike, ckpt: TrainingCheckpoint) -> None:
    """Do what a run killed just after saving ``ckpt`` (the checkpoint being resumed) left undone:
    its epoch's line in ``metrics.jsonl`` and ``best.pth`` pointing at the checkpoint its
    ``best_metric`` names. Both are idempotent, so every resume calls this."""
    folder = Path(folder)
    record = ckpt.metrics
    if not ckpt.interrupted and isinstance(record, dict) and record.get("epoch") == ckpt.epoch:
        if all(r.get("epoch") != record["epoch"] for r in read_metrics(folder)):
            append_metrics(folder, record)
            log.info("added epoch %s to %s (the run was stopped before writing it)", record["epoch"], METRICS_FILE)
    best = ckpt.best_metric
    name = best.get("file") if isinstance(best, dict) else None
    if not isinstance(name, str) or not name or Path(name).name != name:  # a plain file name in this folder
        return
    source = folder / name
    if not source.is_file():
        return
    dest = folder / BEST_NAME
    try:
        same = dest.is_file() and os.path.samefile(source, dest)
    except OSError:
        same = False
    if not same:
        link_best(folder, source)
        log.info("%s now points at %s, the best checkpoint so far", BEST_NAME, source.name)
