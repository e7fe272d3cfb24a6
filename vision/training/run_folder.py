"""The files of a training run's checkpoint folder other than the checkpoints themselves.

- ``args.json``: ``{"args": {...every resolved argument...}, "class_names": [...], "version": str,
  "created": iso time, "updated": iso time}``; what ``--resume`` rebuilds the run from.
- ``labels.txt``: the class names, BACKGROUND first (``vision.utils.labels``).
- ``metrics.jsonl``: one JSON object per epoch (train/val losses, mAP, lr, images/s, time).
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from vision.utils.labels import write_labels
from vision.utils.misc import UserError, atomic_write, atomic_write_json, read_json

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
    atomic_write_json(folder / ARGS_FILE, {
        "args": dict(args),
        "class_names": list(class_names),
        "version": project_version(),
        "created": created or now,
        "updated": now,
    })
    write_labels(folder / LABELS_FILE, class_names)


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
    with atomic_write(Path(folder) / METRICS_FILE, "w", encoding="utf-8") as f:
        for r in [*kept, dict(record)]:
            f.write(json.dumps(r, default=float) + "\n")
