"""Upstream's numpy box helpers (``vision.utils.box_utils_numpy``), over the torch ones.

Each function takes and returns numpy arrays (any float dtype, kept) and runs
``vision.utils.box_utils`` on them, so there is one implementation of each formula.
For code written against upstream (e.g. its ONNX / Caffe2 demo scripts); the
library itself works on tensors. Box forms: corner ``(x1, y1, x2, y2)``, center
``(cx, cy, w, h)``, both normalized to the image.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vision.utils import box_utils
from vision.utils.box_utils import SSDBoxSizes, SSDSpec  # noqa: F401 (upstream imports them from here too)

__all__ = ["generate_ssd_priors", "convert_locations_to_boxes", "convert_boxes_to_locations",
           "center_form_to_corner_form", "corner_form_to_center_form", "area_of", "iou_of", "hard_nms"]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def generate_ssd_priors(specs: Sequence[SSDSpec], image_size: int, clamp: bool = True) -> np.ndarray:
    """Priors ``[N, 4]`` center form, float32 (``box_utils.generate_ssd_priors``)."""
    return box_utils.generate_ssd_priors(specs, image_size, clamp).numpy()


def convert_locations_to_boxes(locations: np.ndarray, priors: np.ndarray, center_variance: float,
                               size_variance: float) -> np.ndarray:
    """Regression outputs ``[..., N, 4]`` -> center-form boxes (priors ``[N, 4]`` or broadcastable)."""
    return box_utils.convert_locations_to_boxes(_t(locations), _t(priors), center_variance, size_variance).numpy()


def convert_boxes_to_locations(center_form_boxes: np.ndarray, center_form_priors: np.ndarray,
                               center_variance: float, size_variance: float) -> np.ndarray:
    """Center-form boxes -> regression targets relative to the priors (inverse of the above)."""
    return box_utils.convert_boxes_to_locations(_t(center_form_boxes), _t(center_form_priors),
                                                center_variance, size_variance).numpy()


def center_form_to_corner_form(locations: np.ndarray) -> np.ndarray:
    return box_utils.center_form_to_corner_form(_t(locations)).numpy()


def corner_form_to_center_form(boxes: np.ndarray) -> np.ndarray:
    return box_utils.corner_form_to_center_form(_t(boxes)).numpy()


def area_of(left_top: np.ndarray, right_bottom: np.ndarray) -> np.ndarray:
    """Areas of rectangles from their corners ``[..., 2]`` (0 for inverted ones)."""
    return box_utils.area_of(_t(left_top), _t(right_bottom)).numpy()


def iou_of(boxes0: np.ndarray, boxes1: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Broadcasting IoU of corner-form boxes ``[..., 4]``."""
    return box_utils.iou_of(_t(boxes0), _t(boxes1), eps).numpy()


def hard_nms(box_scores: np.ndarray, iou_threshold: float, top_k: int = -1,
             candidate_size: int = 200) -> np.ndarray:
    """Greedy NMS over ``[K, 5]`` rows (corner box + score); the kept rows, best first."""
    return box_utils.hard_nms(_t(box_scores), iou_threshold, top_k, candidate_size).numpy()
