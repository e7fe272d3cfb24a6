"""Config of sq-ssd-lite (upstream's floor-mode pools): a 17x17 first feature map at 300 px.

Upstream's own config said 18x18 with shrinkage 16, which its SqueezeNet 1.1 never
produced (its outputs have 17x17 cells, 2568 rows); here the first prior grid is laid
over the 17x17 map it belongs to (shrinkage 300/17), so the 2568 priors line up with
upstream's 2568 outputs. The other five maps are the MobileNet config's.
sq-ssd-lite-tv (torchvision's ceil pools, 18x18) uses ``squeezenet_tv_ssd_config``.
"""
from __future__ import annotations

from typing import Sequence

from vision.ssd.config.base import SSDConfig, build_config
from vision.ssd.config.mobilenetv1_ssd_config import (center_variance, image_mean, image_size, image_std,
                                                      iou_threshold, size_variance)
from vision.ssd.config.mobilenetv1_ssd_config import specs as _mobilenet_specs
from vision.utils.box_utils import SSDSpec, generate_ssd_priors

specs = [SSDSpec(17, image_size / 17, *_mobilenet_specs[0][2:])] + list(_mobilenet_specs[1:])

priors = generate_ssd_priors(specs, image_size)


def make_config(image_size: int = 300, feature_map_sizes: Sequence[int] | None = None) -> SSDConfig:
    return build_config(specs, 300, image_size, feature_map_sizes, image_mean=image_mean, image_std=image_std,
                        iou_threshold=iou_threshold, center_variance=center_variance, size_variance=size_variance)
