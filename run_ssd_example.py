#!/usr/bin/env python3
"""Detect objects in images and videos with a trained SSD, print the detections and save annotated copies.

Usage (upstream's positional form):
  python3 run_ssd_example.py NET MODEL LABELS INPUT [INPUT ...]
  python3 run_ssd_example.py mb1-ssd models/mobilenet-v1-ssd-mp-0_675.pth models/voc-model-labels.txt dog.jpg
  python3 run_ssd_example.py models/fruit/ssd-mobilenet.onnx photos/ --postprocess detectnet
  python3 run_ssd_example.py --onnx models/fruit/ssd-mobilenet.onnx street.mp4 0 --postprocess detectnet

MODEL is an upstream .pth, a training checkpoint or a checkpoint folder; a .onnx MODEL (or
--onnx FILE) runs through ONNX Runtime, and a file from onnx_export.py needs neither NET nor LABELS
(a LABELS .txt given is checked against it). An INPUT is an image, a folder of images, a video file
or an integer camera index (a folder: its images and videos). One image without --output-dir is written to run_ssd_example_output.jpg
as upstream did; everything else goes to --output-dir (default run_ssd_example_output/), videos as
annotated videos with the same frame count and frame rate.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from vision.cli.args import add_resolution_arg, add_width_mult_arg
from vision.utils.misc import (ArgumentParser, EXIT_OK, EXIT_USAGE, UserError, add_log_level_arg, atomic_write, int_range,
                               positive_int, run_main, setup_logging, unit_float)
from vision.utils.paths import IMAGE_EXTENSIONS, OUTPUT_IMAGE_EXTENSIONS, is_image_file
from vision.utils.video import is_video_source

log = logging.getLogger("run_ssd_example")

MODEL_SUFFIXES = {".pth", ".pt", ".onnx"}
SINGLE_OUTPUT = "run_ssd_example_output.jpg"
DEFAULT_OUTPUT_DIR = "run_ssd_example_output"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        usage="%(prog)s [NET] MODEL [LABELS] INPUT [INPUT ...] [options]",
        description="Run an SSD on images (files or folders), video files or cameras: prints one line per "
                    "detection and writes the images/videos with boxes, class names and scores drawn.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("net", metavar="NET", help="network name, e.g. mb1-ssd, mb1-ssd-lite, mb2-ssd-lite, vgg16-ssd "
                                               "(may be left out for an .onnx from onnx_export.py)")
    p.add_argument("rest", metavar="MODEL LABELS INPUT", nargs="*",
                   help="model file or checkpoint folder, labels file (BACKGROUND first; optional for an .onnx "
                        "from onnx_export.py), then images, folders, video files or camera indices")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run this ONNX model with ONNX Runtime instead of the PyTorch MODEL")
    p.add_argument("--threshold", "--prob-threshold", dest="threshold", type=unit_float, default=None,
                   help="minimum score of a detection (default 0.4; 0.5 with --postprocess detectnet)")
    p.add_argument("--postprocess", choices=["nms", "detectnet"], default="nms",
                   help="nms (default): bilinear resize, NMS, --top-k; detectnet: what jetson-inference's detectNet "
                        "shows (nearest-neighbour stretch, threshold, same-class clustering, no NMS, no top-k)")
    p.add_argument("--per-frame", action="store_true",
                   help="videos/cameras: print the detections of every frame (default: a summary per video)")
    p.add_argument("--max-frames", type=int_range(1, 10**9), default=None,
                   help="videos/cameras: stop after this many frames (a camera otherwise runs until Ctrl-C)")
    p.add_argument("--top-k", "--top_k", dest="top_k", type=positive_int, default=10,
                   help="at most this many detections per image (default 10)")
    add_resolution_arg(p, help="input size (default: the checkpoint's or the ONNX model's, else 300)")
    add_width_mult_arg(p)
    p.add_argument("--nms-method", "--nms_method", dest="nms_method", choices=["hard", "soft"], default="hard",
                   help="non-maximum suppression (default hard)")
    p.add_argument("--output-dir", "--output_dir", dest="output_dir", default=None,
                   help=f"folder for the annotated images (default: {SINGLE_OUTPUT} for one image, "
                        f"{DEFAULT_OUTPUT_DIR}/ for several)")
    add_log_level_arg(p)
    return p


def split_positionals(net: str, rest: list[str], onnx: str | None
                      ) -> tuple[str | None, str | None, str | None, list[str]]:
    """``(net or None, model, labels or None, inputs)`` from the positionals.

    NET and LABELS may be left out for an .onnx (its file names them); MODEL with --onnx.
    """
    from vision.ssd.registry import NET_NAMES, canonical_name

    items = [net, *rest]
    net_name = items.pop(0) if items[0].strip().lower() in NET_NAMES else None
    model = onnx
    if onnx is None:
        if not items or Path(items[0]).suffix.lower() != ".onnx":
            if net_name is None:
                canonical_name(net)  # one line listing the valid nets
            if len(items) < 3:
                raise UserError("expected MODEL LABELS INPUT... after NET")
        model = items.pop(0)
    elif len(items) >= 2 and (Path(items[0]).suffix.lower() in MODEL_SUFFIXES or Path(items[0]).is_dir()):
        raise UserError(f"give MODEL or --onnx, not both (MODEL {items[0]}, --onnx {onnx})")
    labels = None
    if Path(model).suffix.lower() != ".onnx":
        labels = items.pop(0)
    elif items and Path(items[0]).suffix.lower() == ".txt":
        labels = items.pop(0)
    if not items:
        raise UserError("no INPUT: give images, folders, video files or camera indices after the model")
    return net_name, model, labels, items


def folder_videos(items: Sequence[str]) -> list[str]:
    """Video files inside the folders among ``items`` (sorted; not recursive)."""
    from vision.utils.video import VIDEO_EXTENSIONS

    return [str(f) for item in items if not is_video_source(item) and Path(item).is_dir()
            for f in sorted(Path(item).iterdir()) if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]


def collect_images(items: Sequence[str]) -> list[Path]:
    """Image files from paths and folders (a folder: its images, sorted; not recursive; its videos: folder_videos)."""
    images: list[Path] = []
    for item in items:
        if is_video_source(item):
            continue
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f))
            if not found and not folder_videos([item]):
                raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) or videos in folder {p}")
            images.extend(found)
        else:
            images.append(p)
    return images


def output_paths(images: list[Path], output_dir: str | None) -> list[Path]:
    """Where each annotated image goes; names stay unique when inputs share a file name."""
    if output_dir is None and len(images) == 1:
        return [Path(SINGLE_OUTPUT)]
    folder = Path(output_dir or DEFAULT_OUTPUT_DIR)
    used: set[str] = set()
    out = []
    for img in images:
        suffix = img.suffix.lower() if img.suffix.lower() in OUTPUT_IMAGE_EXTENSIONS else ".jpg"
        name, k = f"{img.stem}{suffix}", 1
        while name in used:
            name, k = f"{img.stem}_{k}{suffix}", k + 1
        used.add(name)
        out.append(folder / name)
    return out


def check_outputs(outputs: list[Path], output_dir: str | None, images: list[Path], videos: list[str],
                  model: str, labels: str | None) -> None:
    """Before any detection: the output folder (or the single output file) can be written and holds none
    of the inputs (``imgs/ --output-dir imgs/`` once overwrote the user's photos with the drawn copies)."""
    from vision.utils.paths import (WrittenRecord, check_output_dir, check_output_file,
                                    refuse_output_dir_over_inputs, refuse_output_over_inputs)

    media = [("input", p) for p in images] + [("input", v) for v in videos if not str(v).isdigit()]
    inputs = media + [("MODEL", model), ("LABELS", labels)]
    if output_dir is None:
        for out in outputs:  # the one run_ssd_example_output.jpg
            check_output_file(out, "output")
            refuse_output_over_inputs([("output", out)], inputs)
        return
    folder = check_output_dir(output_dir, "--output-dir")
    refuse_output_dir_over_inputs("--output-dir", folder, media)
    refuse_output_over_inputs([("--output-dir", out) for out in outputs], inputs)
    WrittenRecord(folder, "run_ssd_example.py").refuse_foreign(outputs, "--output-dir")


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class."""
    hue = (label * 47) % 180
    import cv2

    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(image_rgb: np.ndarray, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                    class_names: list[str]) -> np.ndarray:
    """BGR copy of the image with one box and ``name: score`` caption per detection."""
    import cv2

    out = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    font_scale = max(0.4, min(h, w) / 800)
    for box, label, score in zip(boxes, labels, scores):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        color = class_color(int(label))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        text = f"{class_names[int(label)]}: {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y1 + th + 4)
        cv2.rectangle(out, (x1, ty - th - base // 2), (min(w - 1, x1 + tw + 2), ty + base // 2), color, -1)
        cv2.putText(out, text, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def write_image(path: Path, image_bgr: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(path.suffix if path.suffix else ".jpg", image_bgr)
    if not ok:
        raise UserError(f"cannot encode output image {path}")
    with atomic_write(path, "wb") as f:
        f.write(data.tobytes())


def make_predictor(args: argparse.Namespace, net: str | None, model: str, labels: str | None):
    """``(predictor, class_names)`` for PyTorch or ONNX Runtime, NMS or detectNet, per the arguments."""
    from vision.ssd.onnx_model import as_deployed, is_onnx_path, load_onnx_model
    from vision.ssd.predictor import create_predictor

    if is_onnx_path(model):
        loaded = load_onnx_model(model, net_name=net, label_file=labels, resolution=args.resolution,
                                 width_mult=args.mb2_width_mult, nms_method=args.nms_method,
                                 filter_threshold=args.threshold)
        predictor = loaded.net
    else:
        from vision.cli.models import load_model

        loaded = load_model(model, net_name=net, label_file=labels, resolution=args.resolution,
                            width_mult=args.mb2_width_mult, is_test=True, device="cpu")
        predictor = create_predictor(loaded.net, nms_method=args.nms_method, filter_threshold=args.threshold)
    if args.postprocess == "detectnet":
        predictor = as_deployed(predictor, loaded.class_names, args.threshold, onnx=is_onnx_path(model),
                                meta=getattr(loaded, "meta", None))
    return predictor, loaded.class_names


def detect(predictor, image: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel boxes (inside the image), labels and scores of one RGB image."""
    boxes, labels_t, scores = predictor.predict(image, top_k=args.top_k, prob_threshold=args.threshold)
    boxes, labels_np, scores = boxes.numpy().copy(), labels_t.numpy(), scores.numpy()
    h, w = image.shape[:2]
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)  # decoded boxes may reach past the border
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    return boxes, labels_np, scores


