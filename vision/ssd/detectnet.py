"""jetson-inference's detectNet, emulated on the PC: what a Jetson shows for an SSD ONNX model.

Why: the PC's predictor (bilinear resize, NMS, top-k) gives other boxes than the device. This module
reproduces detectNet (c/detectNet.cpp, 2022-07 and later) step by step, in float32 like the C++/CUDA:

- preprocessing (``cudaTensorNormMeanRGB``): nearest-neighbour stretch to the net size, the source
  pixel of output pixel ``x`` being ``int(float(x) * float(src_w) / float(dst_w))``; planar RGB
  float, ``(p * (1/255) - 0.5) / 0.5``;
- ``postProcessSSD_ONNX``: per prior (in prior order) the best class >= 1 whose score is
  >= threshold (first class wins a tie), box = coords * image size; classes named ``void`` skipped;
- ``clusterDetections``: the new detection is compared with the detections kept so far, in order; the
  first one of the SAME class with intersection / max(area) > the clustering threshold (0.75) absorbs
  it: its box becomes the union and its confidence the max. Otherwise it is kept as a new detection;
- ``sortDetections``: bubble sort by area, largest first (stable);
- clamp: Left/Top < 0 -> 0, Right >= width -> width - 1, Bottom >= height -> height - 1.
No NMS, no top-k.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # detectNet's DETECTNET_DEFAULT_CONFIDENCE_THRESHOLD
DEFAULT_CLUSTER_THRESHOLD = 0.75  # DETECTNET_DEFAULT_CLUSTERING_THRESHOLD
# detectNet's input in pixel terms: (p/255 - 0.5)/0.5 == (p - 127.5)/127.5
DETECTNET_MEAN = (127.5, 127.5, 127.5)
DETECTNET_STD = (127.5, 127.5, 127.5)

Detections = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


# ------------------------------------------------------------------ preprocessing
def nearest_indices(src_size: int, dst_size: int) -> np.ndarray:
    """Source index of each output index, as the CUDA kernel computes it (float32 multiply, truncate)."""
    scale = np.float32(src_size) / np.float32(dst_size)
    idx = (np.arange(dst_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, src_size - 1)


def detectnet_resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """RGB uint8 ``[H,W,3]`` -> ``[S,S,3]`` (or ``[h,w,3]`` for a (w, h) size) by detectNet's nearest rule."""
    out_w, out_h = (size, size) if isinstance(size, (int, np.integer)) else size
    h, w = image.shape[:2]
    return image[nearest_indices(h, out_h)[:, None], nearest_indices(w, out_w)[None, :]]


def detectnet_normalize(resized: np.ndarray) -> np.ndarray:
    """uint8 HWC -> float32 CHW ``((p * (1/255) + 0) - 0.5) / 0.5``, with detectNet's float32 steps."""
    multiplier = np.float32(1.0) / np.float32(255.0)
    x = resized.astype(np.float32) * multiplier + np.float32(0.0)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class DetectNetTransform:
    """Image -> net input as on the Jetson: nearest-neighbour stretch, then detectNet's normalization.

    ``mean``/``std`` (pixel units) replace detectNet's normalization: used to feed a PyTorch net its
    own normalization (the exported graph's input adapter maps detectNet's input onto it). None: the
    exact detectNet arithmetic.
    """

    def __init__(self, size: int, mean: Any = None, std: Any = None) -> None:
        from vision.transforms.transforms import Normalize, mean_std_arrays

        self.size = int(size)
        self.normalize = None
        if mean is not None:
            self.mean, self.std = mean_std_arrays(mean, 1.0 if std is None else std)
            self.normalize = Normalize(self.mean, self.std)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from vision.transforms.transforms import check_image

        check_image(image)
        resized = detectnet_resize(image, self.size)
        if self.normalize is not None:
            return self.normalize(resized)
        return torch.from_numpy(detectnet_normalize(resized))


