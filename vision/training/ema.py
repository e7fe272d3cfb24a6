"""Exponential moving average (EMA) of a net's weights during training (``train_ssd.py --ema``).

After every optimizer step the EMA net moves a little towards the trained net::

    ema = d * ema + (1 - d) * weights,   d = decay * (1 - exp(-updates / warmup_steps))

The warm-up ramp is YOLOv5's (``ModelEMA``): early in training ``d`` is small, so the EMA
follows the fast-moving net instead of remembering the random or pretrained start for thousands
of steps; ``d`` reaches 63 % of ``decay`` after ``warmup_steps`` updates and 99 % after 4.6x as
many. Chosen over timm's ``min(decay, (1 + n) / (10 + n))`` because its time constant is one
number in steps that a user can set against the run's length (``--ema-warmup``; 0 turns the ramp
off), independent of ``decay``.

Buffers: floating-point ones (BatchNorm's running mean and variance) are averaged like the
weights, as YOLOv5, timm and ``AveragedModel(use_buffers=True)`` do, so the EMA net's statistics
belong to averaged weights; integer ones (``num_batches_tracked``) are copied.

The arithmetic is the library's (``torch.optim.swa_utils.get_ema_multi_avg_fn``: one
``torch._foreach_lerp_`` over all tensors). ``AveragedModel`` itself is not used: it keeps its
update count in a tensor and reads it on the host every update (``bool(n_averaged == 0)``, and a
host-to-device copy of it), which on a GPU waits for the queued backward pass and optimizer step
each step; the Trainer is built never to wait there. Here the count is a host int, and with
``warmup_steps=0`` the first update is a lerp, not ``AveragedModel``'s copy.

A step the AMP scaler skips (inf gradients) still counts as an update, towards unchanged
weights (YOLOv5 does the same); a step skipped for a non-finite loss does not.

Under DDP every rank holds its own EMA (the weights are the same on every rank after each step,
so the EMAs are too, up to each rank's BatchNorm statistics, exactly as the raw nets); rank 0's
is saved, as rank 0's net is.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from vision.utils.misc import UserError

log = logging.getLogger(__name__)

DEFAULT_WARMUP_STEPS = 2000


def ramped_decay(decay: float, updates: int, warmup_steps: int) -> float:
    """The decay used for update number ``updates`` (1 for the first): YOLOv5's ramp, or ``decay``
    itself with ``warmup_steps`` 0."""
    if warmup_steps <= 0:
        return decay
    return decay * (1.0 - math.exp(-updates / warmup_steps))


class WeightEMA:
    """An EMA copy (``module``, always in eval mode, no gradients) of a net's weights and buffers."""

    def __init__(self, net: nn.Module, decay: float, warmup_steps: int = DEFAULT_WARMUP_STEPS) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        if warmup_steps < 0:
            raise ValueError(f"EMA warm-up steps must be >= 0, got {warmup_steps}")
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.updates = 0
        self.module = copy.deepcopy(net).eval().requires_grad_(False)

    @property
    def current_decay(self) -> float:
        """The decay of the last update (0 before any)."""
        return ramped_decay(self.decay, self.updates, self.warmup_steps) if self.updates else 0.0

    def describe(self) -> str:
        ramp = (f"ramp decay*(1-exp(-updates/{self.warmup_steps}))" if self.warmup_steps else "no warm-up ramp")
        return f"decay {self.decay:g} ({ramp}), {self.updates} updates so far"

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the EMA towards ``net`` (the same architecture): call after each optimizer step."""
        self.updates += 1
        lerp = get_ema_multi_avg_fn(ramped_decay(self.decay, self.updates, self.warmup_steps))
        ema_floats, net_floats = [], []
        for e, t in zip(_tensors(self.module), _tensors(net), strict=True):
            if e.is_floating_point():
                ema_floats.append(e)
                net_floats.append(t.detach())
            else:
                e.copy_(t)
        for group in _by_dtype(ema_floats, net_floats):
            lerp(*group, None)

    def training_state(self, net: nn.Module) -> dict[str, Any]:
        """What a checkpoint keeps besides the EMA weights to continue exactly: the settings, the
        update count and the trained (raw) weights of ``net``."""
        return {"decay": self.decay, "warmup_steps": self.warmup_steps, "updates": self.updates,
                "raw_model": net.state_dict()}


def _tensors(net: nn.Module) -> list[torch.Tensor]:
    return [*net.parameters(), *net.buffers()]


def _by_dtype(ema: list[torch.Tensor], net: list[torch.Tensor]) -> list[tuple[list, list]]:
    """The pairs grouped by dtype and device (one foreach call each; a net is usually one group)."""
    groups: dict[tuple, tuple[list, list]] = {}
    for e, t in zip(ema, net):
        a, b = groups.setdefault((e.dtype, e.device), ([], []))
        a.append(e)
        b.append(t.to(e.device, e.dtype) if (t.device, t.dtype) != (e.device, e.dtype) else t)
    return list(groups.values())


def checkpoint_weights(net: nn.Module, ema: WeightEMA | None) -> tuple[Mapping[str, torch.Tensor],
                                                                       dict[str, Any] | None]:
    """``(model, ema)`` entries of a checkpoint: with an EMA the model entry is the EMA net (what
    eval_ssd.py, onnx_export.py and --pretrained-ssd read) and the raw weights go with the EMA state."""
    if ema is None:
        return net.state_dict(), None
    return ema.module.state_dict(), ema.training_state(net)


LoadFn = Callable[[nn.Module, Mapping[str, torch.Tensor]], None]


def restore_weights(net: nn.Module, ema: WeightEMA | None, model: Mapping[str, torch.Tensor],
                    ema_state: Mapping[str, Any] | None, load: LoadFn) -> None:
    """Load a checkpoint's ``model`` and ``ema`` entries into ``net`` (the weights to train on) and
    ``ema`` (this run's EMA, or None), whichever way the run and the checkpoint differ.

    ``load(module, state_dict)`` loads strictly (raising a UserError on a mismatch). A checkpoint
    written with an EMA trains on from its raw weights; one written without (an older file, or a
    run without --ema) starts the EMA from its weights with the ramp at its beginning. A damaged
    ``ema`` entry is a UserError.
    """
    if ema_state:
        raw, updates = _checked(ema_state)
        load(net, raw)
        if ema is None:
            log.warning("resume: the checkpoint has an EMA of the weights but this run has none (--ema 0): "
                        "training goes on from the raw weights and the EMA is dropped")
            return
        load(ema.module, model)
        ema.updates = updates
        return
    load(net, model)
    if ema is not None:
        load(ema.module, model)
        ema.updates = 0
        log.warning("resume: the checkpoint has no EMA of the weights: the EMA starts from its weights now")


def _checked(ema_state: Any) -> tuple[Mapping[str, torch.Tensor], int]:
    """``(raw weights, update count)`` of a checkpoint's ``ema`` entry, or a UserError saying what is wrong."""
    raw = ema_state.get("raw_model") if isinstance(ema_state, Mapping) else None
    updates = ema_state.get("updates") if isinstance(ema_state, Mapping) else None
    if not isinstance(raw, Mapping) or not isinstance(updates, int) or isinstance(updates, bool) or updates < 0:
        raise UserError("the checkpoint's 'ema' entry is damaged (it needs 'raw_model', the trained weights, and "
                        "'updates', a count >= 0); resume from an earlier checkpoint of the run")
    return raw, updates
