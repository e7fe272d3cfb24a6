"""Evaluation speed: eval_ssd.py's detection loop end to end vs the pure batched forward.

Why: evaluation (eval_ssd.py, and train_ssd.py --validation-mean-ap every few
epochs) should cost about what the network costs. Everything around the forward
(image decoding and resizing in DataLoader workers, box decoding, NMS, moving
results to numpy, COCOeval) is overhead; this shows how much and where.

What is timed, per net, in alternating rounds (the median round is reported):

- ``e2e``: ``vision.evaluation.detect_dataset`` exactly as eval_ssd.py calls it
  (``make_predictor`` + a DataLoader with ``--workers`` workers, ``--batch-size``,
  top-k 100, score threshold 0.01, hard NMS), images/s of the whole loop; inside
  it, the time spent in the net's forward, in its box decoding (softmax + offsets
  to corners), in ``batched_postprocess`` (score filter, per-class top-k, NMS)
  and the rest (waiting for the workers' images, results to numpy);
- ``forward``: the same net (``predictor.run``) on the same images, already
  preprocessed and batched in memory (no loading, no postprocessing): the ceiling
  for ``e2e``;
- ``startup``: from the call until the first batch reaches the net (worker
  start-up and loading one batch); ``ratio_steady`` leaves it out: what a long
  evaluation (COCO val: 5000 images) converges to;
- ``cocoeval``: ``compute_metrics`` (pycocotools) on the detections, separately:
  it is not part of images/s and not "decode + NMS".

``--compare-plain`` adds each net without make_predictor's inference
optimizations (``variant`` "plain": no BatchNorm folding, NCHW weights), to show
what they gain.

Also, once per run, the per-image cost of what the workers do (``get_image``:
JPEG decode, then ``PredictionTransform``: resize + normalize), in one process.

Weights: random, but a random SSD scores every (box, class) pair about 1/C,
which sends 200 boxes per class through NMS (a worst case no trained net shows).
The classification heads are therefore rescaled (logit spread) and their
BACKGROUND bias set so that about ``--candidates`` pairs per image score above the
threshold, as a trained net's do; ``--candidates 0`` keeps the raw random heads.

CPU time: ``cpu_s`` columns count this process and its (finished) DataLoader
workers; images per CPU-second move much less than wall-clock numbers when other
processes share the cores.

Output: one JSON line per net, then a table.

Example: python3 bench/eval.py --images 96 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import common  # noqa: E402  (first: the repository on sys.path)

common.passive_openmp()  # as train_ssd.py, whose --validation-mean-ap runs this same loop

import torch  # noqa: E402


from vision.datasets.coco_dataset import COCODataset  # noqa: E402
from vision.datasets.synthetic import generate_coco_dataset  # noqa: E402
from vision.evaluation.detection import detect_dataset  # noqa: E402
from vision.evaluation.evaluate import compute_metrics, make_predictor  # noqa: E402
from vision.ssd import registry  # noqa: E402
from allocator import keep_freed_memory  # noqa: E402
from vision.utils.misc import (UserError, add_log_level_arg, int_range, non_negative_int,  # noqa: E402
                               positive_int, run_main, setup_logging, unit_float)

log = logging.getLogger("bench.eval")

TOP_K = 100  # eval_ssd.py's COCO default


# ------------------------------------------------------------------ timing helpers
def cpu_seconds() -> float:
    """CPU seconds of this process plus its finished children (the DataLoader workers)."""
    own = time.process_time()
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + ch.ru_utime + ch.ru_stime


class Stopwatch:
    """Wraps callables on an object (instance attributes) and sums their wall time."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.first_call: dict[str, float] = {}  # perf_counter() when each was first called

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        inner = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            self.first_call.setdefault(name, t0)
            try:
                return inner(*args, **kwargs)
            finally:
                self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0
                self.calls[name] = self.calls.get(name, 0) + 1
        setattr(obj, attr, timed)

    def unwrap(self, obj: Any, *attrs: str) -> None:
        for a in attrs:
            obj.__dict__.pop(a, None)

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


# ------------------------------------------------------------------ realistic random heads
def _last_convs(heads: torch.nn.ModuleList) -> list[torch.nn.Conv2d]:
    return [[m for m in h.modules() if isinstance(m, torch.nn.Conv2d)][-1] for h in heads]


