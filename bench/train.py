"""Training throughput: images/s with the real DataLoader beside the compute-only bound.

Why: a training step waits for its batch. With few cores (2 here) the data workers
(decode, augmentation, matching) and the compute threads share the same CPUs, so the
question is how close real training gets to the bound set by compute alone: the same
forward + backward + optimizer step on batches already in memory (issue 6 target:
real >= 0.9 x compute-only at batch 16 with ``--workers 2``).

Everything is built with the library code ``train_ssd.py`` uses: ``open_dataset``
(COCO layout) with ``TrainAugmentation`` under ``ReseededTransform``, ``build_loader``
(resumable sampler, ``collate_padded``), ``param_groups`` / ``build_optimizer`` /
``StepLRSchedule``, ``MultiboxLoss``, ``BatchedMatcher`` and ``Trainer.train_step``
(AMP, gradient step, non-finite guard included).

Cases, per net:

- ``compute``: the bound. ``--compute-batches`` batches made once by the same pipeline,
  moved to the device and cycled. ``--compute-variants`` adds bounds of other compute
  settings (channels_last, bf16/fp16 autocast, fused/foreach optimizer, torch.compile),
  each with its own copy of the net;
- ``loader``: the real loader at each ``--workers`` count, plus ``--loader-variants``
  (worker threads, nice, prefetch factor, per-sample matching in the workers).

After a warm-up (whose first batch gives ``first_batch_ms``, the cost of starting an
epoch's workers) the cases run in interleaved rounds of ``--steps`` timed steps, so a
machine shared with other work slows them alike; the median round is reported. Before a
loader round its prefetched batches are thrown away (they were made while another case
ran), so a round starts with an empty queue: slightly pessimistic. ``ratio`` is the
median over rounds of this case / the default compute-only bound of the same round;
``ratio_to_own_bound`` the same against the bound with this case's compute settings.

Steady state (``--warmup-seconds``, ``--duration``): each case first warms up for at least
that many seconds, then is timed for ``--duration`` seconds in all, split over the rounds
(each round a whole number of ``--steps`` chunks). In this mode a loader round starts with its
prefetched batches used by untimed steps (the workers refill meanwhile), so it starts in its
steady state. The device is synchronised once per chunk of ``--steps`` steps, never per step.

Like train_ssd.py, this sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment says
otherwise (``--omp-wait-policy`` re-runs the script under another policy): with
spinning OpenMP threads, compute threads that share cores with data workers (or other
processes) lose most of their time. See bench/README.md.

Output: one JSON line per case, then a table. ``--cpu-smoke`` shrinks everything (tiny
input, few steps) to check that the script works, e.g. before a GPU run.

Examples:
  python3 bench/train.py --nets mb2-ssd-lite mb1-ssd --workers 0 2 --batch-size 16
  python3 bench/train.py --nets mb2-ssd-lite --workers 2 --loader-variants 2,threads=1 2,matcher=per-sample
  python3 bench/train.py --nets mb2-ssd-lite --workers --compute-variants contiguous amp fused compile
"""
from __future__ import annotations

import os

import common  # (first: the repository on sys.path)

_REEXEC = "_BENCH_TRAIN_OMP"  # set when this script re-ran itself under another OpenMP wait policy
if not os.environ.get(_REEXEC):
    common.passive_openmp()  # before torch loads libgomp

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator, Sequence  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import ConcatDataset, default_collate  # noqa: E402


from vision.datasets.collation import collate_padded  # noqa: E402
from vision.ssd.data_preprocessing import TrainAugmentation  # noqa: E402
from vision.ssd.config.base import build_criterion, build_matcher  # noqa: E402
from vision.ssd.registry import NET_NAMES, canonical_name, create_net  # noqa: E402
from vision.training.compute import compile_or_eager, use_channels_last  # noqa: E402
from vision.training.data import ReseededTransform, build_loader  # noqa: E402
from vision.training.dataset_folders import open_dataset  # noqa: E402
from vision.training.loop import Trainer  # noqa: E402
from vision.training.optim import OPTIMIZERS, build_optimizer, param_groups  # noqa: E402
from vision.training.schedule import StepLRSchedule  # noqa: E402
from vision.utils.misc import (UserError, add_log_level_arg, int_range, non_negative_float,  # noqa: E402
                               non_negative_int, positive_float, positive_int, run_main, setup_logging)