def print_detections(boxes, labels, scores, class_names: list[str]) -> None:
    for box, label, score in zip(boxes, labels, scores):
        x1, y1, x2, y2 = (float(v) for v in box)
        print(f"  {class_names[int(label)]}\t{float(score):.3f}\t{x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}")


def run_videos(predictor, sources: list[str], class_names: list[str], args: argparse.Namespace) -> bool:
    """Each video file / camera: annotated video under the output folder, a summary line (and per-frame lines).

    True when Ctrl-C stopped a video: what it recorded is kept, and the remaining inputs are not run."""
    interrupted = False
    from vision.utils.video import process_video, video_output_name

    folder = Path(args.output_dir or DEFAULT_OUTPUT_DIR)
    total_frames, total_seconds = 0, 0.0
    for source in sources:
        counts: list[int] = []

        def on_frame(rgb: np.ndarray, index: int) -> np.ndarray:
            boxes, labels, scores = detect(predictor, rgb, args)
            counts.append(len(scores))
            if args.per_frame:
                print(f"{source} frame {index}: {len(scores)} objects")
                print_detections(boxes, labels, scores, class_names)
            return draw_detections(rgb, boxes, labels, scores, class_names)

        result = process_video(source, folder / video_output_name(source), on_frame, args.max_frames)
        total_frames += result.frames
        total_seconds += result.seconds
        print(f"{source}: {result.frames} frames at {result.fps_in:g} fps, {sum(counts) / result.frames:.2f} "
              f"objects/frame, processed at {result.fps:.1f} fps -> {result.output}")
        if result.interrupted:
            interrupted = True
            left = len(sources) - sources.index(source) - 1
            if left:
                log.info("Ctrl-C: the %d video(s) after %s are not run", left, source)
            break
    if total_frames:
        log.info("%d frames in %.1f s: %.1f fps (read, detect, draw, write)", total_frames, total_seconds,
                 total_frames / total_seconds if total_seconds > 0 else float("inf"))
    return interrupted


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # positionals may follow --onnx FILE
    setup_logging(args.log_level)
    from vision.datasets.image_io import load_image_rgb

    net, model, labels, inputs = split_positionals(args.net, args.rest, args.onnx)
    if args.threshold is None:
        args.threshold = 0.5 if args.postprocess == "detectnet" else 0.4
    predictor, class_names = make_predictor(args, net, model, labels)
    videos = [item for item in inputs if is_video_source(item)] + folder_videos(inputs)
    images = collect_images(inputs)
    if args.output_dir is None and videos and images:
        args.output_dir = DEFAULT_OUTPUT_DIR  # images beside the videos, not run_ssd_example_output.jpg
    outputs = output_paths(images, args.output_dir)
    single = not videos and args.output_dir is None and len(outputs) == 1
    check_outputs(outputs, None if single else args.output_dir or DEFAULT_OUTPUT_DIR, images, videos, model,
                  labels)
    if videos and run_videos(predictor, videos, class_names, args):  # True: stopped by Ctrl-C
        if images:
            log.info("Ctrl-C: the %d image(s) are not run", len(images))
        return EXIT_OK
    from vision.utils.paths import WrittenRecord

    if not single:  # recorded before writing: a kill in between leaves a name of ours, never a stranger's
        WrittenRecord(args.output_dir or DEFAULT_OUTPUT_DIR, "run_ssd_example.py").add(outputs)
    failed = 0
    for image_path, out_path in zip(images, outputs):
        try:
            image = load_image_rgb(image_path)
        except UserError as e:  # missing / undecodable image: report it, go on with the others
            log.error("%s", e)
            failed += 1
            continue
        boxes, labels_np, scores = detect(predictor, image, args)
        write_image(out_path, draw_detections(image, boxes, labels_np, scores, class_names))
        print(f"{image_path}: {len(scores)} objects -> {out_path}")
        print_detections(boxes, labels_np, scores, class_names)
    if failed:
        log.error("%d of %d images could not be read", failed, len(images))
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
