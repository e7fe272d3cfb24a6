"""MobileNetV2 backbone with upstream pytorch-ssd's module layout.

``MobileNetV2(...).features`` is mb2-ssd-lite's ``base_net``; its keys match
``mb2-imagenet-71_8.pth`` and ``mb2-ssd-lite-mp-0_686.pth``. Two upstream switches
are kept because they exist in users' files and scripts:

- ``onnx_compatible``: ReLU instead of ReLU6 (same weights, different numerics;
  upstream applies it to the backbone only).
- ``use_batch_norm``: drop the BN layers (for BN-folded weights). As upstream, the
  stem always keeps its BN, so key names stay those of the files already out there.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# expansion t, output channels c, repeats n, first stride s
_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _relu(onnx_compatible: bool) -> type[nn.Module]:
    return nn.ReLU if onnx_compatible else nn.ReLU6


def _conv_act(inp: int, oup: int, kernel: int, stride: int, groups: int,
              use_batch_norm: bool, act: type[nn.Module] | None) -> list[nn.Module]:
    """conv (no bias) [+ BN] [+ activation] as a flat list, so indices match upstream."""
    layers: list[nn.Module] = [nn.Conv2d(inp, oup, kernel, stride, kernel // 2, groups=groups, bias=False)]
    if use_batch_norm:
        layers.append(nn.BatchNorm2d(oup))
    if act is not None:
        layers.append(act(inplace=True))
    return layers


def conv_bn(inp: int, oup: int, stride: int, use_batch_norm: bool = True,
            onnx_compatible: bool = False) -> nn.Sequential:
    """3x3 conv + BN + ReLU6 (the stem)."""
    return nn.Sequential(*_conv_act(inp, oup, 3, stride, 1, use_batch_norm, _relu(onnx_compatible)))


def conv_1x1_bn(inp: int, oup: int, use_batch_norm: bool = True,
                onnx_compatible: bool = False) -> nn.Sequential:
    """1x1 conv + BN + ReLU6 (the 1280-channel head of the backbone)."""
    return nn.Sequential(*_conv_act(inp, oup, 1, 1, 1, use_batch_norm, _relu(onnx_compatible)))


class InvertedResidual(nn.Module):
    """[1x1 expand] -> 3x3 depthwise -> 1x1 linear projection, + skip when shapes allow.

    ``self.conv`` indices with BN: expand 0-2, depthwise 3-5, project 6-7 (expand_ratio
    != 1) or depthwise 0-2, project 3-4 (expand_ratio == 1). mb2-ssd-lite taps the
    expanded tensor of block 14 (``GraphPath(14, 'conv', 3)``), so this layout matters.
    Fractional ``expand_ratio`` (0.2, 0.25, 0.5) is used by the SSD extras.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: float,
                 use_batch_norm: bool = True, onnx_compatible: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        act = _relu(onnx_compatible)
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        hidden = round(inp * expand_ratio)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += _conv_act(inp, hidden, 1, 1, 1, use_batch_norm, act)
        else:
            hidden = inp
        layers += _conv_act(hidden, hidden, 3, stride, hidden, use_batch_norm, act)
        layers += _conv_act(hidden, oup, 1, 1, 1, use_batch_norm, None)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """ImageNet MobileNetV2 (input [B,3,H,W] -> logits [B,n_class]); ``.features`` has 19 stages."""

    def __init__(self, n_class: int = 1000, input_size: int = 224, width_mult: float = 1.0,
                 dropout_ratio: float = 0.2, use_batch_norm: bool = True, onnx_compatible: bool = False):
        super().__init__()
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        channels = int(32 * width_mult)
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        # upstream quirk kept for key compatibility: the stem always has BN
        stages: list[nn.Module] = [conv_bn(3, channels, 2, onnx_compatible=onnx_compatible)]
        for t, c, n, s in _SETTINGS:
            out = int(c * width_mult)
            for i in range(n):
                stages.append(InvertedResidual(channels, out, s if i == 0 else 1, expand_ratio=t,
                                               use_batch_norm=use_batch_norm,
                                               onnx_compatible=onnx_compatible))
                channels = out
        stages.append(conv_1x1_bn(channels, self.last_channel, use_batch_norm=use_batch_norm,
                                  onnx_compatible=onnx_compatible))
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Sequential(nn.Dropout(dropout_ratio), nn.Linear(self.last_channel, n_class))
        self._initialize_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.classifier(x)

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
