import math

import pytest
import torch

from vision.ssd.config import mobilenetv1_ssd_config, vgg_ssd_config
from vision.utils import box_utils


def test_prior_counts_and_range():
    assert mobilenetv1_ssd_config.priors.shape == (3000, 4)
    assert vgg_ssd_config.priors.shape == (8732, 4)
    p = mobilenetv1_ssd_config.priors
    assert p.min() >= 0 and p.max() <= 1


def test_prior_order_first_cell():
    # first cell of the 19x19 map: min square, sqrt(min*max) square, then ratio 2 and 3 pairs
    p = mobilenetv1_ssd_config.priors[:6]
    cx = 0.5 / (300 / 16)
    assert torch.allclose(p[:, 0], torch.full((6,), cx))
    assert math.isclose(p[0, 2].item(), 60 / 300, rel_tol=1e-6)
    assert math.isclose(p[1, 2].item(), math.sqrt(60 * 105) / 300, rel_tol=1e-6)
    assert math.isclose(p[2, 2].item(), 60 / 300 * math.sqrt(2), rel_tol=1e-6)
    assert math.isclose(p[3, 3].item(), 60 / 300 * math.sqrt(2), rel_tol=1e-6)
    # second cell moves along x first
    assert p[0, 1] == mobilenetv1_ssd_config.priors[6, 1]
    assert mobilenetv1_ssd_config.priors[6, 0] > p[0, 0]


def test_encode_decode_round_trip():
    torch.manual_seed(0)
    priors = mobilenetv1_ssd_config.priors
    xy = torch.rand(3000, 2) * 0.5
    wh = torch.rand(3000, 2) * 0.4 + 0.05
    boxes = torch.cat([xy + wh / 2, wh], 1)
    loc = box_utils.convert_boxes_to_locations(boxes, priors, 0.1, 0.2)
    back = box_utils.convert_locations_to_boxes(loc, priors, 0.1, 0.2)
    assert torch.allclose(back, boxes, atol=1e-5)
    corner = box_utils.center_form_to_corner_form(boxes)
    assert torch.allclose(box_utils.corner_form_to_center_form(corner), boxes, atol=1e-6)


def test_decode_never_overflows():
    loc = torch.full((1, 3000, 4), 1e4)
    out = box_utils.convert_locations_to_boxes(loc, mobilenetv1_ssd_config.priors, 0.1, 0.2)
    assert torch.isfinite(out).all()


def test_iou_matches_torchvision():
    from torchvision.ops import box_iou
    torch.manual_seed(1)
    a = torch.rand(7, 2)
    a = torch.cat([a, a + torch.rand(7, 2)], 1)
    b = torch.rand(5, 2)
    b = torch.cat([b, b + torch.rand(5, 2)], 1)
    ours = box_utils.iou_of(a.unsqueeze(1), b.unsqueeze(0))
    assert torch.allclose(ours, box_iou(a, b), atol=1e-4)


def test_assign_priors_every_gt_matched():
    corner = box_utils.center_form_to_corner_form(mobilenetv1_ssd_config.priors)
    gt = torch.tensor([[0.1, 0.1, 0.12, 0.13], [0.5, 0.5, 0.9, 0.95], [0.0, 0.0, 1.0, 1.0]])
    labels = torch.tensor([1, 2, 3])
    boxes, lab = box_utils.assign_priors(gt, labels, corner, 0.5)
    for c in (1, 2, 3):
        assert (lab == c).any(), f"gt {c} got no prior"
    assert boxes.shape == (3000, 4)


def test_assign_priors_no_gt():
    corner = box_utils.center_form_to_corner_form(mobilenetv1_ssd_config.priors)
    boxes, lab = box_utils.assign_priors(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), corner, 0.5)
    assert (lab == 0).all() and boxes.shape == (3000, 4)


def test_hard_negative_mining_ratio():
    loss = torch.rand(2, 100)
    labels = torch.zeros(2, 100, dtype=torch.int64)
    labels[0, :5] = 1
    mask = box_utils.hard_negative_mining(loss, labels, 3)
    assert mask[0].sum() == 5 + 15
    assert mask[1].sum() == 0
    # negatives kept are the highest-loss ones
    neg = mask[0] & (labels[0] == 0)
    assert loss[0][neg].min() >= loss[0][~mask[0]].max()


