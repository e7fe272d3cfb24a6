"""The model half of the command-line layer (``vision.cli``), shared by eval_ssd.py, onnx_export.py
and run_ssd_example.py: turn "a model path plus whatever
flags the user gave" into a ready net with its class names.

A model path may be an upstream ``.pth`` (bare state_dict), one of this project's training
checkpoints (dict with "model", "args", "class_names"), or a checkpoint FOLDER (its best.pth,
else the file with the lowest ``Loss-`` in its name). Whatever the file says about itself (net,
resolution, width multiplier, classes) is used, so a checkpoint needs no other flag; a flag
that contradicts the file is a one-line error naming both, never a shape-mismatch traceback.
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vision.cli.args import MAX_RESOLUTION, MAX_WIDTH_MULT, MIN_RESOLUTION
from vision.ssd.custom_priors import priors_spec_arg
from vision.ssd.model_io import infer_num_classes, load_net_weights
from vision.ssd.registry import NET_NAMES, canonical_name, create_net, guess_net_name
from vision.training.checkpoint import BEST_NAME
from vision.utils.labels import normalize_class_names, read_labels
from vision.utils.misc import UserError, read_json
from vision.utils.model_io import load_state_dict_file

log = logging.getLogger(__name__)

ARGS_NAMES = ("args.json", "training_args.json")
_LOSS_RE = re.compile(r"^(?P<net>.+)-Epoch-(?P<epoch>\d+)-Loss-(?P<loss>.+)\.pth$")


def find_lowest_loss_checkpoint(folder: str | os.PathLike, net_name: str | None = None) -> Path | None:
    """The ``{net}-Epoch-{e}-Loss-{loss}.pth`` in ``folder`` with the lowest finite loss (dusty-nv's
    ``onnx_export.py --model-dir`` rule); ties go to the later epoch. None if there is none."""
    best: tuple[float, int, Path] | None = None
    for p in Path(folder).glob("*.pth"):
        m = _LOSS_RE.match(p.name)
        if not m or not p.is_file() or (net_name and m.group("net") != net_name):
            continue
        try:
            loss = float(m.group("loss"))
        except ValueError:
            continue
        if not math.isfinite(loss):
            continue
        key = (loss, -int(m.group("epoch")), p)
        if best is None or key[:2] < best[:2]:
            best = key
    return best[2] if best else None


def resolve_model_path(path: str | os.PathLike, net_name: str | None = None) -> Path:
    """A model file from a file or checkpoint-folder path (folder: best.pth, else lowest Loss-)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / BEST_NAME).is_file():
            log.info("using %s", p / BEST_NAME)
            return p / BEST_NAME
        found = find_lowest_loss_checkpoint(p, net_name)
        if found is None and net_name:
            found = find_lowest_loss_checkpoint(p)
        if found is not None:
            log.info("using %s (lowest Loss- value in %s)", found.name, p)
            return found
        raise UserError(f"no model in folder {p}: expected {BEST_NAME} or *-Epoch-N-Loss-X.pth files")
    raise UserError(f"model file not found: {p}")


def read_folder_args(folder: str | os.PathLike) -> dict | None:
    """Training arguments saved beside checkpoints (args.json), or None."""
    for name in ARGS_NAMES:
        f = Path(folder) / name
        if f.is_file():
            data = read_json(f, "training arguments file")
            if isinstance(data, dict):
                return data
            log.warning("%s is not a JSON object; ignored", f)
    return None


@dataclass
class ModelInfo:
    """What a model file says about itself (None where it says nothing)."""
    path: Path
    state_dict: dict
    checkpoint: dict | None = None
    net_name: str | None = None
    resolution: int | None = None
    width_mult: float | None = None
    class_names: list[str] | None = None
    labels_source: str | None = None
    train_args: dict = field(default_factory=dict)
    priors: dict | None = None  # a custom priors spec (train_ssd.py --priors); None: the net's defaults


