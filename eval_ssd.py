#!/usr/bin/env python3
"""Evaluate a trained SSD on VOC, Open Images or COCO (or write a COCO test-dev submission).

Examples:
  python3 eval_ssd.py --trained-model models/run1            # checkpoint folder: needs nothing else
  python3 eval_ssd.py --dataset-type coco --dataset coco-data --trained-model models/run1/best.pth
  python3 eval_ssd.py --trained-model models/run1/ssd-mobilenet.onnx --dataset data/fruit \
      --postprocess detectnet                              # the exported file, as the Jetson runs it
  python3 eval_ssd.py --net mb1-ssd --trained_model models/mobilenet-v1-ssd-mp-0_675.pth \\
      --label_file models/voc-model-labels.txt --dataset VOC2007/        # upstream flags still work
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from vision.cli.args import (add_dataset_type_arg, add_device_args, add_resolution_arg, add_width_mult_arg,
                             choose_device)
from vision.datasets.base import require_boxes
from vision.training.dataset_folders import DATASET_TYPES, open_dataset
from vision.utils.misc import (ArgumentParser, UserError, add_log_level_arg, atomic_write_json, int_range, positive_int, run_main,
                               setup_logging, str2bool, unit_float)

log = logging.getLogger("eval_ssd")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description="Detection metrics of a trained SSD. VOC / Open Images: per-class AP and mAP (VOC "
                    "protocol, difficult boxes ignored) and det_test_{class}.txt files. COCO: the 12 "
                    "COCOeval numbers, per-class AP and a results JSON with the original COCO category ids. "
                    "COCO --split test-dev: only writes the zipped results file for the evaluation server.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    m = p.add_argument_group("model")
    m.add_argument("--trained_model", "--trained-model", dest="trained_model", required=True,
                   help="model to evaluate: an upstream .pth state_dict, a training checkpoint, or a checkpoint "
                        "folder (its best.pth, with net/resolution/classes read from the checkpoint), or an .onnx "
                        "file from onnx_export.py (run by ONNX Runtime; net/resolution/classes read from the file)")
    m.add_argument("--net", default=None,
                   help="network name (e.g. mb1-ssd, mb2-ssd-lite, vgg16-ssd); default: what the checkpoint says")
    m.add_argument("--label_file", "--label-file", "--labels", dest="label_file", default=None,
                   help="labels file, one class a line, BACKGROUND first (default: the checkpoint's class names)")
    add_width_mult_arg(m)
    add_resolution_arg(m)
    d = p.add_argument_group("data")
    add_dataset_type_arg(d, None, "dataset format (default: the checkpoint's training setting, else auto: "
                                  "recognised from the folder)")
    d.add_argument("--dataset", "--data", dest="dataset", default=None,
                   help="dataset root (VOC: the folder with Annotations/ JPEGImages/ ImageSets/; "
                        "COCO: the folder with annotations/ val2017/ test2017/); default: the checkpoint's "
                        "validation dataset")
    d.add_argument("--split", default="val", choices=["val", "test-dev"],
                   help="COCO only: val (instances_val2017.json, scored) or test-dev "
                        "(image_info_test-dev2017.json, no ground truth: writes the submission zip only)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--use_2007_metric", "--use-2007-metric", dest="use_2007_metric", type=str2bool, default=True,
                   help="VOC/Open Images: 11-point VOC2007 AP (true, the upstream default) or all-point AP (false)")
    e.add_argument("--iou_threshold", "--iou-threshold", dest="iou_threshold", type=unit_float, default=0.5,
                   help="VOC/Open Images: a detection counts when its IoU with a ground-truth box is more than this "
                        "(strictly, as the VOC devkit; default 0.5; "
                        "COCO always uses 0.50:0.95)")
    e.add_argument("--nms_method", "--nms-method", dest="nms_method", default="hard", choices=["hard", "soft"],
                   help="non-maximum suppression: hard or soft (default hard)")
    e.add_argument("--nms-iou-threshold", "--nms_iou_threshold", dest="nms_iou_threshold", type=unit_float,
                   default=0.45, help="IoU above which NMS suppresses a box of the same class (default 0.45)")
    e.add_argument("--prob-threshold", "--prob_threshold", dest="prob_threshold", type=unit_float, default=None,
                   help="drop detections scoring below this (default 0.01 with nms, low as mAP needs the whole "
                        "curve; 0.5 with detectnet, detectNet's default)")
    e.add_argument("--postprocess", choices=["nms", "detectnet"], default="nms",
                   help="nms (default): this project's NMS and bilinear resize; detectnet: exactly what "
                        "jetson-inference's detectNet does (nearest-neighbour stretch, threshold, same-class "
                        "clustering, no NMS, no top-k), so the mAP is the one the Jetson gives")
    e.add_argument("--top-k", "--top_k", dest="top_k", type=positive_int, default=None,
                   help="keep at most this many detections per image (default: 100 for COCO, its rule; 200 otherwise)")
    e.add_argument("--eval_dir", "--eval-dir", dest="eval_dir", default="eval_results",
                   help="folder for result files (default: eval_results)")
    e.add_argument("--alg-name", "--alg_name", dest="alg_name", default=None, type=alg_name,
                   help="algorithm name in COCO result file names: letters, digits, - _ . (default: the net name)")
    e.add_argument("--coco-backend", "--coco_backend", dest="coco_backend", default="auto",
                   choices=["auto", "faster", "pycocotools"],
                   help="COCO metrics by faster-coco-eval or pycocotools (the reference; same numbers, slower); "
                        "auto: faster-coco-eval when installed (default)")
    r = p.add_argument_group("runtime")
    add_device_args(r)
    r.add_argument("--batch-size", "--batch_size", "-b", dest="batch_size", type=int_range(1, 65536), default=8,
                   help="images per forward pass (default 8)")
    r.add_argument("--workers", "--num-workers", "--num_workers", "-j", dest="workers", type=int_range(0, 512),
                   default=None, help="image-loading worker processes; 0 loads in the main process (default: 0 on "
                                      "a CPU-only machine with 2 cores or fewer, where workers slow the forward "
                                      "down; else 2)")
    add_log_level_arg(r)
    return p


def alg_name(s: str) -> str:
    """argparse type of --alg-name: it becomes part of a file name inside --eval_dir and of the name the
    COCO server reads, so no folders ("a/../../x" wrote outside --eval_dir) and nothing the server rejects."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", s) or set(s) == {"."}:
        raise argparse.ArgumentTypeError(f"letters, digits, '-', '_' and '.' only, got {s!r}")
    return s


