"""``evaluate(net, dataset)``: detection metrics of a net on a dataset, the one code path used by
eval_ssd.py and by train_ssd.py --validation-mean-ap.

COCO datasets (anything with ``ann_file``, ``label_to_category_id``, ``coco_image_id``) are
scored by COCOeval (faster-coco-eval, or pycocotools: ``coco_backend``; mAP = AP@[.5:.95]); VOC and Open Images by the VOC protocol
(mAP = mean per-class AP at the matching IoU, 0.5).

The defaults are eval_ssd.py's (upstream's): the VOC2007 11-point AP and at most 200
detections per image (COCO: 100, its rule), so the mAP that training logs is the number
eval_ssd.py gives for the same checkpoint; ``metric_name`` says which one a number is.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
import torch

from vision.evaluation.coco import STAT_NAMES, evaluate_coco_dataset, scored_images_note
from vision.evaluation.detection import ImageDetections, detect_dataset
from vision.evaluation.voc import collect_ground_truth, voc_average_precisions
from vision.ssd.predictor import create_predictor

log = logging.getLogger(__name__)


NO_GROUND_TRUTH = "no ground truth"


def is_coco_dataset(dataset: Any) -> bool:
    return all(hasattr(dataset, a) for a in ("ann_file", "label_to_category_id", "coco_image_id"))


def default_top_k(dataset: Any) -> int:
    """Detections kept per image: 100 for COCO (its rule), 200 otherwise (upstream eval_ssd.py)."""
    return 100 if is_coco_dataset(dataset) else 200


def metric_name(dataset: Any, use_2007_metric: bool = True, match_iou_threshold: float = 0.5) -> str:
    """What ``mAP`` means for this dataset, for log lines and metrics files."""
    if is_coco_dataset(dataset):
        return "mAP (COCO AP@[.50:.95])"
    kind = "VOC07 11-point" if use_2007_metric else "VOC all-point"
    return f"mAP ({kind}, IoU > {match_iou_threshold:g})"


def describe_map(record: dict) -> str:
    """``", mAP (VOC07 11-point, IoU > 0.5) 0.0101, AP50 0.0101"`` for a log line, or the words
    "no ground truth" when there was nothing to score (never a bare -1 or nan)."""
    if "mAP" not in record:
        return ""
    name = record.get("mAP_metric", "mAP")
    value, ap50 = record.get("mAP"), record.get("AP50")
    if value is None or not math.isfinite(value):
        return f", {name}: n/a ({record.get('mAP_note') or NO_GROUND_TRUTH})"
    return f", {name} {value:.4f}" + (f", AP50 {ap50:.4f}" if ap50 is not None and math.isfinite(ap50) else "")


def make_predictor(net: Any, *, device: torch.device | str = "cpu", nms_method: str = "hard",
                   iou_threshold: float = 0.45, prob_threshold: float = 0.01, candidate_size: int = 200,
                   optimize: bool = True) -> Any:
    """``vision.ssd.predictor.create_predictor`` with evaluation's defaults (hard NMS, keep scores
    down to 0.01): the inference copy of the net by default, the caller's net left as it was.
    A Predictor (e.g. an ``OnnxPredictor``) passed as ``net`` is returned unchanged.
    """
    return create_predictor(net, optimize=optimize, device=device, nms_method=nms_method,
                            iou_threshold=iou_threshold, filter_threshold=prob_threshold,
                            candidate_size=candidate_size)


def metrics_record(metrics: dict) -> dict:
    """The mAP part of a training epoch's record (metrics.jsonl): ``mAP``, ``AP50`` and
    ``mAP_metric`` (which mAP); ``mAP``/``AP50`` are null with ``mAP_note`` "no ground truth"
    when nothing could be scored, never -1 or NaN."""
    def finite(v: Any) -> float | None:
        return float(v) if v is not None and math.isfinite(v) else None

    out: dict[str, Any] = {"mAP": finite(metrics["mAP"]), "AP50": finite(metrics["AP50"]),
                           "mAP_metric": metrics.get("metric", "mAP")}
    if out["mAP"] is None:
        out["mAP_note"] = metrics.get("note") or NO_GROUND_TRUTH
    return out


def compute_metrics(dataset: Any, detections: Sequence[ImageDetections], *, use_2007_metric: bool = True,
                    match_iou_threshold: float = 0.5, coco_backend: str = "auto") -> dict:
    """Metrics of ``detections`` (indexed like the dataset) against the dataset's ground truth.

    Returns ``{"mAP", "AP50", "metric", "per_class": {name: AP (NaN: no ground truth)}}`` and,
    for COCO, ``"stats"`` (the 12 COCOeval numbers, -1 where COCOeval had no ground truth),
    ``"summary"`` (COCOeval's text) and ``"results"`` (COCO results list with the original
    category ids). ``mAP``/``AP50`` are NaN, with ``"note": "no ground truth"``, when nothing
    could be scored (COCOeval's -1). ``coco_backend``: which COCOeval scores COCO datasets
    ("auto" = faster-coco-eval if installed, else pycocotools; same numbers); the result names it.
    """
    class_names = list(dataset.class_names)
    name = metric_name(dataset, use_2007_metric, match_iou_threshold)
    if is_coco_dataset(dataset):
        m = evaluate_coco_dataset(dataset, detections, coco_backend)
        mean_ap, ap50 = (float("nan") if v < 0 else v for v in m["stats"][:2])
        out = {"mAP": mean_ap, "AP50": ap50, "metric": name, "per_class": m["per_class"],
               "stats": m["stats"], "summary": m["summary"], "results": m["results"],
               "coco_backend": m["backend"], "images": m["images"], "images_note": m["images_note"]}
        out.update({f"coco/{n}": v for n, v in zip(STAT_NAMES, m["stats"])})
        if not math.isfinite(mean_ap):
            out["note"] = NO_GROUND_TRUTH
        return out
    ground_truth, _ = collect_ground_truth(dataset)
    aps = voc_average_precisions(detections, ground_truth, len(class_names), match_iou_threshold, use_2007_metric)
    per_class = {class_names[c]: ap for c, ap in aps.items()}
    mean_ap = _nanmean(aps.values())
    if math.isclose(match_iou_threshold, 0.5):
        ap50 = mean_ap
    else:
        ap50 = _nanmean(voc_average_precisions(detections, ground_truth, len(class_names), 0.5,
                                               use_2007_metric).values())
    images = {"listed": len(dataset), "scored": len(dataset), "missing_on_disk": 0}
    out = {"mAP": mean_ap, "AP50": ap50, "metric": name, "per_class": per_class, "images": images,
           "images_note": scored_images_note(images)}
    if not math.isfinite(mean_ap):
        out["note"] = NO_GROUND_TRUTH
    return out


def evaluate(net: Any, dataset: Any, *, batch_size: int = 8, num_workers: int = 0,
             device: torch.device | str = "cpu", prob_threshold: float = 0.01, top_k: int | None = None,
             nms_method: str = "hard", iou_threshold: float = 0.45, use_2007_metric: bool = True,
             progress: bool = False, match_iou_threshold: float = 0.5,
             coco_backend: str = "auto") -> dict:
    """Detect on every image of ``dataset`` (batched) and score the detections.

    Args:
        net: an SSD in test or training mode (or a Predictor); it is put in eval mode for the
            run and its previous train/eval mode is restored afterwards.
        dataset: COCODataset / VOCDataset / OpenImagesDataset; only ``get_image``, the
            annotations and ``class_names`` are used (its transform is left alone).
        iou_threshold: NMS IoU; ``match_iou_threshold`` is the VOC detection/ground-truth IoU.
        top_k: detections kept per image (default ``default_top_k``); with ``use_2007_metric``
            the defaults are eval_ssd.py's, so both report the same number.
        coco_backend: COCOeval implementation for COCO datasets (see ``compute_metrics``).
    Returns:
        compute_metrics' dict plus ``"images_per_s"``, ``"num_images"``, ``"num_detections"`` and
        ``"skipped_images"`` (unreadable images, scored as images without detections).
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    if top_k is None:
        top_k = default_top_k(dataset)
    was_training = bool(getattr(net, "training", False))
    predictor = make_predictor(net, device=device, nms_method=nms_method, iou_threshold=iou_threshold,
                               prob_threshold=prob_threshold)
    try:
        detections, images_per_s = detect_dataset(predictor, dataset, batch_size=batch_size,
                                                  num_workers=num_workers, top_k=top_k,
                                                  prob_threshold=prob_threshold, progress=progress)
    finally:
        if was_training and isinstance(net, torch.nn.Module):
            net.train()
    metrics = compute_metrics(dataset, detections, use_2007_metric=use_2007_metric,
                              match_iou_threshold=match_iou_threshold, coco_backend=coco_backend)
    metrics["images_per_s"] = images_per_s
    metrics["num_images"] = len(detections)
    metrics["num_detections"] = int(sum(len(d) for d in detections))
    metrics["skipped_images"] = int(sum(d.unreadable for d in detections))
    log.debug("evaluated %d images at %.1f images/s: mAP %.4f", len(detections), images_per_s, metrics["mAP"])
    return metrics


def _nanmean(values: Any) -> float:
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")
