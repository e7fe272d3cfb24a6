"""sq-ssd-lite: SqueezeNet 1.1 trunk with separable extras and heads.

Two layouts with the same state_dict keys: ``create_squeezenet_ssd_lite`` is
upstream's (floor-mode pools, 17x17 first map, 2568 priors at 300 px), and
``create_squeezenet_ssd_lite_tv`` torchvision's (ceil-mode pools, 18x18, 2778),
whose backbone reproduces torchvision's ``squeezenet1_1.features`` exactly.
"""
from __future__ import annotations

from types import ModuleType
from typing import Sequence

from torch import nn

from ..nn.squeezenet import squeezenet1_1
from .config import squeezenet_ssd_config as CONFIG
from .config import squeezenet_tv_ssd_config as TV_CONFIG
from .heads import conv_extra, make_headers
from .predictor import create_upstream_predictor
from .ssd import SSD, configure

SOURCE_LAYER_INDEXES = (12,)  # before the last Fire module: 512 ch, stride 16
# extras: (in, 1x1 mid, out, stride, padding)
EXTRAS = ((512, 256, 512, 2, 2), (512, 256, 512, 2, 1), (512, 128, 256, 2, 1),
          (256, 128, 256, 2, 1), (256, 128, 256, 2, 1))
HEAD_CHANNELS = (512, 512, 512, 256, 256, 256)
HEAD_KINDS = ("sep",) * 5 + ("1x1",)


def _build(num_classes: int, is_test: bool, image_size: int | None, *, ceil_mode: bool, net_name: str,
           config: ModuleType, boxes_per_cell: Sequence[int] | None = None) -> SSD:
    extras = nn.ModuleList(conv_extra(i, m, o, stride=s, padding=p, separable=True) for i, m, o, s, p in EXTRAS)
    cls, reg = make_headers(num_classes, HEAD_CHANNELS, boxes_per_cell or (6,) * 6, HEAD_KINDS)
    net = SSD(num_classes, squeezenet1_1(ceil_mode=ceil_mode).features, SOURCE_LAYER_INDEXES, extras, cls, reg,
              is_test=is_test, net_name=net_name, arch="squeezenet1_1")
    return configure(net, config.make_config, image_size)


def create_squeezenet_ssd_lite(num_classes: int, is_test: bool = False, *,
                               image_size: int | None = 300,
                               boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """sq-ssd-lite (upstream's layout) for ``num_classes`` (BACKGROUND included); priors for ``image_size`` px."""
    return _build(num_classes, is_test, image_size, ceil_mode=False, net_name="sq-ssd-lite", config=CONFIG,
                  boxes_per_cell=boxes_per_cell)


def create_squeezenet_ssd_lite_tv(num_classes: int, is_test: bool = False, *,
                                  image_size: int | None = 300,
                                  boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """sq-ssd-lite-tv (torchvision's SqueezeNet 1.1 layout); otherwise as ``create_squeezenet_ssd_lite``."""
    return _build(num_classes, is_test, image_size, ceil_mode=True, net_name="sq-ssd-lite-tv", config=TV_CONFIG,
                  boxes_per_cell=boxes_per_cell)


# upstream's per-variant predictor helper (all identical; see vision.ssd.predictor)
create_squeezenet_ssd_lite_predictor = create_upstream_predictor
