"""mb3-large-ssd-lite / mb3-small-ssd-lite, and their torchvision-backbone twins.

The upstream nets (``mb3-*-ssd-lite``) use upstream's own MobileNetV3 layout
(``vision.nn.mobilenetv3``), so files trained with upstream load unchanged; no
ImageNet weights exist for that layout. The ``mb3-*-ssd-lite-tv`` nets put
torchvision's MobileNetV3 ``features`` in ``base_net`` instead, so torchvision's
ImageNet weights load into them (``vision.nn.torchvision_import``); everything after
the backbone is the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from torch import nn

from ..nn.mobilenetv3 import Block, MobileNetV3_Large, MobileNetV3_Small, hswish
from .config import mobilenetv1_ssd_config as CONFIG
from .heads import make_headers
from .predictor import create_upstream_predictor
from .ssd import SSD, GraphPath, configure

# extras: (expand, out) channels of a stride-2 3x3 Block with hswish, no SE
EXTRAS = ((256, 512), (128, 256), (128, 256), (64, 64))
HEAD_KINDS = ("sep",) * 5 + ("1x1",)


@dataclass(frozen=True)
class _Backbone:
    name: str
    arch: str
    features: Callable[[], nn.Sequential]
    sources: tuple  # source_layer_indexes
    channels: tuple[int, int]  # channels of the two backbone taps (stride 16, stride 32)


def _tv_features(builder: str) -> Callable[[], nn.Sequential]:
    def make() -> nn.Sequential:
        import torchvision

        return getattr(torchvision.models, builder)(weights=None).features
    return make


_BACKBONES = {
    "mb3-large-ssd-lite": _Backbone("mb3-large-ssd-lite", "mobilenet_v3_large_upstream",
                                    lambda: MobileNetV3_Large().features, (15, 21), (112, 960)),
    "mb3-small-ssd-lite": _Backbone("mb3-small-ssd-lite", "mobilenet_v3_small_upstream",
                                    lambda: MobileNetV3_Small().features, (11, 17), (48, 576)),
    # torchvision: tap the expand conv of the first stride-32 block (block 13 / 9), as SSDlite does
    "mb3-large-ssd-lite-tv": _Backbone("mb3-large-ssd-lite-tv", "mobilenet_v3_large",
                                       _tv_features("mobilenet_v3_large"),
                                       (GraphPath(13, "block", 1), 17), (672, 960)),
    "mb3-small-ssd-lite-tv": _Backbone("mb3-small-ssd-lite-tv", "mobilenet_v3_small",
                                       _tv_features("mobilenet_v3_small"),
                                       (GraphPath(9, "block", 1), 13), (288, 576)),
}


def _build(name: str, num_classes: int, is_test: bool, image_size: int | None,
           boxes_per_cell: Sequence[int] | None = None) -> SSD:
    spec = _BACKBONES[name]
    channels = list(spec.channels)
    extras = []
    for expand, out in EXTRAS:
        extras.append(Block(3, channels[-1], expand, out, hswish(), None, stride=2))
        channels.append(out)
    cls, reg = make_headers(num_classes, channels, boxes_per_cell or (6,) * 6, HEAD_KINDS, batch_norm=True,
                            activation=nn.ReLU6)
    net = SSD(num_classes, spec.features(), spec.sources, nn.ModuleList(extras), cls, reg,
              is_test=is_test, net_name=name, arch=spec.arch)
    return configure(net, CONFIG.make_config, image_size)


def _check_upstream_options(width_mult: float, use_batch_norm: bool) -> None:
    # upstream accepted these but could not honour them (width_mult != 1 broke the heads)
    if width_mult != 1.0:
        raise ValueError(f"mb3 nets support width_mult=1.0 only, got {width_mult}")
    if not use_batch_norm:
        raise ValueError("mb3 nets always use batch norm")


def create_mobilenetv3_large_ssd_lite(num_classes: int, width_mult: float = 1.0, use_batch_norm: bool = True,
                                      onnx_compatible: bool = False, is_test: bool = False, *,
                                      image_size: int | None = 300,
                                      boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """mb3-large-ssd-lite (upstream layout). ``onnx_compatible`` is accepted and ignored, as upstream."""
    _check_upstream_options(width_mult, use_batch_norm)
    return _build("mb3-large-ssd-lite", num_classes, is_test, image_size, boxes_per_cell)


def create_mobilenetv3_small_ssd_lite(num_classes: int, width_mult: float = 1.0, use_batch_norm: bool = True,
                                      onnx_compatible: bool = False, is_test: bool = False, *,
                                      image_size: int | None = 300,
                                      boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """mb3-small-ssd-lite (upstream layout). ``onnx_compatible`` is accepted and ignored, as upstream."""
    _check_upstream_options(width_mult, use_batch_norm)
    return _build("mb3-small-ssd-lite", num_classes, is_test, image_size, boxes_per_cell)


def create_mobilenetv3_large_ssd_lite_tv(num_classes: int, is_test: bool = False, *,
                                         image_size: int | None = 300,
                                         boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """mb3-large-ssd-lite-tv: torchvision MobileNetV3-Large backbone (ImageNet weights loadable)."""
    return _build("mb3-large-ssd-lite-tv", num_classes, is_test, image_size, boxes_per_cell)


def create_mobilenetv3_small_ssd_lite_tv(num_classes: int, is_test: bool = False, *,
                                         image_size: int | None = 300,
                                         boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """mb3-small-ssd-lite-tv: torchvision MobileNetV3-Small backbone (ImageNet weights loadable)."""
    return _build("mb3-small-ssd-lite-tv", num_classes, is_test, image_size, boxes_per_cell)


# upstream's per-variant predictor helper (all identical; see vision.ssd.predictor)
create_mobilenetv3_ssd_lite_predictor = create_upstream_predictor
