"""MobileNetV1 backbone, laid out so its ``.model`` state_dict keys equal upstream's.

mb1-ssd / mb1-ssd-lite use ``MobileNetV1(...).model`` (an ``nn.Sequential`` of 14
stages) as ``base_net``; the pretrained ``mobilenet_v1_with_relu_69_5.pth`` and the
released SSD files index it as ``<stage>.<layer>`` (e.g. ``0.0.weight`` is the stem
conv, ``1.3.weight`` the first pointwise conv).
"""
from __future__ import annotations

import torch
from torch import nn

# (output channels, stride) of the 13 depthwise-separable stages after the stem.
_DW_STAGES: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    """3x3 conv + BN + ReLU (the stem). Keys: 0 conv, 1 bn."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


def conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU. Keys: 0/1 dw, 3/4 pw."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """ImageNet-style MobileNetV1 (input [B,3,H,W] -> logits [B,num_classes]).

    Only ``.model`` (overall stride 32, 1024 channels out) is used by the SSDs.
    """

    def __init__(self, num_classes: int = 1024):
        super().__init__()
        stages = [conv_bn(3, 32, 2)]
        channels = 32
        for out, stride in _DW_STAGES:
            stages.append(conv_dw(channels, out, stride))
            channels = out
        self.model = nn.Sequential(*stages)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)
