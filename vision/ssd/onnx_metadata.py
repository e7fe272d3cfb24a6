"""What an exported ONNX file says about itself (``metadata_props``, JSON values).

Why: the .onnx travels alone to a Jetson or to another PC; without its net, resolution, class names
and input normalization a reader must be told them again (and is told wrongly: wrong labels file,
wrong mean). onnx_export.py writes these keys; OnnxPredictor, run_ssd_example.py and eval_ssd.py
read them, so a .onnx needs no --net/--labels, and a given labels file is checked against them.

Keys (each value JSON): ``pytorch_ssd`` (format version), ``net``, ``resolution``, ``class_names``,
``num_priors``, ``width_mult``, ``input`` ({normalization: "detectnet" | "net", mean, std in pixel
units 0..255, RGB planar, stretch resize}), ``postprocess`` (the export's defaults: NMS settings and
detectNet's threshold / clustering), ``batch``, ``opset``, and ``priors`` (only for a net trained with
custom priors: the spec of ``vision.ssd.custom_priors``, so the file says which boxes its outputs are).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vision.utils.misc import UserError

FORMAT_VERSION = 1
VERSION_KEY = "pytorch_ssd"


@dataclass
class OnnxModelInfo:
    """The self-description of an exported model (None: not written by onnx_export.py)."""
    net_name: str
    resolution: int
    class_names: list[str]
    input_normalization: str  # "detectnet" or "net"
    input_mean: list[float]  # pixel units, RGB
    input_std: list[float]
    num_priors: int
    width_mult: float = 1.0
    postprocess: dict = field(default_factory=dict)
    batch: int | None = 1
    opset: int | None = None
    priors: dict | None = None  # custom priors spec; None: the net's default priors


def build_metadata(info: OnnxModelInfo) -> dict[str, str]:
    """``metadata_props`` entries (key -> JSON text) for ``info``."""
    values: dict[str, Any] = {
        VERSION_KEY: FORMAT_VERSION, "net": info.net_name, "resolution": int(info.resolution),
        "class_names": list(info.class_names), "num_priors": int(info.num_priors),
        "width_mult": float(info.width_mult),
        "input": {"normalization": info.input_normalization, "mean": [float(v) for v in info.input_mean],
                  "std": [float(v) for v in info.input_std], "pixel_range": [0, 255], "layout": "NCHW planar RGB",
                  "resize": "stretch to resolution x resolution"},
        "postprocess": dict(info.postprocess), "batch": info.batch, "opset": info.opset,
    }
    if info.priors is not None:
        values["priors"] = info.priors
    return {k: json.dumps(v) for k, v in values.items()}


def add_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """The serialized model with ``metadata`` set in its ``metadata_props`` (existing keys replaced)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def parse_metadata(props: dict[str, str], source: str = "model") -> OnnxModelInfo | None:
    """OnnxModelInfo from a key -> JSON text map; None when the file was not written by onnx_export.py."""
    if VERSION_KEY not in props:
        return None
    try:
        v = {k: json.loads(props[k]) for k in props if k in (VERSION_KEY, "net", "resolution", "class_names",
                                                             "num_priors", "width_mult", "input", "postprocess",
                                                             "batch", "opset", "priors")}
        inp = v["input"]
        return OnnxModelInfo(net_name=str(v["net"]), resolution=int(v["resolution"]),
                             class_names=[str(n) for n in v["class_names"]],
                             input_normalization=str(inp["normalization"]),
                             input_mean=[float(x) for x in inp["mean"]], input_std=[float(x) for x in inp["std"]],
                             num_priors=int(v["num_priors"]), width_mult=float(v.get("width_mult", 1.0)),
                             postprocess=dict(v.get("postprocess") or {}), batch=v.get("batch"), opset=v.get("opset"),
                             priors=v.get("priors") if isinstance(v.get("priors"), dict) else None)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{source}: damaged pytorch-ssd metadata ({type(e).__name__}: {e}); re-export it") from None


def open_session(path: str | os.PathLike, providers: Sequence[str] | None = None):
    """An ONNX Runtime session for ``path``; a missing/broken file is a one-line UserError."""
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise UserError(f"ONNX model not found: {p}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
    try:
        return ort.InferenceSession(str(p), sess_options=opts,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # ORT raises its own exception types for invalid/truncated graphs
        raise UserError(f"cannot load ONNX model {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def read_metadata(model: Any) -> OnnxModelInfo | None:
    """The self-description of an ONNX Runtime session or a .onnx path (None if it has none)."""
    if isinstance(model, (str, os.PathLike)):
        source, session = str(model), open_session(model)
    else:
        source, session = "ONNX model", model
    return parse_metadata(dict(session.get_modelmeta().custom_metadata_map), source)


def check_labels(info: OnnxModelInfo, class_names: Sequence[str], labels_path: str | os.PathLike,
                 model_path: str | os.PathLike) -> None:
    """A labels file given with a self-describing model must name the same classes in the same order."""
    if list(class_names) == list(info.class_names):
        return
    if len(class_names) != len(info.class_names):
        raise UserError(f"{labels_path} has {len(class_names)} classes but {model_path} was exported with "
                        f"{len(info.class_names)} (BACKGROUND included); leave the labels file out to use the model's")
    i = next(i for i, (a, b) in enumerate(zip(class_names, info.class_names)) if a != b)
    raise UserError(f"{labels_path} line {i + 1} is {class_names[i]!r} but {Path(model_path).name} says "
                    f"{info.class_names[i]!r}; leave the labels file out to use the model's class names")
