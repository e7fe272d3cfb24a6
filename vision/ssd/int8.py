"""INT8 (QDQ) version of an exported model, calibrated on real images: for ONNX Runtime on CPUs and
for TensorRT 8+ (explicit quantization; TensorRT 7.1 cannot read QDQ graphs).

Why static QDQ with per-channel weights: it is what both runtimes execute as int8 without a
TensorRT calibration cache, and per-channel scales keep depthwise convolutions (MobileNets) usable.
Calibration images get exactly the graph's preprocessing (``transform``), so the activation ranges
are the ones the deployed model sees.

What is quantized, and why (measured with bench/deploy.py, bench/README.md "Deployment"):
- the graph is first pre-processed (``quant_pre_process``: constant folding): the exporter passes
  some convolution biases through Identity nodes, which the quantizer does not recognize as
  initializers (mb1-ssd-lite: 2-3 more convolutions end up fused to int8 with it);
- only the backbone and the heads' inner layers are quantized: Conv and the activation right after
  it (Relu, ReLU6 as Clip). The heads' last convolutions (the class logits and box offsets), the
  head's Reshape/Transpose/Concat, the Softmax and the box decoding stay float. The last head
  convolutions because their outputs span hundreds (mb1-ssd, trained 37 epochs on the demo set:
  logits -329..344, offsets -188..142, on priors nothing matched in training): one 8-bit range
  over that rounds the logits of the priors that matter by +-1.3, and mb1-ssd's COCO AP fell from
  0.37 to 0.05. The rest is cheap, and in int8 it only adds Q/DQ pairs and rounding;
- activations: ``target="tensorrt"`` (default) int8 with zero point 0, what TensorRT requires;
  ``target="cpu"`` uint8 with a zero point (ONNX Runtime's U8S8): on an AVX2 CPU without VNNI only
  U8S8 fuses every Conv+Relu into one QLinearConv; with symmetric int8 activations ONNX Runtime keeps
  the Relus in float and leaves depthwise convolutions unfused, and the model is slower than fp32.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from vision.utils.misc import Failure, UserError, atomic_write
from vision.utils.paths import IMAGE_EXTENSIONS, is_image_file

log = logging.getLogger(__name__)



def calibration_images(folder: str | os.PathLike, count: int, seed: int = 0) -> list[Path]:
    """``count`` images found under ``folder`` (recursive: a dataset root or an image folder), spread evenly."""
    root = Path(folder)
    if root.is_file():
        raise UserError(f"--calibration-data {root} is a file; give a folder of images or a dataset root")
    if not root.is_dir():
        raise UserError(f"--calibration-data folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {root}")
    if len(files) <= count:
        return files
    idx = np.random.default_rng(seed).choice(len(files), size=count, replace=False)
    return [files[i] for i in sorted(idx)]


def _batches(paths: Sequence[Path], transform: Callable[[np.ndarray], torch.Tensor]) -> Iterator[np.ndarray]:
    from vision.datasets.image_io import load_image_rgb

    skipped = 0
    for p in paths:
        try:
            image = load_image_rgb(p)
        except UserError as e:  # a damaged image is skipped and counted
            log.warning("%s", e)
            skipped += 1
            continue
        yield transform(image).unsqueeze(0).numpy()
    if skipped:
        log.warning("%d of %d calibration images could not be read", skipped, len(paths))


TARGETS = ("tensorrt", "cpu")  # the first is the default
DEFAULT_CALIBRATION_IMAGES = 100
# How activation ranges are read from the calibration images (ONNX Runtime's calibrators):
# minmax = the extremes seen; percentile = the 99.999th percentile of |x| (clips rare outliers);
# entropy = the range minimizing the KL divergence of the int8 histogram (TensorRT's own
# calibrator's rule). Accuracy per method: bench/README.md "Deployment".
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")  # the first is the default
QUANTIZED_OPS = ("Conv", "Relu", "Clip")  # the net; head reshaping, Softmax and box decoding stay float


def activation_nodes_to_exclude(model: Any) -> list[str]:
    """Relu/Clip nodes that are not a Conv's activation (the box decoding's clamps): left in float."""
    producer = {out: node for node in model.graph.node for out in node.output}
    return [n.name for n in model.graph.node if n.op_type in ("Relu", "Clip")
            and (n.input[0] not in producer or producer[n.input[0]].op_type != "Conv")]


def output_convolutions(model: Any) -> list[str]:
    """Conv nodes from which no other Conv can be reached: the heads' last layers (class logits, box
    offsets), whose outputs int8 cannot hold (module docstring). A backbone's linear bottleneck (a Conv
    into a residual Add) always leads on to more convolutions, so it stays quantized."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    leads_to_conv: dict[int, bool] = {}
    for node in reversed(model.graph.node):  # ONNX lists nodes in topological order
        leads_to_conv[id(node)] = any(c.op_type == "Conv" or leads_to_conv.get(id(c), False)
                                      for out in node.output for c in consumers.get(out, []))
    return [n.name for n in model.graph.node if n.op_type == "Conv" and not leads_to_conv[id(n)]]


