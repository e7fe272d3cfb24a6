"""The files of a training run's checkpoint folder other than the checkpoints themselves.

- ``args.json``: ``{"args": {...every resolved argument...}, "class_names": [...], "version": str,
  "created": iso time, "updated": iso time}``; what ``--resume`` rebuilds the run from.
- ``labels.txt``: the class names, BACKGROUND first (``vision.utils.labels``).
- ``metrics.jsonl``: one JSON object per epoch (train/val losses, mAP, lr, images/s, time).

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
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vision.training.checkpoint import BEST_NAME, TrainingCheckpoint, link_best
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


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (UserError otherwise)."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"checkpoint folder is a file, not a folder: {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"checkpoint folder is not writable: {folder}: {e.strerror or e}") from None
    return folder


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
                          created: str | None = None) -> None:
    """Write ``args.json`` (keeping its first ``created`` time) and ``labels.txt``."""
    folder = Path(folder)
    if created is None:
        try:
            created = json.loads((folder / ARGS_FILE).read_text(encoding="utf-8")).get("created")
        except (OSError, ValueError, AttributeError):
            created = None
    now = now_iso()
    with _writing(folder / ARGS_FILE):
        atomic_write_json(folder / ARGS_FILE, {
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
    kept = [r for r in read_metrics(folder) if epoch is None or r.get("epoch", -1) < epoch]
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
