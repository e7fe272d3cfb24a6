"""Net name -> builder: one row per net. Every script asks here.

``create_net("mb2-ssd-lite", 21, resolution=512)`` builds the net with priors that
match its feature maps at that resolution; ``get_config`` gives the same config
without building real weights (shapes come from a meta-device dry run).

A row is the only link between a ``--net`` name and its definition: the builder (in its
variant module) makes the SSD, and the net it makes carries the rest (its config factory
from ``vision.ssd.config``, its backbone ``arch`` for torchvision ImageNet weights).
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from vision.ssd import model_io
from vision.ssd.config.base import SSDConfig
from vision.ssd.custom_priors import config_with_priors, priors_per_cell
from vision.ssd.mobilenet_v2_ssd_lite import create_mobilenetv2_ssd_lite
from vision.ssd.mobilenetv1_ssd import create_mobilenetv1_ssd
from vision.ssd.mobilenetv1_ssd_lite import create_mobilenetv1_ssd_lite
from vision.ssd.mobilenetv3_ssd_lite import (create_mobilenetv3_large_ssd_lite, create_mobilenetv3_large_ssd_lite_tv,
                                             create_mobilenetv3_small_ssd_lite, create_mobilenetv3_small_ssd_lite_tv)
from vision.ssd.predictor import create_predictor, create_upstream_predictor  # noqa: F401  (API)
from vision.ssd.squeezenet_ssd_lite import create_squeezenet_ssd_lite, create_squeezenet_ssd_lite_tv
from vision.ssd.ssd import SSD
from vision.ssd.vgg_ssd import create_vgg_ssd
from vision.utils.misc import UserError


@dataclass(frozen=True)
class NetSpec:
    """What a ``--net`` name means."""

    name: str
    build: Callable[..., SSD]  # build(num_classes, is_test=..., image_size=..., [width_mult=...])
    summary: str
    width_mult: bool = False  # honours --mb2-width-mult


NET_SPECS: tuple[NetSpec, ...] = (
    NetSpec("vgg16-ssd", create_vgg_ssd, "SSD300 with a VGG16 trunk (8732 priors at 300 px; slow on CPU)"),
    NetSpec("mb1-ssd", create_mobilenetv1_ssd, "MobileNetV1 SSD (jetson-inference's ssd-mobilenet)"),
    NetSpec("mb1-ssd-lite", create_mobilenetv1_ssd_lite, "MobileNetV1 SSDLite (separable extras and heads)"),
    NetSpec("mb2-ssd-lite", create_mobilenetv2_ssd_lite, "MobileNetV2 SSDLite", width_mult=True),
    NetSpec("sq-ssd-lite", create_squeezenet_ssd_lite, "SqueezeNet 1.1 SSDLite (upstream layout, 2568 priors at 300 px)"),
    NetSpec("sq-ssd-lite-tv", create_squeezenet_ssd_lite_tv,
            "SqueezeNet 1.1 SSDLite, torchvision backbone layout (2778 priors at 300 px)"),
    NetSpec("mb3-large-ssd-lite", create_mobilenetv3_large_ssd_lite,
            "MobileNetV3-Large SSDLite (upstream backbone layout)"),
    NetSpec("mb3-small-ssd-lite", create_mobilenetv3_small_ssd_lite,
            "MobileNetV3-Small SSDLite (upstream backbone layout)"),
    NetSpec("mb3-large-ssd-lite-tv", create_mobilenetv3_large_ssd_lite_tv,
            "MobileNetV3-Large SSDLite, torchvision backbone"),
    NetSpec("mb3-small-ssd-lite-tv", create_mobilenetv3_small_ssd_lite_tv,
            "MobileNetV3-Small SSDLite, torchvision backbone"),
)
ALIASES: dict[str, str] = {"ssd-mobilenet": "mb1-ssd"}
_BY_NAME: dict[str, NetSpec] = {s.name: s for s in NET_SPECS}
CANONICAL_NAMES: tuple[str, ...] = tuple(_BY_NAME)
NET_NAMES: tuple[str, ...] = CANONICAL_NAMES + tuple(ALIASES)  # valid --net choices


def canonical_name(name: str) -> str:
    """Resolve an alias; UserError listing the valid names for an unknown one."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in _BY_NAME:
        raise UserError(f"unknown net {name!r}; valid nets: {', '.join(NET_NAMES)}")
    return key


def net_spec(name: str) -> NetSpec:
    return _BY_NAME[canonical_name(name)]


def _check_args(spec: NetSpec, num_classes: int, resolution: int, width_mult: float) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"{spec.name}: need at least 2 classes (BACKGROUND + 1), got {num_classes!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise UserError(f"{spec.name}: resolution must be a positive integer, got {resolution!r}")
    if not spec.width_mult and width_mult != 1.0:
        raise UserError(f"width multiplier {width_mult} is only supported by "
                        f"{', '.join(s.name for s in NET_SPECS if s.width_mult)}, not {spec.name}")
    if not (0 < width_mult <= 4):
        raise UserError(f"{spec.name}: width multiplier must be in (0, 4], got {width_mult}")