def calibrate_heads(net: torch.nn.Module, images: torch.Tensor, candidates: int, threshold: float,
                    spread: float = 2.0) -> float:
    """Make a random SSD's scores look like a trained one's: logits with std ``spread`` and a
    BACKGROUND bias such that about ``candidates`` (box, class) pairs per image of ``images``
    [B,3,S,S] score above ``threshold``. Returns the mean candidates per image reached."""
    convs = _last_convs(net.classification_headers)
    c = net.num_classes
    was_test = net.is_test
    net.is_test = False
    try:
        with torch.no_grad():
            logits, _ = net(images)
        scale = spread / max(float(logits.std()), 1e-6)
        for conv in convs:
            conv.weight.data.mul_(scale)
            conv.bias.data.mul_(scale)
        logits = logits * scale

        def count(b: float) -> float:
            z = logits.clone()
            z[..., 0] += b
            return float((torch.softmax(z, dim=2)[..., 1:] > threshold).sum()) / images.shape[0]

        lo, hi = -20.0, 60.0  # count() decreases as the background bias grows
        for _ in range(40):
            mid = (lo + hi) / 2
            if count(mid) > candidates:
                lo = mid
            else:
                hi = mid
        for conv in convs:
            conv.bias.data.view(-1, c)[:, 0] += hi
        return count(hi)
    finally:
        net.is_test = was_test


# ------------------------------------------------------------------ the measurements
@dataclass
class NetBench:
    name: str
    variant: str
    net: torch.nn.Module
    predictor: Any
    batches: list[torch.Tensor]
    candidates_per_image: float | None
    rounds: list[dict] = field(default_factory=list)


def measure_e2e(nb: NetBench, dataset: Any, batch_size: int, workers: int, threshold: float,
                with_cocoeval: bool) -> dict:
    """One detect_dataset run as eval_ssd.py does it, with its time split by stage."""
    sw = Stopwatch()
    sw.wrap(nb.predictor, "predict_batch", "predict_batch")
    sw.wrap(nb.predictor, "run", "run")
    sw.wrap(nb.predictor.net, "_decode", "decode")
    try:
        c0, t0 = cpu_seconds(), time.perf_counter()
        detections, images_per_s = detect_dataset(nb.predictor, dataset, batch_size=batch_size,
                                                  num_workers=workers, top_k=TOP_K, prob_threshold=threshold)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    finally:
        sw.unwrap(nb.predictor, "predict_batch", "run")
        sw.unwrap(nb.predictor.net, "_decode")
    n = len(detections)
    t = sw.totals
    loop_s = n / images_per_s
    rec = {
        "e2e_s": loop_s, "e2e_cpu_s": cpu, "e2e_call_s": wall,
        # until the first batch reaches the net: worker start-up + loading one batch
        "startup_s": sw.first_call.get("predict_batch", t0) - t0,
        "forward_in_e2e_s": t.get("run", 0.0) - t.get("decode", 0.0),
        "decode_s": t.get("decode", 0.0),
        "postprocess_s": t.get("predict_batch", 0.0) - t.get("run", 0.0),
        "other_s": loop_s - t.get("predict_batch", 0.0),
        "detections": sum(len(d) for d in detections),
    }
    if with_cocoeval:
        t1 = time.perf_counter()
        metrics = compute_metrics(dataset, detections)
        rec["cocoeval_s"] = time.perf_counter() - t1
        rec["mAP"] = metrics["mAP"]
    return rec


def measure_forward(nb: NetBench) -> tuple[float, float]:
    """The net alone on the preprocessed batches (what ``predictor.run`` does). Returns (wall s, CPU s)."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    for x in nb.batches:
        nb.predictor.run(x)
    if nb.predictor.device.type == "cuda":
        torch.cuda.synchronize(nb.predictor.device)
    return time.perf_counter() - t0, cpu_seconds() - c0


def measure_loading(dataset: Any, transform: Callable, n: int) -> dict:
    """Per-image ms of the workers' job, in this process: decode (get_image), then transform."""
    dec = tr = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        image = dataset.get_image(i % len(dataset))
        t1 = time.perf_counter()
        transform(image)
        t2 = time.perf_counter()
        dec += t1 - t0
        tr += t2 - t1
    return {"decode_ms": 1e3 * dec / n, "transform_ms": 1e3 * tr / n}


