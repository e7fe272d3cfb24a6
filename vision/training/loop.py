"""The pieces of the epoch loop: one training step, one epoch, validation, and a clean stop.

``Trainer`` holds what every step needs (model, matcher, loss, optimizer, schedule, AMP
settings) so the training script reads as configuration + ``for epoch: train, validate, save``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn as nn

from vision.training import distributed
from vision.training.ema import WeightEMA
from vision.training.schedule import StepLRSchedule
from vision.utils.misc import Failure

log = logging.getLogger(__name__)


class StopRequest:
    """SIGINT / SIGTERM set a flag; the loop finishes its step, saves and exits 0.

    A second SIGINT while stopping raises ``KeyboardInterrupt`` (for an impatient Ctrl-C).
    DataLoader workers ignore both signals (``vision.utils.misc.ignore_stop_signals``, their
    ``worker_init_fn``; a forked worker that has not reached it yet inherits this handler, which
    does nothing there), so a signal to the whole process group (a terminal's Ctrl-C, ``timeout``,
    SLURM) does not kill them under the running step: the main process decides, and shuts them
    down when it exits.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()

    def install(self) -> "StopRequest":
        self._pid = os.getpid()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: no log line, no KeyboardInterrupt
            return
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: finishing the current step, then saving a checkpoint and exiting "
                    "(Ctrl-C again to abort without saving)", self.signal_name)


def _worker_lost_while_stopping(error: RuntimeError, stop: "StopRequest | None") -> bool:
    """A DataLoader worker killed by the signal that also asked us to stop (PyTorch's SIGCHLD
    handler raises this RuntimeError wherever the main process is, even inside a step): the
    stop goes on as asked (save the position, exit 0) instead of ending in a traceback."""
    return stop is not None and stop.requested and "DataLoader worker" in str(error)


@dataclass
class EpochStats:
    """Running sums over the batches of one epoch (kept in a mid-epoch checkpoint)."""
    steps: int = 0
    images: int = 0
    loss: float = 0.0
    regression_loss: float = 0.0
    classification_loss: float = 0.0
    skipped_steps: int = 0
    skipped_images: int = 0  # unreadable images replaced by the next readable one
    seconds: float = 0.0

    def add(self, n_images: int, loss: float, reg: float, cls: float) -> None:
        self.steps += 1
        self.images += n_images
        self.loss += loss
        self.regression_loss += reg
        self.classification_loss += cls

    def means(self, device: torch.device | None = None) -> dict[str, float]:
        """Mean losses per step; with ``device`` under DDP, the mean of every rank's means."""
        n = max(1, self.steps)
        values = [self.loss / n, self.regression_loss / n, self.classification_loss / n]
        if device is not None:
            world = distributed.all_reduce_sum([1.0], device)[0]
            values = [v / world for v in distributed.all_reduce_sum(values, device)]
        return dict(zip(("loss", "regression_loss", "classification_loss"), values))

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict | None) -> "EpochStats":
        return cls(**state) if state else cls()


@dataclass
class NonFiniteGuard:
    """Counts skipped steps with a NaN/inf loss; too many in a row stops training (exit 1)."""
    limit: int = 5
    in_a_row: int = 0
    total: int = 0

    def ok(self) -> None:
        self.in_a_row = 0

    def bad(self, epoch: int, step: int, lr: float) -> None:
        self.in_a_row += 1
        self.total += 1
        log.warning("epoch %d step %d: loss is NaN/inf, step skipped (%d in a row, %d in all)",
                    epoch, step, self.in_a_row, self.total)
        if self.in_a_row >= self.limit:
            raise Failure(f"training stopped: the loss was NaN/inf for {self.in_a_row} steps in a row "
                          f"(epoch {epoch}, step {step}, lr {lr:.3g}); lower --lr, add --warmup-epochs or "
                          f"--grad-clip, or check the data")


def snapshot_buffers(net: nn.Module) -> list[torch.Tensor]:
    """Copies of every buffer of ``net`` (BatchNorm running statistics and counters)."""
    return [b.detach().clone() for b in net.buffers()]


@torch.no_grad()
def restore_buffers(net: nn.Module, saved: list[torch.Tensor]) -> None:
    """Put back what ``snapshot_buffers`` copied."""
    for b, s in zip(net.buffers(), saved):
        b.copy_(s)