def check_eval_dir(args: argparse.Namespace, model_path: Any) -> Path:
    """--eval_dir can be written and is neither the dataset folder nor the model's folder (its
    metrics.json and det_test_*.txt would land among the inputs)."""
    from vision.utils.paths import check_output_dir, refuse_output_dir_over_inputs

    eval_dir = check_output_dir(args.eval_dir, "--eval-dir")
    refuse_output_dir_over_inputs("--eval-dir", eval_dir, [("--trained-model", model_path),
                                                           ("--dataset", args.dataset),
                                                           ("--label-file", args.label_file)])
    return eval_dir


def build_dataset(args: argparse.Namespace, class_names: list[str]) -> Any:
    """The evaluation split of ``args.dataset`` (test split for VOC/Open Images, as upstream)."""
    from vision.training.dataset_folders import resolve_dataset_type

    args.dataset_type = resolve_dataset_type(args.dataset_type, args.dataset)
    if args.dataset_type == "yolo" and args.split == "val":
        from vision.datasets.yolo import YOLODataset

        return YOLODataset(args.dataset, split="val")
    root = Path(args.dataset)
    if not root.is_dir():
        raise UserError(f"dataset folder not found: {root}")
    if args.dataset_type == "coco" and args.split == "test-dev":
        from vision.evaluation.coco import CocoImageList

        info = root / "annotations" / "image_info_test-dev2017.json"
        return CocoImageList(info, root / "test2017", class_names)
    if args.split != "val":
        raise UserError("--split test-dev is for COCO only")
    return open_dataset(args.dataset_type, root, split="val", label_file=args.label_file)


