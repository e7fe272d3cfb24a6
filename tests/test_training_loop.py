"""vision.training.loop.Trainer: a skipped non-finite step leaves the net exactly as it was."""
import math

import torch

from vision.training.loop import NonFiniteGuard, Trainer
from vision.training.schedule import StepLRSchedule
from tests.conftest import TinySSDHead as _TinyHead, tiny_ssd_criterion as _criterion


def _trainer(net):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return Trainer(model=net, net=net, criterion=_criterion, optimizer=opt,
                   schedule=StepLRSchedule(opt, "none"), device=torch.device("cpu"),
                   guard=NonFiniteGuard(limit=100))


def _batch(images):
    n = images.size(2) * images.size(3)
    return images, torch.zeros(images.size(0), n, 4), torch.zeros(images.size(0), n, dtype=torch.int64)


def test_skipped_nan_step_leaves_batchnorm_buffers_and_weights_alone():
    torch.manual_seed(0)
    net = _TinyHead()
    trainer = _trainer(net)
    assert trainer.train_step(_batch(torch.randn(2, 3, 4, 4)), 0, 0, 10) is not None  # one good step
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bad = torch.randn(2, 3, 4, 4)
    bad[0, 0, 0, 0] = math.nan  # one NaN pixel: the forward puts NaN into running_mean / running_var
    assert trainer.train_step(_batch(bad), 0, 1, 10) is None
    after = net.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert int(after["bn.num_batches_tracked"]) == 1
    assert all(torch.isfinite(t).all() for t in after.values())
    assert trainer.guard.total == 1


def test_worker_death_while_stopping_ends_the_epoch_cleanly():
    """PyTorch raises 'DataLoader worker ... is killed by signal' wherever the main process is;
    while a stop is requested that is the same signal at work: stop at the step reached."""
    from vision.training.loop import EpochStats, StopRequest

    torch.manual_seed(0)
    net = _TinyHead()
    trainer = _trainer(net)
    stop = StopRequest()

    def batches():
        yield _batch(torch.randn(2, 3, 4, 4))
        stop.requested = True
        raise RuntimeError("DataLoader worker (pid(s) 1234) exited unexpectedly")

    assert trainer.train_epoch(batches(), epoch=0, start_step=0, steps_per_epoch=5, stats=EpochStats(),
                               stop=stop, debug_steps=0) == 1

    def broken():  # without a stop request, the same error is a real failure
        yield _batch(torch.randn(2, 3, 4, 4))
        raise RuntimeError("DataLoader worker (pid(s) 1234) exited unexpectedly")

    import pytest
    with pytest.raises(RuntimeError):
        trainer.train_epoch(broken(), epoch=0, start_step=0, steps_per_epoch=5, stats=EpochStats(),
                            stop=StopRequest(), debug_steps=0)
