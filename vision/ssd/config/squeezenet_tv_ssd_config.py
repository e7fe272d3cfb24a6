"""Config of sq-ssd-lite-tv (torchvision's ceil-mode pools): an 18x18 first feature map at 300 px.

These are upstream's squeezenet_ssd_config numbers (which assumed 18x18); the other
five maps are the MobileNet config's.
"""
from __future__ import annotations

from typing import Sequence

from vision.ssd.config.base import SSDConfig, build_config
from vision.ssd.config.mobilenetv1_ssd_config import (center_variance, image_mean, image_size, image_std,
                                                      iou_threshold, size_variance)
from vision.ssd.config.mobilenetv1_ssd_config import specs as _mobilenet_specs
from vision.utils.box_utils import SSDSpec, generate_ssd_priors

specs = [SSDSpec(18, *_mobilenet_specs[0][1:])] + list(_mobilenet_specs[1:])

priors = generate_ssd_priors(specs, image_size)


def make_config(image_size: int = 300, feature_map_sizes: Sequence[int] | None = None) -> SSDConfig:
    return build_config(specs, 300, image_size, feature_map_sizes, image_mean=image_mean, image_std=image_std,
                        iou_threshold=iou_threshold, center_variance=center_variance, size_variance=size_variance)
