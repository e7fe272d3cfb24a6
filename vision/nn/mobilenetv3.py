"""MobileNetV3 Large/Small with upstream pytorch-ssd's (kuangliu-style) layout.

This is NOT torchvision's MobileNetV3: squeeze-excitation sits after the projection
(on the output channels, with BN), and every block has an expand conv. The layout is
kept so mb3-*-ssd-lite files trained with upstream load unchanged; torchvision's
ImageNet weights cannot be mapped onto it (see ``vision.nn.torchvision_import``).

``MobileNetV3_Large().features``: 0 conv, 1 bn, 2 hswish, 3..17 blocks, 18 conv,
19 bn, 20 hswish (stride 32, 960 channels). Small: 3..13 blocks, 14-16 (576 channels).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class hswish(nn.Module):  # noqa: N801  (upstream name)
    """x * relu6(x + 3) / 6, written with Clip-friendly ops for ONNX opsets < 14."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) / 6.0


class hsigmoid(nn.Module):  # noqa: N801
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class SeModule(nn.Module):
    """Squeeze-excitation on ``in_size`` channels (pool, 1x1 reduce + BN + ReLU, 1x1 + BN, hsigmoid)."""

    def __init__(self, in_size: int, reduction: int = 4):
        super().__init__()
        mid = in_size // reduction
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_size, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, in_size, 1, bias=False),
            nn.BatchNorm2d(in_size),
            hsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class Block(nn.Module):
    """1x1 expand -> kxk depthwise -> 1x1 project [-> SE]; shortcut added when stride is 1.

    ``nolinear`` is an activation module instance (shared by both activations, it has
    no state); ``semodule`` an ``SeModule`` or None.
    """

    def __init__(self, kernel_size: int, in_size: int, expand_size: int, out_size: int,
                 nolinear: nn.Module, semodule: nn.Module | None, stride: int):
        super().__init__()
        self.stride = stride
        self.se = semodule  # registered first, as upstream (state_dict key order)
        self.conv1 = nn.Conv2d(in_size, expand_size, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(expand_size)
        self.nolinear1 = nolinear
        self.conv2 = nn.Conv2d(expand_size, expand_size, kernel_size, stride, kernel_size // 2,
                               groups=expand_size, bias=False)
        self.bn2 = nn.BatchNorm2d(expand_size)
        self.nolinear2 = nolinear
        self.conv3 = nn.Conv2d(expand_size, out_size, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_size)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_size != out_size:
            self.shortcut = nn.Sequential(nn.Conv2d(in_size, out_size, 1, bias=False),
                                          nn.BatchNorm2d(out_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.nolinear1(self.bn1(self.conv1(x)))
        out = self.nolinear2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return out + self.shortcut(x) if self.stride == 1 else out


# kernel, in, expand, out, activation ("RE" ReLU / "HS" hswish), SE, stride
_LARGE = (
    (3, 16, 16, 16, "RE", False, 1),
    (3, 16, 64, 24, "RE", False, 2),
    (3, 24, 72, 24, "RE", False, 1),
    (5, 24, 72, 40, "RE", True, 2),
    (5, 40, 120, 40, "RE", True, 1),
    (5, 40, 120, 40, "RE", True, 1),
    (3, 40, 240, 80, "HS", False, 2),
    (3, 80, 200, 80, "HS", False, 1),
    (3, 80, 184, 80, "HS", False, 1),
    (3, 80, 184, 80, "HS", False, 1),
    (3, 80, 480, 112, "HS", True, 1),
    (3, 112, 672, 112, "HS", True, 1),
    (5, 112, 672, 160, "HS", True, 1),
    (5, 160, 672, 160, "HS", True, 2),
    (5, 160, 960, 160, "HS", True, 1),
)
_SMALL = (
    (3, 16, 16, 16, "RE", True, 2),
    (3, 16, 72, 24, "RE", False, 2),
    (3, 24, 88, 24, "RE", False, 1),
    (5, 24, 96, 40, "HS", True, 2),
    (5, 40, 240, 40, "HS", True, 1),
    (5, 40, 240, 40, "HS", True, 1),
    (5, 40, 120, 48, "HS", True, 1),
    (5, 48, 144, 48, "HS", True, 1),
    (5, 48, 288, 96, "HS", True, 2),
    (5, 96, 576, 96, "HS", True, 1),
    (5, 96, 576, 96, "HS", True, 1),
)


class _MobileNetV3(nn.Module):
    def __init__(self, table, last_channels: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), hswish()]
        for k, cin, exp, cout, act, se, stride in table:
            nolinear = nn.ReLU(inplace=True) if act == "RE" else hswish()
            layers.append(Block(k, cin, exp, cout, nolinear, SeModule(cout) if se else None, stride))
        cin = table[-1][3]
        layers += [nn.Conv2d(cin, last_channels, 1, bias=False), nn.BatchNorm2d(last_channels), hswish()]
        self.features = nn.Sequential(*layers)
        self.linear3 = nn.Linear(last_channels, 1280)
        self.bn3 = nn.BatchNorm1d(1280)
        self.hs3 = hswish()
        self.linear4 = nn.Linear(1280, num_classes)
        self.init_params()

    def init_params(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.linear4(self.hs3(self.bn3(self.linear3(x))))


class MobileNetV3_Large(_MobileNetV3):  # noqa: N801
    def __init__(self, num_classes: int = 1000):
        super().__init__(_LARGE, 960, num_classes)


class MobileNetV3_Small(_MobileNetV3):  # noqa: N801
    def __init__(self, num_classes: int = 1000):
        super().__init__(_SMALL, 576, num_classes)
