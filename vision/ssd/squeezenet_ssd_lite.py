"""sq-ssd-lite: SqueezeNet 1.1 trunk with separable extras and heads."""
from __future__ import annotations

from torch import nn

from ..nn.squeezenet import squeezenet1_1
from .config import squeezenet_ssd_config as CONFIG
from .heads import conv_extra, make_headers
from .predictor import create_upstream_predictor
from .ssd import SSD, configure

SOURCE_LAYER_INDEXES = (12,)  # before the last Fire module: 512 ch, stride 16
# extras: (in, 1x1 mid, out, stride, padding)
EXTRAS = ((512, 256, 512, 2, 2), (512, 256, 512, 2, 1), (512, 128, 256, 2, 1),
          (256, 128, 256, 2, 1), (256, 128, 256, 2, 1))
HEAD_CHANNELS = (512, 512, 512, 256, 256, 256)
HEAD_KINDS = ("sep",) * 5 + ("1x1",)


def create_squeezenet_ssd_lite(num_classes: int, is_test: bool = False, *,
                               image_size: int | None = 300) -> SSD:
    """sq-ssd-lite for ``num_classes`` (BACKGROUND included); priors for ``image_size`` px."""
    extras = nn.ModuleList(conv_extra(i, m, o, stride=s, padding=p, separable=True) for i, m, o, s, p in EXTRAS)
    cls, reg = make_headers(num_classes, HEAD_CHANNELS, (6,) * 6, HEAD_KINDS)
    net = SSD(num_classes, squeezenet1_1().features, SOURCE_LAYER_INDEXES, extras, cls, reg,
              is_test=is_test, net_name="sq-ssd-lite", arch="squeezenet1_1")
    return configure(net, CONFIG.make_config, image_size)


# upstream's per-variant predictor helper (all identical; see vision.ssd.predictor)
create_squeezenet_ssd_lite_predictor = create_upstream_predictor