from vision.cli.args import add_resolution_arg, choose_device  # noqa: E402

log = logging.getLogger("bench.train")

STEPS_PER_EPOCH = 10**6  # keeps the learning-rate schedule flat during the benchmark


# ------------------------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class ComputeSettings:
    """How the training step computes (everything but the data)."""
    amp: bool = False
    channels_last: bool = False
    optimizer_impl: str = "default"  # "default" | "foreach" | "fused"
    compile: bool = False

    @classmethod
    def parse(cls, name: str, base: "ComputeSettings", auto_layout: Callable[[bool], bool]) -> "ComputeSettings":
        """``base`` changed by ``name`` (parts joined by '+'); without an explicit layout part the
        layout follows ``auto_layout(amp)`` (train_ssd.py's --memory-format rule)."""
        if name == "default":
            return base
        s, layout = base, None
        for part in name.split("+"):
            if part in ("channels_last", "contiguous"):
                layout = part == "channels_last"
            elif part == "amp":
                s = replace(s, amp=True)
            elif part in ("foreach", "fused"):
                s = replace(s, optimizer_impl=part)
            elif part == "compile":
                s = replace(s, compile=True)
            else:
                raise UserError(f"--compute-variants: unknown part {part!r} in {name!r}; use "
                                f"channels_last, contiguous, amp, foreach, fused, compile joined by '+'")
        return replace(s, channels_last=auto_layout(s.amp) if layout is None else layout)


def make_trainer(net_name: str, num_classes: int, args: argparse.Namespace, device: torch.device,
                 cs: ComputeSettings) -> Trainer:
    """Net, optimizer, schedule, loss and matcher as train_ssd.py assembles them."""
    torch.manual_seed(0)
    net = create_net(net_name, num_classes, resolution=args.resolution)
    net.to(device)
    if cs.channels_last:
        net.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(args.optimizer, param_groups(net, args.lr), lr=args.lr)
    if cs.optimizer_impl != "default":  # torch's multi-tensor / fused kernels for the same update
        for g in optimizer.param_groups:
            g["foreach"] = cs.optimizer_impl == "foreach"
            g["fused"] = cs.optimizer_impl == "fused"
    schedule = StepLRSchedule(optimizer, "none")
    cfg = net.config
    amp_dtype = (torch.float16 if device.type == "cuda" else torch.bfloat16) if cs.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=bool(cs.amp and device.type == "cuda"))
    model: torch.nn.Module = net
    if cs.compile:
        model = compile_or_eager(net)
    criterion = build_criterion(cfg, device)
    matcher = build_matcher(cfg, batched=True, device=device)
    return Trainer(model=model, net=net, criterion=criterion, optimizer=optimizer, schedule=schedule,
                   device=device, matcher=matcher, scaler=scaler, amp_dtype=amp_dtype)


