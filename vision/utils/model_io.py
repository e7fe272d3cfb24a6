"""Reading weight files safely, with errors a user can act on (the ground floor: knows no net).

Files come in three shapes, all read with ``torch.load(weights_only=True)``:

- an upstream / jetson-inference ``.pth``: a plain ``net.state_dict()``;
- this project's training checkpoint: a dict with ``"model"`` (the state_dict) and
  self-description (``"net"``, ``"args"`` with ``net``/``resolution``/``class_names``/
  ``mb2_width_mult``, ...);
- an ImageNet backbone (``--base-net``): upstream's backbone files or a torchvision
  classifier state_dict.

Every failure (missing, truncated, not weights, would run pickled code) is a one-line
``UserError`` naming the file. Fitting the weights to an SSD (which net, how many classes)
is ``vision.ssd.model_io``.
"""
from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from vision.utils.misc import UserError
from vision.utils.safe_load import PLAIN_STATE_CLASSES, load_plain_state, refusal, refused_name

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ reading
def _strip_prefix(state_dict: "OrderedDict[str, Any]", prefix: str) -> "OrderedDict[str, Any]":
    """Drop ``prefix`` (e.g. DDP's ``module.``) from every key, keeping load metadata."""
    out: OrderedDict[str, Any] = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:
        bare = prefix.rstrip(".")
        out._metadata = OrderedDict(  # type: ignore[attr-defined]
            ("" if k == bare else k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in meta.items())
    return out


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", what: str = "model file"):
    """``torch.load(weights_only=True)`` with every way a file can be bad turned into one UserError line.

    A pickle that needs arbitrary Python objects (and so could run code) is refused by name;
    one that holds torch scheduler/optimizer objects (the seed fork's checkpoints) is read with
    those as plain data (``vision.utils.safe_load``).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} not found: {p}")
    if p.is_dir():
        raise UserError(f"expected a .pth file, got a folder: {p}")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before failing
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = refused_name(e)
        if refused in PLAIN_STATE_CLASSES:
            return load_plain_state(p, map_location)
        if refused:
            raise UserError(refusal(p, refused)) from None
        raise UserError(f"{p} is not a readable PyTorch weights file (truncated or corrupt?)") from None
    except PermissionError:
        raise UserError(f"{what} is not readable (permission denied): {p}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError,
            IndexError, TypeError) as e:
        log.debug("torch.load(%s) failed: %s: %s", p, type(e).__name__, e)
        raise UserError(f"{p} is not a readable PyTorch weights file (truncated or corrupt?)") from None
    return obj


def load_state_dict_file(path: str | os.PathLike) -> tuple["OrderedDict[str, torch.Tensor]", dict | None]:
    """Read a weights file -> ``(state_dict, checkpoint dict or None)`` on the CPU.

    Accepts a plain state_dict or a checkpoint dict with ``"model"`` (or
    ``"state_dict"``, or the seed fork's ``"weights"``). A ``module.`` prefix (DDP) is stripped. UserError for a
    missing/unreadable/truncated file, a pickle that needs code to load, or
    contents that are not weights.
    """
    p = Path(path)
    obj = safe_torch_load(p)
    checkpoint: dict | None = None
    if _is_tensor_dict(obj):
        state_dict = obj
    elif isinstance(obj, Mapping) and any(_is_tensor_dict(obj.get(k)) for k in ("model", "state_dict", "weights")):
        checkpoint = dict(obj)
        key = next(k for k in ("model", "state_dict", "weights") if _is_tensor_dict(obj.get(k)))
        state_dict = obj[key]
        if key == "weights":  # the seed fork's {'epoch', 'weights', 'optimizer', 'scheduler'}
            log.info("%s: seed-fork checkpoint: using its weights (not its optimizer or scheduler state)", p)
    else:
        what = f"a dict with keys {sorted(map(str, obj))[:6]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise UserError(f"{p} holds {what}, not model weights (a state_dict or a checkpoint with 'model')")
    if not isinstance(state_dict, OrderedDict):
        state_dict = OrderedDict(state_dict)
    if all(k.startswith("module.") for k in state_dict):
        state_dict = _strip_prefix(state_dict, "module.")
    return state_dict, checkpoint
