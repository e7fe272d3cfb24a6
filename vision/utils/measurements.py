"""Average precision from a precision/recall curve (the PASCAL VOC definitions).

Both functions take the curve of a ranked detection list: ``precision[i]`` and
``recall[i]`` after the ``i+1`` best-scored detections (1-D arrays, same length,
recall non-decreasing). Names and results match upstream pytorch-ssd, so the
numbers users compare with (e.g. mb1-ssd 67.55 on VOC2007 test) mean the same.
"""
from __future__ import annotations

import numpy as np


def compute_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+): area under the precision envelope.

    The envelope at recall r is the best precision at any recall >= r, which
    removes the zig-zag of the raw curve; the area is summed over the points
    where recall changes (recall is padded with 0 and 1, precision with 0).
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.shape != recall.shape or precision.ndim != 1:
        raise ValueError(f"precision and recall must be 1-D of equal length, got {precision.shape} and {recall.shape}")
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    # envelope: p[i] = max(p[i:]), a reversed running maximum
    p = np.maximum.accumulate(p[::-1])[::-1]
    changes = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[changes + 1] - r[changes]) * p[changes + 1]))


def compute_voc2007_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """11-point interpolated AP (the VOC2007 metric): mean over t in 0, 0.1, ..., 1.0 of the
    best precision at recall >= t (0 where that recall is never reached)."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.shape != recall.shape or precision.ndim != 1:
        raise ValueError(f"precision and recall must be 1-D of equal length, got {precision.shape} and {recall.shape}")
    ap = 0.0
    # np.arange (not linspace) reproduces the VOC devkit and upstream thresholds bit for bit
    for t in np.arange(0.0, 1.1, 0.1):
        reached = recall >= t
        ap += float(precision[reached].max()) if reached.any() else 0.0
    return ap / 11.0
