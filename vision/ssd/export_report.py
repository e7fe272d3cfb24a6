"""The exporter's closing report: on a few images, PyTorch vs the written ONNX file (both with NMS),
and NMS vs detectNet's post-processing, so a user sees before the Jetson what it will show.

Why after writing: the ONNX side is read back from the file (its metadata, its graph), exactly as
eval_ssd.py and run_ssd_example.py will use it.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np


def _box_diff(a: np.ndarray, b: np.ndarray) -> str:
    if len(a) != len(b) or len(a) == 0:
        return ""
    order_a = np.lexsort(a.T[::-1])
    order_b = np.lexsort(b.T[::-1])
    return f", max box diff {np.abs(a[order_a] - b[order_b]).max():.2f} px"


def export_report(onnx_path: str | os.PathLike, net: Any, images: Sequence[tuple[str, np.ndarray]],
                  class_names: Sequence[str], nms_threshold: float = 0.4, top_k: int = 10,
                  detectnet_threshold: float = 0.5) -> list[str]:
    """One line per image: boxes from PyTorch (NMS), the ONNX file (NMS) and the ONNX file as detectNet runs it."""
    from vision.ssd.input_adapter import ExportNet
    from vision.ssd.onnx_model import as_deployed, load_onnx_model
    from vision.ssd.registry import create_predictor

    model = load_onnx_model(onnx_path)
    # the net as exported (boxes clamped to 0..1, fed its own normalization): a box that only the
    # graph's Clip moved is not a PyTorch/ONNX difference
    torch_pred = create_predictor(ExportNet(net), filter_threshold=nms_threshold)
    onnx_pred = model.net
    deployed = as_deployed(onnx_pred, model.class_names, detectnet_threshold, onnx=True, meta=model.meta)
    lines = [f"on {len(images)} image(s): boxes with NMS (threshold {nms_threshold:g}, top-k {top_k}) from PyTorch "
             f"and from the ONNX file, and as detectNet shows them (threshold {detectnet_threshold:g}, clustering, "
             f"no NMS, no top-k)"]
    for name, image in images:
        pt = torch_pred.predict(image, top_k=top_k, prob_threshold=nms_threshold)
        ox = onnx_pred.predict(image, top_k=top_k, prob_threshold=nms_threshold)
        dn = deployed.predict(image)
        lines.append(f"  {name}: PyTorch {len(pt[2])}, ONNX {len(ox[2])}{_box_diff(pt[0].numpy(), ox[0].numpy())}, "
                     f"detectNet {len(dn[2])} (best {float(dn[2].max()) if len(dn[2]) else 0:.2f})")
    return lines
