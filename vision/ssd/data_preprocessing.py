"""The three transforms datasets and the predictor use, under upstream's names.

- ``TrainAugmentation``: the SSD augmentation recipe, fast path (see
  ``vision/transforms/transforms.py`` for how it is built).
- ``TestTransform``: stretch-resize to ``size x size`` + normalize (validation).
- ``PredictionTransform``: the same for an image without boxes (inference).

Sample contract (``__call__(image, boxes, labels)``):
    in:  image RGB uint8 ``[H, W, 3]`` ndarray, boxes float32 ``[K, 4]`` corner
         form in PIXELS, labels int64 ``[K]``;
    out: image float32 torch tensor ``[3, size, size]`` = ``(x - mean) / std``,
         boxes float32 torch tensor ``[K', 4]`` corner form NORMALIZED to
         ``[0, 1]``, labels int64 torch tensor ``[K']``.
``K'`` may be 0 (the input had no boxes, or none survived); output boxes are
never NaN and always have ``x2 > x1`` and ``y2 > y1``. Input boxes partly
outside the image are clipped to it; boxes with no area inside it are dropped.

``mean`` is a scalar or 3 RGB values, ``std`` a scalar (3 values also work):
mb1/mb2/sq configs use ``mean=[127, 127, 127], std=128``, VGG
``mean=[123, 117, 104], std=1``.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from vision.transforms.rng import ProcessLocalRNG
from vision.transforms.transforms import (NULL_TIMER, MeanLike, Normalize, RandomPhotometricDistort,
                                          RandomSSDGeometry, StageTimer, check_image, check_sample,
                                          clip_boxes, distort_uint8, fill_value, finalize_boxes,
                                          mean_std_arrays, permuted_fill)

__all__ = ["TrainAugmentation", "TestTransform", "PredictionTransform"]


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    return int(size)


class TrainAugmentation:
    """SSD training augmentation: photometric distortion, zoom-out (up to ``max_expand`` x,
    mean fill), IoU-constrained crop (sides ``min_crop_scale``..1 of the canvas), horizontal mirror,
    resize to ``size``, normalize.

    All geometry is planned on the boxes and applied with one resize of the
    visible source block, and the colour work runs on the small uint8 result,
    so the zoom-out canvas upstream built (up to 16x the pixels, in float32)
    never exists. Randomness: ``seed=None`` follows torch's seed (``torch.manual_seed``,
    DataLoader's per-worker seeds); an int gives a fixed stream per worker.

    Boxes smaller than ``min_box_size`` output pixels (width or height) after
    augmentation are dropped with their labels: a crop never drops *all* boxes
    (it keeps at least one box centre), but clipping or down-scaling may leave
    none, and the sample is then returned with ``K' = 0`` (pure background)
    rather than retried, so every call costs about the same.
    """

    def __init__(self, size: int, mean: MeanLike = 0, std: MeanLike = 1.0, *, seed: int | None = None,
                 min_box_size: float = 1.0, max_expand: float = 4.0, min_crop_scale: float = 0.3,
                 channel_swap: bool = True) -> None:
        self.size = _check_size(size)
        self.mean, self.std = mean_std_arrays(mean, std)
        if not min_box_size >= 0:
            raise ValueError(f"min_box_size must be >= 0, got {min_box_size!r}")
        self.min_box_size = float(min_box_size)
        self.fill = fill_value(self.mean)
        self.geometry = RandomSSDGeometry(max_expand=max_expand, min_scale=min_crop_scale)
        self.photometric = RandomPhotometricDistort(channel_swap=channel_swap)
        self.normalize = Normalize(self.mean, self.std)
        self.rng = ProcessLocalRNG(seed)

    def __call__(self, image: np.ndarray, boxes, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.run(image, boxes, labels)

    def run(self, image: np.ndarray, boxes, labels, timer: StageTimer = NULL_TIMER
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``__call__`` with per-stage timing (geometry, resize, photometric, normalize)."""
        timer.start()
        image, boxes, labels = check_sample(image, boxes, labels)
        rng = self.rng.get()
        height, width = image.shape[:2]
        boxes, labels = clip_boxes(boxes, labels, width, height)
        placement = self.geometry(rng, width, height, boxes).place(width, height, self.size)
        boxes, labels = placement.map_boxes(boxes, labels)
        params = self.photometric.sample(rng)
        timer.lap("geometry")
        patch = None if placement.empty else placement.render(image)
        timer.lap("resize")
        if patch is not None:
            patch = distort_uint8(patch, params)
        out = placement.compose(patch, permuted_fill(self.fill, params.channel_order))
        timer.lap("photometric")
        tensor = self.normalize(out, params.channel_order)
        boxes_t, labels_t = finalize_boxes(boxes, labels, self.min_box_size / self.size)
        timer.lap("normalize")
        return tensor, boxes_t, labels_t


class TestTransform:
    """Validation transform: stretch-resize to ``size x size`` (bilinear, on uint8) + normalize;
    boxes divided by the image width/height, clipped to ``[0, 1]``, zero-area ones dropped."""

    __test__ = False  # not a pytest test class, whoever imports it into a test module

    def __init__(self, size: int, mean: MeanLike = 0.0, std: MeanLike = 1.0) -> None:
        self.size = _check_size(size)
        self.mean, self.std = mean_std_arrays(mean, std)
        self.normalize = Normalize(self.mean, self.std)

    def __call__(self, image: np.ndarray, boxes, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, boxes, labels = check_sample(image, boxes, labels)
        height, width = image.shape[:2]
        resized = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        scale = np.array([width, height, width, height], dtype=np.float32)
        boxes_t, labels_t = finalize_boxes(boxes / scale, labels, 0.0)
        return self.normalize(resized), boxes_t, labels_t


class PredictionTransform:
    """Inference transform: RGB uint8 ``[H, W, 3]`` -> float32 tensor ``[3, size, size]``,
    the same stretch-resize + normalize as ``TestTransform``."""

    def __init__(self, size: int, mean: MeanLike = 0.0, std: MeanLike = 1.0) -> None:
        self.size = _check_size(size)
        self.mean, self.std = mean_std_arrays(mean, std)
        self.normalize = Normalize(self.mean, self.std)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        check_image(image)
        resized = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return self.normalize(resized)
