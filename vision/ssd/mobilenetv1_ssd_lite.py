"""mb1-ssd-lite: mb1-ssd's trunk with separable (depthwise + pointwise) extras and heads."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..nn.mobilenet import MobileNetV1
from .heads import conv_extra, make_headers
from .mobilenetv1_ssd import BOXES_PER_LOCATION, CONFIG, EXTRAS, HEAD_CHANNELS, SOURCE_LAYER_INDEXES
from .predictor import create_upstream_predictor
from .ssd import SSD, configure

HEAD_KINDS = ("sep",) * 5 + ("1x1",)


def create_mobilenetv1_ssd_lite(num_classes: int, is_test: bool = False, *,
                                image_size: int | None = 300, boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """mb1-ssd-lite for ``num_classes`` (BACKGROUND included); priors for ``image_size`` px.

    ``boxes_per_cell``: priors per cell of each feature map (custom priors); None: the default 6.
    """
    cls, reg = make_headers(num_classes, HEAD_CHANNELS, boxes_per_cell or BOXES_PER_LOCATION, HEAD_KINDS)
    net = SSD(num_classes, MobileNetV1(1001).model, SOURCE_LAYER_INDEXES,
              nn.ModuleList(conv_extra(*e, separable=True) for e in EXTRAS), cls, reg,
              is_test=is_test, net_name="mb1-ssd-lite", arch="mobilenet_v1")
    return configure(net, CONFIG.make_config, image_size)


# upstream's per-variant predictor helper (all identical; see vision.ssd.predictor)
create_mobilenetv1_ssd_lite_predictor = create_upstream_predictor
