"""``evaluate(net, dataset)``: detection metrics of a net on a dataset, the one code path used by
eval_ssd.py and by train_ssd.py --validation-mean-ap.

COCO datasets (anything with ``ann_file``, ``label_to_category_id``, ``coco_image_id``) are
scored by pycocotools (mAP = AP@[.5:.95]); VOC and Open Images by the VOC protocol
(mAP = mean per-class AP at the matching IoU, 0.5).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
import torch

from vision.evaluation.coco import STAT_NAMES, evaluate_coco_dataset
from vision.evaluation.detection import ImageDetections, detect_dataset
from vision.evaluation.voc import collect_ground_truth, voc_average_precisions
from vision.ssd.predictor import create_predictor

log = logging.getLogger(__name__)


def is_coco_dataset(dataset: Any) -> bool:
    return all(hasattr(dataset, a) for a in ("ann_file", "label_to_category_id", "coco_image_id"))


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


def compute_metrics(dataset: Any, detections: Sequence[ImageDetections], *, use_2007_metric: bool = False,
                    match_iou_threshold: float = 0.5) -> dict:
    """Metrics of ``detections`` (indexed like the dataset) against the dataset's ground truth.

    Returns ``{"mAP", "AP50", "per_class": {name: AP (NaN: no ground truth)}}`` and, for COCO,
    ``"stats"`` (the 12 COCOeval numbers), ``"summary"`` (COCOeval's text) and ``"results"``
    (COCO results list with the original category ids).
    """
    class_names = list(dataset.class_names)
    if is_coco_dataset(dataset):
        m = evaluate_coco_dataset(dataset, detections)
        out = {"mAP": m["stats"][0], "AP50": m["stats"][1], "per_class": m["per_class"],
               "stats": m["stats"], "summary": m["summary"], "results": m["results"]}
        out.update({f"coco/{n}": v for n, v in zip(STAT_NAMES, m["stats"])})
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
    return {"mAP": mean_ap, "AP50": ap50, "per_class": per_class}


def evaluate(net: Any, dataset: Any, *, batch_size: int = 8, num_workers: int = 0,
             device: torch.device | str = "cpu", prob_threshold: float = 0.01, top_k: int = 100,
             nms_method: str = "hard", iou_threshold: float = 0.45, use_2007_metric: bool = False,
             progress: bool = False, match_iou_threshold: float = 0.5) -> dict:
    """Detect on every image of ``dataset`` (batched) and score the detections.

    Args:
        net: an SSD in test or training mode (or a Predictor); it is put in eval mode for the
            run and its previous train/eval mode is restored afterwards.
        dataset: COCODataset / VOCDataset / OpenImagesDataset; only ``get_image``, the
            annotations and ``class_names`` are used (its transform is left alone).
        iou_threshold: NMS IoU; ``match_iou_threshold`` is the VOC detection/ground-truth IoU.
    Returns:
        compute_metrics' dict plus ``"images_per_s"``, ``"num_images"`` and ``"num_detections"``.
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
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
                              match_iou_threshold=match_iou_threshold)
    metrics["images_per_s"] = images_per_s
    metrics["num_images"] = len(detections)
    metrics["num_detections"] = int(sum(len(d) for d in detections))
    log.debug("evaluated %d images at %.1f images/s: mAP %.4f", len(detections), images_per_s, metrics["mAP"])
    return metrics


def _nanmean(values: Any) -> float:
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")
