"""Training checkpoints: one self-describing file per saved epoch, written atomically.

A checkpoint is a ``TrainingCheckpoint``, saved as a plain dict (loadable with
``torch.load(..., weights_only=True)``, so every reader of model files takes it) with exactly these
22 keys::

    epoch             int   the epoch this checkpoint belongs to (0-based)
    step_in_epoch     int   0 when the epoch is complete; k > 0 when training stopped after k
                            batches of ``epoch`` (SIGINT/SIGTERM) and resuming continues there
    samples_in_epoch  int   images per rank consumed in ``epoch`` (0 when complete)
    samples_in_epoch_total  int   images of the epoch's order consumed by all processes together:
                            a resume with another --batch-size or process count restarts at the next
                            image of the same order (``vision.training.data.ResumableSampler``)
    epoch_stats       dict  the running loss sums of the unfinished epoch (``EpochStats.state_dict``), or None
    model             state_dict of the bare net (never DDP/compile-wrapped: upstream's keys); with --ema
                      the EMA of the weights, so every reader of a model file takes the EMA net
    ema               None without --ema; else {"decay", "warmup_steps", "updates", "raw_model": the
                      trained weights' state_dict} (``vision.training.ema``): --resume trains on from
                      the raw weights and averages on from ``model``
    optimizer, scheduler, scaler   their ``state_dict()``s (never the objects)
    rng               python / numpy / torch / cuda generator states (see ``capture_rng_state``)
    best_metric       {"name": "mAP"|"val_loss", "value": float, "epoch": int, "file": str} or None
    nonfinite_steps   int   steps skipped so far for a non-finite loss or gradient
    val_loss          float the epoch's validation loss (None: not validated, or interrupted)
    metrics           dict  the epoch's metrics.jsonl record (None when interrupted)
    args              every resolved training argument (a dict)
    class_names, net, resolution   what the model is (BACKGROUND first; registry name; input px)
    version           the project version that wrote it
    world_size        the number of training processes
    run_id            the identity of the run that wrote it (``args.json``'s); None in files from before
                      run ids, which only a run without an id resumes

Older files may lack the later keys; ``TrainingCheckpoint.from_dict`` fills the defaults.
Files are named ``{net}-Epoch-{epoch}-Loss-{val_loss}.pth`` (the pattern upstream's
``onnx_export.py --model-dir`` uses to pick the lowest loss); a stop inside an epoch writes
``{net}-Epoch-{epoch}-Step-{step}-interrupted.pth``, which carries no ``Loss-`` so no
export picks it. ``best.pth`` is a hard link to (or copy of) the best epoch's file.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from vision.utils.model_io import safe_torch_load

from vision.utils.misc import Failure, UserError, atomic_write, remove_stale_temp_files

log = logging.getLogger(__name__)

BEST_NAME = "best.pth"
_NAME_RE = re.compile(
    r"^(?P<net>.+)-Epoch-(?P<epoch>\d+)-(?:Loss-(?P<loss>[^/]+)|Step-(?P<step>\d+)-interrupted)\.pth$")


def checkpoint_name(net: str, epoch: int, val_loss: float | None = None, step_in_epoch: int = 0) -> str:
    """File name of a checkpoint (see the module docstring for the two forms)."""
    if step_in_epoch:
        return f"{net}-Epoch-{epoch}-Step-{step_in_epoch}-interrupted.pth"
    loss = "nan" if val_loss is None or not math.isfinite(val_loss) else f"{val_loss}"
    return f"{net}-Epoch-{epoch}-Loss-{loss}.pth"


def parse_checkpoint_name(name: str) -> tuple[int, int] | None:
    """``(epoch, step_in_epoch)`` from a checkpoint file name, or None if it is not one of ours.

    Sorting by ``(epoch, step if interrupted else +inf)`` orders checkpoints in training time.
    """
    m = _NAME_RE.match(name)
    if not m:
        return None
    return int(m.group("epoch")), int(m.group("step") or 0)


def _position(name: str) -> tuple[int, float] | None:
    parsed = parse_checkpoint_name(name)
    if parsed is None:
        return None
    epoch, step = parsed
    return epoch, (step if step else math.inf)


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ``folder``, oldest training position first (``best.pth`` excluded)."""
    folder = Path(folder)
    found = []
    for p in folder.glob("*.pth"):
        pos = _position(p.name)
        if pos is not None and p.is_file():
            found.append((pos, p.stat().st_mtime, p))
    found.sort(key=lambda t: (t[0], t[1]))
    return [p for _, _, p in found]


