"""VOC average precision: hand-computed curves and an independent implementation."""
from __future__ import annotations

import numpy as np
import pytest

from vision.utils.measurements import compute_average_precision, compute_voc2007_average_precision


def _loop_all_point(precision, recall):
    """Straightforward reading of the VOC2010+ definition (loops, no vectorization)."""
    mrec = [0.0] + list(recall) + [1.0]
    mpre = [0.0] + list(precision) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def _loop_11_point(precision, recall):
    total = 0.0
    for k in range(11):
        t = k * 0.1  # the devkit's thresholds (0.1 steps, so 0.30000000000000004 etc.)
        ps = [p for p, r in zip(precision, recall) if r >= t]
        total += max(ps) if ps else 0.0
    return total / 11.0


def _curve(outcomes, num_gt):
    tp = np.cumsum(np.array(outcomes) == 1)
    fp = np.cumsum(np.array(outcomes) == 0)
    return tp / (tp + fp), tp / num_gt


def test_perfect_ranking_is_one():
    precision, recall = _curve([1, 1, 1, 1], 4)
    assert compute_average_precision(precision, recall) == pytest.approx(1.0)
    assert compute_voc2007_average_precision(precision, recall) == pytest.approx(1.0)


def test_hand_computed_curve():
    # TP, TP, FP, TP against 4 ground-truth boxes: precision 1, 1, 2/3, 3/4; recall .25, .5, .5, .75
    precision, recall = _curve([1, 1, 0, 1], 4)
    # envelope: 1 up to recall .5, .75 up to .75, nothing after -> .25 + .25 + .25 * .75
    assert compute_average_precision(precision, recall) == pytest.approx(0.6875)
    # 11-point: t = 0 .. .5 -> 1 (6 points), t = .6, .7 -> .75, t >= .8 -> 0
    assert compute_voc2007_average_precision(precision, recall) == pytest.approx(7.5 / 11)


def test_no_true_positive_is_zero():
    precision, recall = _curve([0, 0, 0], 3)
    assert compute_average_precision(precision, recall) == 0.0
    assert compute_voc2007_average_precision(precision, recall) == 0.0


def test_empty_curve_is_zero():
    assert compute_average_precision(np.zeros(0), np.zeros(0)) == 0.0
    assert compute_voc2007_average_precision(np.zeros(0), np.zeros(0)) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_loop_implementation(seed):
    rng = np.random.default_rng(seed)
    outcomes = (rng.random(int(rng.integers(5, 60))) < rng.uniform(0.2, 0.8)).astype(int)
    num_gt = int(outcomes.sum() + rng.integers(0, 10))
    if num_gt == 0:
        num_gt = 1
    precision, recall = _curve(outcomes, num_gt)
    assert compute_average_precision(precision, recall) == pytest.approx(_loop_all_point(precision, recall))
    assert compute_voc2007_average_precision(precision, recall) == pytest.approx(_loop_11_point(precision, recall))


def test_input_arrays_are_not_modified():
    precision, recall = _curve([1, 0, 1], 2)
    p0, r0 = precision.copy(), recall.copy()
    compute_average_precision(precision, recall)
    compute_voc2007_average_precision(precision, recall)
    np.testing.assert_array_equal(precision, p0)
    np.testing.assert_array_equal(recall, r0)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        compute_average_precision(np.ones(3), np.ones(2))
    with pytest.raises(ValueError):
        compute_voc2007_average_precision(np.ones(3), np.ones(2))
