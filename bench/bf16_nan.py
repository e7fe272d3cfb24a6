"""Where does bf16 autocast on the CPU produce NaN/inf? A few training steps per layout, every
module's output and every gradient checked.

Why: ``--amp`` with channels_last was seen to diverge to NaN "in a depthwise layer" (mb1-ssd-lite),
so ``--memory-format auto`` picks contiguous under ``--amp``. Before that rule changes, the layer
and the op must be known. This runs the same random steps for each ``--layouts`` entry (same
seed, same data) under ``torch.autocast("cpu", torch.bfloat16)``, with a forward hook on every
module, and reports the first module whose output is not finite and the parameters whose
gradient is not, per step.

It also says whether this CPU has native bf16 (``mkldnn_bf16``): without it, PyTorch runs bf16
convolutions through aten's slow im2col path (one call per group for depthwise layers), not
through oneDNN, so a NaN from oneDNN's bf16 kernels cannot show there (bench/README.md).

Output: one JSON line per (layout, step), then a summary table.

Example: python3 bench/bf16_nan.py --net mb1-ssd-lite --resolution 96 --steps 20
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Sequence

import common  # noqa: E402  (first: the repository on sys.path)

common.passive_openmp()

import torch  # noqa: E402

from vision.cli.args import add_resolution_arg  # noqa: E402
from vision.ssd import registry  # noqa: E402
from vision.utils.misc import add_log_level_arg, positive_float, positive_int, run_main, setup_logging  # noqa: E402

log = logging.getLogger("bench.bf16_nan")


def native_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX512-BF16 / AMX; AVX512BW emulation counts too)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def run_layout(name: str, resolution: int, layout: str, steps: int, batch: int, lr: float) -> list[dict]:
    torch.manual_seed(0)
    net = registry.create_net(name, 5, resolution=resolution)
    channels_last = layout == "channels_last"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    bad: list[str] = []

    def hook(module, inputs, output) -> None:
        for out in output if isinstance(output, (tuple, list)) else (output,):
            if torch.is_tensor(out) and out.is_floating_point() and not torch.isfinite(out).all():
                bad.append(f"{module._bench_name or 'net'} ({type(module).__name__}, {out.dtype})")

    for module_name, module in net.named_modules():
        module._bench_name = module_name
        module.register_forward_hook(hook)
    optimizer = torch.optim.Adam(net.parameters(), lr)
    g = torch.Generator().manual_seed(1)
    records = []
    for step in range(steps):
        x = torch.randn(batch, 3, resolution, resolution, generator=g)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t0 = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            confidence, locations = net(x)
        # a stand-in loss that pulls every output (the SSD loss would need targets)
        loss = confidence.float().logsumexp(-1).mean() + locations.float().abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        bad_grads = [n for n, p in net.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        optimizer.step()
        records.append({"bench": "bf16_nan", "net": name, "resolution": resolution, "layout": layout,
                        "step": step, "loss": float(loss), "first_nonfinite_output": bad[0] if bad else None,
                        "nonfinite_outputs": len(bad), "nonfinite_grads": bad_grads[:5],
                        "step_cpu_s": round(time.process_time() - t0, 3), "native_bf16": native_bf16(),
                        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__})
        bad.clear()
    return records


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train a few random steps under CPU bf16 autocast per memory layout and "
                                            "report the first module with a NaN/inf output and the NaN/inf gradients.")
    p.add_argument("--net", default="mb1-ssd-lite", help="net (default: mb1-ssd-lite, where the NaN was seen)")
    add_resolution_arg(p, 96, "input size in pixels (default: 96, small enough for emulated bf16)")
    p.add_argument("--steps", type=positive_int, default=10, help="training steps per layout (default: 10)")
    p.add_argument("--batch-size", type=positive_int, default=2, help="images per step (default: 2)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--layouts", nargs="+", choices=["channels_last", "contiguous"],
                   default=["channels_last", "contiguous"], help="memory layouts to run (default: both)")
    p.add_argument("--threads", type=positive_int, default=common.cpu_count(), help="torch threads")
    add_log_level_arg(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    torch.set_num_threads(args.threads)
    name = registry.canonical_name(args.net)
    log.info("native bf16: %s (cpu capability %s)", native_bf16(), torch.backends.cpu.get_cpu_capability())
    summary = []
    for layout in args.layouts:
        records = run_layout(name, args.resolution, layout, args.steps, args.batch_size, args.lr)
        for rec in records:
            print(json.dumps(rec), flush=True)
        first = next((r for r in records if r["nonfinite_outputs"] or r["nonfinite_grads"]), None)
        summary.append((layout, records[-1]["loss"], first))
    print()
    print(f"{'layout':<14} {'last loss':>10}  first non-finite")
    for layout, loss, first in summary:
        where = "none" if first is None else (f"step {first['step']}: {first['first_nonfinite_output']} "
                                             f"grads {first['nonfinite_grads']}")
        print(f"{layout:<14} {loss:>10.4f}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
