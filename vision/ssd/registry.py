"""Net name -> builder, config and pretrained-weight facts. Every script asks here.

``create_net("mb2-ssd-lite", 21, resolution=512)`` builds the net with priors that
match its feature maps at that resolution; ``get_config`` gives the same config
without building real weights (shapes come from a meta-device dry run).
Variant modules are imported lazily, so importing the registry is cheap.
"""
from __future__ import annotations

import copy
import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from vision.utils.misc import UserError

if TYPE_CHECKING:
    from vision.ssd.config.base import SSDConfig
    from vision.ssd.predictor import Predictor
    from vision.ssd.ssd import SSD


@dataclass(frozen=True)
class NetSpec:
    """What a ``--net`` name means."""

    name: str
    builder: str  # "module:function" under vision.ssd
    config_module: str  # under vision.ssd.config
    summary: str
    width_mult: bool = False  # honours --mb2-width-mult
    base_net_file: str | None = None  # upstream ImageNet backbone file that fits --base-net
    torchvision_backbone: str | None = None  # torchvision model whose ImageNet weights fit base_net


NET_SPECS: tuple[NetSpec, ...] = (
    NetSpec("vgg16-ssd", "vgg_ssd:create_vgg_ssd", "vgg_ssd_config",
            "SSD300 with a VGG16 trunk (8732 priors at 300 px; slow on CPU)",
            base_net_file="vgg16_reducedfc.pth", torchvision_backbone="vgg16"),
    NetSpec("mb1-ssd", "mobilenetv1_ssd:create_mobilenetv1_ssd", "mobilenetv1_ssd_config",
            "MobileNetV1 SSD (jetson-inference's ssd-mobilenet)",
            base_net_file="mobilenet_v1_with_relu_69_5.pth"),
    NetSpec("mb1-ssd-lite", "mobilenetv1_ssd_lite:create_mobilenetv1_ssd_lite", "mobilenetv1_ssd_config",
            "MobileNetV1 SSDLite (separable extras and heads)",
            base_net_file="mobilenet_v1_with_relu_69_5.pth"),
    NetSpec("mb2-ssd-lite", "mobilenet_v2_ssd_lite:create_mobilenetv2_ssd_lite", "mobilenetv1_ssd_config",
            "MobileNetV2 SSDLite", width_mult=True,
            base_net_file="mb2-imagenet-71_8.pth", torchvision_backbone="mobilenet_v2"),
    NetSpec("sq-ssd-lite", "squeezenet_ssd_lite:create_squeezenet_ssd_lite", "squeezenet_ssd_config",
            "SqueezeNet 1.1 SSDLite (upstream layout, 2568 priors at 300 px)", torchvision_backbone="squeezenet1_1"),
    NetSpec("sq-ssd-lite-tv", "squeezenet_ssd_lite:create_squeezenet_ssd_lite_tv", "squeezenet_tv_ssd_config",
            "SqueezeNet 1.1 SSDLite, torchvision backbone layout (2778 priors at 300 px)",
            torchvision_backbone="squeezenet1_1"),
    NetSpec("mb3-large-ssd-lite", "mobilenetv3_ssd_lite:create_mobilenetv3_large_ssd_lite",
            "mobilenetv1_ssd_config", "MobileNetV3-Large SSDLite (upstream backbone layout)"),
    NetSpec("mb3-small-ssd-lite", "mobilenetv3_ssd_lite:create_mobilenetv3_small_ssd_lite",
            "mobilenetv1_ssd_config", "MobileNetV3-Small SSDLite (upstream backbone layout)"),
    NetSpec("mb3-large-ssd-lite-tv", "mobilenetv3_ssd_lite:create_mobilenetv3_large_ssd_lite_tv",
            "mobilenetv1_ssd_config", "MobileNetV3-Large SSDLite, torchvision backbone",
            torchvision_backbone="mobilenet_v3_large"),
    NetSpec("mb3-small-ssd-lite-tv", "mobilenetv3_ssd_lite:create_mobilenetv3_small_ssd_lite_tv",
            "mobilenetv1_ssd_config", "MobileNetV3-Small SSDLite, torchvision backbone",
            torchvision_backbone="mobilenet_v3_small"),
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


def _builder(spec: NetSpec) -> Callable[..., Any]:
    module, func = spec.builder.split(":")
    return getattr(importlib.import_module(f"vision.ssd.{module}"), func)


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


def _build(spec: NetSpec, num_classes: int, width_mult: float, is_test: bool) -> "SSD":
    kwargs: dict[str, Any] = {"is_test": is_test, "image_size": None}
    if spec.width_mult:
        kwargs["width_mult"] = width_mult
    return _builder(spec)(num_classes, **kwargs)


@functools.lru_cache(maxsize=64)
def _config(name: str, resolution: int, width_mult: float) -> "SSDConfig":
    spec = _BY_NAME[name]
    with torch.device("meta"):  # no weights allocated; only shapes are needed
        skeleton = _build(spec, 2, width_mult, False)
    sizes = skeleton.feature_map_sizes(resolution)
    module = importlib.import_module(f"vision.ssd.config.{spec.config_module}")
    with torch.device("cpu"):  # real priors even if the caller builds inside a meta context
        return module.make_config(resolution, sizes)


def feature_map_sizes(name: str, resolution: int = 300, *, width_mult: float = 1.0) -> list[int]:
    """Side lengths of the net's source feature maps for a square ``resolution`` input."""
    spec = net_spec(name)
    _check_args(spec, 2, resolution, width_mult)
    with torch.device("meta"):
        skeleton = _build(spec, 2, width_mult, False)
    return skeleton.feature_map_sizes(resolution)


def get_config(name: str, resolution: int = 300, *, width_mult: float = 1.0) -> "SSDConfig":
    """SSDConfig (image size, mean/std, variances, specs, priors [N,4]) for ``name`` at ``resolution``."""
    spec = net_spec(name)
    _check_args(spec, 2, resolution, width_mult)
    return copy.deepcopy(_config(spec.name, resolution, float(width_mult)))


def create_net(name: str, num_classes: int, *, resolution: int = 300, width_mult: float = 1.0,
               is_test: bool = False) -> "SSD":
    """Build net ``name`` for ``num_classes`` classes (BACKGROUND included) at ``resolution`` px.

    Returns an ``SSD`` with ``.config`` and priors for that resolution. Weights are
    freshly initialised; load files with ``SSD.load`` / ``vision.utils.model_io``.
    """
    spec = net_spec(name)
    _check_args(spec, num_classes, resolution, width_mult)
    net = _build(spec, num_classes, float(width_mult), is_test)
    net.set_config(get_config(spec.name, resolution, width_mult=width_mult))
    return net


def create_predictor(net: "SSD", **predictor_kwargs: Any) -> "Predictor":
    """A ``vision.ssd.predictor.Predictor`` using the net's own size, mean, std and IoU threshold.

    ``predictor_kwargs`` go to Predictor (nms_method, iou_threshold, filter_threshold,
    candidate_size, sigma, device).
    """
    from vision.ssd.predictor import Predictor

    if net.config is None:
        raise ValueError("net has no config; build it with registry.create_net")
    cfg = net.config
    predictor_kwargs.setdefault("iou_threshold", cfg.iou_threshold)
    return Predictor(net, cfg.image_size, cfg.image_mean, cfg.image_std, **predictor_kwargs)


def create_upstream_predictor(net: "SSD", candidate_size: int = 200, nms_method: str | None = None,
                              sigma: float = 0.5, device: torch.device | str | None = None) -> "Predictor":
    """Upstream's ``create_*_predictor(net, candidate_size, nms_method, sigma, device)``."""
    return create_predictor(net, candidate_size=candidate_size, nms_method=nms_method, sigma=sigma,
                            device=device)


def describe_nets() -> str:
    """One line per net, for ``--help`` texts."""
    lines = [f"{s.name}: {s.summary}" for s in NET_SPECS]
    lines += [f"{alias}: alias of {target}" for alias, target in ALIASES.items()]
    return "\n".join(lines)