def read_model_info(path: str | os.PathLike, net_name: str | None = None) -> ModelInfo:
    """Load weights (safely, via model_io) and the self-description of a model file/folder."""
    given = Path(path)
    model_path = resolve_model_path(given, net_name)
    state_dict, checkpoint = load_state_dict_file(model_path)
    info = ModelInfo(path=model_path, state_dict=state_dict, checkpoint=checkpoint)
    train_sources: list[dict] = []  # the checkpoint's own args win over an args.json beside it
    if checkpoint and isinstance(checkpoint.get("args"), dict):
        train_sources.append(checkpoint["args"])
    folder_args = read_folder_args(model_path.parent)
    if folder_args and (checkpoint is not None or given.is_dir()):
        train_sources.append(folder_args)
    for src in reversed(train_sources):
        info.train_args.update(src)
    sources: list[dict] = ([checkpoint] if checkpoint else []) + train_sources

    def first(*keys: str) -> Any:
        for src in sources:
            for k in keys:
                if src.get(k) is not None:
                    return src[k]
        return None

    # The self-description is data from a file: check its types, so a damaged or hand-edited one is
    # a one-line error naming the file, not a traceback or a net built from list("abc").
    net = first("net")
    if net is not None and (not isinstance(net, str) or not net.strip()):
        raise UserError(f"{model_path}: its 'net' entry {net!r} is not a net name")
    info.net_name = net
    res = first("resolution", "image_size")
    if res is not None and (type(res) is not int or not MIN_RESOLUTION <= res <= MAX_RESOLUTION):
        raise UserError(f"{model_path}: its saved resolution {res!r} is not an input size in pixels "
                        f"({MIN_RESOLUTION}..{MAX_RESOLUTION})")
    info.resolution = res
    wm = first("mb2_width_mult", "width_mult")
    if wm is not None and (type(wm) not in (int, float) or not 0 < wm <= MAX_WIDTH_MULT):
        raise UserError(f"{model_path}: its saved width multiplier {wm!r} is not a number in (0, {MAX_WIDTH_MULT}]")
    info.width_mult = float(wm) if wm is not None else None
    names = first("class_names")
    if names is not None and (not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names)):
        raise UserError(f"{model_path}: its 'class_names' entry is not a list of names (got {names!r:.80})")
    # custom priors: the checkpoint's own args decide (an upstream file in such a folder keeps the defaults)
    own_args = checkpoint.get("args") if checkpoint else None
    priors = own_args.get("priors") if isinstance(own_args, dict) else info.train_args.get("priors")
    info.priors = priors_spec_arg(priors, f"{model_path}: its priors spec") if priors is not None else None
    if names:
        info.class_names = normalize_class_names(list(names), source=f"class names in {model_path}")
        info.labels_source = str(model_path)
    else:
        labels = model_path.parent / "labels.txt"
        if (checkpoint is not None or given.is_dir()) and labels.is_file():
            info.class_names = read_labels(labels)
            info.labels_source = str(labels)
    return info


@dataclass
class LoadedModel:
    net: torch.nn.Module
    net_name: str
    class_names: list[str]
    resolution: int
    width_mult: float
    path: Path
    info: ModelInfo


# Nets with the same state_dict keys and shapes but another layout: a file saved as one may be run
# as the other (--net), e.g. an sq-ssd-lite trained here before the upstream/torchvision split.
SAME_WEIGHTS_LAYOUTS = frozenset({frozenset(("sq-ssd-lite", "sq-ssd-lite-tv"))})
# vision.__version__ that made sq-ssd-lite upstream's layout (older checkpoints: torchvision's)
SQ_SPLIT_VERSION = "1.1.0"


def _saved_before(checkpoint: dict | None, version: str) -> bool:
    """Whether one of our checkpoints was written by a package version older than ``version``
    (an unknown or unreadable version counts as older; a bare state_dict (None) does not)."""
    if not checkpoint or "model" not in checkpoint:
        return False
    try:
        saved = tuple(int(x) for x in str(checkpoint.get("version")).split("."))
    except ValueError:
        return True
    return saved < tuple(int(x) for x in version.split("."))


