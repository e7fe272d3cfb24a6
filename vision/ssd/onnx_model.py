"""An exported .onnx as the scripts use it: predictor, net name, class names, resolution.

Why one place: run_ssd_example.py and eval_ssd.py both take a .onnx; its self-description
(``vision.ssd.onnx_metadata``) must win over flags the same way in both, a given labels file or
--net must be checked against it, and an old file without metadata must be checked against the
registry (class count, priors count) before any image is read. ``as_deployed`` turns any predictor
into detectNet's emulation (``vision.ssd.detectnet``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vision.ssd.onnx_metadata import OnnxModelInfo, check_labels
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

ONNX_SUFFIX = ".onnx"


def is_onnx_path(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).suffix.lower() == ONNX_SUFFIX


@dataclass
class OnnxModel:
    """What the scripts need of an ONNX file; ``net`` is the OnnxPredictor (a Predictor)."""
    net: Any
    net_name: str
    class_names: list[str]
    resolution: int
    path: Path
    meta: OnnxModelInfo | None
    train_args: dict = field(default_factory=dict)

    @property
    def info(self) -> "OnnxModel":  # scripts read ``model.info.train_args`` of a LoadedModel too
        return self


def load_onnx_model(path: str | os.PathLike, *, net_name: str | None = None, label_file: str | os.PathLike | None = None,
                    resolution: int | None = None, width_mult: float | None = None, nms_method: str | None = "hard",
                    iou_threshold: float | None = None, filter_threshold: float = 0.01) -> OnnxModel:
    """Open ``path`` with ONNX Runtime; flags only fill in what the file does not say, and must agree with it."""
    from vision.ssd.onnx_predictor import OnnxPredictor, open_session
    from vision.ssd.onnx_metadata import read_metadata
    from vision.ssd.registry import canonical_name, get_config
    from vision.utils.labels import read_labels

    path = Path(path)
    meta = read_metadata(open_session(path))
    given = canonical_name(net_name) if net_name else None
    if meta is not None:
        if given and given != canonical_name(meta.net_name):
            raise UserError(f"{path} holds a {meta.net_name} model, but the net given is {net_name}")
        name, class_names = meta.net_name, list(meta.class_names)
        if label_file:
            check_labels(meta, read_labels(label_file), label_file, path)
        if resolution is not None and resolution != meta.resolution:
            raise UserError(f"{path} was exported at {meta.resolution} px, not {resolution}; the size is fixed in "
                            f"the file (re-export with --resolution {resolution})")
        iou = iou_threshold if iou_threshold is not None else float(meta.postprocess.get("nms_iou_threshold", 0.45))
        predictor = OnnxPredictor(path, meta.resolution, nms_method=nms_method, iou_threshold=iou,
                                  filter_threshold=filter_threshold)
    else:
        if not given:
            raise UserError(f"{path} does not describe itself (exported by an older onnx_export.py): pass the net "
                            f"name, or re-export it")
        if not label_file:
            raise UserError(f"{path} does not describe itself (exported by an older onnx_export.py): pass its "
                            f"labels file, or re-export it")
        name, class_names = given, read_labels(label_file)
        norm = get_config(name)  # mean/std do not depend on the resolution
        predictor = OnnxPredictor(path, resolution, mean=norm.image_mean, std=norm.image_std, nms_method=nms_method,
                                  iou_threshold=iou_threshold if iou_threshold is not None else norm.iou_threshold,
                                  filter_threshold=filter_threshold)
        outputs = predictor.session.get_outputs()
        num_classes, num_priors = outputs[0].shape[-1], outputs[0].shape[1]
        if isinstance(num_classes, int) and num_classes != len(class_names):
            raise UserError(f"{path} outputs {num_classes} classes but {label_file} has {len(class_names)} "
                            f"(BACKGROUND included)")
        try:
            cfg = get_config(name, predictor.size, width_mult=width_mult or 1.0)
        except UserError:  # e.g. vgg16-ssd cannot take 64 px: say the net does not fit, not PyTorch's kernel sizes
            raise UserError(f"{path} takes {predictor.size} px input, which {name} cannot: is it a {name} model? "
                            f"(the file does not say; give the net it was exported from)") from None
        if isinstance(num_priors, int) and cfg.num_priors != num_priors:
            raise UserError(f"{path} has {num_priors} priors, but {name} at {predictor.size} px has "
                            f"{cfg.num_priors}: is it a {name} model?")
    log.info("running %s with ONNX Runtime (%s, %d classes, %d px%s)", path, name, len(class_names) - 1,
             predictor.size, ", " + meta.input_normalization + " input" if meta else "")
    return OnnxModel(net=predictor, net_name=name, class_names=class_names, resolution=predictor.size, path=path,
                     meta=meta)


def as_deployed(predictor: Any, class_names: Sequence[str], threshold: float, *, onnx: bool,
                meta: OnnxModelInfo | None = None, cluster_threshold: float | None = None) -> Any:
    """``predictor`` run as jetson-inference's detectNet: nearest-neighbour stretch, its threshold and clustering.

    An ONNX model is fed exactly detectNet's input, whatever the graph expects (that is what the Jetson
    does; a file exported with ``--input-normalization net`` is warned about). A PyTorch net is fed its own
    normalization of the same nearest-neighbour pixels: what its export (with the input adapter) computes.
    """
    from vision.ssd.detectnet import DEFAULT_CLUSTER_THRESHOLD, DetectNetPredictor

    if cluster_threshold is None:
        cluster_threshold = float((meta.postprocess if meta else {}).get("detectnet_cluster_threshold",
                                                                           DEFAULT_CLUSTER_THRESHOLD))
    if onnx:
        if meta is None or meta.input_normalization != "detectnet":
            log.warning("%s takes %s input, but detectNet feeds (pixel/255 - 0.5)/0.5: emulating what the Jetson "
                        "would show (re-export with --input-normalization detectnet)",
                        getattr(predictor, "onnx_path", "the model"),
                        "the net's own" if meta is not None else "an unrecorded")
        return DetectNetPredictor(predictor, threshold, cluster_threshold, class_names,
                                  nms_iou_threshold=predictor.iou_threshold)
    t = predictor.transform
    return DetectNetPredictor(predictor, threshold, cluster_threshold, class_names, input_mean=t.mean,
                              input_std=t.std, nms_iou_threshold=predictor.iou_threshold)