def entropy_ranges(model: Path, cache: Path, reader: Any, augmented: Path, num_bins: int = 2048) -> None:
    """Activation ranges by TensorRT's entropy rule, written as ONNX Runtime's calibration cache.

    Why not ``quantize_static(calibrate_method=Entropy)`` alone: it builds the calibrator with 128
    histogram bins and 128 quantized bins, so the only candidate threshold is the full range and the
    result is exactly MinMax's (measured: identical scales). TensorRT's calibrator uses 2048 bins and
    searches thresholds down to 128 of them; this does the same. It is slow (ONNX Runtime's search is
    Python: minutes for a MobileNet SSD); ``num_bins`` smaller only for tests."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(model, list(QUANTIZED_OPS), augmented_model_path=str(augmented),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": num_bins, "num_quantized_bins": 128})
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


def quantize_int8(model_bytes: bytes, output: Path, images: Sequence[Path],
                  transform: Callable[[np.ndarray], torch.Tensor], input_name: str = "input_0",
                  target: str = "tensorrt", method: str = "minmax", entropy_bins: int = 2048) -> bytes:
    """Write the QDQ int8 model of ``model_bytes`` to ``output`` (atomically) and return its bytes.

    ``target``: "tensorrt" (int8 symmetric activations, also runs on ONNX Runtime) or "cpu" (uint8
    activations: ONNX Runtime's fast path on x86 CPUs; TensorRT rejects it). ``method``: one of
    ``CALIBRATION_METHODS``; ``entropy_bins``: the entropy search's histogram (TensorRT's 2048; fewer only
    for tests).
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if target not in TARGETS:
        raise UserError(f"INT8 target must be one of {', '.join(TARGETS)}, not {target!r}")
    if method not in CALIBRATION_METHODS:
        raise UserError(f"INT8 calibration method must be one of {', '.join(CALIBRATION_METHODS)}, not {method!r}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = _batches(images, transform)
            self.count = 0

        def get_next(self):
            x = next(self.it, None)
            if x is None:
                return None
            self.count += 1
            return {input_name: x}

    reader = Reader()
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        extra: dict[str, Any] = {}
        if target == "tensorrt":  # TensorRT takes only int8 with zero point 0
            activations = dict(activation_type=QuantType.QInt8)
            extra["ActivationSymmetric"] = True
        else:
            activations = dict(activation_type=QuantType.QUInt8)
        calibrate_method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                            "entropy": CalibrationMethod.Entropy}[method]
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            graph = onnx.load(str(pre))
            exclude = activation_nodes_to_exclude(graph) + output_convolutions(graph)
            chatter = io.StringIO()  # the histogram calibrators print progress lines: to the debug log
            with contextlib.redirect_stdout(chatter):
                cache = None
                if method == "entropy":
                    cache = Path(tmp) / "ranges.json"
                    entropy_ranges(pre, cache, reader, Path(tmp) / "augmented.onnx", entropy_bins)
                quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTIZED_OPS),
                                nodes_to_exclude=exclude, calibrate_method=calibrate_method,
                                extra_options=extra, calibration_cache_path=cache, **activations)
            for line in chatter.getvalue().splitlines():
                log.debug("onnxruntime: %s", line)
        except UserError:
            raise
        except Exception as e:  # ONNX Runtime's own exception types
            raise Failure(f"INT8 quantization failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if reader.count == 0:
            raise UserError("no calibration image could be read")
        data = dst.read_bytes()
    meta = {p.key: p.value for p in onnx.load_from_string(model_bytes).metadata_props}
    if meta:  # keep the self-description (quantize_static does not always carry it over)
        from vision.ssd.onnx_metadata import add_metadata

        meta["precision"] = '"int8"'
        meta["int8_target"] = f'"{target}"'
        meta["int8_calibration"] = f'"{method}"'
        data = add_metadata(data, meta)
    with atomic_write(output, "wb") as f:
        f.write(data)
    log.info("calibrated on %d image%s (%s activations, %s ranges)", reader.count, "" if reader.count == 1 else "s",
             "uint8" if target == "cpu" else "int8", method)
    return data
