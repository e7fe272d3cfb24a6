import torch

from vision.ssd.config import mobilenetv1_ssd_config as cfg
from vision.ssd.matching import BatchedMatcher, MatchPrior
from vision.utils import box_utils


def _matchers():
    args = (cfg.priors, cfg.center_variance, cfg.size_variance, 0.5)
    return MatchPrior(*args), BatchedMatcher(*args)


def test_match_prior_targets_decode_to_gt():
    mp, _ = _matchers()
    gt = torch.tensor([[0.1, 0.2, 0.4, 0.6], [0.5, 0.5, 0.95, 0.9]])
    loc, lab = mp(gt, torch.tensor([1, 2]))
    assert loc.shape == (3000, 4) and lab.dtype == torch.int64
    pos = lab > 0
    dec = box_utils.center_form_to_corner_form(
        box_utils.convert_locations_to_boxes(loc, cfg.priors, cfg.center_variance, cfg.size_variance))
    expected = gt[(lab[pos] - 1)]
    assert torch.allclose(dec[pos], expected, atol=1e-5)
    assert set(lab.unique().tolist()) == {0, 1, 2}


def test_match_prior_empty_and_numpy():
    import numpy as np
    mp, _ = _matchers()
    loc, lab = mp(np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))
    assert (lab == 0).all() and torch.isfinite(loc).all()


def test_degenerate_box_gives_finite_targets():
    mp, _ = _matchers()
    loc, lab = mp(torch.tensor([[0.3, 0.3, 0.3, 0.5]]), torch.tensor([1]))
    assert torch.isfinite(loc).all() and (lab == 1).any()


def test_batched_matches_per_image():
    mp, bm = _matchers()
    torch.manual_seed(0)
    boxes, labels, per_image = [], [], []
    for k in (3, 0, 1, 5):
        xy = torch.rand(k, 2) * 0.6
        b = torch.cat([xy, xy + torch.rand(k, 2) * 0.35 + 0.03], 1)
        lab = torch.randint(1, 5, (k,))
        per_image.append(mp(b, lab))
        boxes.append(torch.cat([b, torch.zeros(5 - k, 4)]))
        labels.append(torch.cat([lab, torch.zeros(5 - k, dtype=torch.int64)]))
    loc, lab = bm(torch.stack(boxes), torch.stack(labels))
    for i, (l1, lab1) in enumerate(per_image):
        assert torch.equal(lab[i], lab1)
        assert torch.allclose(loc[i], l1, atol=1e-5)


def test_batched_zero_width_batch():
    _, bm = _matchers()
    loc, lab = bm(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.int64))
    assert loc.shape == (2, 3000, 4) and (lab == 0).all()
