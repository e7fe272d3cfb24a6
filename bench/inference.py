"""CPU inference latency per net: batch 1, eager PyTorch, folded PyTorch, ONNX Runtime, beside torchvision's SSDlite.

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

Backends (``BACKENDS``):

- ``eager``: the net as built, ``torch.inference_mode``;
- ``fold``: Conv+BN folded (``vision.ssd.fuse.fold_batch_norm``);
- ``fold-cl``: folded and in ``channels_last`` memory format (input too);
- ``ort``: exported with onnx_export.py's own ``export_bytes`` (opset 11, static
  batch 1, the file detectNet gets) to a temporary file, run by an ONNX Runtime
  ``InferenceSession`` (CPU, ``intra_op_num_threads`` = ``--threads``,
  graph optimization ``--ort-opt-level``, default ORT_ENABLE_ALL).

Every backend's outputs are compared with eager's (``max_abs_diff``), so a fast
but wrong backend shows. ``vs_eager`` is the median-latency ratio to the same
net's eager column (< 1: faster).

Output: one JSON line per (net, backend) on stdout, then a table.

``--predict`` times the user-facing call instead, ``Predictor.predict(image)`` on one image
(preprocess, forward, decode, NMS, scale to pixels), three ways per net in alternating rounds:
``upstream`` (upstream's Predictor: the net as built, per-class NMS), ``plain`` (our Predictor
on the net as built, ``create_predictor(net, optimize=False)``) and ``ours``
(``create_predictor(net)``, what every factory and script uses: folded, channels_last, and traced
with TorchScript from an input shape's second call, which the warm-up rounds reach). The random heads are
calibrated (bench/eval.py's ``calibrate_heads``) so that NMS sees as many candidates as a
trained net's; ``vs_upstream`` is the ratio of medians, ``paired_ratio_median`` the median of
the per-round ratios.

Example: python3 bench/inference.py --nets mb1-ssd mb2-ssd-lite --repeats 20
         python3 bench/inference.py --predict --threads 2 --repeats 40 --warmup 5
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import common  # noqa: E402  (first: the repository on sys.path)

common.passive_openmp()

import torch  # noqa: E402


from vision.cli.args import add_resolution_arg  # noqa: E402
from vision.ssd import registry  # noqa: E402
from vision.ssd.fuse import fold_batch_norm  # noqa: E402
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
    max_abs_diff: float | None = None
    ort_spinning: bool | None = None


@dataclass
class BackendOptions:
    """What backends need besides the net: threads, and where ONNX files go."""

    threads: int
    tmp_dir: Path
    ort_opt_level: str = "all"
    opset: int = 11
    ort_spinning: bool = True


# --------------------------------------------------------------- backends
def eager_backend(net: torch.nn.Module, example: torch.Tensor, opts: BackendOptions) -> Runner:
    """Plain eager PyTorch under inference_mode."""
    def run():
        with torch.inference_mode():
            return net(example)
    return run


def fold_backend(net: torch.nn.Module, example: torch.Tensor, opts: BackendOptions) -> Runner:
    """Conv+BN folded copy of the net (one conv instead of conv + a pass over the map)."""
    return eager_backend(fold_batch_norm(net), example, opts)


def fold_cl_backend(net: torch.nn.Module, example: torch.Tensor, opts: BackendOptions) -> Runner:
    """Folded, weights and input in channels_last (NHWC) memory format (oneDNN's native layout)."""
    folded = fold_batch_norm(net).to(memory_format=torch.channels_last)
    return eager_backend(folded, example.contiguous(memory_format=torch.channels_last), opts)


ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def ort_backend(net: torch.nn.Module, example: torch.Tensor, opts: BackendOptions) -> Runner:
    """ONNX Runtime on the file onnx_export.py would write (same export function, static batch 1)."""
    import onnxruntime as ort
    from onnx_export import INPUT_NAME, OUTPUT_NAMES, export_bytes

    path = opts.tmp_dir / f"{getattr(net, 'net_name', None) or 'net'}-{len(list(opts.tmp_dir.iterdir()))}.onnx"
    path.write_bytes(export_bytes(net, example, opts.opset, dynamic_batch=False))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = opts.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[opts.ort_opt_level])
    if not opts.ort_spinning:  # idle pool threads sleep instead of spinning (ORT's OMP_WAIT_POLICY=PASSIVE)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: example.numpy()}
    names = list(OUTPUT_NAMES)

    def run():
        return tuple(torch.from_numpy(o) for o in session.run(names, feed))
    return run


