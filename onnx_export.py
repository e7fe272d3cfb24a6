#!/usr/bin/env python3
"""Export a trained SSD to ONNX for jetson-inference (detectNet / TensorRT), and check the export.

The graph is the test-mode net: input ``input_0`` [B,3,H,W] float32 normalized as detectNet feeds
it, (pixel/255 - 0.5)/0.5 planar RGB (an input adapter maps it onto the net's own normalization;
``--input-normalization net`` keeps the net's), outputs ``scores`` [B,N,C] (softmaxed) and ``boxes``
[B,N,4] (corner form, clamped to 0..1), no NMS (detectNet clusters boxes itself). Static shapes with
batch 1 by default, opset 11 (TensorRT 7.1, jetson-inference's minimum, takes <= 11; 8.5 takes <= 17),
constant folding. The file describes itself (net, resolution, classes, input normalization, priors,
post-processing defaults in its metadata). After writing, it is checked with onnx.checker and run
by ONNX Runtime on an image; outputs must match PyTorch within 1e-4.

Examples:
  python3 onnx_export.py --model-dir=models/fruit                 # dusty-nv / Hello AI World usage
  python3 onnx_export.py --input models/run1/best.pth --output run1.onnx --resolution 512
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vision.cli.args import add_resolution_arg, add_width_mult_arg, resolution_type
from vision.ssd.int8 import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES, TARGETS
from vision.utils.misc import (ArgumentParser, Failure, UserError, add_log_level_arg, atomic_write, int_range, run_main,
                               setup_logging)

log = logging.getLogger("onnx_export")

INPUT_NAME = "input_0"
OUTPUT_NAMES = ("scores", "boxes")
TENSORRT_MAX_OPSET = {"7.1": 11, "8.5": 17}  # the minimum jetson-inference names, and JetPack 5's
TOLERANCE = 1e-4
INT8_MIN_OPSET = 13  # per-channel QDQ (DequantizeLinear's axis) needs opset 13


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description="Export an SSD checkpoint to ONNX (jetson-inference detectNet contract) and verify it "
                    "with onnx.checker and ONNX Runtime. Runs on the CPU.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2].split("\n\n", 1)[1])
    p.add_argument("--net", default=None,
                   help="network name (default: the checkpoint's; for a plain .pth, mb1-ssd = ssd-mobilenet)")
    p.add_argument("--input", default=None,
                   help="checkpoint or .pth to export, or a checkpoint folder (default: from --model-dir: best.pth, "
                        "else the *-Epoch-N-Loss-X.pth with the lowest loss)")
    p.add_argument("--output", default=None,
                   help="ONNX file to write (default: ssd-mobilenet.onnx for mb1-ssd, else NET.onnx, in --model-dir "
                        "or beside the input)")
    p.add_argument("--labels", default=None,
                   help="labels file (default: the checkpoint's class names, else labels.txt in --model-dir); "
                        "labels.txt is (re)written beside the ONNX file for detectnet")
    p.add_argument("--model-dir", "--model_dir", dest="model_dir", default=None,
                   help="training output folder: where --input, --labels and --output are looked up by default")
    add_resolution_arg(p, help="square input size N (NxN); default: the checkpoint's, else 300. Priors are rebuilt "
                               "for it")
    p.add_argument("--width", type=resolution_type, default=None, help="input width (must equal height)")
    p.add_argument("--height", type=resolution_type, default=None, help="input height (must equal width)")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int_range(1, 256), default=1,
                   help="static batch size of the graph (default 1, what TensorRT/detectNet expects)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="make the batch dimension dynamic (not for detectNet, which needs a static batch of 1)")
    p.add_argument("--opset", type=int_range(9, 21), default=11,
                   help="ONNX opset (default 11: TensorRT 7.1, jetson-inference's minimum, takes <= 11; "
                        "TensorRT 8.5 takes <= 17)")
    p.add_argument("--input-normalization", dest="input_normalization", choices=["detectnet", "net"],
                   default="detectnet",
                   help="the graph's input: detectnet (default) = (pixel/255 - 0.5)/0.5 as jetson-inference feeds "
                        "every SSD (an input adapter maps it onto the net's own normalization); net = the net's "
                        "own (pixel - mean)/std, for other runtimes (not for detectnet)")
    add_width_mult_arg(p)
    p.add_argument("--int8", action="store_true",
                   help="also write an INT8 (QDQ, per-channel weights) model NAME-int8.onnx, statically calibrated "
                        "with ONNX Runtime on --calibration-data images (ONNX Runtime on CPUs; TensorRT 8+)")
    p.add_argument("--int8-target", choices=TARGETS, default=None,
                   help="with --int8: tensorrt = int8 activations (TensorRT requires them; also runs on ONNX "
                        "Runtime), cpu = uint8 activations (ONNX Runtime's fast path on x86 CPUs; TensorRT "
                        f"rejects it) (default: {TARGETS[0]})")
    p.add_argument("--calibration-data", default=None, metavar="DIR",
                   help="with --int8: a dataset root or image folder (searched recursively) to calibrate on")
    p.add_argument("--calibration-images", type=int_range(1, 100000), default=None, metavar="N",
                   help=f"with --int8: calibrate on N images spread over --calibration-data "
                        f"(default {DEFAULT_CALIBRATION_IMAGES})")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=None,
                   help="with --int8: how activation ranges are read from the calibration images: minmax (the "
                        "extremes seen), percentile (99.999th percentile: clips rare outliers), entropy "
                        f"(TensorRT's calibrator's rule; slow: minutes) (default: {CALIBRATION_METHODS[0]})")
    p.add_argument("--test-image", default=None,
                   help="image for the ONNX Runtime check (default: a generated test image); also the closing "
                        "report's first row")
    p.add_argument("--report-images", type=int_range(0, 100), default=4, metavar="N",
                   help="the closing report runs on the first N validation images (default 4; 0: only --test-image "
                        "or the generated image): from --report-data, else the run's validation dataset "
                        "(args.json) if still on disk")
    p.add_argument("--report-data", default=None, metavar="DIR",
                   help="dataset folder (any type training reads; its validation split) or folder of images "
                        "for the closing report")
    add_log_level_arg(p)
    return p


def input_size(args: argparse.Namespace) -> int | None:
    """The square input size asked for (None: the checkpoint's or the default)."""
    if args.width is not None and args.height is not None and args.width != args.height:
        raise UserError(f"non-square input {args.width}x{args.height} is not supported: the SSD priors are square; "
                        f"use --resolution N (detectNet stretches every image to the net's size anyway)")
    side = args.width if args.width is not None else args.height
    if args.resolution is not None and side is not None and side != args.resolution:
        raise UserError(f"--resolution {args.resolution} contradicts --width/--height {side}")
    return args.resolution if args.resolution is not None else side


def resolve_paths(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """(model path or folder, explicit labels file or None) with dusty-nv's --model-dir defaults."""
    model_dir = Path(args.model_dir) if args.model_dir else None
    if model_dir is not None and not model_dir.is_dir():
        raise UserError(f"--model-dir not found: {model_dir}")
    if args.input:
        model = Path(args.input)
        if model_dir is not None and not model.exists() and len(model.parts) == 1:
            model = model_dir / model
    elif model_dir is not None:
        model = model_dir
    else:
        raise UserError("nothing to export: pass --input MODEL.pth or --model-dir FOLDER")
    labels = None
    if args.labels:
        labels = Path(args.labels)
        if model_dir is not None and not labels.exists() and len(labels.parts) == 1:
            labels = model_dir / labels
        if not labels.is_file():
            raise UserError(f"labels file not found: {labels}")
    return model, labels


def default_output(net_name: str, model_path: Path, model_dir: str | None) -> Path:
    name = "ssd-mobilenet.onnx" if net_name == "mb1-ssd" else f"{net_name}.onnx"
    return (Path(model_dir) if model_dir else model_path.parent) / name


def check_outputs(args: argparse.Namespace, output: Path, model_path: Path, labels: Path | None) -> None:
    """Before the export: the ONNX file (and its -int8 twin) can be written, and land on no input and no
    checkpoint (``--output m/best.pth`` once replaced the checkpoint with the graph)."""
    from vision.utils.paths import check_output_file, refuse_output_over_inputs

    outputs = [("--output", output)]
    if args.int8:
        outputs.append(("--output (int8)", output.with_name(f"{output.stem}-int8{output.suffix}")))
    for flag, path in outputs:
        check_output_file(path, flag)
    inputs = [("--input", model_path), ("--labels", labels), ("--test-image", args.test_image)]
    refuse_output_over_inputs(outputs + [("labels file beside --output", output.parent / "labels.txt")],
                              [i for i in inputs if i[0] != "--labels"])
    refuse_output_over_inputs(outputs, [("--labels", labels)])


def make_test_image(height: int = 375, width: int = 500, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 image with a textured background and a few solid shapes."""
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                    (x + y) * 255 // max(width + height - 2, 1)], axis=-1).astype(np.uint8)
    img = np.clip(img.astype(np.int16) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    cv2.rectangle(img, (width // 10, height // 8), (width // 2, height // 2), (220, 40, 40), -1)
    cv2.circle(img, (3 * width // 4, 2 * height // 3), min(height, width) // 6, (40, 200, 60), -1)
    cv2.ellipse(img, (width // 3, 3 * height // 4), (width // 8, height // 12), 30, 0, 360, (30, 60, 210), -1)
    return img


def export_bytes(net: torch.nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    """The ONNX model of ``net`` traced on ``example`` (legacy TorchScript exporter: it honours old opsets)."""
    import inspect

    kwargs = dict(input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), opset_version=opset,
                  do_constant_folding=True, export_params=True)
    if dynamic_batch:
        kwargs["dynamic_axes"] = {n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the dynamo exporter needs onnxscript and targets opset >= 18
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(net, (example,), buf, **kwargs)
    for w in caught:
        if not issubclass(w.category, DeprecationWarning):
            log.debug("exporter: %s", w.message)
    return buf.getvalue()


def check_graph(model_bytes: bytes, batch: int | None, size: int, num_classes: int, num_priors: int) -> None:
    """onnx.checker plus the jetson-inference contract: names, shapes, no NMS in the graph."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise Failure(f"onnx.checker rejected the exported model: {str(e).splitlines()[0]}") from None

    def dims(value_info) -> list:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in value_info.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    b = batch if batch is not None else "batch"
    expected_in = {INPUT_NAME: [b, 3, size, size]}
    expected_out = {"scores": [b, num_priors, num_classes], "boxes": [b, num_priors, 4]}
    if inputs != expected_in or outputs != expected_out:
        raise Failure(f"exported graph has inputs {inputs} and outputs {outputs}; expected {expected_in} "
                      f"and {expected_out}")
    ops = {n.op_type for n in model.graph.node}
    if "NonMaxSuppression" in ops:
        raise Failure("exported graph contains NonMaxSuppression; detectNet expects raw scores and boxes")


def compare_with_onnxruntime(model_bytes: bytes, net: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Max |ONNX Runtime - PyTorch| on scores and on boxes for input ``x``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    ort_scores, ort_boxes = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        scores, boxes = net(x)
    return (float(np.abs(ort_scores - scores.numpy()).max()), float(np.abs(ort_boxes - boxes.numpy()).max()))


def write_labels_beside(output: Path, class_names: list[str]) -> Path:
    """labels.txt next to the model for detectnet; an existing different file is backed up first."""
    from vision.utils.labels import write_labels

    path = output.parent / "labels.txt"
    text = "\n".join(class_names) + "\n"
    if path.is_file():
        try:
            old = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            old = None
        if old == text:
            return path
        backup = path.with_name("labels.txt.bak")
        k = 1
        while backup.exists():
            backup = path.with_name(f"labels.txt.bak{k}")
            k += 1
        with atomic_write(backup, "wb") as f:
            f.write(path.read_bytes())
        log.info("backed up the previous %s to %s", path, backup.name)
    write_labels(path, class_names)
    return path


def stale_engines(output: Path) -> list[Path]:
    """TensorRT engines jetson-inference cached for an earlier version of this model."""
    return sorted(output.parent.glob(f"{output.name}*.engine"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vision.datasets.image_io import load_image_rgb
    from vision.ssd.registry import canonical_name
    from vision.ssd.data_preprocessing import PredictionTransform
    from vision.ssd.detectnet import DEFAULT_CLUSTER_THRESHOLD, DEFAULT_THRESHOLD, DETECTNET_MEAN, DETECTNET_STD
    from vision.cli.models import build_model, read_model_info

    if args.int8 and not args.calibration_data:
        raise UserError("--int8 needs --calibration-data DIR (images to calibrate the int8 ranges on)")
    int8_only = [flag for flag, given in (("--calibration-data", args.calibration_data is not None),
                                          ("--calibration-method", args.calibration_method is not None),
                                          ("--int8-target", args.int8_target is not None),
                                          ("--calibration-images", args.calibration_images is not None)) if given]
    if int8_only and not args.int8:  # a user who gave these wanted an INT8 model: say so, write nothing
        raise UserError(f"{', '.join(int8_only)} {'applies' if len(int8_only) == 1 else 'apply'} only with --int8 (add --int8 to also write NAME-int8.onnx)")
    model_path, labels = resolve_paths(args)
    calibration = None
    if args.int8:  # before the export: a folder without images must not cost an export and leave files
        from vision.ssd.int8 import calibration_images

        calibration = calibration_images(args.calibration_data, args.calibration_images or DEFAULT_CALIBRATION_IMAGES)
    net_arg = canonical_name(args.net) if args.net else None
    info = read_model_info(model_path, net_arg)
    if net_arg is None and info.net_name is None:
        from vision.ssd.registry import guess_net_name

        net_arg = guess_net_name(info.state_dict, args.mb2_width_mult) or "mb1-ssd"
        log.info("%s does not say which net it is; %s", info.path,
                 f"its tensors fit {net_arg}" if net_arg != "mb1-ssd" else "assuming mb1-ssd (ssd-mobilenet)")
    if labels is None and info.class_names is None:
        default_labels = (Path(args.model_dir) if args.model_dir else info.path.parent) / "labels.txt"
        if not default_labels.is_file():
            raise UserError(f"labels file not found: {default_labels} (pass --labels; the model holds no class names)")
        labels = default_labels
    loaded = build_model(info, net_name=net_arg, label_file=labels, resolution=input_size(args),
                         width_mult=args.mb2_width_mult, is_test=True, device="cpu")
    net, name, class_names, resolution = loaded.net, loaded.net_name, loaded.class_names, loaded.resolution
    output = Path(args.output) if args.output else default_output(name, info.path, args.model_dir)
    if args.model_dir and args.output and len(output.parts) == 1:
        output = Path(args.model_dir) / output
    if output.is_dir():  # a folder: the default file name inside it
        output = default_output(name, info.path, str(output))
    if output.name == "labels.txt":
        raise UserError(f"--output {output}: labels.txt is the labels file written beside the model; name the "
                        f"model NAME.onnx")
    check_outputs(args, output, info.path, labels)
    from vision.cli.report_images import choose_report_images

    reporting = not args.dynamic_batch and args.batch_size == 1  # before the export: a bad --report-data costs none
    report_choice = choose_report_images(args.report_images if reporting else 0, args.report_data, info.path,
                                         info.checkpoint)
    if args.report_data and not reporting:
        log.warning("--report-data is not used: there is no closing report for a graph with batch != 1")
    if output.suffix.lower() != ".onnx":
        log.warning("output %s does not end in .onnx", output)
    if args.opset > TENSORRT_MAX_OPSET["7.1"]:
        log.warning("opset %d: TensorRT 7.1 (jetson-inference's minimum, JetPack 4.4-4.6) takes opsets <= 11, "
                    "TensorRT 8.5 (JetPack 5) <= 17; the default 11 runs on both", args.opset)
    from vision.training.run_summary import describe_checkpoint

    for line in describe_checkpoint(info.path, info.checkpoint):
        log.info("%s", line)
    detectnet_input = args.input_normalization == "detectnet"
    blockers = [why for why, bad in (("its batch is dynamic", args.dynamic_batch),
                                     (f"its batch is {args.batch_size}", args.batch_size != 1 and not args.dynamic_batch),
                                     ("--input-normalization net", not detectnet_input)) if bad]
    if blockers:
        log.warning("this file is not for jetson-inference's detectNet (%s): it needs a static batch of 1 and "
                    "detectNet's input normalization; use it with ONNX Runtime", ", ".join(blockers))
    elif name == "vgg16-ssd" or not np.allclose(net.config.image_mean, 127.5):
        log.info("input adapter: the graph takes detectNet's (pixel/255 - 0.5)/0.5 and feeds %s its own "
                 "(pixel - %s)/%g", name, net.config.image_mean.tolist(), net.config.image_std)

    from vision.ssd.detectnet import DetectNetTransform
    from vision.ssd.input_adapter import ExportNet
    from vision.ssd.onnx_metadata import OnnxModelInfo, add_metadata, build_metadata

    mean, std = net.config.image_mean, net.config.image_std
    graph = ExportNet(net, mean, std) if detectnet_input else ExportNet(net)
    graph.eval()
    transform = DetectNetTransform(resolution) if detectnet_input else PredictionTransform(resolution, mean, std)
    image = load_image_rgb(args.test_image) if args.test_image else make_test_image()
    x = transform(image).unsqueeze(0).repeat(args.batch_size, 1, 1, 1).contiguous()

    log.info("exporting %s (%d classes) at %dx%d, batch %s, opset %d, %s input", name, len(class_names) - 1,
             resolution, resolution, "dynamic" if args.dynamic_batch else args.batch_size, args.opset,
             args.input_normalization)
    model_bytes = export_bytes(graph, x, args.opset, args.dynamic_batch)
    num_priors = int(net.config.priors.size(0))
    in_mean, in_std = ((list(DETECTNET_MEAN), list(DETECTNET_STD)) if detectnet_input else
                       (np.broadcast_to(mean, (3,)).tolist(), np.broadcast_to(std, (3,)).tolist()))
    meta = OnnxModelInfo(net_name=name, resolution=resolution, class_names=list(class_names),
                         input_normalization=args.input_normalization, input_mean=in_mean, input_std=in_std,
                         num_priors=num_priors, width_mult=float(loaded.width_mult),
                         postprocess={"boxes_clamped": True, "nms_iou_threshold": float(net.config.iou_threshold),
                                      "nms_prob_threshold": 0.4, "nms_top_k": 10,
                                      "detectnet_threshold": DEFAULT_THRESHOLD,
                                      "detectnet_cluster_threshold": DEFAULT_CLUSTER_THRESHOLD},
                         batch=None if args.dynamic_batch else args.batch_size, opset=args.opset,
                         priors=loaded.info.priors)
    model_bytes = add_metadata(model_bytes, build_metadata(meta))
    check_graph(model_bytes, None if args.dynamic_batch else args.batch_size, resolution, len(class_names),
                num_priors)
    d_scores, d_boxes = compare_with_onnxruntime(model_bytes, graph, x)
    if args.dynamic_batch:  # the dynamic graph must also take another batch size
        x2 = x[:1].repeat(args.batch_size + 1, 1, 1, 1).contiguous()
        d2 = compare_with_onnxruntime(model_bytes, graph, x2)
        d_scores, d_boxes = max(d_scores, d2[0]), max(d_boxes, d2[1])
    log.info("ONNX Runtime vs PyTorch: max |diff| scores %.2e, boxes %.2e", d_scores, d_boxes)
    if not (d_scores <= TOLERANCE and d_boxes <= TOLERANCE):
        raise Failure(f"ONNX Runtime output differs from PyTorch: max |diff| scores {d_scores:.3e}, boxes "
                      f"{d_boxes:.3e} (tolerance {TOLERANCE:g}); {output} not written")

    with atomic_write(output, "wb") as f:
        f.write(model_bytes)
    labels_out = write_labels_beside(output, class_names)
    log.info("wrote %s (%.1f MB, %d priors) and %s", output, len(model_bytes) / 1e6, num_priors, labels_out)
    if args.int8:
        int8_opset = max(args.opset, INT8_MIN_OPSET)
        fp32 = model_bytes if args.opset >= INT8_MIN_OPSET else add_metadata(
            export_bytes(graph, x, int8_opset, args.dynamic_batch), build_metadata(replace(meta, opset=int8_opset)))
        write_int8(args, output, fp32, transform, x, calibration)
    if reporting:
        from vision.cli.report_images import report_rows
        from vision.ssd.export_report import export_report

        first = (Path(args.test_image).name if args.test_image else "generated test image", image)
        rows, source, skipped = report_rows(report_choice, args.report_images, first, bool(args.test_image))
        for line in export_report(output, net, rows, class_names, source=source, skipped=skipped):
            log.info("%s", line)
    for engine in stale_engines(output):
        log.warning("TensorRT engine %s was built from an earlier export: jetson-inference before 2022-08 "
                    "keeps running it (delete it); newer builds see the checksum change and rebuild it", engine)
    if blockers:
        return 0
    print("Load it on the Jetson with (any --model file name works; detectnet reads the net from the file):")
    print(f"  detectnet --model={shown_path(output)} --labels={shown_path(labels_out)} --input-blob={INPUT_NAME} "
          f"--output-cvg=scores --output-bbox=boxes <input> <output>")
    return 0


def write_int8(args: argparse.Namespace, output: Path, model_bytes: bytes, transform, x: torch.Tensor,
               images: Sequence[Path]) -> None:
    """NAME-int8.onnx beside ``output``, calibrated on ``images`` with the graph's own preprocessing; logs how far
    it is from fp32."""
    import onnxruntime as ort

    from vision.ssd.int8 import quantize_int8

    int8_path = output.with_name(f"{output.stem}-int8{output.suffix}")
    log.info("INT8: calibrating on %d image%s from %s", len(images), "" if len(images) == 1 else "s",
             args.calibration_data)
    log.info("INT8: quantizing an opset-%d copy (per-channel QDQ needs >= %d)", max(args.opset, INT8_MIN_OPSET),
             INT8_MIN_OPSET)
    data = quantize_int8(model_bytes, int8_path, images, transform, target=args.int8_target or TARGETS[0],
                         method=args.calibration_method or CALIBRATION_METHODS[0])
    runs = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
            for b in (model_bytes, data)]
    log.info("wrote %s (%.1f MB); vs fp32 on the test image: max |diff| scores %.2e, boxes %.2e", int8_path,
             len(data) / 1e6, np.abs(runs[0][0] - runs[1][0]).max(), np.abs(runs[0][1] - runs[1][1]).max())


def shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it is below it (the command is copied to a Jetson)."""
    import os

    rel = os.path.relpath(Path(path).absolute(), Path.cwd())
    return rel if not rel.startswith("..") else str(path)

if __name__ == "__main__":
    sys.exit(run_main(main))
