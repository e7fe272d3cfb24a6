"""mb1-ssd (alias ssd-mobilenet): MobileNetV1 trunk, plain 3x3 heads, 3000 priors at 300 px.

jetson-inference's ``ssd-mobilenet`` models and ``mobilenet-v1-ssd-mp-0_675.pth`` are this net.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..nn.mobilenet import MobileNetV1
from .config import mobilenetv1_ssd_config as CONFIG
from .heads import conv_extra, make_headers
from .predictor import create_upstream_predictor
from .ssd import SSD, configure

# taps: after stage 11 (512 ch, stride 16) and the end of the trunk (1024 ch, stride 32)
SOURCE_LAYER_INDEXES = (12, 14)
# extras: (in, 1x1 mid, out), each halving the map
EXTRAS = ((1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256))
HEAD_CHANNELS = (512, 1024, 512, 256, 256, 256)
BOXES_PER_LOCATION = (6,) * 6


def create_mobilenetv1_ssd(num_classes: int, is_test: bool = False, *, image_size: int | None = 300,
                           boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """mb1-ssd for ``num_classes`` (BACKGROUND included); priors for ``image_size`` px.

    ``boxes_per_cell``: priors per cell of each feature map (custom priors); None: the default 6.
    """
    cls, reg = make_headers(num_classes, HEAD_CHANNELS, boxes_per_cell or BOXES_PER_LOCATION, ("conv",) * 6)
    net = SSD(num_classes, MobileNetV1(1001).model, SOURCE_LAYER_INDEXES,
              nn.ModuleList(conv_extra(*e) for e in EXTRAS), cls, reg,
              is_test=is_test, net_name="mb1-ssd", arch="mobilenet_v1")
    return configure(net, CONFIG.make_config, image_size)


# upstream's per-variant predictor helper (all identical; see vision.ssd.predictor)
create_mobilenetv1_ssd_predictor = create_upstream_predictor
