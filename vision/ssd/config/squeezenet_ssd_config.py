"""Config of SqueezeNet-SSD-Lite (upstream values at 300 px)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vision.ssd.config.base import SSDConfig, build_config
from vision.utils.box_utils import SSDBoxSizes, SSDSpec, generate_ssd_priors

image_size = 300
image_mean = np.array([127, 127, 127])  # RGB layout
image_std = 128.0
iou_threshold = 0.45
center_variance = 0.1
size_variance = 0.2

specs = [
    SSDSpec(18, 16, SSDBoxSizes(60, 105), [2, 3]),
    SSDSpec(10, 32, SSDBoxSizes(105, 150), [2, 3]),
    SSDSpec(5, 64, SSDBoxSizes(150, 195), [2, 3]),
    SSDSpec(3, 100, SSDBoxSizes(195, 240), [2, 3]),
    SSDSpec(2, 150, SSDBoxSizes(240, 285), [2, 3]),
    SSDSpec(1, 300, SSDBoxSizes(285, 330), [2, 3]),
]

priors = generate_ssd_priors(specs, image_size)


def make_config(image_size: int = 300, feature_map_sizes: Sequence[int] | None = None) -> SSDConfig:
    return build_config(specs, 300, image_size, feature_map_sizes, image_mean=image_mean, image_std=image_std,
                        iou_threshold=iou_threshold, center_variance=center_variance, size_variance=size_variance)
