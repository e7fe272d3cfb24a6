"""mb2-ssd-lite: MobileNetV2 trunk, inverted-residual extras, separable BN heads."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..nn.mobilenet_v2 import InvertedResidual, MobileNetV2
from .config import mobilenetv1_ssd_config as CONFIG
from .heads import make_headers
from .predictor import create_upstream_predictor
from .ssd import SSD, GraphPath, configure

# extras: (out channels, expand ratio), stride 2 each
EXTRAS = ((512, 0.2), (256, 0.25), (256, 0.5), (64, 0.25))
HEAD_KINDS = ("sep",) * 5 + ("1x1",)


def create_mobilenetv2_ssd_lite(num_classes: int, width_mult: float = 1.0, use_batch_norm: bool = True,
                                onnx_compatible: bool = False, is_test: bool = False, *,
                                image_size: int | None = 300, boxes_per_cell: Sequence[int] | None = None) -> SSD:
    """mb2-ssd-lite for ``num_classes`` (BACKGROUND included); priors for ``image_size`` px.

    ``onnx_compatible`` swaps ReLU6 for ReLU in the backbone only (as upstream); the
    extras and heads keep ReLU6, which exports as Clip. Weights trained with ReLU6
    give slightly different outputs with it on. ``boxes_per_cell``: priors per cell of each feature
    map (custom priors); None: the default 6.
    """
    base_net = MobileNetV2(width_mult=width_mult, use_batch_norm=use_batch_norm,
                           onnx_compatible=onnx_compatible).features
    # tap block 14's expanded tensor (after expand conv [+BN] + activation): stride 16
    expand = base_net[14].conv
    tap = GraphPath(14, "conv", 3 if use_batch_norm else 2)
    channels = [expand[0].out_channels, base_net[-1][0].out_channels]
    extras = []
    for out, ratio in EXTRAS:
        extras.append(InvertedResidual(channels[-1], out, stride=2, expand_ratio=ratio))
        channels.append(out)
    cls, reg = make_headers(num_classes, channels, boxes_per_cell or (6,) * 6, HEAD_KINDS, batch_norm=True, activation=nn.ReLU6)
    net = SSD(num_classes, base_net, [tap, len(base_net)], nn.ModuleList(extras), cls, reg,
              is_test=is_test, net_name="mb2-ssd-lite", arch="mobilenet_v2")
    return configure(net, CONFIG.make_config, image_size)


# upstream's per-variant predictor helper (all identical; see vision.ssd.predictor)
create_mobilenetv2_ssd_lite_predictor = create_upstream_predictor
