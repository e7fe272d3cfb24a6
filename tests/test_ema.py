"""vision.training.ema: the EMA of the weights (train_ssd.py --ema), on tiny nets.

The end-to-end checks (exact resume, validation on the EMA net) are in tests/test_train.py.
"""
import copy
import math

import pytest
import torch
import torch.nn as nn

from vision.training.checkpoint import TrainingCheckpoint, checkpoint_name
from vision.training.ema import WeightEMA, checkpoint_weights, ramped_decay, restore_weights
from vision.training.loop import NonFiniteGuard, Trainer
from vision.training.schedule import StepLRSchedule
from tests.conftest import TinySSDHead as _TinyHead, tiny_ssd_criterion as _criterion


def _batch(images):
    n = images.size(2) * images.size(3)
    return images, torch.ones(images.size(0), n, 4), torch.zeros(images.size(0), n, dtype=torch.int64)


def _trainer(net, ema=None):
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    return Trainer(model=net, net=net, criterion=_criterion, optimizer=opt, schedule=StepLRSchedule(opt, "none"),
                   device=torch.device("cpu"), guard=NonFiniteGuard(limit=100), ema=ema)


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_ramp_is_yolov5s_and_zero_warmup_is_the_decay_itself():
    assert ramped_decay(0.999, 2000, 2000) == pytest.approx(0.999 * (1 - math.exp(-1)))
    assert ramped_decay(0.999, 1, 2000) < 0.001  # the first updates follow the net almost fully
    assert ramped_decay(0.999, 10**6, 2000) == pytest.approx(0.999)
    assert ramped_decay(0.9, 1, 0) == 0.9
    with pytest.raises(ValueError):
        WeightEMA(nn.Linear(2, 2), 1.0)


def test_ema_is_the_closed_form_lerp_of_the_weights_and_buffers():
    """After each step: ema += (1 - d_n) (w - ema) for weights and BatchNorm's float statistics;
    the integer counter is copied."""
    torch.manual_seed(0)
    net = _TinyHead()
    ema = WeightEMA(net, 0.8, warmup_steps=3)
    trainer = _trainer(net, ema)
    expected = {k: v.double() for k, v in _state(net).items()}
    for n in range(1, 5):
        assert trainer.train_step(_batch(torch.randn(2, 3, 4, 4)), 0, n - 1, 10) is not None
        d = 0.8 * (1 - math.exp(-n / 3))
        for k, w in net.state_dict().items():
            w = w.double()
            expected[k] = expected[k] + (1 - d) * (w - expected[k]) if k != "bn.num_batches_tracked" else w
    got = ema.module.state_dict()
    assert ema.updates == 4 and ema.current_decay == pytest.approx(0.8 * (1 - math.exp(-4 / 3)))
    for k, v in expected.items():
        assert torch.allclose(got[k].double(), v, atol=1e-6), k
    assert int(got["bn.num_batches_tracked"]) == 4
    # the average lags behind the weights, in the parameters and in the running statistics
    raw = net.state_dict()
    for k in ("conv.weight", "bn.weight", "bn.running_mean", "bn.running_var"):
        assert (got[k] - raw[k]).abs().max() > 1e-3, k
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_a_skipped_step_does_not_move_the_ema():
    torch.manual_seed(0)
    net = _TinyHead()
    ema = WeightEMA(net, 0.5, warmup_steps=0)
    trainer = _trainer(net, ema)
    trainer.train_step(_batch(torch.randn(2, 3, 4, 4)), 0, 0, 10)
    before = _state(ema.module)
    bad = torch.randn(2, 3, 4, 4)
    bad[0, 0, 0, 0] = math.nan
    assert trainer.train_step(_batch(bad), 0, 1, 10) is None
    assert ema.updates == 1
    for k, v in ema.module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_validation_runs_the_ema_net():
    """With a decay so close to 1 (no ramp) that the EMA net stays the initial net, the validation
    loss is the initial net's, not the trained net's."""
    torch.manual_seed(0)
    val = [_batch(torch.randn(2, 3, 4, 4)) for _ in range(2)]
    net = _TinyHead()
    initial = copy.deepcopy(net)
    trainer = _trainer(net, WeightEMA(net, 1 - 1e-9, warmup_steps=0))
    for step in range(5):
        trainer.train_step(_batch(torch.randn(2, 3, 4, 4) + 1), 0, step, 10)
    loss_initial = _trainer(initial).validate(val)["val_loss"]
    loss_ema = trainer.validate(val)["val_loss"]
    loss_raw = _trainer(net).validate(val)["val_loss"]
    assert abs(loss_raw - loss_initial) > 1e-2  # training moved the raw net
    assert loss_ema == pytest.approx(loss_initial, rel=1e-6)
    assert trainer.net.training and not trainer.ema.module.training  # modes as they were


