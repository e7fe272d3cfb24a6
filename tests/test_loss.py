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
