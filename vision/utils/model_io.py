"""Reading weight files safely and fitting them to a net with errors a user can act on.

Files come in three shapes, all read with ``torch.load(weights_only=True)``:

- an upstream / jetson-inference ``.pth``: a plain ``net.state_dict()``;
- this project's training checkpoint: a dict with ``"model"`` (the state_dict) and
  self-description (``"net"``, ``"args"`` with ``net``/``resolution``/``class_names``/
  ``mb2_width_mult``, ...);
- an ImageNet backbone (``--base-net``): upstream's backbone files or a torchvision
  classifier state_dict.

Every failure (missing, truncated, not weights, would run pickled code, wrong net,
wrong class count) is a one-line ``UserError`` naming the file.
"""
from __future__ import annotations

import functools
import logging
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from vision.nn.torchvision_import import detect_torchvision_arch, init_from_torchvision  # noqa: F401 (API)
from vision.utils.misc import UserError
from vision.utils.safe_load import PLAIN_STATE_CLASSES, load_plain_state, refusal, refused_name

log = logging.getLogger(__name__)

_HEADS = ("classification_headers.", "regression_headers.")
_NBT = "num_batches_tracked"


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


# ---------------------------------------------------------- describing files
def _path_key(key: str) -> tuple:
    return tuple(int(t) if t.isdigit() else -1 for t in key.split("."))