def fill_dataset_args(args: argparse.Namespace, train_args: dict) -> None:
    """Take the dataset and its type from the training arguments when the flags do not give them."""
    if args.dataset_type is None:
        t = str(train_args.get("dataset_type") or "auto").lower()
        args.dataset_type = t if t in DATASET_TYPES else "auto"
    if args.dataset is None:
        for key in ("validation_dataset", "datasets", "data", "dataset"):
            v = train_args.get(key)
            if isinstance(v, (list, tuple)):
                v = v[0] if v else None
            if v:
                args.dataset = str(v)
                log.info("dataset from the checkpoint's training arguments: %s (%s)", args.dataset,
                         args.dataset_type)
                break
        else:
            raise UserError("--dataset is required (the model does not say which dataset it was trained on)")


def check_classes(model_classes: list[str], dataset_classes: list[str], dataset: str) -> None:
    """The net's class i must be the dataset's class i, or every AP would be of the wrong class."""
    if list(model_classes) == list(dataset_classes):
        return
    if len(model_classes) != len(dataset_classes):
        raise UserError(f"the model has {len(model_classes)} classes (BACKGROUND included) but dataset {dataset} "
                        f"has {len(dataset_classes)}")
    diff = next(i for i, (a, b) in enumerate(zip(model_classes, dataset_classes)) if a != b)
    raise UserError(f"class {diff} of the model is {model_classes[diff]!r} but of dataset {dataset} "
                    f"{dataset_classes[diff]!r} (labels must be in the same order)")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _fmt(ap: float) -> str:
    return "   n/a" if not math.isfinite(ap) else f"{ap:.4f}"


