"""Learning rate as a pure function of the training position (epoch, step).

Upstream used torch's epoch schedulers, stepped them at the wrong time and pickled them
into checkpoints, so resuming reset or shifted the learning rate. Here the factor that
multiplies every group's base lr is computed from ``epoch + step / steps_per_epoch``
alone: a resumed run sets the same rates as an uninterrupted one, whatever happened before.
"""
from __future__ import annotations

import bisect
import math
from typing import Sequence

import torch

SCHEDULERS = ("cosine", "multi-step", "none")


def lr_factor(progress: float, scheduler: str = "cosine", *, t_max: float = 100.0,
              milestones: Sequence[int] = (80, 100), gamma: float = 0.1,
              warmup_epochs: float = 0.0, warmup_factor: float = 0.001) -> float:
    """Multiplier of the base learning rate at ``progress`` epochs (fractional) since the start.

    - ``cosine``: ``(1 + cos(pi * progress / t_max)) / 2``, the closed form of upstream's
      ``CosineAnnealingLR(T_max=t_max)`` (which rises again after ``t_max``, as upstream's did);
    - ``multi-step``: ``gamma ** (number of milestones <= epoch)`` (milestones in whole epochs);
    - ``none``: 1.
    A linear warm-up from ``warmup_factor`` to 1 over the first ``warmup_epochs`` multiplies it.
    """
    if scheduler == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * progress / t_max))
    elif scheduler == "multi-step":
        f = gamma ** bisect.bisect_right(sorted(milestones), math.floor(progress + 1e-9))
    elif scheduler == "none":
        f = 1.0
    else:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
    if warmup_epochs > 0 and progress < warmup_epochs:
        alpha = progress / warmup_epochs
        f *= warmup_factor + (1.0 - warmup_factor) * alpha
    return f


class StepLRSchedule:
    """Sets each param group's lr to ``base_lr * lr_factor(epoch + step / steps_per_epoch)``.

    Call ``set_position(epoch, step, steps_per_epoch)`` before every optimizer step. The
    state dict only records the position and base rates (for inspection and sanity checks);
    the rates themselves never depend on it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: str = "cosine", *, t_max: float = 100.0,
                 milestones: Sequence[int] = (80, 100), gamma: float = 0.1, warmup_epochs: float = 0.0,
                 warmup_factor: float = 0.001) -> None:
        self.optimizer = optimizer
        self.kwargs = dict(scheduler=scheduler, t_max=float(t_max), milestones=list(milestones),
                           gamma=float(gamma), warmup_epochs=float(warmup_epochs),
                           warmup_factor=float(warmup_factor))
        lr_factor(0.0, **self.kwargs)  # validate the scheduler name now, not at the first step
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.epoch = 0
        self.step = 0

    def factor(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        return lr_factor(epoch + step / max(1, steps_per_epoch), **self.kwargs)

    def set_position(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """Apply the rates for the step about to run; returns the factor."""
        self.epoch, self.step = epoch, step
        f = self.factor(epoch, step, steps_per_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f
        return f

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "base_lrs": list(self.base_lrs), **self.kwargs}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state.get("epoch", 0))
        self.step = int(state.get("step", 0))