def _last_conv_out(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int | None:
    convs = [k for k, v in state_dict.items()
             if k.startswith(prefix) and k.endswith(".weight") and isinstance(v, torch.Tensor) and v.dim() == 4]
    if not convs:
        return None
    return int(state_dict[max(convs, key=_path_key)].shape[0])


def infer_num_classes(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Class count (BACKGROUND included) of an SSD state_dict, from its first heads; None if not an SSD."""
    cls = _last_conv_out(state_dict, "classification_headers.0.")
    reg = _last_conv_out(state_dict, "regression_headers.0.")
    if not cls or not reg or reg % 4:
        return None
    boxes = reg // 4
    return cls // boxes if cls % boxes == 0 else None


def _signature(state_dict: Mapping[str, torch.Tensor]) -> frozenset:
    """Keys and shapes that do not depend on the class count."""
    return frozenset((k, tuple(v.shape)) for k, v in state_dict.items()
                     if not k.startswith("classification_headers.") and not k.endswith(_NBT))


@functools.lru_cache(maxsize=32)
def _net_signature(name: str, width_mult: float) -> frozenset:
    from vision.ssd import registry

    spec = registry.net_spec(name)
    kwargs: dict[str, Any] = {"is_test": False, "image_size": None}
    if spec.width_mult:
        kwargs["width_mult"] = width_mult
    with torch.device("meta"):
        net = registry._builder(spec)(2, **kwargs)
    return _signature(net.state_dict())


def guess_net_name(state_dict: Mapping[str, torch.Tensor], width_mult: float | None = None) -> str | None:
    """Which registry net a state_dict belongs to (by key/shape signature), or None."""
    from vision.ssd import registry

    sig = _signature(state_dict)
    widths = [1.0] + ([float(width_mult)] if width_mult and width_mult != 1.0 else [])
    for spec in registry.NET_SPECS:
        for wm in widths if spec.width_mult else [1.0]:
            if _net_signature(spec.name, wm) == sig:
                return spec.name
    return None


def _checkpoint_field(checkpoint: Mapping | None, key: str) -> Any:
    if not checkpoint:
        return None
    if checkpoint.get(key) is not None:
        return checkpoint[key]
    args = checkpoint.get("args")
    return args.get(key) if isinstance(args, Mapping) else None


def describe_weights(state_dict: Mapping[str, torch.Tensor], checkpoint: Mapping | None = None) -> str:
    """E.g. "a mb2-ssd-lite checkpoint with 21 classes" (for error messages)."""
    name = _checkpoint_field(checkpoint, "net")
    wm = _checkpoint_field(checkpoint, "mb2_width_mult")
    if not name:
        try:
            name = guess_net_name(state_dict, wm)
        except Exception:  # noqa: BLE001  (a description must never fail)
            name = None
    n = infer_num_classes(state_dict)
    if name is None and n is None:
        return f"weights of an unknown net ({len(state_dict)} tensors, first key {next(iter(state_dict), '-')!r})"
    what = f"a {name} checkpoint" if name else "an SSD checkpoint of an unknown net"
    if wm and float(wm) != 1.0:
        what += f" (width x{float(wm):g})"
    return what + (f" with {n} classes" if n else "")


def _first_difference(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> str:
    for k, v in expected.items():
        if k.endswith(_NBT):
            continue
        if k not in got:
            return f"missing {k}"
        if tuple(got[k].shape) != tuple(v.shape):
            return f"{k} is {list(got[k].shape)} in the file, {list(v.shape)} in the net"
    extra = [k for k in got if k not in expected]
    return f"unexpected {extra[0]}" if extra else "no difference"


def _fits(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> bool:
    """Same keys and shapes (a missing BN ``num_batches_tracked`` is fine: old files lack it)."""
    for k, v in expected.items():
        if k not in got:
            if k.endswith(_NBT):
                continue
            return False
        if tuple(got[k].shape) != tuple(v.shape):
            return False
    return all(k in expected for k in got)


def _with_counters(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> "OrderedDict":
    out = OrderedDict(got)
    for k, v in expected.items():
        if k.endswith(_NBT) and k not in out:
            out[k] = torch.zeros_like(v)
    meta = getattr(got, "_metadata", None)
    if meta is not None:
        out._metadata = meta  # type: ignore[attr-defined]
    return out


# ------------------------------------------------------------ fitting files
def load_net_weights(net: nn.Module, state_dict: Mapping[str, torch.Tensor], net_name: str, source: str,
                     *, checkpoint: Mapping | None = None) -> None:
    """Load ``state_dict`` into ``net`` strictly, or raise a one-line UserError naming both sides.

    E.g. "models/x.pth holds a mb2-ssd-lite checkpoint with 21 classes; --net mb1-ssd with
    3 classes does not match".
    """
    expected = net.state_dict()
    if not _fits(expected, state_dict):
        desc = describe_weights(state_dict, checkpoint)
        mine = f"--net {net_name} with {getattr(net, 'num_classes', '?')} classes"
        detail = ""
        file_net = _checkpoint_field(checkpoint, "net") or guess_net_name(state_dict)
        same_net = file_net is not None and _canonical(file_net) == _canonical(net_name)
        same_classes = infer_num_classes(state_dict) == getattr(net, "num_classes", None)
        if file_net is None or (same_net and same_classes):  # the summary alone would not say why
            detail = f" ({_first_difference(expected, state_dict)})"
        raise UserError(f"{source} holds {desc}; {mine} does not match{detail}")
    net.load_state_dict(_with_counters(expected, state_dict), strict=True)


def _canonical(name: str) -> str:
    from vision.ssd.registry import ALIASES

    key = str(name).strip().lower()
    return ALIASES.get(key, key)


def load_pretrained_ssd(net: nn.Module, path: str | os.PathLike) -> int:
    """Load every tensor except the heads from a trained SSD file (any class count).

    Upstream's ``init_from_pretrained_ssd``: the caller re-initialises the heads.
    Returns the number of tensors loaded.
    """
    state_dict, checkpoint = load_state_dict_file(path)
    net_name = getattr(net, "net_name", None) or "this net"
    body = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith(_HEADS))
    expected = OrderedDict((k, v) for k, v in net.state_dict().items() if not k.startswith(_HEADS))
    if not body or not _fits(expected, body):
        raise UserError(f"{path} holds {describe_weights(state_dict, checkpoint)}; it cannot initialise "
                        f"--net {net_name} ({_first_difference(expected, body)})")
    missing, unexpected = net.load_state_dict(_with_counters(expected, body), strict=False)
    assert not unexpected and all(k.startswith(_HEADS) for k in missing), (missing, unexpected)
    log.info("initialised %s from %s (%s); heads re-initialised for %d classes", net_name, path,
             describe_weights(state_dict, checkpoint), getattr(net, "num_classes", -1))
    return len(body)


_BACKBONE_PREFIXES = ("", "base_net.", "model.", "features.")


def load_base_net_weights(net: nn.Module, path: str | os.PathLike) -> int:
    """Load an ImageNet backbone file into ``net.base_net`` (upstream ``init_from_base_net``).

    Accepts upstream's backbone files (``mobilenet_v1_with_relu_69_5.pth``,
    ``mb2-imagenet-71_8.pth``, ``vgg16_reducedfc.pth``: base_net keys, possibly under
    ``model.`` / ``features.`` next to a classifier) and torchvision classifier
    state_dicts (mapped by ``init_from_torchvision``). Returns tensors loaded.
    """
    state_dict, _ = load_state_dict_file(path)
    net_name = getattr(net, "net_name", None) or "this net"
    target = net.base_net.state_dict()
    for prefix in _BACKBONE_PREFIXES:
        part = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
        if part and _fits(target, part):
            net.base_net.load_state_dict(_with_counters(target, part), strict=True)
            log.info("loaded %d backbone tensors from %s into %s", len(part), path, net_name)
            return len(part)
    if detect_torchvision_arch(state_dict):
        return init_from_torchvision(net, state_dict, source=str(path))
    if infer_num_classes(state_dict):
        raise UserError(f"{path} holds {describe_weights(state_dict)}, not a backbone; "
                        f"use it as a pretrained SSD instead")
    raise UserError(f"{path} does not fit {net_name}'s backbone ({_first_difference(target, state_dict)})")