# ------------------------------------------------------------------ post-processing
def _intersects(left, top, right, bottom, areas, box, area, threshold) -> np.ndarray:
    """``Detection::Intersects`` of the new ``box`` against arrays of kept boxes (float32)."""
    x1, y1, x2, y2 = box
    overlaps = ~((x1 > right) | (x2 < left) | (y1 > bottom) | (y2 < top))
    inter = (np.minimum(right, x2) - np.maximum(left, x1)) * (np.minimum(bottom, y2) - np.maximum(top, y1))
    inter = np.where(overlaps, inter, np.float32(0.0)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = inter / np.maximum(areas, area)
    return ratio > np.float32(threshold)


def cluster_detections(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                       cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """detectNet's ``clusterDetections`` applied to detections in arrival (prior) order.

    Each detection merges into the first kept detection of the same class whose intersection /
    larger area exceeds ``cluster_threshold`` (union box, max score); else it is kept. Pixel boxes.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = boxes.shape[0]
    kept_boxes = np.zeros((n, 4), np.float32)
    kept_labels = np.zeros(n, np.int64)
    kept_scores = np.zeros(n, np.float32)
    areas = np.zeros(n, np.float32)
    k = 0
    for i in range(n):
        box, label, score = boxes[i], int(labels[i]), np.float32(scores[i])
        area = np.float32((box[2] - box[0]) * (box[3] - box[1]))
        if k:
            kb = kept_boxes[:k]
            hit = _intersects(kb[:, 0], kb[:, 1], kb[:, 2], kb[:, 3], areas[:k], box, area, cluster_threshold)
            hit &= kept_labels[:k] == label
            found = np.flatnonzero(hit)
            if found.size:
                m = int(found[0])
                kept_boxes[m, :2] = np.minimum(kept_boxes[m, :2], box[:2])
                kept_boxes[m, 2:] = np.maximum(kept_boxes[m, 2:], box[2:])
                kept_scores[m] = max(kept_scores[m], score)
                areas[m] = (kept_boxes[m, 2] - kept_boxes[m, 0]) * (kept_boxes[m, 3] - kept_boxes[m, 1])
                continue
        kept_boxes[k], kept_labels[k], kept_scores[k], areas[k] = box, label, score, area
        k += 1
    return kept_boxes[:k].copy(), kept_labels[:k].copy(), kept_scores[:k].copy()


def sort_and_clamp(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, width: int, height: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sortDetections`` (largest area first, stable as the bubble sort) then detectNet's clamp."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-areas, kind="stable")
    boxes, labels, scores = boxes[order].copy(), labels[order], scores[order]
    boxes[:, 0] = np.where(boxes[:, 0] < 0, 0, boxes[:, 0])
    boxes[:, 1] = np.where(boxes[:, 1] < 0, 0, boxes[:, 1])
    boxes[:, 2] = np.where(boxes[:, 2] >= width, np.float32(width - 1), boxes[:, 2])
    boxes[:, 3] = np.where(boxes[:, 3] >= height, np.float32(height - 1), boxes[:, 3])
    return boxes, labels, scores


def detectnet_postprocess(scores: np.ndarray, boxes: np.ndarray, width: int, height: int,
                          threshold: float = DEFAULT_THRESHOLD,
                          cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD,
                          class_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """detectNet's detections for one image from the graph's ``scores [N,C]`` and ``boxes [N,4]`` (0..1).

    Returns pixel boxes ``[K,4]`` float32, labels ``[K]`` int64, scores ``[K]`` float32, in detectNet's
    order (largest area first).
    """
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    fg = scores[:, 1:]
    passed = fg >= np.float32(threshold)  # NaN never passes, as `score < threshold` then `score > max`
    masked = np.where(passed, fg, -np.inf)
    keep = passed.any(axis=1)
    labels = masked.argmax(axis=1) + 1  # argmax takes the first maximum, as the strict `>` in C++
    idx = np.flatnonzero(keep)
    if class_names is not None:
        void = np.array([str(n) == "void" for n in class_names], bool)
        if void.any():
            idx = idx[~void[labels[idx]]]
    scale = np.array([width, height, width, height], np.float32)
    px = boxes[idx] * scale
    lab = labels[idx].astype(np.int64)
    sc = fg[idx, lab - 1].astype(np.float32)
    px, lab, sc = cluster_detections(px, lab, sc, cluster_threshold)
    return sort_and_clamp(px, lab, sc, width, height)


class DetectNetPredictor:
    """Runs a ``Predictor``'s net (PyTorch or ONNX Runtime) the way detectNet does on the Jetson.

    ``base`` supplies ``run`` and the input size. ``input_mean``/``input_std`` None feed detectNet's exact
    input (for an ONNX file: what the Jetson feeds, whatever the graph expects); values feed a PyTorch
    net its own normalization (the export's input adapter makes both the same). ``top_k`` and a
    per-call ``prob_threshold`` are ignored: detectNet has no top-k and one threshold.
    Counts images, boxes and the boxes NMS would keep on the same outputs (``stats``).
    """

    def __init__(self, base: Any, threshold: float = DEFAULT_THRESHOLD,
                 cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD, class_names: Sequence[str] | None = None,
                 input_mean: Any = None, input_std: Any = None, nms_iou_threshold: float = 0.45,
                 count_nms: bool = True) -> None:
        self.base = base
        self.size = base.size
        self.threshold = float(threshold)
        self.cluster_threshold = float(cluster_threshold)
        self.class_names = list(class_names) if class_names is not None else None
        self.transform = DetectNetTransform(base.size, input_mean, input_std)
        self.nms_iou_threshold = nms_iou_threshold
        self.count_nms = count_nms
        self.stats = {"images": 0, "boxes": 0, "nms_boxes": 0}

    def predict(self, image: np.ndarray, top_k: int = -1, prob_threshold: float | None = None) -> Detections:
        """Detections of one RGB uint8 image: boxes [K,4] pixels, labels [K], scores [K], detectNet's order."""
        height, width = image.shape[:2]
        return self.predict_batch(self.transform(image).unsqueeze(0), [(height, width)])[0]

    def predict_batch(self, images: torch.Tensor, sizes: Sequence[tuple[int, int]], top_k: int = -1,
                      prob_threshold: float | None = None) -> list[Detections]:
        scores, boxes = self.base.run(images)
        scores = scores.float().cpu().numpy()
        boxes = boxes.float().cpu().numpy()
        out = []
        for s, b, (h, w) in zip(scores, boxes, sizes):
            px, lab, sc = detectnet_postprocess(s, b, w, h, self.threshold, self.cluster_threshold, self.class_names)
            out.append((torch.from_numpy(px), torch.from_numpy(lab), torch.from_numpy(sc)))
            self.stats["images"] += 1
            self.stats["boxes"] += len(sc)
        if self.count_nms:
            from vision.utils import box_utils

            nms = box_utils.batched_postprocess(torch.from_numpy(scores), torch.from_numpy(boxes),
                                                prob_threshold=self.threshold, iou_threshold=self.nms_iou_threshold,
                                                top_k=-1, candidate_size=200, nms_method=None, sigma=0.5)
            self.stats["nms_boxes"] += sum(len(d[2]) for d in nms)
        return out

    def summary(self) -> str:
        """One line: boxes per image detectNet gives vs NMS on the same net outputs at the same threshold."""
        n = max(self.stats["images"], 1)
        text = (f"detectnet post-processing (threshold {self.threshold:g}, clustering {self.cluster_threshold:g}): "
                f"{self.stats['boxes'] / n:.2f} boxes/image")
        if self.count_nms:
            text += (f"; NMS (IoU {self.nms_iou_threshold:g}) on the same outputs at the same threshold: "
                     f"{self.stats['nms_boxes'] / n:.2f} boxes/image")
        return text