def build_benches(name: str, dataset: Any, batch_size: int, candidates: int, threshold: float,
                  iou_threshold: float, variants: Sequence[str], device: str = "cpu") -> list[NetBench]:
    """One NetBench per variant of net ``name`` (same weights): ``optimized`` is what eval_ssd.py
    runs (make_predictor's default), ``plain`` the net as built (make_predictor(optimize=False))."""
    net = registry.create_net(name, len(dataset.class_names), is_test=True).eval()
    cfg = net.config
    plain = make_predictor(net, device="cpu", iou_threshold=iou_threshold, prob_threshold=threshold,
                           optimize=False)
    images = [plain.transform(dataset.get_image(i)) for i in range(len(dataset))]
    batches = [torch.stack(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    reached = None
    if candidates > 0:
        reached = calibrate_heads(net, batches[0], candidates, threshold)
        log.info("%s: heads calibrated to %.0f candidates per image (resolution %d)", name, reached,
                 cfg.image_size)
    out = []
    for v in variants:
        predictor = make_predictor(net, device=device, nms_method="hard", iou_threshold=iou_threshold,
                                   prob_threshold=threshold, optimize=(v == "optimized"))
        out.append(NetBench(name, v, net, predictor, batches, reached))
    return out


def summarize(nb: NetBench, n_images: int, args: argparse.Namespace, loading: dict) -> dict:
    rounds = nb.rounds
    med = lambda key: statistics.median(r[key] for r in rounds)  # noqa: E731
    e2e_s, fwd_s = med("e2e_s"), med("forward_s")
    e2e_cpu, fwd_cpu = med("e2e_cpu_s"), med("forward_cpu_s")
    dec, post, other, fin = med("decode_s"), med("postprocess_s"), med("other_s"), med("forward_in_e2e_s")
    startup = med("startup_s")
    rec = {
        "bench": "eval", "net": nb.name, "variant": nb.variant, "device": args.device, "images": n_images,
        "batch": args.batch_size,
        "workers": args.workers, "threads": args.threads, "resolution": int(nb.net.config.image_size), "repeats": len(rounds),
        "candidates_per_image": None if nb.candidates_per_image is None else round(nb.candidates_per_image, 1),
        "detections_per_image": round(med("detections") / n_images, 1),
        "e2e_images_per_s": round(n_images / e2e_s, 2),
        "forward_images_per_s": round(n_images / fwd_s, 2),
        "ratio": round(fwd_s / e2e_s, 3),
        "ratio_rounds": [round(r["forward_s"] / r["e2e_s"], 3) for r in rounds],
        "startup_s": round(startup, 3),
        # the same ratio without the one-off start-up (what a long evaluation converges to)
        "ratio_steady": round(fwd_s / max(e2e_s - startup, 1e-9), 3),
        "e2e_images_per_cpu_s": round(n_images / e2e_cpu, 2),
        "forward_images_per_cpu_s": round(n_images / fwd_cpu, 2),
        "cpu_ratio": round(fwd_cpu / e2e_cpu, 3),
        "share_decode_nms": round((dec + post) / e2e_s, 4),
        "ms_per_image": {
            "forward": round(1e3 * fin / n_images, 2), "decode": round(1e3 * dec / n_images, 2),
            "postprocess_nms": round(1e3 * post / n_images, 2),
            "wait_data_and_rest": round(1e3 * other / n_images, 2),
            "e2e": round(1e3 * e2e_s / n_images, 2), "pure_forward": round(1e3 * fwd_s / n_images, 2),
        },
        "worker_ms_per_image": {k: round(v, 2) for k, v in loading.items()},
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        common.LOAD_KEY: common.load_average(),
        "torch": torch.__version__, "machine": platform.machine(),
    }
    if "cocoeval_s" in rounds[0]:
        rec["cocoeval_s"] = round(med("cocoeval_s"), 3)
        rec["cocoeval_ms_per_image"] = round(1e3 * med("cocoeval_s") / n_images, 2)
    return rec


def print_table(records: list[dict]) -> None:
    print()
    print(f"{'net':<14} {'variant':<9} {'e2e img/s':>9} {'fwd img/s':>9} {'ratio':>6} {'cpu ratio':>9} "
          f"{'steady':>6} {'startup s':>9} {'dec+nms':>7}  {'ms/img: forward decode nms wait+rest':<38} "
          f"{'cocoeval ms/img':>15}")
    for r in records:
        m = r["ms_per_image"]
        stages = f"{m['forward']:.1f} {m['decode']:.2f} {m['postprocess_nms']:.2f} {m['wait_data_and_rest']:.2f}"
        print(f"{r['net']:<14} {r['variant']:<9} {r['e2e_images_per_s']:>9.1f} {r['forward_images_per_s']:>9.1f} "
              f"{r['ratio']:>6.2f} {r['cpu_ratio']:>9.2f} {r['ratio_steady']:>6.2f} {r['startup_s']:>9.3f} "
              f"{100 * r['share_decode_nms']:>6.1f}%  {stages:<38} "
              f"{r.get('cocoeval_ms_per_image', float('nan')):>15.2f}")
    if records:
        w = records[0]["worker_ms_per_image"]
        print(f"\nworker side, per image in one process: decode {w['decode_ms']:.2f} ms, "
              f"transform {w['transform_ms']:.2f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Evaluation speed: eval_ssd.py's detection loop (DataLoader + net + decoding + NMS) end to "
                    "end against the pure batched forward on the same images, with the time split by stage "
                    "and COCOeval timed apart. Synthetic COCO data and random (calibrated) weights unless --data "
                    "is given. Prints one JSON line per net, then a table.")
    p.add_argument("--nets", nargs="+", default=["mb2-ssd-lite", "mb1-ssd"], metavar="NET",
                   help="nets to time (default: mb2-ssd-lite mb1-ssd)")
    p.add_argument("--data", type=Path, default=None,
                   help="COCO-layout dataset root (annotations/instances_val2017.json, val2017/); "
                        "default: generate a synthetic one in a temporary folder")
    p.add_argument("--images", type=positive_int, default=96,
                   help="validation images to generate when --data is not given (default 96)")
    p.add_argument("--image-size", nargs=2, type=int_range(32, 4096), metavar=("W", "H"), default=[640, 480],
                   help="nominal size of generated images (default 640 480, typical of COCO)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward (default 8, eval_ssd's)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="DataLoader workers (default: eval_ssd.py's: 0 on a CPU-only machine with <= 2 cores, else 2)")
    p.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                   help="torch intra-op threads (default: number of cores)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="alternating rounds; the median is reported (default 3)")
    p.add_argument("--candidates", type=non_negative_int, default=300,
                   help="(box, class) pairs per image the random heads are calibrated to score above the threshold "
                        "(default 300; 0: raw random heads, the NMS worst case)")
    p.add_argument("--prob-threshold", type=unit_float, default=0.01, help="score threshold (default 0.01)")
    p.add_argument("--nms-iou-threshold", type=unit_float, default=0.45, help="NMS IoU (default 0.45)")
    p.add_argument("--no-cocoeval", action="store_true", help="skip timing COCOeval")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="first tell glibc malloc to keep freed memory (bench/allocator.py); compare with a "
                        "run without it: it is process-wide, so it cannot alternate inside one run")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--compare-plain", action="store_true",
                   help="also time each net without make_predictor's inference optimizations (BatchNorm "
                        "folding, channels_last), in the same alternating rounds")
    add_log_level_arg(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    if args.workers is None:
        from vision.evaluation.detection import default_workers
        args.workers = default_workers(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    malloc_keep = keep_freed_memory() if args.keep_freed_memory else False
    nets = list(dict.fromkeys(registry.canonical_name(n) for n in args.nets))

    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "synthetic"
            log.info("generating %d synthetic COCO val images of about %dx%d", args.images, *args.image_size)
            generate_coco_dataset(root, 0, args.images, seed=0, image_size=tuple(args.image_size))
        dataset = COCODataset(root, dataset_type="val")
        if len(dataset) == 0:
            raise UserError(f"{root}: the val split has no images")
        variants = ["optimized"] + (["plain"] if args.compare_plain else [])
        benches = [nb for n in nets for nb in build_benches(n, dataset, args.batch_size, args.candidates,
                                                             args.prob_threshold, args.nms_iou_threshold, variants,
                                                             args.device)]
        loading = measure_loading(dataset, benches[0].predictor.transform, min(len(dataset), 64))
        for nb in benches:  # warm-up: lazy init, page cache, COCO index cache
            measure_e2e(nb, dataset, args.batch_size, args.workers, args.prob_threshold, not args.no_cocoeval)
            measure_forward(nb)
        for r in range(args.repeats):
            for nb in benches:
                rec = measure_e2e(nb, dataset, args.batch_size, args.workers, args.prob_threshold,
                                  not args.no_cocoeval)
                rec["forward_s"], rec["forward_cpu_s"] = measure_forward(nb)
                nb.rounds.append(rec)
                log.debug("round %d %s: e2e %.2fs forward %.2fs", r, nb.name, rec["e2e_s"], rec["forward_s"])
        records = [dict(summarize(nb, len(dataset), args, loading), keep_freed_memory=malloc_keep)
                   for nb in benches]
    for rec in records:
        print(json.dumps(rec), flush=True)
    print_table(records)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
