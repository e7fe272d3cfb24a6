"""Fitting weight files to an SSD, with errors that name both sides.

``load_net_weights`` (strict, e.g. "models/x.pth holds a mb2-ssd-lite checkpoint with 21
classes; --net mb1-ssd with 3 classes does not match"), ``load_pretrained_ssd`` (all but the
heads) and ``load_base_net_weights`` (an ImageNet backbone: upstream's files or a torchvision
classifier). Reading the file itself is ``vision.utils.model_io``.

Naming the net a file belongs to needs every net, which only ``vision.ssd.registry`` knows;
the registry sits above this module (``SSD.load`` uses it), so it installs its name guesser
here when it is imported (``set_net_guesser``). Without it descriptions say "an SSD
checkpoint of an unknown net".
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Callable, Mapping

import torch
from torch import nn

from vision.nn.torchvision_import import detect_torchvision_arch, init_from_torchvision
from vision.utils.misc import UserError
from vision.utils.model_io import load_state_dict_file

log = logging.getLogger(__name__)

_HEADS = ("classification_headers.", "regression_headers.")
_NBT = "num_batches_tracked"

NetGuesser = Callable[[Mapping[str, torch.Tensor], "float | None"], "str | None"]
_net_guesser: NetGuesser | None = None
_canonical_name: Callable[[str], str] = lambda name: str(name).strip().lower()  # noqa: E731


def set_net_guesser(guess: NetGuesser, canonical: Callable[[str], str]) -> None:
    """Install the registry's "which net is this state_dict" and alias resolution (see module doc)."""
    global _net_guesser, _canonical_name
    _net_guesser, _canonical_name = guess, canonical


def _guess(state_dict: Mapping[str, torch.Tensor], width_mult: float | None = None) -> str | None:
    return _net_guesser(state_dict, width_mult) if _net_guesser else None


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


def signature(state_dict: Mapping[str, torch.Tensor]) -> frozenset:
    """Keys and shapes that do not depend on the class count."""
    return frozenset((k, tuple(v.shape)) for k, v in state_dict.items()
                     if not k.startswith("classification_headers.") and not k.endswith(_NBT))


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
            name = _guess(state_dict, wm)
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
        file_net = _checkpoint_field(checkpoint, "net") or _guess(state_dict)
        same_net = file_net is not None and _canonical(file_net) == _canonical(net_name)
        same_classes = infer_num_classes(state_dict) == getattr(net, "num_classes", None)
        if file_net is None or (same_net and same_classes):  # the summary alone would not say why
            detail = f" ({_first_difference(expected, state_dict)})"
        raise UserError(f"{source} holds {desc}; {mine} does not match{detail}")
    net.load_state_dict(_with_counters(expected, state_dict), strict=True)


def _canonical(name: str) -> str:
    try:
        return _canonical_name(name)
    except UserError:  # an unknown name in a file: compare it as written
        return str(name).strip().lower()


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
