"""Config of VGG16-SSD (upstream values at 300 px; note: mean subtraction only, std 1)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vision.ssd.config.base import SSDConfig, build_config
from vision.utils.box_utils import SSDBoxSizes, SSDSpec, generate_ssd_priors

image_size = 300
image_mean = np.array([123, 117, 104])  # RGB layout
image_std = 1.0
iou_threshold = 0.45
center_variance = 0.1
size_variance = 0.2

specs = [
    SSDSpec(38, 8, SSDBoxSizes(30, 60), [2]),
    SSDSpec(19, 16, SSDBoxSizes(60, 111), [2, 3]),
    SSDSpec(10, 32, SSDBoxSizes(111, 162), [2, 3]),
    SSDSpec(5, 64, SSDBoxSizes(162, 213), [2, 3]),
    SSDSpec(3, 100, SSDBoxSizes(213, 264), [2]),
    SSDSpec(1, 300, SSDBoxSizes(264, 315), [2]),
]

priors = generate_ssd_priors(specs, image_size)


def make_config(image_size: int = 300, feature_map_sizes: Sequence[int] | None = None) -> SSDConfig:
    return build_config(specs, 300, image_size, feature_map_sizes, image_mean=image_mean, image_std=image_std,
                        iou_threshold=iou_threshold, center_variance=center_variance, size_variance=size_variance)