@dataclass(frozen=True)
class LoaderSpec:
    """One real-loader configuration: ``2``, ``2,threads=1``, ``2,nice=10``, ``2,prefetch=4``,
    ``2,matcher=per-sample``, ``2,compute=amp`` (the step of that ``--compute-variants`` name instead of
    the base settings; options may be combined)."""
    workers: int
    matcher: str = "batched"
    compute: str = "default"
    threads: int | None = None  # OpenCV + torch threads inside each worker (None: library defaults)
    nice: int = 0
    prefetch: int = 2

    @classmethod
    def parse(cls, text: str) -> "LoaderSpec":
        head, *opts = [t.strip() for t in text.split(",")]
        try:
            spec = cls(int(head))
            for opt in opts:
                key, _, value = opt.partition("=")
                if key == "matcher" and value in ("batched", "per-sample"):
                    spec = replace(spec, matcher=value)
                elif key == "threads":
                    spec = replace(spec, threads=int(value))
                elif key == "nice":
                    spec = replace(spec, nice=int(value))
                elif key == "prefetch":
                    spec = replace(spec, prefetch=int(value))
                elif key == "compute" and value:
                    spec = replace(spec, compute=value)
                else:
                    raise ValueError(opt)
        except ValueError:
            raise UserError(f"--loader-variants: cannot read {text!r}; expected WORKERS[,matcher=batched|"
                            f"per-sample][,threads=N][,nice=N][,prefetch=N][,compute=VARIANT]") from None
        if spec.workers < 0 or spec.prefetch < 1 or (spec.threads is not None and spec.threads < 0) \
                or not 0 <= spec.nice <= 19:
            raise UserError(f"--loader-variants: value out of range in {text!r}")
        return spec

    @property
    def label(self) -> str:
        parts = [f"w{self.workers}"]
        if self.matcher != "batched":
            parts.append("match-in-workers")
        if self.threads is not None:
            parts.append(f"threads={self.threads}")
        if self.nice:
            parts.append(f"nice={self.nice}")
        if self.prefetch != 2 and self.workers:
            parts.append(f"prefetch={self.prefetch}")
        if self.compute != "default":
            parts.append(self.compute)
        return " ".join(parts)


@dataclass
class WorkerSetup:
    """Run in each DataLoader worker at start: thread counts and scheduling priority."""
    threads: int | None = None
    nice: int = 0

    def __call__(self, worker_id: int) -> None:
        if self.threads is not None:
            import cv2
            cv2.setNumThreads(self.threads)
            torch.set_num_threads(max(1, self.threads))
        if self.nice:
            os.nice(self.nice)