def test_checkpoint_round_trip_and_resume_rules(tmp_path, caplog):
    torch.manual_seed(0)
    net = _TinyHead()
    ema = WeightEMA(net, 0.9, warmup_steps=0)
    trainer = _trainer(net, ema)
    for step in range(3):
        trainer.train_step(_batch(torch.randn(2, 3, 4, 4)), 0, step, 10)
    model, state = checkpoint_weights(net, ema)
    path = TrainingCheckpoint(epoch=0, model=model, ema=state).save(tmp_path / checkpoint_name("n", 0, 1.0))
    back = TrainingCheckpoint.load(path)
    assert back.ema["updates"] == 3 and back.ema["decay"] == 0.9 and back.ema["warmup_steps"] == 0
    for k, v in ema.module.state_dict().items():  # the model entry is the EMA net (what eval/export read)
        assert torch.equal(back.model[k], v), k

    def load(module, sd):
        module.load_state_dict(sd)

    # the same run resumed: raw weights into the net, the EMA and its count into the EMA
    net2 = _TinyHead()
    ema2 = WeightEMA(net2, 0.9, warmup_steps=0)
    restore_weights(net2, ema2, back.model, back.ema, load)
    assert ema2.updates == 3
    for k, v in net.state_dict().items():
        assert torch.equal(net2.state_dict()[k], v), k
        assert torch.equal(ema2.module.state_dict()[k], ema.module.state_dict()[k]), k

    # resumed without --ema (--force-override): training goes on from the raw weights
    net3 = _TinyHead()
    restore_weights(net3, None, back.model, back.ema, load)
    assert all(torch.equal(net3.state_dict()[k], v) for k, v in net.state_dict().items())

    # a checkpoint without EMA (older, or a run without --ema): the EMA starts from its weights
    plain = TrainingCheckpoint.from_dict({"epoch": 1, "model": net.state_dict()})
    assert plain.ema is None
    net4 = _TinyHead()
    ema4 = WeightEMA(net4, 0.9)
    with caplog.at_level("WARNING"):
        restore_weights(net4, ema4, plain.model, plain.ema, load)
    assert "no EMA" in caplog.text and ema4.updates == 0
    for k, v in net.state_dict().items():
        assert torch.equal(net4.state_dict()[k], v) and torch.equal(ema4.module.state_dict()[k], v), k


def test_resume_refuses_another_ema_without_force_override():
    from vision.training.resume import merge_resume_args
    from vision.utils.misc import UserError

    defaults = {"ema": 0.0, "ema_warmup": 2000}
    with pytest.raises(UserError, match="--ema cannot change"):
        merge_resume_args({"ema": 0.999, "ema_warmup": 2000}, {"ema": 0.99}, defaults, {"ema": "--ema"})
    with pytest.raises(UserError, match="--ema-warmup cannot change"):
        merge_resume_args({"ema": 0.999, "ema_warmup": 2000}, {"ema_warmup": 10}, defaults,
                          {"ema_warmup": "--ema-warmup"})
    assert merge_resume_args({"ema": 0.0, "ema_warmup": 2000}, {"ema": 0.999}, defaults, {},
                             force=True)["ema"] == 0.999


@pytest.mark.parametrize("damaged", ["junk", {"updates": 3}, {"raw_model": "x", "updates": 3},
                                     {"raw_model": {}, "updates": -1}, {"raw_model": {}, "updates": "3"}])
def test_a_damaged_ema_entry_is_one_user_error(damaged):
    from vision.utils.misc import UserError

    net = _TinyHead()
    with pytest.raises(UserError, match="'ema' entry is damaged"):
        restore_weights(net, WeightEMA(net, 0.9), net.state_dict(), damaged, lambda m, sd: m.load_state_dict(sd))


def test_ema_warmup_without_ema_is_a_warning(tiny_coco, tmp_path, capsys):
    """--ema-warmup alone does nothing (no average is kept): say so at start, in one line."""
    import train_ssd

    base = ["--datasets", str(tiny_coco), "--net", "mb1-ssd-lite", "--resolution", "128", "--epochs", "1",
            "--workers", "0", "--checkpoint-folder"]
    capsys.readouterr()
    train_ssd.resolve_run([*base, str(tmp_path / "a"), "--ema-warmup", "500"])
    warned = [line for line in capsys.readouterr().err.splitlines() if "--ema-warmup" in line]
    assert len(warned) == 1 and "WARNING" in warned[0] and "without --ema" in warned[0], warned
    train_ssd.resolve_run([*base, str(tmp_path / "b"), "--ema", "0.99", "--ema-warmup", "500"])
    train_ssd.resolve_run([*base, str(tmp_path / "c")])
    assert "--ema-warmup" not in capsys.readouterr().err
