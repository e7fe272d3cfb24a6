"""How the training step runs on this machine: memory format and ``torch.compile`` (shared by
train_ssd.py and bench/train.py, so the benchmark measures the script's own choices)."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def use_channels_last(memory_format: str, device: torch.device, amp: bool = False) -> bool:
    """``--memory-format``: ``auto`` is channels_last for fp32 training on the CPU, where oneDNN's
    convolutions want it (1.3-1.7x faster steps, bench/README.md "Training"), and contiguous
    elsewhere: with bf16 autocast on the CPU, channels_last made mb1-ssd-lite diverge to NaN
    (non-finite weight gradients of a depthwise convolution on a 1x1 map; contiguous is fine)."""
    return memory_format == "channels_last" or (memory_format == "auto" and device.type == "cpu" and not amp)


def compile_or_eager(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` where it works; errors at compile time fall back to eager execution."""
    try:
        import torch._dynamo
        torch._dynamo.config.suppress_errors = True
        return torch.compile(model)
    except Exception as e:  # no compiler toolchain, unsupported platform or Python
        log.warning("--compile: torch.compile unavailable (%s); running eagerly", str(e).splitlines()[0])
        return model
