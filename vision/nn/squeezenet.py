"""SqueezeNet 1.0 / 1.1 with torchvision's and upstream's layouts.

sq-ssd-lite uses ``squeezenet1_1().features`` as ``base_net``; the key names are the
same as torchvision's ``squeezenet1_1`` so its ImageNet weights map one to one.
The two layouts differ only in the max pools (which hold no weights): torchvision
rounds their output size up (``ceil_mode=True``: 18x18 at stride 16 for a 300 px
input), upstream qfgaohao's SqueezeNet 1.1 rounds down (17x17). sq-ssd-lite keeps
upstream's, sq-ssd-lite-tv torchvision's, so each reproduces its source's outputs.
Nothing here downloads: load weights explicitly (``vision.nn.torchvision_import``).
"""
from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    """1x1 squeeze, then parallel 1x1 and 3x3 expands concatenated on channels."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int):
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


def _pool(ceil_mode: bool = True) -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil_mode)


class SqueezeNet(nn.Module):
    """SqueezeNet classifier; ``version`` is 1.0 or 1.1.

    ``ceil_mode`` is the pools' rounding: True is torchvision's layout (and upstream's
    1.0), False upstream's SqueezeNet 1.1.
    """

    def __init__(self, version: float = 1.0, num_classes: int = 1000, ceil_mode: bool = True):
        super().__init__()
        self.num_classes = num_classes
        if version == 1.0:
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2), nn.ReLU(inplace=True), _pool(ceil_mode),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), _pool(ceil_mode),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), _pool(ceil_mode), Fire(512, 64, 256, 256),
            )
        elif version == 1.1:
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True), _pool(ceil_mode),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), _pool(ceil_mode),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), _pool(ceil_mode),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"unsupported SqueezeNet version {version}: 1.0 or 1.1 expected")
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.5), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def _no_download(pretrained: bool) -> None:
    if pretrained:
        raise ValueError("pretrained=True is not supported (no downloads in library code); "
                         "load torchvision weights with vision.nn.torchvision_import.init_from_torchvision")


def squeezenet1_0(pretrained: bool = False, **kwargs) -> SqueezeNet:
    _no_download(pretrained)
    return SqueezeNet(version=1.0, **kwargs)


def squeezenet1_1(pretrained: bool = False, **kwargs) -> SqueezeNet:
    """SqueezeNet 1.1; pass ``ceil_mode=False`` for upstream's floor pools (sq-ssd-lite)."""
    _no_download(pretrained)
    return SqueezeNet(version=1.1, **kwargs)