def test_hard_nms_suppresses_overlaps():
    bs = torch.tensor([[0, 0, 1, 1, 0.9], [0, 0, 1, 0.95, 0.8], [2, 2, 3, 3, 0.7]], dtype=torch.float32)
    kept = box_utils.hard_nms(bs, 0.5)
    assert kept.shape[0] == 2
    assert torch.allclose(kept[:, 4], torch.tensor([0.9, 0.7]))
    assert box_utils.hard_nms(bs, 0.5, top_k=1).shape[0] == 1


def test_soft_nms_decays_instead_of_removing():
    bs = torch.tensor([[0, 0, 1, 1, 0.9], [0, 0, 1, 0.95, 0.8]], dtype=torch.float32)
    kept = box_utils.soft_nms(bs, score_threshold=0.001, sigma=0.5)
    assert kept.shape[0] == 2
    assert kept[1, 4] < 0.8


def test_batched_postprocess_per_class_nms():
    scores = torch.zeros(1, 4, 3)
    scores[..., 0] = 1.0
    # two overlapping boxes of class 1, one overlapping box of class 2: class 2 survives NMS of class 1
    scores[0, 0] = torch.tensor([0.1, 0.9, 0.0])
    scores[0, 1] = torch.tensor([0.2, 0.8, 0.0])
    scores[0, 2] = torch.tensor([0.3, 0.0, 0.7])
    boxes = torch.tensor([[[0, 0, .5, .5], [0, 0, .5, .48], [0, 0, .5, .5], [.6, .6, .9, .9]]])
    (b, l, s), = box_utils.batched_postprocess(scores, boxes, prob_threshold=0.5, iou_threshold=0.45)
    assert l.tolist() == [1, 2]
    assert torch.allclose(s, torch.tensor([0.9, 0.7]))
    (b, l, s), = box_utils.batched_postprocess(scores, boxes, prob_threshold=0.5, top_k=1)
    assert l.tolist() == [1]


def test_batched_postprocess_candidate_cap():
    n = 50
    scores = torch.zeros(1, n, 2)
    scores[0, :, 1] = torch.linspace(0.5, 0.99, n)
    scores[0, :, 0] = 1 - scores[0, :, 1]
    boxes = torch.stack([torch.tensor([i * 2.0, 0, i * 2.0 + 1, 1]) for i in range(n)]).unsqueeze(0) / 100
    (b, l, s), = box_utils.batched_postprocess(scores, boxes, prob_threshold=0.1, candidate_size=10)
    assert len(s) == 10 and s.min() >= scores[0, -10, 1] - 1e-6


def test_hard_negative_mining_rules_hand_built():
    # image 0: 2 positives (priors 0, 1); image 1: no objects; 8 priors each, ratio 2
    loss = torch.tensor([[9., 9., 1., 2., 3., 4., 5., 6.],
                         [8., 7., 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])
    labels = torch.zeros(2, 8, dtype=torch.int64)
    labels[0, :2] = 1
    # per-image (upstream): 4 negatives in image 0 (losses 6, 5, 4, 3), none in image 1
    per_image = box_utils.hard_negative_mining(loss, labels, 2, "per-image")
    assert per_image[0].tolist() == [True, True, False, False, True, True, True, True]
    assert per_image[1].sum() == 0
    # batch: budget 2 x 2 = 4 spent on the batch's hardest negatives: 8, 7 (image 1), 6, 5 (image 0)
    batch = box_utils.hard_negative_mining(loss, labels, 2, "batch")
    assert batch[0].tolist() == [True, True, False, False, False, False, True, True]
    assert batch[1].tolist() == [True, True, False, False, False, False, False, False]
    assert int((batch & (labels == 0)).sum()) == 4
    # per-image-min: mean positives per image round(2 / 2) = 1 -> at least 2 negatives in each image
    pim = box_utils.hard_negative_mining(loss, labels, 2, "per-image-min")
    assert pim[0].tolist() == per_image[0].tolist()
    assert pim[1].tolist() == [True, True] + [False] * 6


def test_hard_negative_mining_unknown_rule():
    with pytest.raises(ValueError, match="mining rule"):
        box_utils.hard_negative_mining(torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.int64), 3, "nope")
