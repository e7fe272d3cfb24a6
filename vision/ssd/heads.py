"""Building blocks shared by every SSD variant: prediction heads and extra layers.

The variants differ only in data (channel lists, head kinds), so each layout is
written once here and its module indices reproduce upstream's state_dict keys:

- ``"conv"`` head: one 3x3 conv (mb1-ssd, vgg16-ssd). Keys ``<i>.weight``.
- ``"sep"`` head: ``SeperableConv2d`` 3x3 (the *-lite nets). Keys ``<i>.0`` depthwise,
  then ``<i>.1`` BN and ``<i>.3`` pointwise (with BN) or ``<i>.2`` pointwise (without).
- ``"1x1"`` head: one 1x1 conv (last head of the *-lite nets).
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

HEAD_KINDS = ("conv", "sep", "1x1")


def SeperableConv2d(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,  # noqa: N802
                    padding: int = 0, *, batch_norm: bool = False,
                    activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    """Depthwise kxk conv [+ BN] + activation, then a 1x1 pointwise conv (upstream spelling).

    mb1-ssd-lite / sq-ssd-lite use it without BN and with ReLU; mb2/mb3-ssd-lite with
    BN and ReLU6. Input [B,in,H,W] -> [B,out,H',W'].
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding,
                                         groups=in_channels)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(in_channels))
    layers.append(activation())
    layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=1))
    return nn.Sequential(*layers)


def make_head(kind: str, in_channels: int, out_channels: int, *, batch_norm: bool = False,
              activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Module:
    """One prediction head of ``kind`` (see module docstring); output keeps H and W."""
    if kind == "conv":
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    if kind == "sep":
        return SeperableConv2d(in_channels, out_channels, kernel_size=3, padding=1,
                               batch_norm=batch_norm, activation=activation)
    if kind == "1x1":
        return nn.Conv2d(in_channels, out_channels, kernel_size=1)
    raise ValueError(f"unknown head kind {kind!r}; expected one of {HEAD_KINDS}")


def make_headers(num_classes: int, in_channels: Sequence[int], boxes_per_location: Sequence[int],
                 kinds: Sequence[str], *, batch_norm: bool = False,
                 activation: Callable[[], nn.Module] = nn.ReLU) -> tuple[nn.ModuleList, nn.ModuleList]:
    """Classification and regression heads, one per source feature map.

    Head ``i`` maps [B, in_channels[i], H, W] to [B, boxes[i]*num_classes, H, W]
    (classification) and [B, boxes[i]*4, H, W] (regression). ``boxes_per_location``
    must agree with the priors config (4 or 6 anchors per cell).
    """
    if not (len(in_channels) == len(boxes_per_location) == len(kinds)):
        raise ValueError("in_channels, boxes_per_location and kinds must have the same length")
    cls = nn.ModuleList(make_head(k, c, b * num_classes, batch_norm=batch_norm, activation=activation)
                        for c, b, k in zip(in_channels, boxes_per_location, kinds))
    reg = nn.ModuleList(make_head(k, c, b * 4, batch_norm=batch_norm, activation=activation)
                        for c, b, k in zip(in_channels, boxes_per_location, kinds))
    return cls, reg


def conv_extra(in_channels: int, mid_channels: int, out_channels: int, *, stride: int = 2,
               padding: int = 1, separable: bool = False) -> nn.Sequential:
    """An SSD extra layer: 1x1 reduce + ReLU, then a 3x3 (stride ``stride``) to ``out_channels``.

    Plain (mb1-ssd, vgg16-ssd): keys 0 (1x1) and 2 (3x3), ReLU after both.
    Separable (mb1-ssd-lite, sq-ssd-lite): keys 0 and 2.{0,2} (``SeperableConv2d``, no
    activation after its pointwise conv, as upstream).
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, mid_channels, kernel_size=1), nn.ReLU()]
    if separable:
        layers.append(SeperableConv2d(mid_channels, out_channels, 3, stride, padding))
    else:
        layers += [nn.Conv2d(mid_channels, out_channels, 3, stride, padding), nn.ReLU()]
    return nn.Sequential(*layers)