BACKENDS: dict[str, Callable[[torch.nn.Module, torch.Tensor, BackendOptions], Runner]] = {
    "eager": eager_backend,
    "fold": fold_backend,
    "fold-cl": fold_cl_backend,
    "ort": ort_backend,
}
DEFAULT_BACKENDS = ["eager", "fold-cl", "ort"]


def ort_spinning(choice: str) -> bool:
    if choice == "auto":
        return os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
    return choice == "on"


def max_abs_diff(a: object, b: object) -> float:
    """Largest |a - b| over the (scores, boxes) outputs."""
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))


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


def _randomize_batch_norm(net: torch.nn.Module) -> None:
    """Give BatchNorms non-trivial statistics (fresh ones are the identity), so the folded and
    exported outputs are really compared. Timing does not depend on the values."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_var is not None:
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


# --------------------------------------------------------------- measuring
def build_cases(nets: Sequence[str], backends: Sequence[str], resolution: int, num_classes: int,
                with_torchvision: bool, opts: BackendOptions) -> list[Case]:
    cases = []
    for name in nets:
        net = registry.create_net(name, num_classes, resolution=resolution, is_test=True).eval()
        _randomize_batch_norm(net)
        example = torch.randn(1, 3, resolution, resolution)
        params = sum(p.numel() for p in net.parameters())
        reference = eager_backend(net, example, opts)()
        for backend in backends:
            log.info("preparing %s (%s)", name, backend)
            run = BACKENDS[backend](net, example, opts)
            cases.append(Case(name, backend, resolution, params, run, [], [],
                              max_abs_diff(reference, run()),
                              opts.ort_spinning if backend == "ort" else None))
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


def result_record(case: Case, threads: int, eager_ms: float | None) -> dict:
    wall = sorted(case.wall_ms)
    median = statistics.median(wall)
    return {
        "bench": "inference", "net": case.net, "backend": case.backend, "device": "cpu",
        "batch": 1, "resolution": case.resolution, "threads": threads, "repeats": len(wall),
        "median_ms": round(statistics.median(wall), 2),
        "p90_ms": round(wall[min(len(wall) - 1, int(0.9 * len(wall)))], 2),
        "min_ms": round(wall[0], 2),
        "median_cpu_ms": round(statistics.median(case.cpu_ms), 2),
        "vs_eager": round(median / eager_ms, 3) if eager_ms else None,
        "max_abs_diff": case.max_abs_diff,
        "params_m": round(case.params / 1e6, 3),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "ort_spinning": case.ort_spinning,
        common.LOAD_KEY: common.load_average(),
        "torch": torch.__version__, "machine": platform.machine(),
    }


def format_table(records: list[dict]) -> str:
    cols = [("net", "net", "{}"), ("backend", "backend", "{}"), ("res", "resolution", "{}"),
            ("median ms", "median_ms", "{:.1f}"), ("p90 ms", "p90_ms", "{:.1f}"),
            ("min ms", "min_ms", "{:.1f}"), ("cpu ms", "median_cpu_ms", "{:.1f}"),
            ("vs eager", "vs_eager", "{:.2f}"), ("max|diff|", "max_abs_diff", "{:.1e}"),
            ("params M", "params_m", "{:.2f}")]
    rows = [["-" if r[key] is None else fmt.format(r[key]) for _, key, fmt in cols] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _, _) in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line([h for h, _, _ in cols]), line(["-" * w for w in widths])] + [line(r) for r in rows])


# --------------------------------------------------------------- --predict: the user-facing API
class UpstreamStylePredictor:
    """Upstream's ``Predictor.predict`` (qfgaohao/dusty-nv ``vision/ssd/predictor.py``) on the net as
    built: the plain, unfused, contiguous eval-mode net, then one score filter + NMS per class with
    ``top_k`` applied per class. Preprocessing is ours (cv2 resize + normalize), so the comparison is
    the net and the post-processing, not upstream's slower numpy transform."""

    def __init__(self, net: torch.nn.Module, filter_threshold: float = 0.01, candidate_size: int = 200) -> None:
        from vision.ssd.data_preprocessing import PredictionTransform

        self.net = net.eval()
        cfg = net.config
        self.transform = PredictionTransform(cfg.image_size, cfg.image_mean, cfg.image_std)
        self.iou_threshold = cfg.iou_threshold
        self.filter_threshold = filter_threshold
        self.candidate_size = candidate_size

    def predict(self, image, top_k: int = -1, prob_threshold: float | None = None):
        from vision.utils import box_utils

        height, width = image.shape[:2]
        images = self.transform(image).unsqueeze(0)
        with torch.no_grad():
            scores, boxes = self.net(images)
        scores, boxes = scores[0], boxes[0]
        prob_threshold = prob_threshold or self.filter_threshold
        picked, labels = [], []
        for class_index in range(1, scores.size(1)):
            probs = scores[:, class_index]
            mask = probs > prob_threshold
            probs = probs[mask]
            if probs.size(0) == 0:
                continue
            box_probs = torch.cat([boxes[mask, :], probs.reshape(-1, 1)], dim=1)
            box_probs = box_utils.nms(box_probs, None, score_threshold=prob_threshold,
                                      iou_threshold=self.iou_threshold, top_k=top_k,
                                      candidate_size=self.candidate_size)
            picked.append(box_probs)
            labels.extend([class_index] * box_probs.size(0))
        if not picked:
            return torch.tensor([]), torch.tensor([]), torch.tensor([])
        out = torch.cat(picked)
        out[:, 0] *= width
        out[:, 1] *= height
        out[:, 2] *= width
        out[:, 3] *= height
        return out[:, :4], torch.tensor(labels), out[:, 4]


