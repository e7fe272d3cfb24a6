"""vgg16-ssd: the SSD300 paper net (VGG16 trunk, BN on conv4_3), 8732 priors at 300 px."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..nn.vgg import VGG16_CONFIG, vgg
from .config import vgg_ssd_config as CONFIG
from .heads import conv_extra, make_headers
from .predictor import create_upstream_predictor
from .ssd import SSD, configure

CONV4_3 = 23  # tap conv4_3 (after its ReLU, before pool4): 512 ch, 38x38 at 300 px
# extras: (in, 1x1 mid, out, stride, padding); the last two shrink 5 -> 3 -> 1 at 300 px
EXTRAS = ((1024, 256, 512, 2, 1), (512, 128, 256, 2, 1), (256, 128, 256, 1, 0), (256, 128, 256, 1, 0))
HEAD_CHANNELS = (512, 1024, 512, 256, 256, 256)
BOXES_PER_LOCATION = (4, 6, 6, 6, 4, 4)


def create_vgg_ssd(num_classes: int, is_test: bool = False, *, image_size: int | None = 300,
                   boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """vgg16-ssd for ``num_classes`` (BACKGROUND included); priors for ``image_size`` px."""
    base_net = nn.ModuleList(vgg(VGG16_CONFIG))
    sources = [(CONV4_3, nn.BatchNorm2d(512)), len(base_net)]
    extras = nn.ModuleList(conv_extra(i, m, o, stride=s, padding=p) for i, m, o, s, p in EXTRAS)
    cls, reg = make_headers(num_classes, HEAD_CHANNELS, boxes_per_cell or BOXES_PER_LOCATION, ("conv",) * 6)
    net = SSD(num_classes, base_net, sources, extras, cls, reg, is_test=is_test,
              net_name="vgg16-ssd", arch="vgg16")
    return configure(net, CONFIG.make_config, image_size)


# upstream's per-variant predictor helper (all identical; see vision.ssd.predictor)
create_vgg_ssd_predictor = create_upstream_predictor