class _DeviceFlag:
    """A 0-d bool tensor on its way to the host. On CUDA the copy goes to pinned memory behind
    the work queued so far and ``read`` waits for that point only, not for what is queued after
    it (a ``.item()`` there would wait for the whole queue)."""

    def __init__(self, value: torch.Tensor) -> None:
        self._value = value
        self._event = None
        if value.is_cuda:
            self._value = value.to("cpu", non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()

    def read(self) -> bool:
        if self._event is not None:
            self._event.synchronize()
        return bool(self._value)


def _host_floats(values: list) -> list[float]:
    """Floats of 0-d tensors (one device-to-host copy for all) or numbers, in order; the same
    values ``float(t.item())`` would give one by one."""
    tensors = [v.reshape(()) for v in values if isinstance(v, torch.Tensor)]
    host = iter(torch.stack(tensors).tolist() if tensors else [])
    return [next(host) if isinstance(v, torch.Tensor) else float(v) for v in values]


@dataclass
class Trainer:
    """Everything a training or validation step needs.

    ``model`` is what the forward pass runs (maybe DDP- or compile-wrapped), ``net`` the bare
    SSD (validation, saving). ``matcher`` turns a padded batch ``(images, boxes [B,K,4] corner
    normalized, labels [B,K] 0-padded)`` into targets ``(locations [B,N,4], labels [B,N])``;
    ``None`` means the batch already holds matched targets ``(images, locations, labels)``.
    ``ema``: an EMA of ``net``'s weights (``--ema``), updated after every optimizer step and the
    net that ``validate`` runs (``eval_net``).
    """
    model: nn.Module
    net: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: StepLRSchedule
    device: torch.device
    matcher: Callable | None = None
    scaler: torch.amp.GradScaler | None = None
    amp_dtype: torch.dtype | None = None
    grad_clip: float | None = None
    guard: NonFiniteGuard = field(default_factory=NonFiniteGuard)
    ema: WeightEMA | None = None

    @property
    def eval_net(self) -> nn.Module:
        """The net validation and mAP run: the EMA net with --ema, else the trained one."""
        return self.ema.module if self.ema is not None else self.net

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def losses(self, model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(regression_loss, classification_loss, batch size)`` of one batch (losses in fp32)."""
        images, a, b = batch
        # non_blocking: from a pinned batch (pin_memory=True on CUDA) the copies overlap the work queued before
        images = images.to(self.device, non_blocking=True)
        a, b = a.to(self.device, non_blocking=True), b.to(self.device, non_blocking=True)
        locations, labels = self.matcher(a, b) if self.matcher is not None else (a, b)
        with self.autocast():
            confidence, predicted = model(images)
        reg, cls = self.criterion(confidence.float(), predicted.float(), labels, locations)
        return reg, cls, int(images.size(0))

    def train_step(self, batch, epoch: int, step: int,
                   steps_per_epoch: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """One optimizer step; ``None`` when it was skipped for a non-finite loss (same on every rank).

        Returns ``(regression_loss, classification_loss, batch size)`` with the losses as detached
        0-d tensors on the device: reading them is the caller's choice (``train_epoch`` reads them
        every ``debug_steps`` steps), so a step does not wait for the device to finish.

        A skipped step leaves the net exactly as it was, buffers included: the forward pass has
        already updated BatchNorm's running statistics (with NaN, from a NaN batch), so they are
        snapshotted before it and put back (a few hundred KB: cheap next to the step).

        The finite-loss decision needs the loss on the host. So that it does not drain the GPU's
        queue, the backward pass is queued first (its gradients are thrown away on a skipped step)
        and the host waits only for the loss itself (``_DeviceFlag``); on a CPU that is the same as
        reading it at once.
        """
        self.schedule.set_position(epoch, step, steps_per_epoch)
        buffers = snapshot_buffers(self.net)
        reg, cls, n = self.losses(self.model, batch)
        loss = reg + cls
        finite = _DeviceFlag(torch.isfinite(loss))
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler
        scaled = scaler is not None and scaler.is_enabled()
        (scaler.scale(loss) if scaled else loss).backward()
        if distributed.any_rank(not finite.read(), self.device):
            self.optimizer.zero_grad(set_to_none=True)
            restore_buffers(self.net, buffers)
            self.guard.bad(epoch, step, self.optimizer.param_groups[-1]["lr"])
            return None
        self.guard.ok()
        if scaled:
            if self.grad_clip:
                scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
            scaler.step(self.optimizer)
            scaler.update()
        else:
            if self.grad_clip:
                nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.net)
        return reg.detach(), cls.detach(), n

    def train_epoch(self, batches: Iterable, *, epoch: int, start_step: int, steps_per_epoch: int,
                    stats: EpochStats, stop: StopRequest | None = None, debug_steps: int = 10,
                    progress=None, world_size: int = 1, after_step: Callable[[], None] | None = None) -> int:
        """Run the epoch's batches from ``start_step``; returns the step reached.

        Returns early (step < steps_per_epoch) only when a stop was requested; the caller saves a
        mid-epoch checkpoint then. ``progress`` is an optional tqdm bar to update; ``after_step`` is
        called after every step (e.g. ``StepProfiler.step`` for ``--profile``).
        """
        self.model.train()
        step = start_step
        window = EpochStats()
        pending: list[tuple] = []  # (reg, cls, images) of steps whose losses are still on the device
        # losses are read (a host sync on a GPU) every debug_steps steps, or every 10 for a progress bar
        read_every = debug_steps or (10 if progress is not None else 0)
        t_start = t_window = time.perf_counter()

        def read_losses() -> None:
            nonlocal window, t_window
            if not pending:
                return
            values = _host_floats([v for reg, cls, _ in pending for v in (reg, cls)])
            for i, (_, _, n) in enumerate(pending):
                reg, cls = values[2 * i], values[2 * i + 1]
                stats.add(n, reg + cls, reg, cls)
                window.add(n, reg + cls, reg, cls)
            pending.clear()
            now = time.perf_counter()
            window.seconds += now - t_window
            t_window = now
            lr = self.optimizer.param_groups[-1]["lr"]
            m = window.means()
            images_per_s = window.images / max(window.seconds, 1e-9)
            if progress is not None:
                progress.set_postfix(loss=f"{m['loss']:.3f}", reg=f"{m['regression_loss']:.3f}",
                                     cls=f"{m['classification_loss']:.3f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}")
            if debug_steps and (step % debug_steps == 0 or step == steps_per_epoch):
                log.info("Epoch: %d, Step: %d/%d, Avg Loss: %.4f, Avg Regression Loss: %.4f, "
                         "Avg Classification Loss: %.4f, lr: %.3g, %.1f images/s", epoch, step, steps_per_epoch,
                         m["loss"], m["regression_loss"], m["classification_loss"], lr, images_per_s)
                window = EpochStats()

        iterator = iter(batches)
        while step < steps_per_epoch:
            if distributed.any_rank(stop is not None and stop.requested, self.device):
                break
            try:
                batch = next(iterator)
                out = self.train_step(batch, epoch, step, steps_per_epoch)
            except StopIteration:
                break
            except RuntimeError as e:
                if _worker_lost_while_stopping(e, stop):
                    log.warning("a DataLoader worker ended while stopping (%s); saving the position reached",
                                str(e).splitlines()[0])
                    break
                raise
            step += 1
            if after_step is not None:
                after_step()
            if out is None:
                stats.skipped_steps += 1
                continue
            reg, cls, n = out
            pending.append((reg, cls, n * world_size))
            if progress is not None:
                progress.update(1)
            if read_every and (step % read_every == 0 or step == steps_per_epoch):
                read_losses()
        read_losses()  # every step taken counts in stats (a mid-epoch checkpoint saves them)
        stats.seconds += time.perf_counter() - t_start
        return step

    @torch.no_grad()
    def validate(self, batches: Iterable) -> dict[str, float]:
        """Mean loss of ``eval_net`` over the validation batches (summed over every rank's share); with batches
        that count unreadable images (``build_loader(count_skips=True)``), ``val_skipped_images``."""
        net = self.eval_net
        was_training = net.training
        net.eval()
        losses = []  # read once at the end: no host sync per batch
        for batch in batches:
            reg, cls, _ = self.losses(net, batch)
            losses += [reg, cls]
        net.train(was_training)
        values = _host_floats(losses)
        sums = [sum(values[0::2], 0.0), sum(values[1::2], 0.0), float(len(values) // 2)]
        counted = hasattr(batches, "skipped_images")
        reg, cls, n, skipped = distributed.all_reduce_sum(sums + [float(getattr(batches, "skipped_images", 0))],
                                                          self.device)
        out = {"val_skipped_images": int(skipped)} if counted else {}
        if skipped:
            log.warning("validation: %d unreadable images were skipped (each replaced by the next readable one; "
                        "the warnings above name them)", int(skipped))
        if n == 0:
            return {"val_loss": math.nan, "val_regression_loss": math.nan, "val_classification_loss": math.nan, **out}
        return {"val_loss": (reg + cls) / n, "val_regression_loss": reg / n, "val_classification_loss": cls / n,
                **out}
