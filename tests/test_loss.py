import torch

from vision.nn.multibox_loss import MultiboxLoss
from vision.ssd.config import mobilenetv1_ssd_config as cfg


def _loss():
    return MultiboxLoss(cfg.priors, 0.5, 3, cfg.center_variance, cfg.size_variance)


def test_loss_finite_with_zero_positives():
    conf = torch.randn(2, 3000, 4, requires_grad=True)
    loc = torch.randn(2, 3000, 4, requires_grad=True)
    labels = torch.zeros(2, 3000, dtype=torch.int64)
    r, c = _loss()(conf, loc, labels, torch.zeros(2, 3000, 4))
    assert torch.isfinite(r) and torch.isfinite(c)
    (r + c).backward()
    assert torch.isfinite(conf.grad).all()


def test_loss_normalized_by_positives_and_mines_3_to_1():
    torch.manual_seed(0)
    conf = torch.randn(1, 3000, 4)
    loc = torch.zeros(1, 3000, 4)
    labels = torch.zeros(1, 3000, dtype=torch.int64)
    labels[0, :10] = 2
    gt = torch.zeros(1, 3000, 4)
    gt[0, :10] = 1.0
    r, c = _loss()(conf, loc, labels, gt)
    # smooth-L1 of (0 - 1) is 0.5 per coordinate: 10 priors * 4 * 0.5 / 10 positives
    assert torch.isclose(r, torch.tensor(2.0))
    ce = torch.nn.functional.cross_entropy(conf[0], labels[0], reduction="none")
    bg = -torch.log_softmax(conf[0], 1)[:, 0]
    bg[:10] = -1
    top_neg = bg.topk(30).indices
    expected = (ce[:10].sum() + ce[top_neg].sum()) / 10
    assert torch.isclose(c, expected, atol=1e-4)


def test_perfect_prediction_has_low_loss():
    labels = torch.zeros(1, 3000, dtype=torch.int64)
    labels[0, 5] = 1
    conf = torch.full((1, 3000, 3), -10.0)
    conf[..., 0] = 10.0
    conf[0, 5] = torch.tensor([-10.0, 10.0, -10.0])
    r, c = _loss()(conf, torch.zeros(1, 3000, 4), labels, torch.zeros(1, 3000, 4))
    assert r.item() == 0 and c.item() < 1e-6


def _one_background_image_batch():
    """Image 0 has 10 positives; image 1 has no objects and confidently wrong (hard) logits."""
    torch.manual_seed(0)
    conf = torch.randn(2, 3000, 4)
    conf[1, :, 1] += 5.0  # image 1 says "class 1" everywhere: its negatives are the batch's hardest
    conf.requires_grad_(True)
    labels = torch.zeros(2, 3000, dtype=torch.int64)
    labels[0, :10] = 2
    return conf, torch.zeros(2, 3000, 4), labels, torch.zeros(2, 3000, 4)


def _background_image_loss(mining: str) -> float:
    conf, loc, labels, gt = _one_background_image_batch()
    _, c = MultiboxLoss(cfg.priors, 0.5, 3, cfg.center_variance, cfg.size_variance, mining=mining)(
        conf, loc, labels, gt)
    c.backward()
    return float(conf.grad[1].abs().sum())  # what image 1 (no objects) contributes


def test_background_image_counts_under_default_mining():
    from vision.nn.multibox_loss import DEFAULT_MINING

    assert DEFAULT_MINING != "per-image"
    assert _background_image_loss(DEFAULT_MINING) > 0
    assert _background_image_loss("per-image-min") > 0
    assert _background_image_loss("batch") > 0
    assert _background_image_loss("per-image") == 0  # upstream: such an image adds nothing


def test_unknown_mining_rule_refused():
    import pytest

    with pytest.raises(ValueError, match="mining rule"):
        MultiboxLoss(cfg.priors, 0.5, 3, cfg.center_variance, cfg.size_variance, mining="sometimes")
