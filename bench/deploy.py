"""Deployment accuracy and INT8 speed: what a trained model scores in PyTorch, as an ONNX file, as the Jetson's
detectNet runs it, and quantized to INT8 (issue 13).

Why: a user should know before copying a model to a Jetson how much of the PyTorch mAP survives the export,
detectNet's post-processing (threshold 0.5, same-class clustering, no NMS) and INT8, and whether INT8 is
worth it on a CPU. Everything is measured with the library code the scripts use, on the validation split
of a COCO-layout dataset (by default the synthetic demo set ``./setup_coco --demo`` writes):

- ``pytorch``: the checkpoint, scored as ``eval_ssd.py`` scores it (``make_predictor`` + ``detect_dataset`` +
  ``compute_metrics``: hard NMS 0.45, scores down to 0.01, top-k 100, COCO AP@[.5:.95] and AP50);
- ``onnx``: the file ``onnx_export.py`` writes (run as a subprocess: the export code lives in the script),
  through ONNX Runtime with the same NMS post-processing (``eval_ssd.py --postprocess nms`` on the .onnx);
- ``detectnet``: the same file as deployed (``vision.ssd.onnx_model.as_deployed``: nearest-neighbour stretch,
  threshold 0.5, clustering; ``eval_ssd.py --postprocess detectnet``), with boxes per image next to what NMS
  keeps at the same threshold on the same outputs;
- ``int8``: ``onnx_export.py --int8`` (QDQ, ``vision/ssd/int8.py``), calibrated on ``--calibration-images``
  train images (``--calibration-method``), scored both ways; and its ONNX Runtime latency against the fp32 file at batch 1: one session
  each (``--threads`` intra-op threads, full graph optimization), ``--warmup`` runs each, then ``--runs``
  paired runs alternating fp32/int8 on the same preprocessed validation image; medians and their ratio.

Models: checkpoint folders or .pth files (``--models``), or ``--train-minutes M``: each of ``--nets`` is
trained from scratch on the data with the recommended CPU recipe (``bench/time_to_accuracy.py``'s
calibration + budgeted ``train_ssd.py`` run) first.

Output: one JSON line per model, then a table. The 1-minute load average is recorded (a shared machine
inflates latencies; the paired, alternating runs keep the ratio fair).

Examples:
  python3 bench/deploy.py --models models/demo-10min --data coco-data
  python3 bench/deploy.py --train-minutes 5 --nets mb1-ssd mb1-ssd-lite mb2-ssd-lite --out /tmp/deploy
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from common import REPO, LOAD_KEY, cpu_count, load_average  # noqa: E402  (first: the repository on sys.path)

import numpy as np  # noqa: E402

from vision.ssd.int8 import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES  # noqa: E402
from vision.utils.misc import (Failure, UserError, add_log_level_arg, atomic_write_json, int_range,  # noqa: E402
                               positive_float, positive_int, run_main, setup_logging)

log = logging.getLogger("bench.deploy")

TOP_K = 100  # eval_ssd.py's COCO default
DETECTNET_THRESHOLD = 0.5  # detectNet's default, and eval_ssd.py's in --postprocess detectnet
GOAL_RATIO = 0.6  # issue 13: int8 latency / fp32 latency at batch 1
GOAL_AP_DROP = 0.01  # issue 13: COCO AP drop of INT8
INT8_OPSET = 13  # the fp32 file is exported at the opset the int8 one needs, so both are the same graph


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="PyTorch vs ONNX (NMS) vs as-deployed (detectNet) vs INT8 mAP of trained SSDs, and ONNX "
                    "Runtime INT8/fp32 latency at batch 1.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("Examples:", 1)[1])
    src = p.add_argument_group("models")
    src.add_argument("--models", nargs="+", default=None, metavar="PATH",
                     help="checkpoint folders (best.pth, else the lowest-loss checkpoint) or .pth files to measure")
    src.add_argument("--train-minutes", type=positive_float, default=None, metavar="M",
                     help="instead of --models: train each of --nets from scratch for M minutes on the data first")
    src.add_argument("--nets", nargs="+", default=["mb1-ssd", "mb1-ssd-lite", "mb2-ssd-lite"],
                     help="nets to train with --train-minutes (default mb1-ssd mb1-ssd-lite mb2-ssd-lite)")
    src.add_argument("--train-flags", nargs=argparse.REMAINDER, default=[],
                     help="with --train-minutes, last: train_ssd.py flags overriding the recipe "
                          "(e.g. --train-flags --resolution 192)")
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, default=None,
                   help="COCO-layout dataset root (annotations/, train2017/, val2017/); default: the synthetic demo "
                        "set (400 train / 100 val, as ./setup_coco --demo) written under --out")
    d.add_argument("--train-images", type=positive_int, default=400, help="demo set train images (default 400)")
    d.add_argument("--val-images", type=positive_int, default=100, help="demo set validation images (default 100)")
    d.add_argument("--out", type=Path, default=None,
                   help="folder for the data, trained models and .onnx files (default: a temporary folder, removed)")
    q = p.add_argument_group("int8 and latency")
    q.add_argument("--calibration-images", type=positive_int, default=DEFAULT_CALIBRATION_IMAGES,
                   help="train images to calibrate INT8 on (onnx_export.py --calibration-images; default "
                        f"{DEFAULT_CALIBRATION_IMAGES})")
    q.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=CALIBRATION_METHODS[0],
                   help="how INT8 activation ranges are read (onnx_export.py --calibration-method; default "
                        f"{CALIBRATION_METHODS[0]})")
    q.add_argument("--int8-detectnet", action="store_true",
                   help="also score the INT8 files as deployed (detectnet post-processing)")
    q.add_argument("--runs", type=positive_int, default=50,
                   help="timed runs per model, fp32 and int8 alternating (default 50; >= 30 for a stable median)")
    q.add_argument("--warmup", type=int_range(0, 10000), default=10, help="untimed runs per model first (default 10)")
    q.add_argument("--threads", type=positive_int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--batch-size", type=positive_int, default=8, help="PyTorch evaluation batch (default 8)")
    e.add_argument("--json-out", type=Path, default=None, help="also write the result lines to this JSON file")
    add_log_level_arg(p)
    return p


# ------------------------------------------------------------------ models
def train_models(data: Path, out: Path, nets: Sequence[str], minutes: float, flags: Sequence[str]) -> list[Path]:
    """Each net trained for ``minutes`` with time_to_accuracy's recipe and budget logic; their folders."""
    from time_to_accuracy import CALIBRATION_EPOCHS, plan_epochs, read_metrics, run_training, train_command

    folders = []
    for net in nets:
        budget = 60.0 * minutes
        start = time.monotonic()
        deadline = start + budget
        calib, run = out / f"{net}-calibration", out / net
        shutil.rmtree(calib, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        net_flags = ["--net", net, *flags]
        wall, _ = run_training(train_command(data, calib, net_flags, CALIBRATION_EPOCHS, 0), deadline,
                               out / f"{net}-calibration.log")
        rows = read_metrics(calib)
        if not rows:
            raise Failure(f"{net}: not one epoch finished in {minutes:g} minutes (log: {out / (net + '-calibration.log')})")
        if len(rows) < CALIBRATION_EPOCHS:
            log.warning("%s: the budget ended during calibration; measuring the calibration run", net)
            folders.append(calib)
            continue
        epochs, timing = plan_epochs(deadline - time.monotonic(), wall, rows, 0.1)
        log.info("%s: %d epochs in the %.0f s left (%.1f s per epoch)", net, epochs, deadline - time.monotonic(),
                 timing["epoch_s"])
        run_training(train_command(data, run, net_flags, epochs, 0), deadline, out / f"{net}.log")
        shutil.rmtree(calib, ignore_errors=True)
        folders.append(run)
    return folders


def export(model: Path, out: Path, name: str, calibration: Path, images: int,
           method: str = CALIBRATION_METHODS[0]) -> tuple[Path, Path, Path]:
    """fp32, int8 (TensorRT's format, by onnx_export.py --int8: the export code lives in the script) and
    int8 for CPUs (``vision.ssd.int8`` target "cpu", same calibration images) .onnx files of ``model``."""
    onnx_path = out / f"{name}.onnx"
    cmd = [sys.executable, str(REPO / "onnx_export.py"), "--input", str(model), "--output", str(onnx_path),
           "--opset", str(INT8_OPSET), "--int8", "--calibration-data", str(calibration), "--calibration-images", str(images),
           "--calibration-method", method,
           "--log-level", "warning"]
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    if r.returncode != 0:
        tail = " | ".join(r.stderr.strip().splitlines()[-3:])
        raise Failure(f"onnx_export.py failed on {model} (exit {r.returncode}): {tail}")
    from vision.ssd.detectnet import DetectNetTransform
    from vision.ssd.int8 import calibration_images, quantize_int8
    from vision.ssd.onnx_metadata import read_metadata

    cpu_path = onnx_path.with_name(f"{onnx_path.stem}-int8-cpu.onnx")
    quantize_int8(onnx_path.read_bytes(), cpu_path, calibration_images(calibration, images),
                  DetectNetTransform(read_metadata(onnx_path).resolution), target="cpu", method=method)
    return onnx_path, onnx_path.with_name(f"{onnx_path.stem}-int8.onnx"), cpu_path


# ------------------------------------------------------------------ accuracy
def score(predictor: Any, dataset: Any, batch_size: int, prob_threshold: float = 0.01) -> dict[str, Any]:
    """eval_ssd.py's detection loop and COCO metrics for ``predictor``."""
    from vision.evaluation.detection import detect_dataset
    from vision.evaluation.evaluate import compute_metrics

    detections, images_per_s = detect_dataset(predictor, dataset, batch_size=batch_size, num_workers=0,
                                              top_k=TOP_K, prob_threshold=prob_threshold)
    m = compute_metrics(dataset, detections)
    return {"mAP": round(float(m["mAP"]), 4), "AP50": round(float(m["AP50"]), 4),
            "boxes_per_image": round(sum(len(d) for d in detections) / max(len(detections), 1), 2),
            "images_per_s": round(images_per_s, 1)}


def score_onnx(path: Path, dataset: Any, detectnet: bool = True) -> dict[str, Any]:
    """``path`` with NMS (eval_ssd.py's defaults) and as deployed (detectNet, threshold 0.5)."""
    from vision.ssd.onnx_model import as_deployed, load_onnx_model

    nms_model = load_onnx_model(path, filter_threshold=0.01)
    out = {"nms": score(nms_model.net, dataset, 1)}
    if not detectnet:
        return out
    deployed_model = load_onnx_model(path, filter_threshold=DETECTNET_THRESHOLD)
    deployed = as_deployed(deployed_model.net, deployed_model.class_names, DETECTNET_THRESHOLD, onnx=True,
                           meta=deployed_model.meta)
    out["detectnet"] = score(deployed, dataset, 1, DETECTNET_THRESHOLD)
    n = max(deployed.stats["images"], 1)
    out["detectnet"]["nms_boxes_per_image_at_threshold"] = round(deployed.stats["nms_boxes"] / n, 2)
    return out


# ------------------------------------------------------------------ latency
def latency(fp32: Path, int8: Path, image: np.ndarray, runs: int, warmup: int, threads: int) -> dict[str, Any]:
    """Median ONNX Runtime batch-1 latency of both files: paired runs, alternating, on the same input.

    Paired and alternating so that a load change on a shared machine hits both models alike."""
    import onnxruntime as ort

    from vision.ssd.detectnet import DetectNetTransform
    from vision.ssd.onnx_metadata import read_metadata

    meta = read_metadata(fp32)
    x = DetectNetTransform(meta.resolution)(image).unsqueeze(0).numpy()
    sessions = []
    for path in (fp32, int8):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sessions.append(ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"]))
    feed = {"input_0": x}
    for _ in range(warmup):
        for s in sessions:
            s.run(None, feed)
    times: list[list[float]] = [[], []]
    for k in range(runs):
        order = (0, 1) if k % 2 == 0 else (1, 0)  # neither model always runs right after the other
        for i in order:
            t0 = time.perf_counter()
            sessions[i].run(None, feed)
            times[i].append(time.perf_counter() - t0)
    f, q = statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3
    ratios = [b / a for a, b in zip(times[0], times[1])]
    return {"fp32_ms": round(f, 2), "int8_ms": round(q, 2), "ratio": round(q / f, 3),
            "paired_ratio_median": round(statistics.median(ratios), 3), "runs": runs, "threads": threads}


# ------------------------------------------------------------------ main
def measure(model: Path, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from vision.cli.models import load_model, resolve_model_path
    from vision.datasets.image_io import load_image_rgb
    from vision.evaluation.evaluate import make_predictor
    from vision.training.dataset_folders import open_dataset

    path = resolve_model_path(model).resolve()  # onnx_export.py runs in ``out``
    loaded = load_model(path, is_test=True, device="cpu")
    dataset = open_dataset("coco", data, split="val")
    if list(dataset.class_names) != list(loaded.class_names):
        raise UserError(f"{path} was trained on classes {loaded.class_names[1:]}, {data} has "
                        f"{list(dataset.class_names)[1:]}")
    load_start = load_average()
    t0 = time.monotonic()
    record: dict[str, Any] = {"bench": "deploy", "net": loaded.net_name, "resolution": loaded.resolution,
                              "model": str(path), "val_images": len(dataset)}
    record["pytorch"] = score(make_predictor(loaded.net, prob_threshold=0.01), dataset, args.batch_size)
    stem = f"{loaded.net_name}-{path.parent.name}" if model.is_dir() or path.name == "best.pth" else path.stem
    fp32, int8, int8_cpu = export(path, out, stem, data / "train2017", args.calibration_images,
                                  args.calibration_method)
    f = score_onnx(fp32, dataset)
    record["onnx"], record["detectnet"] = f["nms"], f["detectnet"]
    image = load_image_rgb(dataset.image_path(0))
    record["calibration_images"] = args.calibration_images
    record["calibration_method"] = args.calibration_method
    for key, path in (("int8", int8), ("int8_cpu", int8_cpu)):  # TensorRT's format, ONNX Runtime CPU's
        q = score_onnx(path, dataset, detectnet=args.int8_detectnet)
        record[key] = q["nms"]
        if args.int8_detectnet:
            record[f"{key}_detectnet"] = q["detectnet"]
        record[f"{key}_latency"] = latency(fp32, path, image, args.runs, args.warmup, args.threads)
        record[f"{key}_ap_drop"] = round(record["onnx"]["mAP"] - record[key]["mAP"], 4)
        record[f"{key}_goals_met"] = {"latency_ratio": record[f"{key}_latency"]["ratio"] <= GOAL_RATIO,
                                      "ap_drop": record[f"{key}_ap_drop"] <= GOAL_AP_DROP}
    record["seconds"] = round(time.monotonic() - t0, 1)
    record["load_avg_start"] = load_start
    record[LOAD_KEY] = load_average()
    record["cpus"] = cpu_count()
    return record


def print_table(records: Sequence[dict[str, Any]]) -> None:
    def pair(m: dict[str, Any]) -> str:
        return f"{m['mAP']:.3f}/{m['AP50']:.3f}"

    print("\nAP / AP50 (COCO) on the validation split; boxes/img: detectnet | NMS at the same threshold (0.5) "
          "on the same outputs")
    print(f"{'net':<14} {'px':>4} {'PyTorch':>12} {'ONNX NMS':>12} {'detectnet':>12} {'boxes/img':>13} "
          f"{'int8 (TRT)':>12} {'int8 (CPU)':>12} {'load':>5}")
    for r in records:
        dn = r["detectnet"]
        boxes = f"{dn['boxes_per_image']:.2f}|{dn['nms_boxes_per_image_at_threshold']:.2f}"
        print(f"{r['net']:<14} {r['resolution']:>4} {pair(r['pytorch']):>12} {pair(r['onnx']):>12} {pair(dn):>12} "
              f"{boxes:>13} {pair(r['int8']):>12} {pair(r['int8_cpu']):>12} {r[LOAD_KEY]:>5.2f}")
    print(f"\nINT8 vs fp32, ONNX Runtime, batch 1 (median ms; goals: ratio <= {GOAL_RATIO}, AP drop <= {GOAL_AP_DROP})")
    print(f"{'net':<14} {'int8':<5} {'fp32 ms':>8} {'int8 ms':>8} {'ratio':>6} {'AP drop':>8}")
    for r in records:
        for key, label in (("int8", "TRT"), ("int8_cpu", "CPU")):
            lat = r[f"{key}_latency"]
            print(f"{r['net']:<14} {label:<5} {lat['fp32_ms']:>8.2f} {lat['int8_ms']:>8.2f} {lat['ratio']:>6.2f} "
                  f"{r[f'{key}_ap_drop']:>8.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if (args.models is None) == (args.train_minutes is None):
        raise UserError("give either --models PATH... or --train-minutes M")
    if args.runs < 30:
        log.warning("--runs %d: fewer than 30 paired runs give a noisy median", args.runs)
    for m in args.models or []:
        if not Path(m).exists():
            raise UserError(f"model not found: {m}")
    if args.data is not None and not (args.data / "annotations" / "instances_val2017.json").is_file():
        raise UserError(f"--data {args.data}: no annotations/instances_val2017.json (a COCO-layout dataset root)")
    tmp = None
    if args.out is None:
        tmp = tempfile.mkdtemp(prefix="bench-deploy-")
        out = Path(tmp)
    else:
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
    try:
        data = args.data.resolve() if args.data else out / "demo"
        if args.data is None and not (data / "annotations" / "instances_val2017.json").is_file():
            from vision.datasets.synthetic import generate_coco_dataset

            log.info("writing the demo set (%d train / %d val) to %s", args.train_images, args.val_images, data)
            generate_coco_dataset(data, args.train_images, args.val_images, seed=0, fixed=True)
        if args.models is not None:
            models = [Path(m) for m in args.models]
        else:
            models = train_models(data, out, args.nets, args.train_minutes, args.train_flags)
        records = []
        for m in models:
            log.info("measuring %s", m)
            rec = measure(m, data, out, args)
            print(json.dumps(rec), flush=True)
            records.append(rec)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json_out:
        atomic_write_json(args.json_out, records)
    print_table(records)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