def resolve_settings(info: ModelInfo, *, net_name: str | None, label_file: str | os.PathLike | None,
                     resolution: int | None, width_mult: float | None) -> tuple[str, list[str], int, float]:
    """Merge flags with the model's self-description: ``(net, class_names, resolution, width_mult)``.

    A flag that contradicts the checkpoint about the net, class count or width multiplier is a
    UserError naming both; a different resolution is allowed (SSD weights do not depend on it).
    """
    given = canonical_name(net_name) if net_name else None  # UserError listing the names if unknown
    try:
        saved = canonical_name(info.net_name) if info.net_name else None
    except UserError as e:
        raise UserError(f"{info.path} says it is a {info.net_name!r} model: {e}") from None
    if given and saved and given != saved:
        if frozenset((given, saved)) not in SAME_WEIGHTS_LAYOUTS:
            raise UserError(f"{info.path} holds a {saved} model, but --net is {net_name}")
        log.warning("%s says it is a %s model; running it as %s as asked (same weights, other layout and "
                    "outputs)", info.path, saved, given)
    elif saved == "sq-ssd-lite" and not given and _saved_before(info.checkpoint, SQ_SPLIT_VERSION):
        log.warning("%s is a sq-ssd-lite model saved by pytorch-ssd %s: before %s this project's sq-ssd-lite "
                    "had torchvision's layout (2778 priors at 300 px, now sq-ssd-lite-tv). If it was trained "
                    "then, its detections here are wrong: pass --net sq-ssd-lite-tv", info.path,
                    info.checkpoint.get("version", "unknown"), SQ_SPLIT_VERSION)
    name = given or saved
    if not name:  # a bare upstream state_dict: recognise the net by its keys and shapes
        name = guess_net_name(info.state_dict, width_mult)
        if name:
            log.info("%s looks like a %s model (pass --net to say so)", info.path, name)
    if not name:
        raise UserError(f"--net is required: {info.path} does not say which net it is "
                        f"(one of: {', '.join(NET_NAMES)})")
    if label_file:
        class_names = read_labels(label_file)
        if info.class_names and len(info.class_names) != len(class_names):
            raise UserError(f"{label_file} has {len(class_names)} classes (BACKGROUND included) but "
                            f"{info.path} was trained with {len(info.class_names)}")
        in_weights = infer_num_classes(info.state_dict)
        if in_weights and in_weights != len(class_names):  # say which file is off, not just "does not match"
            raise UserError(f"{label_file} has {len(class_names)} classes (BACKGROUND included) but the heads "
                            f"in {info.path} have {in_weights}; use the labels file the model was trained with")
        if info.class_names and info.class_names != class_names:
            log.warning("class names in %s differ from those saved in %s; using the labels file",
                        label_file, info.path)
    elif info.class_names:
        class_names = info.class_names
        log.info("class names from %s (%d classes)", info.labels_source, len(class_names) - 1)
    else:
        raise UserError(f"no class names for {info.path}: pass a labels file (one class a line, BACKGROUND first)")
    if width_mult is not None and info.width_mult is not None and not math.isclose(width_mult, info.width_mult):
        raise UserError(f"{info.path} was trained with width multiplier {info.width_mult}, "
                        f"but --mb2-width-mult is {width_mult}")
    wm = width_mult if width_mult is not None else (info.width_mult if info.width_mult is not None else 1.0)
    if resolution is not None and info.resolution is not None and resolution != info.resolution:
        log.warning("%s was trained at %d px; running it at %d px as asked", info.path, info.resolution, resolution)
    res = resolution if resolution is not None else (info.resolution if info.resolution is not None else 300)
    return name, class_names, int(res), float(wm)


def load_model(path: str | os.PathLike, *, net_name: str | None = None, label_file: str | os.PathLike | None = None,
               resolution: int | None = None, width_mult: float | None = None, is_test: bool = True,
               device: torch.device | str = "cpu") -> LoadedModel:
    """Build the net named by the flags or the checkpoint and load the weights into it (eval mode)."""
    info = read_model_info(path, net_name)
    return build_model(info, net_name=net_name, label_file=label_file, resolution=resolution,
                       width_mult=width_mult, is_test=is_test, device=device)


def build_model(info: ModelInfo, *, net_name: str | None = None, label_file: str | os.PathLike | None = None,
                resolution: int | None = None, width_mult: float | None = None, is_test: bool = True,
                device: torch.device | str = "cpu") -> LoadedModel:
    """``load_model`` for weights already read with ``read_model_info``."""
    name, class_names, res, wm = resolve_settings(info, net_name=net_name, label_file=label_file,
                                                  resolution=resolution, width_mult=width_mult)
    net = create_net(name, len(class_names), resolution=res, width_mult=wm, is_test=is_test, priors=info.priors)
    load_net_weights(net, info.state_dict, name, str(info.path), checkpoint=info.checkpoint)
    net.to(device)
    net.eval()
    log.info("loaded %s (%s, %d classes, %d px%s%s)", info.path, name, len(class_names) - 1, res,
             f", width x{wm:g}" if wm != 1.0 else "", ", custom priors" if info.priors else "")
    return LoadedModel(net=net, net_name=name, class_names=class_names, resolution=res, width_mult=wm,
                       path=info.path, info=info)
