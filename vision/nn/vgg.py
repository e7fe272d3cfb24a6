"""VGG16 trunk for SSD300 (conv1_1 .. conv7), as a flat layer list.

Indices match upstream and ``vgg16_reducedfc.pth``: convs at 0, 2, 5, ... 28 (as in
torchvision's ``vgg16().features``), pool5 (3x3 stride 1) at 30, conv6 (dilated
3x3, 1024) at 31, conv7 (1x1, 1024) at 33. The third pool uses ceil_mode so 300 px
gives 38x38 at conv4_3.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

# channels, 'M' max-pool, 'C' max-pool with ceil_mode
VGG16_CONFIG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512)


def vgg(cfg: Sequence = VGG16_CONFIG, batch_norm: bool = False) -> list[nn.Module]:
    """Build the trunk layers for ``cfg`` followed by pool5, conv6 (fc6) and conv7 (fc7)."""
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v in ("M", "C"):
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=v == "C"))
            continue
        layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        channels = v
    layers += [
        nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
        nn.Conv2d(channels, 1024, kernel_size=3, padding=6, dilation=6),
        nn.ReLU(inplace=True),
        nn.Conv2d(1024, 1024, kernel_size=1),
        nn.ReLU(inplace=True),
    ]
    return layers