def nonfinite_tensors(state_dict: Any) -> list[str]:
    """Names of the floating-point tensors of a model ``state_dict`` holding NaN or inf.

    A diverged run (or a NaN in BatchNorm's running statistics) must neither be saved nor be
    the checkpoint ``--resume`` continues: it would only ever produce NaN again.
    """
    if not isinstance(state_dict, dict):
        return []
    return [name for name, t in state_dict.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` through a temp file + fsync + rename (never half-written).

    A write that fails (disk full, folder no longer writable) raises ``Failure`` naming the file
    and the reason; its temp file is gone and the checkpoints saved before are untouched.
    A model with non-finite weights or buffers is never written (``Failure``, saying so).
    """
    path = Path(path)
    bad = nonfinite_tensors(state.get("model"))
    if bad:
        raise Failure(f"not saving checkpoint {path.name}: the model has {len(bad)} tensors with NaN/inf "
                      f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the checkpoints saved before are "
                      f"intact: continue from the last of them with --resume {path.parent} and a lower --lr")
    try:
        with atomic_write(path, "wb") as f:
            torch.save(state, f)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        raise _write_failure(path, e) from None
    return path


def _write_failure(path: Path, e: BaseException) -> BaseException:
    """A one-line ``Failure`` for a failed checkpoint write (``e`` itself when no OSError caused it)."""
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return e
    return Failure(f"cannot save checkpoint {path}: {cause.strerror or cause}; the checkpoints saved before are "
                   f"intact: free space or fix the folder, then continue with --resume {path.parent}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one of our checkpoints safely (``weights_only=True``); any damage is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    ckpt = safe_torch_load(path, map_location, what="checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise UserError(f"{path} is a plain weights file, not a training checkpoint of this project "
                        f"(use it with --pretrained-ssd to start a new run from it)")
    return ckpt


@dataclass
class TrainingCheckpoint:
    """The contents of a training checkpoint (the module docstring lists every key); ``to_dict`` is what
    is saved, ``from_dict`` reads what any version of train_ssd.py saved."""

    epoch: int
    model: Mapping[str, torch.Tensor]
    step_in_epoch: int = 0
    samples_in_epoch: int = 0
    epoch_stats: dict | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    scaler: dict | None = None
    rng: dict | None = None
    best_metric: dict | None = None
    nonfinite_steps: int = 0
    val_loss: float | None = None
    metrics: dict | None = None
    args: dict = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    net: str | None = None
    resolution: int | None = None
    version: str = "unknown"
    world_size: int = 1
    samples_in_epoch_total: int = 0
    run_id: str | None = None
    ema: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> "TrainingCheckpoint":
        """Known keys taken, missing ones defaulted (older files), unknown ones ignored; ``None``
        where older code wrote None for a counter counts as 0."""
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in state.items() if k in known and v is not None or k in ("epoch", "model")})
        out.epoch, out.step_in_epoch = int(out.epoch), int(out.step_in_epoch or 0)
        out.samples_in_epoch, out.nonfinite_steps = int(out.samples_in_epoch or 0), int(out.nonfinite_steps or 0)
        out.world_size = int(out.world_size or 1)
        out.samples_in_epoch_total = int(out.samples_in_epoch_total or 0)
        if not out.samples_in_epoch_total and out.samples_in_epoch:  # older files: equal shares of every rank
            out.samples_in_epoch_total = out.samples_in_epoch * out.world_size
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainingCheckpoint":
        return cls.from_dict(load_checkpoint(path))

    def save(self, path: str | os.PathLike) -> Path:
        return save_checkpoint(path, self.to_dict())

    @property
    def interrupted(self) -> bool:
        """Saved inside an epoch (a stop request), not at its end."""
        return self.step_in_epoch > 0


_ANY_RUN = object()


def find_latest_valid_checkpoint(folder: str | os.PathLike, map_location: str | torch.device = "cpu",
                                 run_id: Any = _ANY_RUN) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``folder`` that loads, with its contents; None if there is none.

    A newest file that is truncated or unreadable (a crash during a copy, a full disk), or whose
    model holds NaN/inf (``nonfinite_tensors``), is reported with a warning and the previous one
    is used. With ``run_id`` (the folder's ``args.json`` run id; None for a run from before run
    ids), checkpoints of any other run are skipped, with a warning naming them.
    """
    for path in reversed(list_checkpoints(folder)):
        try:
            ckpt = load_checkpoint(path, map_location)
        except UserError as e:
            log.warning("skipping checkpoint: %s", e)
            continue
        if run_id is not _ANY_RUN and ckpt.get("run_id") != run_id:
            log.warning("skipping checkpoint %s: it belongs to %s, not to this folder's run %s (args.json)",
                        path, describe_run_id(ckpt.get("run_id")), describe_run_id(run_id))
            continue
        bad = nonfinite_tensors(ckpt.get("model"))
        if bad:
            log.warning("skipping checkpoint %s: %d model tensors hold NaN/inf (%s); using an older one",
                        path, len(bad), ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else ""))
            continue
        return path, ckpt
    return None


def describe_run_id(run_id: str | None) -> str:
    return f"run {run_id}" if run_id else "a run without an id (written before run ids)"


def check_run_id(path: str | os.PathLike, ckpt: "TrainingCheckpoint", run_id: str | None) -> None:
    """Refuse (UserError) resuming the checkpoint ``path`` of another run than the folder's ``run_id``."""
    if ckpt.run_id != run_id:
        raise UserError(f"--resume {path}: the checkpoint belongs to {describe_run_id(ckpt.run_id)}, but its "
                        f"folder's args.json is {describe_run_id(run_id)}; resume the folder itself, or start a "
                        f"new run with --pretrained-ssd {path}")


def link_best(folder: str | os.PathLike, source: str | os.PathLike) -> Path:
    """Make ``folder/best.pth`` the same file as ``source`` (hard link, copy where links fail), atomically."""
    folder = Path(folder)
    dest = folder / BEST_NAME
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{BEST_NAME}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _write_failure(dest, e) from None
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except OSError as e:
        raise _write_failure(dest, e) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return dest


def prune_checkpoints(folder: str | os.PathLike, keep: int | None, protect: list[Path] | tuple = ()) -> list[Path]:
    """Delete old checkpoints: keep the newest ``keep`` epoch checkpoints and everything in ``protect``
    (the best one, the one just written). Interrupted (mid-epoch) files older than the newest
    checkpoint are always deleted: the newer file supersedes them. Returns the deleted paths.
    """
    files = list_checkpoints(folder)
    if not files:
        return []
    protected = {Path(p).resolve() for p in protect}
    newest = files[-1]
    complete = [p for p in files if parse_checkpoint_name(p.name)[1] == 0]
    keep_set = set(complete[-keep:]) if keep else set(complete)
    deleted = []
    for p in files:
        if p == newest or p in keep_set or p.resolve() in protected:
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            deleted.append(p)
    return deleted


def remove_stale_temp_files_in(folder: str | os.PathLike) -> list[Path]:
    """Delete what writes killed midway left in ``folder`` (``atomic_write``'s temp files; a
    checkpoint's is as big as the checkpoint). Only the run's one writer may call it, at start-up."""
    folder = Path(folder)
    targets = {folder / p.name[1:].rsplit(".", 2)[0] for p in folder.glob(".*.tmp")}
    return [removed for target in sorted(targets) for removed in remove_stale_temp_files(target)]


# ---- random generator states ---------------------------------------------------------------

def capture_rng_state() -> dict[str, Any]:
    """Every global generator's state in a ``weights_only``-loadable form (no numpy arrays)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any] | None) -> None:
    """Inverse of ``capture_rng_state``; CUDA states are restored only when the device count matches."""
    if not state:
        return
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state({
            "bit_generator": s["bit_generator"],
            "state": {"key": s["key"].numpy().astype(np.uint32), "pos": s["pos"]},
            "has_gauss": s["has_gauss"],
            "gauss": s["gauss"],
        })
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])