def print_per_class(per_class: dict[str, float], title: str) -> None:
    width = max([len(n) for n in per_class] + [5])
    print(f"\n{title}")
    for name, ap in per_class.items():
        print(f"  {name:<{width}}  {_fmt(ap)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)

    from vision.evaluation import coco as coco_eval
    from vision.evaluation import voc as voc_eval
    from vision.evaluation.detection import default_workers, detect_dataset
    from vision.evaluation.evaluate import compute_metrics, make_predictor
    from vision.cli.models import load_model
    from vision.ssd.onnx_model import as_deployed, is_onnx_path, load_onnx_model

    detectnet = args.postprocess == "detectnet"
    if args.prob_threshold is None:
        args.prob_threshold = 0.5 if detectnet else 0.01
    onnx = is_onnx_path(args.trained_model)
    device = choose_device(args.device, args.use_cuda and not onnx)
    if onnx:
        model = load_onnx_model(args.trained_model, net_name=args.net, label_file=args.label_file,
                                resolution=args.resolution, width_mult=args.mb2_width_mult, nms_method=args.nms_method,
                                iou_threshold=args.nms_iou_threshold, filter_threshold=args.prob_threshold)
    else:
        model = load_model(args.trained_model, net_name=args.net, label_file=args.label_file,
                           resolution=args.resolution, width_mult=args.mb2_width_mult, is_test=True, device=device)
    fill_dataset_args(args, model.info.train_args)
    eval_dir = check_eval_dir(args, model.path)
    dataset = build_dataset(args, model.class_names)
    if len(dataset) == 0:
        raise UserError(f"no images to evaluate in {args.dataset}")
    if not (args.dataset_type == "coco" and args.split == "test-dev"):
        check_classes(model.class_names, list(dataset.class_names), args.dataset)
        require_boxes(dataset, "evaluation", args.dataset)  # nothing to score against
    top_k = args.top_k or (100 if args.dataset_type == "coco" else 200)
    alg = args.alg_name or model.net_name
    eval_dir.mkdir(parents=True, exist_ok=True)

    if args.workers is None:
        args.workers = default_workers(device)
    predictor = make_predictor(model.net, device=device, nms_method=args.nms_method,
                               iou_threshold=args.nms_iou_threshold, prob_threshold=args.prob_threshold)
    if detectnet:
        predictor = as_deployed(predictor, model.class_names, args.prob_threshold, onnx=onnx,
                                meta=getattr(model, "meta", None))
    log.info("detecting on %d images (%s, batch %d, %d workers, %s)", len(dataset), args.dataset_type,
             args.batch_size, args.workers, device)
    detections, images_per_s = detect_dataset(
        predictor, dataset, batch_size=args.batch_size, num_workers=args.workers, top_k=top_k,
        prob_threshold=args.prob_threshold,
        progress=log.isEnabledFor(logging.INFO) and sys.stderr.isatty())  # no bars in a log file
    num_dets = sum(len(d) for d in detections)
    log.info("%d detections, %.1f images/s", num_dets, images_per_s)
    if detectnet:
        log.info("%s", predictor.summary())

    if args.dataset_type == "coco" and args.split == "test-dev":
        results = coco_eval.coco_results(detections, [dataset.coco_image_id(i) for i in range(len(dataset))],
                                         dataset.label_to_category_id)
        json_path, zip_path = coco_eval.write_test_dev_submission(eval_dir, results, alg)
        print(f"test-dev: {len(results)} detections on {len(dataset)} images -> {zip_path} (upload this to the "
              f"COCO evaluation server; no ground truth here, so no metrics)")
        return 0

    metrics = compute_metrics(dataset, detections, use_2007_metric=args.use_2007_metric,
                              match_iou_threshold=args.iou_threshold, coco_backend=args.coco_backend)
    report: dict[str, Any] = {
        "model": str(model.path), "net": model.net_name, "resolution": model.resolution,
        "dataset": str(args.dataset), "dataset_type": args.dataset_type, "num_images": len(dataset),
        "num_detections": num_dets, "images_per_s": images_per_s, "mAP": metrics["mAP"], "AP50": metrics["AP50"],
        "per_class": metrics["per_class"], "images": metrics["images"],
        "settings": {"postprocess": args.postprocess, "nms_method": args.nms_method, "nms_iou_threshold": args.nms_iou_threshold,
                     "prob_threshold": args.prob_threshold, "top_k": top_k},
    }
    if args.dataset_type == "coco":
        results_path = coco_eval.write_results(eval_dir / f"detections_val2017_{alg}_results.json",
                                               metrics["results"])
        report["stats"] = dict(zip(coco_eval.STAT_NAMES, metrics["stats"]))
        report["coco_backend"] = metrics["coco_backend"]
        report["results_file"] = str(results_path)
        print(metrics["summary"])
        print_per_class(metrics["per_class"], "AP@[.50:.95] per class:")
        print(f"\nmAP (AP@[.50:.95]): {metrics['mAP']:.4f}   AP50: {metrics['AP50']:.4f}   "
              f"({metrics['images_note']})")
        log.info("results in COCO format (original category ids): %s", results_path)
    else:
        ids = getattr(dataset, "ids", None)
        image_ids = [str(ids[i]) if ids is not None else str(dataset.get_annotation(i)[0])
                     for i in range(len(dataset))]
        voc_eval.write_detection_files(eval_dir, detections, image_ids, model.class_names)
        report["use_2007_metric"] = args.use_2007_metric
        report["iou_threshold"] = args.iou_threshold
        metric = "VOC2007 11-point" if args.use_2007_metric else "all-point"
        print_per_class(metrics["per_class"], f"Average Precision per class ({metric}, IoU > {args.iou_threshold}):")
        print(f"\nAverage Precision Across All Classes: {metrics['mAP']:.4f}   ({metrics['images_note']})")
        missing = [n for n, ap in metrics["per_class"].items() if not math.isfinite(ap)]
        if missing:
            log.warning("no ground truth for %d classes (%s); left out of the mean", len(missing),
                        ", ".join(missing[:5]))
        log.info("per-class detection files: %s/det_test_*.txt", eval_dir)
    atomic_write_json(eval_dir / "metrics.json", _json_safe(report))
    log.info("metrics: %s", eval_dir / "metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
