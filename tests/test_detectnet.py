"""detectNet emulation on hand-built cases: the clustering rule (intersection over the larger area,
> 0.75, same class only, union box, max score, loop order), the threshold, the sort, the clamp, and
the nearest-neighbour preprocessing rule."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision.ssd.detectnet import (DetectNetTransform, cluster_detections, detectnet_postprocess,  # noqa: E402
                                  detectnet_resize, nearest_indices)


def _scores(rows, num_classes=3):
    s = np.zeros((len(rows), num_classes), np.float32)
    for i, (cls, p) in enumerate(rows):
        s[i, cls] = p
        s[i, 0] = 1 - p
    return s


def _pair_with_overlap(frac):
    """Two 0..1 boxes of equal area (0.4 x 0.4 of a 100x100 image) overlapping by ``frac`` of that area."""
    a = [0.1, 0.1, 0.5, 0.5]
    shift = 0.4 * (1 - frac)
    b = [0.1 + shift, 0.1, 0.5 + shift, 0.5]
    return np.array([a, b], np.float32)


def test_merge_at_076_not_at_074():
    scores = _scores([(1, 0.6), (1, 0.9)])
    px, lab, sc = detectnet_postprocess(scores, _pair_with_overlap(0.76), 100, 100)
    assert len(sc) == 1
    np.testing.assert_allclose(px[0], [10, 10, 59.6, 50], atol=1e-4)  # union box
    assert sc[0] == pytest.approx(0.9)  # max score, though the first detection scored 0.6
    assert lab[0] == 1
    px, lab, sc = detectnet_postprocess(scores, _pair_with_overlap(0.74), 100, 100)
    assert len(sc) == 2


def test_overlap_is_over_the_larger_box_not_iou():
    # a small box entirely inside a big one: IoU 0.5, intersection / smaller = 1, / larger = 0.5 -> no merge
    boxes = np.array([[0.0, 0.0, 0.4, 0.5], [0.0, 0.0, 0.4, 0.25]], np.float32)
    _, _, sc = detectnet_postprocess(_scores([(1, 0.8), (1, 0.8)]), boxes, 100, 100)
    assert len(sc) == 2
    boxes = np.array([[0.0, 0.0, 0.4, 0.5], [0.0, 0.0, 0.4, 0.4]], np.float32)  # 0.8 of the larger -> merge
    px, _, sc = detectnet_postprocess(_scores([(1, 0.8), (1, 0.8)]), boxes, 100, 100)
    assert len(sc) == 1 and px[0].tolist() == pytest.approx([0, 0, 40, 50])


def test_classes_are_not_merged():
    boxes = _pair_with_overlap(1.0)
    px, lab, sc = detectnet_postprocess(_scores([(1, 0.6), (2, 0.9)]), boxes, 100, 100)
    assert sorted(lab.tolist()) == [1, 2] and len(sc) == 2


def test_threshold_boundary_and_best_class():
    s = np.array([[0.5, 0.5, 0.0],        # exactly the threshold: kept (score < threshold is dropped)
                  [0.5001, 0.4999, 0.0],  # just below: dropped
                  [0.0, 0.55, 0.6],       # both pass: the best (class 2) wins
                  [0.0, 0.7, 0.7]],       # tie: the first class wins (strict >)
                 np.float32)
    boxes = np.array([[0.0, 0.0, 0.1, 0.1], [0.3, 0.3, 0.4, 0.4], [0.5, 0.5, 0.7, 0.7],
                      [0.8, 0.0, 0.95, 0.3]], np.float32)
    px, lab, sc = detectnet_postprocess(s, boxes, 100, 100, threshold=0.5)
    got = {(int(l), round(float(v), 4)) for l, v in zip(lab, sc)}
    assert got == {(1, 0.5), (2, 0.6), (1, 0.7)}


def test_loop_order_first_match_and_growing_cluster():
    # A and C do not overlap enough; B merges into A (first match), and the grown A then absorbs nothing
    # it would not have: the order of arrival decides, as in the C++ loop.
    boxes = np.array([[0, 0, 40, 40], [60, 0, 100, 40], [2, 0, 42, 40]], np.float32)
    labels = np.array([1, 1, 1])
    scores = np.array([0.6, 0.7, 0.8], np.float32)
    kb, kl, ks = cluster_detections(boxes, labels, scores)
    assert kb.tolist() == [[0, 0, 42, 40], [60, 0, 100, 40]]
    assert ks.tolist() == pytest.approx([0.8, 0.7])
    # the merged (grown) box is what later detections are compared with
    boxes = np.array([[0, 0, 40, 40], [8, 0, 48, 40], [16, 0, 56, 40]], np.float32)
    kb, _, _ = cluster_detections(boxes, labels, scores)
    # 2nd: 32/40 = 0.8 > 0.75 -> merged into [0,0,48,40]; 3rd vs it: inter 32*40, larger area 48*40 -> 0.667
    assert kb.tolist() == [[0, 0, 48, 40], [16, 0, 56, 40]]


def test_sorted_by_area_largest_first_and_clamped():
    boxes = np.array([[0.1, 0.1, 0.2, 0.2], [-0.2, -0.1, 1.3, 1.2], [0.5, 0.5, 0.8, 0.8]], np.float32)
    px, lab, sc = detectnet_postprocess(_scores([(1, 0.9), (2, 0.8), (1, 0.7)]), boxes, 200, 100)
    assert lab.tolist() == [2, 1, 1] and sc.tolist() == pytest.approx([0.8, 0.7, 0.9])
    assert px[0].tolist() == pytest.approx([0, 0, 199, 99])  # Right >= width -> width - 1


def test_void_class_is_skipped():
    boxes = np.array([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.8, 0.8]], np.float32)
    _, lab, _ = detectnet_postprocess(_scores([(1, 0.9), (2, 0.8)]), boxes, 100, 100,
                                      class_names=["BACKGROUND", "void", "cat"])
    assert lab.tolist() == [2]


def test_nearest_rule_is_floor_of_dst_times_ratio():
    assert nearest_indices(500, 300).tolist() == [int(np.float32(x) * np.float32(500 / 300)) for x in range(300)]
    assert nearest_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert nearest_indices(9, 3).tolist() == [0, 3, 6]
    img = np.arange(6 * 9 * 3, dtype=np.uint8).reshape(6, 9, 3)
    out = detectnet_resize(img, 3)
    assert out.shape == (3, 3, 3)
    assert (out == img[[0, 2, 4]][:, [0, 3, 6]]).all()


def test_transform_is_detectnets_normalization():
    img = np.array([[[0, 127, 255]]], np.uint8).repeat(4, 0).repeat(4, 1)
    x = DetectNetTransform(2)(img).numpy()
    assert x.shape == (3, 2, 2)
    np.testing.assert_allclose(x[:, 0, 0], [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)