def predict_cases(nets: Sequence[str], num_classes: int, resolution: int, candidates: int,
                  image_hw: tuple[int, int]):
    """Per net: (name, {variant: predict callable}, max |difference| of the net outputs ours vs plain,
    candidates per image reached, {variant: detections}).

    Variants: ``upstream`` (UpstreamStylePredictor on the plain net), ``plain`` (our Predictor on
    the plain net: ``create_predictor(net, optimize=False)``) and ``ours`` (``create_predictor(net)``,
    the default every factory uses)."""
    import numpy as np

    from eval import calibrate_heads  # bench/eval.py: random heads that score like a trained net's
    from vision.ssd.predictor import create_predictor

    out = []
    rng = np.random.default_rng(0)
    for name in nets:
        net = registry.create_net(name, num_classes, resolution=resolution, is_test=True).eval()
        _randomize_batch_norm(net)
        # a smooth random "photo": blocks of colour, upscaled (pure noise would be atypical input)
        small = rng.integers(0, 256, (image_hw[0] // 20 + 1, image_hw[1] // 20 + 1, 3), dtype=np.uint8)
        image = np.ascontiguousarray(np.kron(small, np.ones((20, 20, 1), dtype=np.uint8))[:image_hw[0], :image_hw[1]])
        plain = create_predictor(net, optimize=False)
        reached = calibrate_heads(net, plain.transform(image).unsqueeze(0), candidates, plain.filter_threshold)
        ours = create_predictor(net)  # after calibration: the copy carries the calibrated heads
        upstream = UpstreamStylePredictor(net)
        variants = {"upstream": lambda p=upstream: p.predict(image), "plain": lambda p=plain: p.predict(image),
                    "ours": lambda p=ours: p.predict(image)}
        x = plain.transform(image).unsqueeze(0)
        diff = max_abs_diff(ours.run(x), plain.run(x))  # the net outputs (scores, boxes): within 1e-4
        dets = {v: len(run()[0]) for v, run in variants.items()}
        out.append((name, variants, diff, reached, dets))
    return out


def run_predict(args: argparse.Namespace, nets: Sequence[str]) -> list[dict]:
    """Time ``predict(image)`` per variant in alternating rounds (one call each per round)."""
    records = []
    for name, variants, diff, reached, n_dets in predict_cases(nets, args.num_classes, args.resolution, args.candidates,
                                                                (args.image_size[1], args.image_size[0])):
        wall: dict[str, list[float]] = {v: [] for v in variants}
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.warmup):
            for run in variants.values():
                run()
        load0 = common.load_average()
        for _ in range(args.repeats):
            for variant, run in variants.items():
                c0, w0 = time.process_time(), time.perf_counter()
                run()
                wall[variant].append((time.perf_counter() - w0) * 1e3)
                cpu[variant].append((time.process_time() - c0) * 1e3)
        med = {v: statistics.median(w) for v, w in wall.items()}
        for variant in variants:
            records.append({
                "bench": "predict", "net": name, "variant": variant, "device": "cpu", "batch": 1,
                "resolution": args.resolution, "image": list(args.image_size), "threads": args.threads, "repeats": args.repeats,
                "median_ms": round(med[variant], 2), "median_cpu_ms": round(statistics.median(cpu[variant]), 2),
                "vs_upstream": round(med[variant] / med["upstream"], 3),
                "paired_ratio_median": round(statistics.median(
                    [a / b for a, b in zip(wall[variant], wall["upstream"])]), 3),
                "detections": n_dets[variant], "candidates_per_image": round(reached, 1),
                "max_abs_diff_vs_plain": diff if variant == "ours" else None,  # scores and normalized boxes
                common.LOAD_KEY: load0, "load_avg_1min_end": common.load_average(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                "torch": torch.__version__, "machine": platform.machine(),
            })
    return records


def format_predict_table(records: list[dict]) -> str:
    head = f"{'net':<14} {'variant':<9} {'median ms':>9} {'cpu ms':>8} {'vs upstream':>11} {'paired':>7} {'dets':>5}"
    rows = [head, "-" * len(head)]
    for r in records:
        rows.append(f"{r['net']:<14} {r['variant']:<9} {r['median_ms']:>9.1f} {r['median_cpu_ms']:>8.1f} "
                    f"{r['vs_upstream']:>11.3f} {r['paired_ratio_median']:>7.3f} {r['detections']:>5}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="CPU batch-1 inference latency of each SSD net (eager PyTorch, Conv+BN folded, "
                    "channels_last, ONNX Runtime) next to torchvision's ssdlite320_mobilenet_v3_large, timed in "
                    "interleaved rounds in one process.",
        epilog="Nets:\n" + registry.describe_nets(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=["mb1-ssd", "mb2-ssd-lite"], metavar="NET",
                        help="nets to time, or 'all' (default: mb1-ssd mb2-ssd-lite); see the list below")
    parser.add_argument("--backends", nargs="+", default=DEFAULT_BACKENDS, choices=list(BACKENDS),
                        help="execution backends: eager, fold (Conv+BN folded), fold-cl (folded + "
                             "channels_last), ort (ONNX Runtime) (default: %s)" % " ".join(DEFAULT_BACKENDS))
    parser.add_argument("--ort-opt-level", choices=list(ORT_LEVELS), default="all",
                        help="ONNX Runtime graph optimization level (default: all = ORT_ENABLE_ALL)")
    parser.add_argument("--ort-spinning", choices=["auto", "on", "off"], default="auto",
                        help="whether ONNX Runtime's idle intra-op threads spin (on) or sleep (off); auto: off "
                             "when OMP_WAIT_POLICY is PASSIVE (this script's default), as PyTorch's threads then")
    parser.add_argument("--repeats", type=positive_int, default=20,
                        help="timed rounds; the median is reported (default: 20)")
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed calls per net first (default: 3)")
    add_resolution_arg(parser, 300, "input size in pixels for our nets (default: 300; torchvision's runs at 320)")
    parser.add_argument("--num-classes", type=positive_int, default=21,
                        help="classes incl. BACKGROUND (default: 21, VOC)")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                        help="torch intra-op threads (default: number of cores)")
    parser.add_argument("--no-torchvision", action="store_true", help="skip the torchvision reference")
    parser.add_argument("--predict", action="store_true",
                        help="time the user-facing Predictor.predict(image) instead of the bare forward: "
                             "upstream's way (plain net, per-class NMS), our Predictor on the plain net, and "
                             "create_predictor's default (folded + channels_last, traced from the second call), alternating, per net")
    parser.add_argument("--candidates", type=positive_int, default=250,
                        help="--predict: (box, class) pairs above the 0.01 score threshold the random heads are "
                             "calibrated to, as a trained net's (default: 250, as bench/eval.py)")
    parser.add_argument("--image-size", type=positive_int, nargs=2, default=[640, 480], metavar=("W", "H"),
                        help="--predict: size of the image given to predict (default: 640 480)")
    add_log_level_arg(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    nets = [registry.canonical_name(n) for n in
            (registry.CANONICAL_NAMES if args.nets == ["all"] else args.nets)]
    nets = list(dict.fromkeys(nets))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    log.info("timing %d net(s) at %d px, %d thread(s), %d rounds", len(nets), args.resolution,
             args.threads, args.repeats)
    if args.predict:
        records = run_predict(args, nets)
        for rec in records:
            print(json.dumps(rec), flush=True)
        print()
        print(format_predict_table(records))
        return 0
    backends = list(dict.fromkeys(args.backends))
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        opts = BackendOptions(threads=args.threads, tmp_dir=Path(tmp), ort_opt_level=args.ort_opt_level,
                              ort_spinning=ort_spinning(args.ort_spinning))
        cases = build_cases(nets, backends, args.resolution, args.num_classes, not args.no_torchvision, opts)
        measure(cases, args.repeats, args.warmup)
    eager = {c.net: statistics.median(c.wall_ms) for c in cases if c.backend == "eager"}
    records = [result_record(c, args.threads, eager.get(c.net)) for c in cases]
    for rec in records:
        print(json.dumps(rec), flush=True)
    print()
    print(format_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
