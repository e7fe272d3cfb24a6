"""The exporter's closing report: on a few images, PyTorch vs the written ONNX file (both with NMS),
and NMS vs detectNet's post-processing, so a user sees before the Jetson what it will show.

Why after writing: the ONNX side is read back from the file (its metadata, its graph), exactly as
eval_ssd.py and run_ssd_example.py will use it.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np


def _max_box_diff(a: np.ndarray, b: np.ndarray) -> float | None:
    """Largest coordinate difference between two box sets matched by sorting (None: counts differ or no boxes)."""
    if len(a) != len(b) or len(a) == 0:
        return None
    order_a = np.lexsort(a.T[::-1])
    order_b = np.lexsort(b.T[::-1])
    return float(np.abs(a[order_a] - b[order_b]).max())


def export_report(onnx_path: str | os.PathLike, net: Any, images: Sequence[tuple[str, np.ndarray]],
                  class_names: Sequence[str], nms_threshold: float = 0.4, top_k: int = 10,
                  detectnet_threshold: float = 0.5, source: str | None = None,
                  skipped: Sequence[str] = ()) -> list[str]:
    """A header (where the images come from, unreadable ones skipped), one line per image with the boxes
    from PyTorch (NMS), the ONNX file (NMS) and the ONNX file as detectNet runs it, and a total line."""
    from vision.datasets.base import format_ids
    from vision.ssd.input_adapter import ExportNet
    from vision.ssd.onnx_model import as_deployed, load_onnx_model
    from vision.ssd.registry import create_predictor

    model = load_onnx_model(onnx_path)
    # the net as exported (boxes clamped to 0..1, fed its own normalization): a box that only the
    # graph's Clip moved is not a PyTorch/ONNX difference
    torch_pred = create_predictor(ExportNet(net), filter_threshold=nms_threshold)
    onnx_pred = model.net
    deployed = as_deployed(onnx_pred, model.class_names, detectnet_threshold, onnx=True, meta=model.meta)
    header = f"closing report on {len(images)} image(s)" + (f": {source}" if source else "")
    if skipped:
        header += f"; {len(skipped)} unreadable image(s) skipped: {format_ids(skipped, 3)}"
    lines = [header, f"boxes with NMS (threshold {nms_threshold:g}, top-k {top_k}) from PyTorch and from the ONNX "
                     f"file, and as detectNet shows them (threshold {detectnet_threshold:g}, clustering, no NMS, "
                     f"no top-k)"]
    totals = {"pt": 0, "ox": 0, "dn": 0, "differ": 0}
    worst: float | None = None
    for name, image in images:
        pt = torch_pred.predict(image, top_k=top_k, prob_threshold=nms_threshold)
        ox = onnx_pred.predict(image, top_k=top_k, prob_threshold=nms_threshold)
        dn = deployed.predict(image)
        diff = _max_box_diff(pt[0].numpy(), ox[0].numpy())
        if diff is not None:
            worst = diff if worst is None else max(worst, diff)
        totals["pt"] += len(pt[2])
        totals["ox"] += len(ox[2])
        totals["dn"] += len(dn[2])
        totals["differ"] += len(pt[2]) != len(ox[2])
        lines.append(f"  {name}: PyTorch {len(pt[2])}, ONNX {len(ox[2])}"
                     f"{f', max box diff {diff:.2f} px' if diff is not None else ''}, "
                     f"detectNet {len(dn[2])} (best {float(dn[2].max()) if len(dn[2]) else 0:.2f})")
    if images:
        lines.append(f"  total: PyTorch {totals['pt']}, ONNX {totals['ox']} boxes"
                     f"{f', max box diff {worst:.2f} px' if worst is not None else ''}"
                     f"{', counts differ on %d image(s)' % totals['differ'] if totals['differ'] else ''}, "
                     f"detectNet {totals['dn']}")
    return lines
