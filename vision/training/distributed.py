"""Multi-process training through PyTorch's own engine (``torchrun`` + DistributedDataParallel).

``torchrun --nproc_per_node N train_ssd.py ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; ``init_from_env`` joins the process group (NCCL on CUDA, gloo on CPU).
A plain ``python train_ssd.py`` is a world of one and touches no process group.
"""
from __future__ import annotations

import datetime
import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vision.utils.misc import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What torchrun's environment variables say about this process (world of one without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    world_size=world)


_joined = False  # set by init_process_group; read by joined()


def init_process_group(info: DistInfo, device: torch.device, timeout_minutes: float = 120.0) -> None:
    """Join the process group; the long timeout covers rank 0 running mAP evaluation alone."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    global _joined
    _joined = True


def joined() -> bool:
    """Whether this process ever joined a process group (even one it has left since)."""
    return _joined


def exit_process(code: int) -> None:
    """End a process that joined a group without running C++ static destructors: at interpreter exit
    gloo's / the TCP store's threads can abort it ("terminate called without an active exception",
    about 1 exit in 10 on a 2-core machine, after a clean destroy_process_group). Logs and streams
    are flushed first; every file was already written atomically and closed."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def initialized() -> bool:
    """Whether this process is in a process group."""
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave_together() -> None:
    """Leave the process group where every rank has reached the same point (a refusal they agreed
    on, the end of training): a barrier first, so no rank tears gloo/NCCL down while a peer is still
    inside the last collective (a rare abort at exit, "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank: keeps every rank taking the same branch."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def check_same_on_all_ranks(what: dict, describe: str) -> None:
    """Refuse (``UserError`` on every rank, after leaving the process group) when the ranks' ``what``
    differ: ranks on other data train silently on different images, or die in a collective of
    another size. ``describe`` says what the user gave (e.g. the --datasets)."""
    views = all_gather_object(what)
    for rank, view in enumerate(views[1:], start=1):
        diff = [k for k in what if view.get(k) != views[0].get(k)]
        if diff:
            leave_together()
            key = diff[0]
            raise UserError(f"process {rank} sees other data than process 0 ({key}: {_short(view.get(key))} vs "
                            f"{_short(views[0].get(key))}); every process must see the same {describe}")


def _short(value, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_peer_failure(error: BaseException) -> bool:
    """A collective failed because another process of the group ended (or stopped answering)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo",
                                   "NCCL", "ProcessGroup", "Timed out", "timed out"))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