def _build(spec: NetSpec, num_classes: int, width_mult: float, is_test: bool,
           boxes_per_cell: tuple[int, ...] | None = None) -> "SSD":
    kwargs: dict[str, Any] = {"is_test": is_test, "image_size": None}
    if spec.width_mult:
        kwargs["width_mult"] = width_mult
    if boxes_per_cell is not None:
        kwargs["boxes_per_cell"] = boxes_per_cell
    return spec.build(num_classes, **kwargs)


@functools.lru_cache(maxsize=64)
def _config(name: str, resolution: int, width_mult: float) -> "SSDConfig":
    spec = _BY_NAME[name]
    with torch.device("meta"):  # no weights allocated; only shapes are needed
        skeleton = _build(spec, 2, width_mult, False)
    sizes = skeleton.feature_map_sizes(resolution)
    with torch.device("cpu"):  # real priors even if the caller builds inside a meta context
        return skeleton.config_factory(resolution, sizes)


def feature_map_sizes(name: str, resolution: int = 300, *, width_mult: float = 1.0) -> list[int]:
    """Side lengths of the net's source feature maps for a square ``resolution`` input."""
    spec = net_spec(name)
    _check_args(spec, 2, resolution, width_mult)
    with torch.device("meta"):
        skeleton = _build(spec, 2, width_mult, False)
    return skeleton.feature_map_sizes(resolution)


def get_config(name: str, resolution: int = 300, *, width_mult: float = 1.0,
               priors: dict | None = None) -> "SSDConfig":
    """SSDConfig (image size, mean/std, variances, specs, priors [N,4]) for ``name`` at ``resolution``.

    ``priors``: a custom priors spec (``vision.ssd.custom_priors``) replacing the net's default priors;
    a spec with another number of feature maps than the net is a one-line UserError.
    """
    spec = net_spec(name)
    _check_args(spec, 2, resolution, width_mult)
    config = copy.deepcopy(_config(spec.name, resolution, float(width_mult)))
    if priors is None:
        return config
    sizes = feature_map_sizes(spec.name, resolution, width_mult=width_mult)
    n = len(priors.get("feature_maps") or []) if isinstance(priors, dict) else 0
    if n and n != len(sizes):
        raise UserError(f"the priors spec has {n} feature maps but {spec.name} has {len(sizes)} "
                        f"({sizes} at {resolution} px)")
    return config_with_priors(config, priors, sizes)


def create_net(name: str, num_classes: int, *, resolution: int = 300, width_mult: float = 1.0,
               is_test: bool = False, priors: dict | None = None) -> "SSD":
    """Build net ``name`` for ``num_classes`` classes (BACKGROUND included) at ``resolution`` px.

    Returns an ``SSD`` with ``.config`` and priors for that resolution. Weights are
    freshly initialised; load files with ``SSD.load`` / ``vision.ssd.model_io``. ``priors``: a custom
    priors spec; the heads then predict ``priors_per_cell(spec)`` boxes per cell of each map.
    """
    spec = net_spec(name)
    _check_args(spec, num_classes, resolution, width_mult)
    config = get_config(spec.name, resolution, width_mult=width_mult, priors=priors)
    boxes = tuple(priors_per_cell(priors)) if priors is not None else None
    net = _build(spec, num_classes, float(width_mult), is_test, boxes)
    if priors is not None:  # another resolution (SSD.config_factory) keeps the custom priors
        net.config_factory = functools.partial(_custom_config, spec.name, float(width_mult), priors)
    net.set_config(config)
    return net


def _custom_config(name: str, width_mult: float, priors: dict, image_size: int,
                   feature_map_sizes: list[int] | None = None) -> "SSDConfig":
    return get_config(name, image_size, width_mult=width_mult, priors=priors)


@functools.lru_cache(maxsize=32)
def _net_signature(name: str, width_mult: float) -> frozenset:
    with torch.device("meta"):
        net = _build(_BY_NAME[name], 2, width_mult, False)
    return model_io.signature(net.state_dict())


def guess_net_name(state_dict: Mapping[str, torch.Tensor], width_mult: float | None = None) -> str | None:
    """Which registry net a state_dict belongs to (by key/shape signature), or None."""
    sig = model_io.signature(state_dict)
    widths = [1.0] + ([float(width_mult)] if width_mult and width_mult != 1.0 else [])
    for spec in NET_SPECS:
        for wm in widths if spec.width_mult else [1.0]:
            if _net_signature(spec.name, wm) == sig:
                return spec.name
    return None


model_io.set_net_guesser(guess_net_name, canonical_name)


def describe_nets() -> str:
    """One line per net, for ``--help`` texts."""
    lines = [f"{s.name}: {s.summary}" for s in NET_SPECS]
    lines += [f"{alias}: alias of {target}" for alias, target in ALIASES.items()]
    return "\n".join(lines)
