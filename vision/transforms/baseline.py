"""The straightforward SSD augmentation, kept as the speed and behaviour baseline.

Each step works on a whole float32 image, in upstream pytorch-ssd's order:
float copy -> photometric distortion -> zoom-out canvas (up to 4x4 the image,
mean filled) -> IoU crop (one candidate at a time) -> mirror -> resize ->
normalize. ``TrainAugmentation`` (vision/ssd/data_preprocessing.py) is the fast
equivalent; ``bench/data.py --baseline`` and tests/test_transforms.py compare them.

Unlike upstream it clips the distorted colours to 0..255, handles images with
no boxes, bounds the crop retries, and never returns a degenerate box.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from vision.transforms.rng import ProcessLocalRNG
from vision.transforms.transforms import (NULL_TIMER, SSD_CROP_OPTIONS, MeanLike,  # noqa: F401 (API)
                                          RandomPhotometricDistort, StageTimer, check_sample, clip_boxes,
                                          distort_float32, finalize_boxes, mean_std_arrays)


def _iou_with_rect(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, :2], rect[:2])
    rb = np.minimum(boxes[:, 2:], rect[2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + np.prod(rect[2:] - rect[:2]) - inter)


class BaselineTrainAugmentation:
    """Same contract, recipe and random choices as ``TrainAugmentation``, done the slow way."""

    def __init__(self, size: int, mean: MeanLike = 0, std: MeanLike = 1.0, *, seed: int | None = None,
                 min_box_size: float = 1.0, max_expand: float = 4.0, channel_swap: bool = True,
                 crop_trials: int = 50, max_crop_options: int = 50) -> None:
        self.size = int(size)
        self.mean, self.std = mean_std_arrays(mean, std)
        self.min_box_size = float(min_box_size)
        self.max_expand = max_expand
        self.crop_trials = crop_trials
        self.max_crop_options = max_crop_options
        self.photometric = RandomPhotometricDistort(channel_swap=channel_swap)
        self.rng = ProcessLocalRNG(seed)

    def __call__(self, image: np.ndarray, boxes, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.run(image, boxes, labels)

    def run(self, image: np.ndarray, boxes, labels, timer: StageTimer = NULL_TIMER
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        timer.start()
        image, boxes, labels = check_sample(image, boxes, labels)
        rng = self.rng.get()
        boxes, labels = clip_boxes(boxes, labels, image.shape[1], image.shape[0])
        img = image.astype(np.float32)
        img = distort_float32(img, self.photometric.sample(rng))
        timer.lap("photometric")
        img, boxes = self._expand(rng, img, boxes)
        timer.lap("expand")
        img, boxes, labels = self._crop(rng, img, boxes, labels)
        timer.lap("crop")
        if rng.random() < 0.5:
            img = img[:, ::-1]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = img.shape[1] - boxes[:, [2, 0]]
        timer.lap("mirror")
        h, w = img.shape[:2]
        boxes = boxes / np.array([w, h, w, h], dtype=np.float32)
        img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        timer.lap("resize")
        img = (img - self.mean) / self.std
        tensor = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1).contiguous()
        boxes_t, labels_t = finalize_boxes(boxes, labels, self.min_box_size / self.size)
        timer.lap("normalize")
        return tensor, boxes_t, labels_t

    def _expand(self, rng: np.random.Generator, img: np.ndarray, boxes: np.ndarray):
        if self.max_expand <= 1 or rng.random() >= 0.5:
            return img, boxes
        h, w, c = img.shape
        ratio = rng.uniform(1.0, self.max_expand)
        left = int(rng.uniform(0, w * ratio - w))
        top = int(rng.uniform(0, h * ratio - h))
        canvas = np.empty((max(int(h * ratio), top + h), max(int(w * ratio), left + w), c), np.float32)
        canvas[:] = self.mean
        canvas[top:top + h, left:left + w] = img
        return canvas, boxes + np.array([left, top, left, top], dtype=np.float32)

    def _crop(self, rng: np.random.Generator, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray):
        h, w = img.shape[:2]
        for _ in range(self.max_crop_options):
            min_iou = SSD_CROP_OPTIONS[rng.integers(len(SSD_CROP_OPTIONS))]
            if min_iou is None:
                break
            for _ in range(self.crop_trials):
                cw, ch = rng.uniform(0.3 * w, w), rng.uniform(0.3 * h, h)
                if not 0.5 <= ch / cw <= 2.0:
                    continue
                x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
                rect = np.array([int(x0), int(y0), int(x0 + cw), int(y0 + ch)], dtype=np.float32)
                if rect[2] <= rect[0] or rect[3] <= rect[1]:
                    continue
                if boxes.shape[0]:
                    centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
                    inside = np.all((centers > rect[:2]) & (centers < rect[2:]), axis=1)
                    if not inside.any() or _iou_with_rect(boxes[inside], rect).max() < min_iou:
                        continue
                    kept = boxes[inside].copy()
                    labels = labels[inside]
                    kept[:, :2] = np.maximum(kept[:, :2], rect[:2]) - rect[:2]
                    kept[:, 2:] = np.minimum(kept[:, 2:], rect[2:]) - rect[:2]
                    boxes = kept
                x0i, y0i, x1i, y1i = (int(v) for v in rect)
                return img[y0i:y1i, x0i:x1i], boxes, labels
        return img, boxes, labels
