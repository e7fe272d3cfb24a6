"""INT8 (QDQ) version of an exported model, calibrated on real images: for ONNX Runtime on CPUs and
for TensorRT 8+ (explicit quantization; TensorRT 7.1 cannot read QDQ graphs).

Why static QDQ with per-channel weights: it is what both runtimes execute as int8 without a
TensorRT calibration cache, and per-channel scales keep depthwise convolutions (MobileNets) usable.
Calibration images get exactly the graph's preprocessing (``transform``), so the activation ranges
are the ones the deployed model sees.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from vision.utils.misc import Failure, UserError, atomic_write

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def calibration_images(folder: str | os.PathLike, count: int, seed: int = 0) -> list[Path]:
    """``count`` images found under ``folder`` (recursive: a dataset root or an image folder), spread evenly."""
    root = Path(folder)
    if root.is_file():
        raise UserError(f"--calibration-data {root} is a file; give a folder of images or a dataset root")
    if not root.is_dir():
        raise UserError(f"--calibration-data folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
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


def quantize_int8(model_bytes: bytes, output: Path, images: Sequence[Path],
                  transform: Callable[[np.ndarray], torch.Tensor], input_name: str = "input_0") -> bytes:
    """Write the QDQ int8 model of ``model_bytes`` to ``output`` (atomically) and return its bytes."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

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
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        try:
            quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": True})  # TensorRT wants symmetric activations
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
        data = add_metadata(data, meta)
    with atomic_write(output, "wb") as f:
        f.write(data)
    log.info("calibrated on %d images", reader.count)
    return data
