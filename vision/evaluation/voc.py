"""PASCAL VOC protocol: per-class AP from detections and ground truth (also used for Open Images).

Matching, per image and class, greedily in score order: a detection is a true positive
when its best-overlapping ground-truth box has IoU > ``iou_threshold`` (0.5 in VOC) and
was not matched before; a second detection of the same box is a false positive; a
detection whose best match is a *difficult* box counts neither way; difficult boxes are
not counted in the recall denominator. This is the VOC devkit / upstream pytorch-ssd rule.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vision.evaluation.detection import ImageDetections
from vision.utils.measurements import compute_average_precision, compute_voc2007_average_precision
from vision.utils.misc import atomic_write

log = logging.getLogger(__name__)

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1


@dataclass
class GroundTruth:
    """Ground truth of one image: boxes [K,4] float32 corner PIXELS, labels [K] int64, difficult [K] bool."""
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.difficult is None:
            self.difficult = np.zeros(self.labels.shape[0], dtype=bool)
        self.difficult = np.asarray(self.difficult).astype(bool).reshape(-1)
        if not (self.boxes.shape[0] == self.labels.shape[0] == self.difficult.shape[0]):
            raise ValueError(f"ground truth has {self.boxes.shape[0]} boxes, {self.labels.shape[0]} labels "
                             f"and {self.difficult.shape[0]} difficult flags")


def collect_ground_truth(dataset: Any) -> tuple[list[GroundTruth], list[str]]:
    """Ground truth of every image through ``dataset.get_annotation(i) -> (image_id, (boxes, labels,
    is_difficult))`` (all boxes, difficult ones included); returns it with the image ids."""
    gts, ids = [], []
    for i in range(len(dataset)):
        image_id, (boxes, labels, is_difficult) = dataset.get_annotation(i)
        gts.append(GroundTruth(boxes, labels, is_difficult))
        ids.append(str(image_id))
    return gts, ids


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of corner-form boxes (continuous coordinates, no +1)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_image(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray,
                gt_difficult: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Outcome of each detection of ONE class in ONE image: TRUE_POSITIVE, FALSE_POSITIVE or IGNORED.

    Detections are visited best score first (the outcome array is in the input order).
    """
    n = det_boxes.shape[0]
    outcome = np.full(n, FALSE_POSITIVE, dtype=np.int8)
    if n == 0 or gt_boxes.shape[0] == 0:
        return outcome
    ious = box_iou_np(det_boxes, gt_boxes)
    best = ious.argmax(axis=1)
    best_iou = ious[np.arange(n), best]
    matched = np.zeros(gt_boxes.shape[0], dtype=bool)
    for d in np.argsort(-det_scores, kind="stable"):
        if best_iou[d] <= iou_threshold:
            continue
        g = best[d]
        if gt_difficult[g]:
            outcome[d] = IGNORED
        elif not matched[g]:
            matched[g] = True
            outcome[d] = TRUE_POSITIVE
    return outcome


def average_precision(scores: np.ndarray, outcomes: np.ndarray, num_positives: int,
                      use_2007_metric: bool = False) -> float:
    """AP of one class from all its detections' scores and outcomes (ignored ones are dropped).

    NaN when the class has no (non-difficult) ground truth: AP is undefined there.
    """
    if num_positives <= 0:
        return float("nan")
    keep = outcomes != IGNORED
    scores, outcomes = scores[keep], outcomes[keep]
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(outcomes[order] == TRUE_POSITIVE)
    fp = np.cumsum(outcomes[order] == FALSE_POSITIVE)
    precision = tp / (tp + fp)
    recall = tp / float(num_positives)
    if use_2007_metric:
        return compute_voc2007_average_precision(precision, recall)
    return compute_average_precision(precision, recall)


def voc_average_precisions(detections: Sequence[ImageDetections], ground_truth: Sequence[GroundTruth],
                           num_classes: int, iou_threshold: float = 0.5,
                           use_2007_metric: bool = False) -> dict[int, float]:
    """AP of each foreground class ``1..num_classes-1`` (NaN for a class without ground truth)."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} images")
    scores: dict[int, list[np.ndarray]] = {c: [] for c in range(1, num_classes)}
    outcomes: dict[int, list[np.ndarray]] = {c: [] for c in range(1, num_classes)}
    positives = dict.fromkeys(range(1, num_classes), 0)
    for det, gt in zip(detections, ground_truth):
        for c in np.unique(gt.labels[~gt.difficult]):
            if int(c) in positives:
                positives[int(c)] += int(np.sum((gt.labels == c) & ~gt.difficult))
        for c in np.unique(det.labels):
            c = int(c)
            if c not in scores:
                raise ValueError(f"detection label {c} outside 1..{num_classes - 1}")
            d = det.labels == c
            g = gt.labels == c
            scores[c].append(det.scores[d])
            outcomes[c].append(match_image(det.boxes[d], det.scores[d], gt.boxes[g], gt.difficult[g],
                                           iou_threshold))
    aps = {}
    for c in range(1, num_classes):
        s = np.concatenate(scores[c]) if scores[c] else np.zeros(0, np.float32)
        o = np.concatenate(outcomes[c]) if outcomes[c] else np.zeros(0, np.int8)
        aps[c] = average_precision(s, o, positives[c], use_2007_metric)
    return aps


def safe_file_part(name: str) -> str:
    """A class name usable in a file name (Open Images names contain spaces, slashes, ...)."""
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "class"


def write_detection_files(eval_dir: str | os.PathLike, detections: Sequence[ImageDetections],
                          image_ids: Sequence[str], class_names: Sequence[str]) -> list[Path]:
    """Write ``det_test_{class}.txt`` per class as upstream: ``image_id score x1 y1 x2 y2`` a line,
    coordinates 1-based (MATLAB devkit convention; upstream VOC loaders store 0-based boxes)."""
    eval_dir = Path(eval_dir)
    paths = []
    for c, name in enumerate(class_names):
        if c == 0:
            continue
        path = eval_dir / f"det_test_{safe_file_part(name)}.txt"
        with atomic_write(path, "w", encoding="utf-8") as f:
            for det, image_id in zip(detections, image_ids):
                for box, score in zip(det.boxes[det.labels == c], det.scores[det.labels == c]):
                    x1, y1, x2, y2 = (float(v) + 1.0 for v in box)
                    f.write(f"{image_id} {float(score):.6f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}\n")
        paths.append(path)
    return paths
