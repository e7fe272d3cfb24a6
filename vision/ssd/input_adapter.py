"""Make a net take detectNet's input: ``x_d = (p/255 - 0.5)/0.5`` instead of its own ``(p - mean)/std``.

Why: jetson-inference feeds every SSD ONNX model ``x_d``; vgg16-ssd expects ``p - [123,117,104]``
(~127x off in scale) and the MobileNets ``(p - 127)/128`` (close, not equal). The net's own input is
the affine ``x_net = a * x_d + b`` with ``a = 127.5/std``, ``b = (127.5 - mean)/std`` per channel.

It is an explicit Mul + Add at the graph input, not folded into the first convolution: folding is exact
only without padding, because the convolution's zero padding in ``x_d`` space is the non-zero
``b`` in the net's space (every first convolution here pads). TensorRT fuses the two element-wise ops
at no measurable cost.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from vision.ssd.detectnet import DETECTNET_MEAN, DETECTNET_STD


def affine_from_detectnet(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` float64 [3] with ``(p - mean)/std == a * (p - 127.5)/127.5 + b``."""
    mean = np.broadcast_to(np.asarray(mean, np.float64).reshape(-1), (3,))
    std = np.broadcast_to(np.asarray(std, np.float64).reshape(-1), (3,))
    d_mean, d_std = np.asarray(DETECTNET_MEAN, np.float64), np.asarray(DETECTNET_STD, np.float64)
    return d_std / std, (d_mean - mean) / std


def needs_adapter(mean: Any, std: Any) -> bool:
    a, b = affine_from_detectnet(mean, std)
    return not (np.allclose(a, 1.0, rtol=0, atol=1e-12) and np.allclose(b, 0.0, rtol=0, atol=1e-12))


class ExportNet(nn.Module):
    """The graph onnx_export.py writes: an optional input adapter (``mean``/``std`` given: feed it
    detectNet's normalization, the net sees its own), the test-mode net, and ``boxes`` clamped to
    [0, 1] (one Clip; decoded boxes reach past the image otherwise, and detectNet clamps later anyway)."""

    def __init__(self, net: nn.Module, mean: Any = None, std: Any = None, clamp_boxes: bool = True) -> None:
        super().__init__()
        self.net = net
        self.adapt = mean is not None and needs_adapter(mean, 1.0 if std is None else std)
        a, b = affine_from_detectnet(mean, 1.0 if std is None else std) if self.adapt else (np.ones(3), np.zeros(3))
        self.register_buffer("scale", torch.tensor(a, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(b, dtype=torch.float32).view(1, 3, 1, 1))
        self.clamp_boxes = clamp_boxes
        self.train(net.training)  # an exporter restoring "training" would otherwise flip the net's BatchNorm

    @property
    def config(self) -> Any:
        return getattr(self.net, "config", None)

    @property
    def is_test(self) -> bool:  # a Predictor decodes the outputs of a net that is not in test mode
        return bool(getattr(self.net, "is_test", False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.adapt:
            x = x * self.scale + self.shift
        scores, boxes = self.net(x)
        if self.clamp_boxes:
            boxes = boxes.clamp(0.0, 1.0)
        return scores, boxes