def batch_stream(root: Path, cfg, args: argparse.Namespace, spec: LoaderSpec, device: torch.device,
                 on_first: Callable[[float], None] | None = None) -> Iterator[Any]:
    """Endless training batches from the real loader (as train_ssd.py builds it), one long epoch
    of the images repeated (as train_ssd.py concatenates datasets), so no worker restarts while
    measuring, as on a real dataset whose epochs are long."""
    per_sample = spec.matcher == "per-sample"
    target_transform = build_matcher(cfg) if per_sample else None
    transform = ReseededTransform(partial(TrainAugmentation, cfg.image_size, cfg.image_mean, cfg.image_std))
    dataset = open_dataset("coco", root, split="train", transform=transform, target_transform=target_transform)
    if len(dataset) < args.batch_size:
        raise UserError(f"{root}: {len(dataset)} training images, fewer than --batch-size {args.batch_size}")
    needed = args.batch_size * (args.warmup + args.repeats * (args.steps + spec.workers * spec.prefetch) + 1)
    if args.duration or args.warmup_seconds:  # one long epoch for the whole run (up to ~20k images/s)
        needed = max(needed, int(20000 * (args.duration + args.warmup_seconds * (1 + args.repeats) + 10)))
    if needed > len(dataset):
        dataset = ConcatDataset([dataset] * -(-needed // len(dataset)))
    epoch = 0
    while True:
        loader = build_loader(dataset, batch_size=args.batch_size, num_workers=spec.workers, seed=0, epoch=epoch,
                              collate_fn=default_collate if per_sample else collate_padded, drop_last=True,
                              pin_memory=device.type == "cuda" and not args.no_pin_memory)
        if spec.workers:
            loader.prefetch_factor = spec.prefetch
            loader.worker_init_fn = WorkerSetup(spec.threads, spec.nice)
        t0 = time.perf_counter()
        for i, batch in enumerate(loader):
            if i == 0 and on_first is not None:
                on_first(time.perf_counter() - t0)
            yield batch
        epoch += 1


@dataclass
class Case:
    """One measured configuration and its per-round results."""
    net: str
    mode: str  # "compute" or "loader"
    label: str
    trainer: Trainer
    next_batch: Callable[[], Any]
    compute: ComputeSettings
    spec: LoaderSpec | None = None
    drain: int = 0  # prefetched batches to throw away before a round
    batch_size: int = 0
    rounds: list[float] = field(default_factory=list)  # images/s per round
    round_images: list[int] = field(default_factory=list)  # images timed per round
    step_ms: list[float] = field(default_factory=list)  # mean step wall ms per round
    wait_ms: list[float] = field(default_factory=list)  # time spent waiting for the batch
    first_batch_ms: float | None = None
    cpu_s: list[float] = field(default_factory=list)  # main-process CPU seconds per round
    worker_cpu_s: list[float] = field(default_factory=list)  # worker CPU seconds per round


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's live child processes (the DataLoader workers).

    Read from ``/proc`` (Linux); 0 elsewhere. Counting them beside the main process's own CPU
    time gives a load-independent view: how much CPU one image costs in data work vs compute.
    """
    me, total = os.getpid(), 0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0
    for pid in entries:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # fields after "(comm)": state, ppid, ..., utime (12), stime (13)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(case: Case, n: int, record: bool, min_seconds: float = 0.0) -> tuple[float, int]:
    """Training steps in chunks of ``n`` until at least ``min_seconds`` have passed (one chunk when
    0); returns ``(wall seconds, steps)``, batch fetches included. The device is synchronised
    once per chunk, not per step, as the training loop itself runs (no host sync per step)."""
    if n <= 0 and min_seconds <= 0:
        return 0.0, 0
    n = max(1, n)
    c0, w0 = time.process_time(), children_cpu_seconds()
    t_start = time.perf_counter()
    steps, waits = 0, []
    while True:
        for _ in range(n):
            t0 = time.perf_counter()
            batch = case.next_batch()
            waits.append(time.perf_counter() - t0)
            if case.trainer.train_step(batch, epoch=0, step=steps, steps_per_epoch=STEPS_PER_EPOCH) is None:
                log.warning("%s %s: non-finite loss, step skipped", case.net, case.label)
            steps += 1
        _sync(case.trainer.device)
        elapsed = time.perf_counter() - t_start
        if elapsed >= min_seconds:
            break
    if record:
        case.step_ms.append(1e3 * elapsed / steps)
        case.wait_ms.extend(1e3 * w for w in waits)
        case.round_images.append(steps * case.batch_size)
        case.cpu_s.append(time.process_time() - c0)
        case.worker_cpu_s.append(max(0.0, children_cpu_seconds() - w0))
    return elapsed, steps


def build_cases(net_name: str, root: Path, num_classes: int, args: argparse.Namespace,
                device: torch.device) -> list[Case]:
    def auto_layout(amp: bool) -> bool:
        return use_channels_last(args.memory_format, device, amp)

    base = ComputeSettings(amp=args.amp, channels_last=auto_layout(args.amp), optimizer_impl=args.optimizer_impl,
                           compile=args.compile)
    trainer = make_trainer(net_name, num_classes, args, device, base)
    cfg = trainer.net.config
    stream = batch_stream(root, cfg, args, LoaderSpec(0), device)
    batches = [tuple(t.to(device) for t in next(stream)) for _ in range(args.compute_batches)]
    stream.close()
    cases = [Case(net_name, "compute", "compute-only", trainer, itertools.cycle(batches).__next__, base)]
    trainers = {base: trainer}  # one net + optimizer per compute setting, shared by its bound and loaders
    for name in args.compute_variants:
        cs = ComputeSettings.parse(name, base, auto_layout)
        if cs not in trainers:
            trainers[cs] = make_trainer(net_name, num_classes, args, device, cs)
            cases.append(Case(net_name, "compute", f"compute-only {name}", trainers[cs],
                              itertools.cycle(batches).__next__, cs))
    specs = [LoaderSpec(w) for w in args.workers] + [LoaderSpec.parse(v) for v in args.loader_variants]
    for spec in specs:
        cs = ComputeSettings.parse(spec.compute, base, auto_layout)
        if cs not in trainers:  # a loader's compute setting without its own bound: no ratio to it but the base's
            trainers[cs] = make_trainer(net_name, num_classes, args, device, cs)
        loader_trainer = trainers[cs]
        case = Case(net_name, "loader", f"loader {spec.label}",
                    replace(loader_trainer, matcher=None) if spec.matcher == "per-sample" else loader_trainer,
                    lambda: None, cs, spec, drain=spec.workers * spec.prefetch)
        case.next_batch = batch_stream(root, cfg, args, spec, device,
                                       on_first=partial(_set_first, case)).__next__
        cases.append(case)
    return cases


def _set_first(case: Case, seconds: float) -> None:
    if case.first_batch_ms is None:
        case.first_batch_ms = 1e3 * seconds


def measure(cases: list[Case], args: argparse.Namespace) -> None:
    for case in cases:
        case.batch_size = args.batch_size
        warmup = args.warmup + (args.compile_warmup if case.compute.compile else 0)
        t, n = run_steps(case, warmup, record=False, min_seconds=args.warmup_seconds)
        log.info("%s %s: warm-up %d steps in %.1f s", case.net, case.label, n, t)
    round_seconds = args.duration / args.repeats if args.duration else 0.0
    for r in range(args.repeats):
        for case in cases:
            if args.duration:
                # a timed round should start with the loader in its steady state: the batches it
                # prefetched while other cases ran are used by untimed steps while it refills
                run_steps(case, case.drain, record=False)
            else:
                for _ in range(case.drain):
                    case.next_batch()
            seconds, steps = run_steps(case, args.steps, record=True, min_seconds=round_seconds)
            case.rounds.append(steps * args.batch_size / seconds)
            log.info("round %d %s %s: %.2f images/s (%d steps, %.1f s)", r, case.net, case.label,
                     case.rounds[-1], steps, seconds)


def results_of(cases: list[Case], args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    bound = cases[0]
    bounds = {c.compute: c for c in cases if c.mode == "compute"}
    out = []
    for c in cases:
        ratios = [a / b for a, b in zip(c.rounds, bound.rounds)]
        own = bounds.get(c.compute)
        own_ratios = [a / b for a, b in zip(c.rounds, own.rounds)] if own else []
        cpu_ms = 1e3 * sum(c.cpu_s) / sum(c.round_images)
        worker_ms = 1e3 * sum(c.worker_cpu_s) / sum(c.round_images)
        bound_ms = 1e3 * sum(bound.cpu_s) / sum(bound.round_images)
        spec = c.spec
        out.append({
            "bench": "train", "net": c.net, "mode": c.mode, "case": c.label,
            "workers": spec.workers if spec else None, "matcher": spec.matcher if spec else "batched",
            "batch_size": args.batch_size, "resolution": args.resolution, "device": str(device),
            "threads": torch.get_num_threads(), "amp": c.compute.amp, "channels_last": c.compute.channels_last,
            "compile": c.compute.compile, "optimizer": args.optimizer, "optimizer_impl": c.compute.optimizer_impl,
            "prefetch_factor": spec.prefetch if spec and spec.workers else None,
            "worker_threads": spec.threads if spec else None, "worker_nice": spec.nice if spec else None,
            "images_per_s": round(statistics.median(c.rounds), 2),
            "images_per_s_rounds": [round(x, 2) for x in c.rounds],
            "ratio": round(statistics.median(ratios), 3),
            # to the bound of the same compute settings (a loader with compute=amp: to the amp bound)
            "ratio_to_own_bound": round(statistics.median(own_ratios), 3) if own_ratios else None,
            "median_step_ms": round(statistics.median(c.step_ms), 1),
            "mean_wait_ms": round(statistics.fmean(c.wait_ms), 1),
            "first_batch_ms": round(c.first_batch_ms, 1) if c.first_batch_ms is not None else None,
            "cpu_ms_per_image": round(cpu_ms, 2), "worker_cpu_ms_per_image": round(worker_ms, 2),
            "cpu_ratio": round(bound_ms / max(1e-9, cpu_ms + worker_ms), 3),
            "steps": args.steps, "repeats": args.repeats, "duration_s": args.duration,
            "warmup_seconds": args.warmup_seconds, "timed_images": sum(c.round_images),
            "timed_s": round(sum(n / x for n, x in zip(c.round_images, c.rounds)), 2), common.LOAD_KEY: common.load_average(),
            "malloc": malloc_setting(args), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "torch": torch.__version__,
        })
    return out


def malloc_setting(args: argparse.Namespace) -> str:
    pre = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in pre:
        return "jemalloc"
    if "tcmalloc" in pre:
        return "tcmalloc"
    if args.keep_freed_memory:
        return "glibc-keep-freed"
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return "glibc-tuned-env"
    return "glibc"


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    print(f"{'net':<14} {'case':<36} {'images/s':>9} {'ratio':>6} {'step ms':>8} {'wait ms':>8} "
          f"{'1st batch':>9} {'cpu ms/img':>10} {'wrk ms/img':>10} {'cpu ratio':>9}  rounds")
    for r in results:
        first = f"{r['first_batch_ms']:.0f} ms" if r["first_batch_ms"] is not None else "-"
        print(f"{r['net']:<14} {r['case']:<36} {r['images_per_s']:>9.2f} {r['ratio']:>6.2f} "
              f"{r['median_step_ms']:>8.1f} {r['mean_wait_ms']:>8.1f} {first:>9} {r['cpu_ms_per_image']:>10.1f} "
              f"{r['worker_cpu_ms_per_image']:>10.1f} {r['cpu_ratio']:>9.2f}  "
              + " ".join(f"{x:.2f}" for x in r["images_per_s_rounds"]))


# --------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Measure training speed (images/s) with the real DataLoader at each --workers count and "
                    "the compute-only bound (the same step on batches already in memory), and their ratio. "
                    "Prints one JSON line per case, then a table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nets", nargs="+", type=str.lower, default=["mb2-ssd-lite", "mb1-ssd"], metavar="NET",
                   help=f"nets to measure, of: {', '.join(NET_NAMES)}")
    add_resolution_arg(p, 300, "net input size in pixels")
    p.add_argument("--batch-size", type=int_range(2, 4096), default=16, help="images per step")
    p.add_argument("--workers", nargs="*", type=non_negative_int, default=[0, 2],
                   help="DataLoader worker counts to measure with train_ssd.py's loader (0: load in the main "
                        "process; none: no loader case)")
    p.add_argument("--loader-variants", nargs="*", default=[], metavar="SPEC",
                   help="more loader cases: WORKERS[,matcher=per-sample][,threads=N][,nice=N][,prefetch=N] "
                        "(threads: OpenCV/torch threads in each worker, 0 = OpenCV single-threaded; nice: lower "
                        "the workers' CPU priority; matcher=per-sample: prior matching in the workers)")
    p.add_argument("--compute-variants", nargs="*", default=[], metavar="VARIANT",
                   help="more compute-only bounds, each changing the main settings by any of channels_last, "
                        "contiguous, amp, foreach, fused, compile joined by '+', e.g. contiguous+amp")
    p.add_argument("--steps", type=positive_int, default=6, help="timed steps per case and round")
    p.add_argument("--repeats", type=positive_int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed steps per case first")
    p.add_argument("--warmup-seconds", type=non_negative_float, default=0.0,
                   help="untimed warm-up per case of at least this many seconds (in chunks of --steps steps; "
                        "cuDNN autotuning, allocator growth, loader ramp-up), after the --warmup steps")
    p.add_argument("--duration", type=non_negative_float, default=0.0,
                   help="timed seconds per case, split over --repeats rounds, each round a whole number of "
                        "--steps chunks (default 0: one chunk of --steps steps per round)")
    p.add_argument("--compile-warmup", type=non_negative_int, default=3,
                   help="extra warm-up steps for torch.compile cases (compilation)")
    p.add_argument("--compute-batches", type=positive_int, default=4,
                   help="distinct in-memory batches the compute-only bound cycles through")
    p.add_argument("--data", type=Path, default=None,
                   help="COCO-layout dataset root (annotations/instances_train2017.json, train2017/); "
                        "default: generate a synthetic one in a temporary folder")
    p.add_argument("--dataset-images", type=positive_int, default=128,
                   help="images to generate when --data is not given")
    p.add_argument("--image-size", nargs=2, type=int_range(32, 4096), metavar=("W", "H"), default=[640, 480],
                   help="nominal size of the generated images (COCO-like)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="torch threads of the training process (0: one per available CPU)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer (train_ssd.py default)")
    p.add_argument("--optimizer-impl", choices=("default", "foreach", "fused"), default="default",
                   help="torch's implementation of the optimizer update, for every case")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision for every case (bf16 on CPU, fp16 + scaling on CUDA), as train_ssd.py --amp")
    p.add_argument("--memory-format", choices=("auto", "channels_last", "contiguous"), default="auto",
                   help="memory format, as train_ssd.py --memory-format (auto: channels_last for fp32 on a CPU, "
                        "else contiguous)")
    p.add_argument("--compile", action="store_true", help="torch.compile the net in every case")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="glibc malloc keeps freed memory (bench/allocator.py keep_freed_memory; the effect of "
                        "the MALLOC_*_ environment settings in reference.md)")
    p.add_argument("--omp-wait-policy", choices=("passive", "active", "default"), default=None,
                   help="re-run under this OpenMP wait policy (default: the environment's OMP_WAIT_POLICY, else "
                        "passive as train_ssd.py; 'default' = libgomp's own spin-then-sleep)")
    p.add_argument("--no-pin-memory", action="store_true", help="CUDA: do not pin the loader's batches")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="tiny settings (128 px, batch 4, 2 steps, 1 round, 16 small images) to check the script")
    p.add_argument("--json-out", type=Path, default=None, help="also write the JSON lines to this file")
    add_log_level_arg(p)
    return p


def reexec_for_omp_policy(policy: str | None) -> None:
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: run this script again under ``policy``."""
    if policy is None:
        return
    want = None if policy == "default" else policy.upper()
    if os.environ.get("OMP_WAIT_POLICY") == want or (want is None and os.environ.get(_REEXEC) == "default"):
        return
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if want:
        env["OMP_WAIT_POLICY"] = want
    env[_REEXEC] = policy
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if argv is None:
        reexec_for_omp_policy(args.omp_wait_policy)
    if args.cpu_smoke:
        args.resolution, args.batch_size, args.steps, args.repeats, args.warmup = 128, 4, 2, 1, 1
        args.dataset_images, args.image_size, args.compute_batches = 16, [160, 120], 2
    nets = [canonical_name(n) for n in args.nets]
    for v in args.compute_variants:
        ComputeSettings.parse(v, ComputeSettings(), bool)  # bad names are usage errors before any work
    for v in args.loader_variants:
        LoaderSpec.parse(v)
    if args.keep_freed_memory:
        from allocator import keep_freed_memory
        if not keep_freed_memory():
            log.warning("--keep-freed-memory: not glibc; the allocator is unchanged")
    threads = args.threads or common.cpu_count()
    torch.set_num_threads(threads)
    device = choose_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    log.info("torch %s, %s, %d threads, device %s, OMP_WAIT_POLICY %s, load average %.2f", torch.__version__,
             platform.processor() or platform.machine(), threads, device,
             os.environ.get("OMP_WAIT_POLICY", "default"), os.getloadavg()[0])

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = args.data
        if root is None:
            from vision.datasets.synthetic import generate_coco_dataset
            root = Path(tmp) / "synthetic"
            log.info("generating %d synthetic COCO images of about %dx%d", args.dataset_images, *args.image_size)
            generate_coco_dataset(root, args.dataset_images, 1, seed=0, image_size=tuple(args.image_size))
        num_classes = len(open_dataset("coco", root, split="train").class_names)
        for net_name in nets:
            cases = build_cases(net_name, root, num_classes, args, device)
            measure(cases, args)
            for res in results_of(cases, args, device):
                results.append(res)
                print(json.dumps(res), flush=True)
            del cases
    if args.json_out:
        from vision.utils.misc import atomic_write
        with atomic_write(args.json_out) as f:
            f.write("".join(json.dumps(r) + "\n" for r in results))
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
