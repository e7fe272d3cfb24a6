"""CPU inference latency per net: batch 1, eager PyTorch, beside torchvision's SSDlite.

Why: on small machines (2 cores, Jetson CPUs) the forward pass is what a user
waits for; this shows where each ``--net`` stands against torchvision's
``ssdlite320_mobilenet_v3_large`` (backbone + head, the part comparable to our
net's forward) measured in the same process.

Each measured forward is the net's ``is_test`` forward (softmax + box decoding
included, no NMS) on a ``[1, 3, R, R]`` input. All (net, backend) pairs are
warmed up, then timed in interleaved rounds (one call each per round), so a
busy machine affects them alike; the median of ``--repeats`` rounds is reported
(wall ms, and CPU ms of this process, which moves less when other processes
share the cores).

Output: one JSON line per (net, backend) on stdout, then a table.
Backends are a table (``BACKENDS``): ONNX Runtime or folded-BN columns are one
more entry there.

Example: python3 bench/inference.py --nets mb1-ssd mb2-ssd-lite --repeats 20
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision.ssd import registry  # noqa: E402
from vision.utils.misc import add_log_level_arg, positive_int, run_main, setup_logging  # noqa: E402

log = logging.getLogger("bench.inference")

TORCHVISION_REF = "tv-ssdlite320-mb3-large"
Runner = Callable[[], object]


@dataclass
class Case:
    """One timed thing: a callable doing a single batch-1 forward."""

    net: str
    backend: str
    resolution: int
    params: int
    run: Runner
    wall_ms: list[float]
    cpu_ms: list[float]


# --------------------------------------------------------------- backends
def eager_backend(net: torch.nn.Module, example: torch.Tensor) -> Runner:
    """Plain eager PyTorch under inference_mode."""
    def run():
        with torch.inference_mode():
            return net(example)
    return run


BACKENDS: dict[str, Callable[[torch.nn.Module, torch.Tensor], Runner]] = {
    "eager": eager_backend,
}


def torchvision_reference() -> tuple[torch.nn.Module, torch.Tensor, Runner]:
    """torchvision ssdlite320_mobilenet_v3_large, random weights, backbone + head at 320 px."""
    import torchvision

    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None).eval()
    example = torch.randn(1, 3, 320, 320)

    def run():
        with torch.inference_mode():
            return model.head(list(model.backbone(example).values()))
    return model, example, run


# --------------------------------------------------------------- measuring
def build_cases(nets: Sequence[str], backends: Sequence[str], resolution: int, num_classes: int,
                with_torchvision: bool) -> list[Case]:
    cases = []
    for name in nets:
        net = registry.create_net(name, num_classes, resolution=resolution, is_test=True).eval()
        example = torch.randn(1, 3, resolution, resolution)
        params = sum(p.numel() for p in net.parameters())
        for backend in backends:
            cases.append(Case(name, backend, resolution, params, BACKENDS[backend](net, example), [], []))
    if with_torchvision:
        model, _, run = torchvision_reference()
        cases.append(Case(TORCHVISION_REF, "eager", 320, sum(p.numel() for p in model.parameters()), run, [], []))
    return cases


def measure(cases: list[Case], repeats: int, warmup: int) -> None:
    for case in cases:
        log.info("warming up %s (%s)", case.net, case.backend)
        for _ in range(warmup):
            case.run()
    for r in range(repeats):
        for case in cases:
            c0, w0 = time.process_time(), time.perf_counter()
            case.run()
            case.wall_ms.append((time.perf_counter() - w0) * 1e3)
            case.cpu_ms.append((time.process_time() - c0) * 1e3)
        log.debug("round %d/%d done", r + 1, repeats)


def result_record(case: Case, threads: int) -> dict:
    wall = sorted(case.wall_ms)
    return {
        "bench": "inference", "net": case.net, "backend": case.backend, "device": "cpu",
        "batch": 1, "resolution": case.resolution, "threads": threads, "repeats": len(wall),
        "median_ms": round(statistics.median(wall), 2),
        "p90_ms": round(wall[min(len(wall) - 1, int(0.9 * len(wall)))], 2),
        "min_ms": round(wall[0], 2),
        "median_cpu_ms": round(statistics.median(case.cpu_ms), 2),
        "params_m": round(case.params / 1e6, 3),
        "torch": torch.__version__, "machine": platform.machine(),
    }


def format_table(records: list[dict]) -> str:
    cols = [("net", "net", "{}"), ("backend", "backend", "{}"), ("res", "resolution", "{}"),
            ("median ms", "median_ms", "{:.1f}"), ("p90 ms", "p90_ms", "{:.1f}"),
            ("min ms", "min_ms", "{:.1f}"), ("cpu ms", "median_cpu_ms", "{:.1f}"),
            ("params M", "params_m", "{:.2f}")]
    rows = [[fmt.format(r[key]) for _, key, fmt in cols] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _, _) in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line([h for h, _, _ in cols]), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="CPU batch-1 inference latency of each SSD net (eager PyTorch) next to torchvision's "
                    "ssdlite320_mobilenet_v3_large, timed in interleaved rounds in one process.",
        epilog="Nets:\n" + registry.describe_nets(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=None, metavar="NET",
                        help="nets to time (default: all); see the list below")
    parser.add_argument("--backends", nargs="+", default=["eager"], choices=sorted(BACKENDS),
                        help="execution backends (default: eager)")
    parser.add_argument("--repeats", type=positive_int, default=20,
                        help="timed rounds; the median is reported (default: 20)")
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed calls per net first (default: 3)")
    parser.add_argument("--resolution", type=positive_int, default=300,
                        help="input size in pixels for our nets (default: 300; torchvision's runs at 320)")
    parser.add_argument("--num-classes", type=positive_int, default=21,
                        help="classes incl. BACKGROUND (default: 21, VOC)")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                        help="torch intra-op threads (default: number of cores)")
    parser.add_argument("--no-torchvision", action="store_true", help="skip the torchvision reference")
    add_log_level_arg(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    nets = [registry.canonical_name(n) for n in (args.nets or registry.CANONICAL_NAMES)]
    nets = list(dict.fromkeys(nets))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    log.info("timing %d net(s) at %d px, %d thread(s), %d rounds", len(nets), args.resolution,
             args.threads, args.repeats)
    cases = build_cases(nets, args.backends, args.resolution, args.num_classes, not args.no_torchvision)
    measure(cases, args.repeats, args.warmup)
    records = [result_record(c, args.threads) for c in cases]
    for rec in records:
        print(json.dumps(rec), flush=True)
    print()
    print(format_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
