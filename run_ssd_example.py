#!/usr/bin/env python3
"""Detect objects in images with a trained SSD, print the detections and save annotated copies.

Usage (upstream's positional form):
  python3 run_ssd_example.py NET MODEL LABELS IMAGE [IMAGE|FOLDER ...]
  python3 run_ssd_example.py mb1-ssd models/mobilenet-v1-ssd-mp-0_675.pth models/voc-model-labels.txt dog.jpg
  python3 run_ssd_example.py mb1-ssd --onnx models/fruit/ssd-mobilenet.onnx models/fruit/labels.txt photos/

MODEL is an upstream .pth, a training checkpoint or a checkpoint folder; a .onnx MODEL (or
--onnx FILE, then MODEL may be left out) runs through ONNX Runtime with the same pre- and
post-processing. One image without --output-dir is written to run_ssd_example_output.jpg as
upstream did; several images go to --output-dir (default run_ssd_example_output/).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from vision.cli.args import add_resolution_arg, add_width_mult_arg
from vision.utils.misc import (EXIT_OK, EXIT_USAGE, UserError, add_log_level_arg, atomic_write, positive_int,
                               run_main, setup_logging, unit_float)

log = logging.getLogger("run_ssd_example")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MODEL_SUFFIXES = {".pth", ".pt", ".onnx"}
SINGLE_OUTPUT = "run_ssd_example_output.jpg"
DEFAULT_OUTPUT_DIR = "run_ssd_example_output"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        usage="%(prog)s NET MODEL LABELS IMAGE [IMAGE ...] [options]",
        description="Run an SSD on images (files or folders): prints one line per detection and writes the "
                    "images with boxes, class names and scores drawn.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("net", metavar="NET", help="network name, e.g. mb1-ssd, mb1-ssd-lite, mb2-ssd-lite, vgg16-ssd")
    p.add_argument("rest", metavar="MODEL LABELS IMAGE", nargs="+",
                   help="model file or checkpoint folder, labels file (BACKGROUND first), then images or folders")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run this ONNX model with ONNX Runtime instead of the PyTorch MODEL")
    p.add_argument("--threshold", "--prob-threshold", dest="threshold", type=unit_float, default=0.4,
                   help="minimum score of a detection (default 0.4)")
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


def split_positionals(rest: list[str], onnx: str | None) -> tuple[str | None, str, list[str]]:
    """``(model or None, labels, images)`` from the positionals after NET (MODEL is optional with --onnx)."""
    if onnx is not None:
        first = Path(rest[0])
        if len(rest) >= 3 and (first.suffix.lower() in MODEL_SUFFIXES or first.is_dir()):
            log.info("--onnx given: %s is not used", rest[0])
            rest = rest[1:]
        if len(rest) < 2:
            raise UserError("expected LABELS and at least one IMAGE after NET (with --onnx)")
        return None, rest[0], rest[1:]
    if len(rest) < 3:
        raise UserError("expected MODEL LABELS IMAGE... after NET")
    return rest[0], rest[1], rest[2:]


def collect_images(items: Sequence[str]) -> list[Path]:
    """Image files from paths and folders (a folder: its images, sorted; not recursive)."""
    images: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in folder {p}")
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
        suffix = img.suffix.lower() if img.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"} else ".jpg"
        name, k = f"{img.stem}{suffix}", 1
        while name in used:
            name, k = f"{img.stem}_{k}{suffix}", k + 1
        used.add(name)
        out.append(folder / name)
    return out


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


def make_predictor(args: argparse.Namespace, model: str | None, labels: str):
    """``(predictor, class_names)`` for PyTorch or ONNX Runtime, per the arguments."""
    from vision.ssd.registry import canonical_name, get_config

    net_name = canonical_name(args.net)  # one-line error listing the valid names
    onnx_path = args.onnx or (model if model and Path(model).suffix.lower() == ".onnx" else None)
    if onnx_path:
        from vision.ssd.onnx_predictor import OnnxPredictor
        from vision.utils.labels import read_labels

        class_names = read_labels(labels)
        norm = get_config(net_name)  # mean/std do not depend on the resolution
        predictor = OnnxPredictor(onnx_path, args.resolution, mean=norm.image_mean, std=norm.image_std,
                                  nms_method=args.nms_method, filter_threshold=args.threshold)
        num_classes = predictor.session.get_outputs()[0].shape[-1]
        if isinstance(num_classes, int) and num_classes != len(class_names):
            raise UserError(f"{onnx_path} outputs {num_classes} classes but {labels} has {len(class_names)} "
                            f"(BACKGROUND included)")
        cfg = get_config(net_name, predictor.size, width_mult=args.mb2_width_mult or 1.0)
        if cfg.num_priors != predictor.session.get_outputs()[0].shape[1]:
            raise UserError(f"{onnx_path} has {predictor.session.get_outputs()[0].shape[1]} priors, but {net_name} "
                            f"at {predictor.size} px has {cfg.num_priors}: is it a {net_name} model?")
        log.info("running %s with ONNX Runtime (%d px)", onnx_path, predictor.size)
        return predictor, class_names
    from vision.ssd.predictor import create_predictor
    from vision.cli.models import load_model

    loaded = load_model(model, net_name=net_name, label_file=labels, resolution=args.resolution,
                        width_mult=args.mb2_width_mult, is_test=True, device="cpu")
    predictor = create_predictor(loaded.net, nms_method=args.nms_method, filter_threshold=args.threshold)
    return predictor, loaded.class_names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vision.datasets.image_io import load_image_rgb

    model, labels, image_args = split_positionals(args.rest, args.onnx)
    predictor, class_names = make_predictor(args, model, labels)
    images = collect_images(image_args)
    outputs = output_paths(images, args.output_dir)
    failed = 0
    for image_path, out_path in zip(images, outputs):
        try:
            image = load_image_rgb(image_path)
        except UserError as e:  # missing / undecodable image: report it, go on with the others
            log.error("%s", e)
            failed += 1
            continue
        boxes, labels_t, scores = predictor.predict(image, top_k=args.top_k, prob_threshold=args.threshold)
        boxes, labels_np, scores = boxes.numpy().copy(), labels_t.numpy(), scores.numpy()
        h, w = image.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)  # decoded boxes may reach past the border
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        write_image(out_path, draw_detections(image, boxes, labels_np, scores, class_names))
        print(f"{image_path}: {len(scores)} objects -> {out_path}")
        for box, label, score in zip(boxes, labels_np, scores):
            x1, y1, x2, y2 = (float(v) for v in box)
            print(f"  {class_names[int(label)]}\t{float(score):.3f}\t{x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}")
    if failed:
        log.error("%d of %d images could not be read", failed, len(images))
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
