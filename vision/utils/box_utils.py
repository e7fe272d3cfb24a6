"""Box arithmetic for SSD: prior generation, encoding, IoU, matching, mining, NMS.

Box formats used throughout:
- *center form*: ``(cx, cy, w, h)``, normalized to the image (0..1);
- *corner form*: ``(x1, y1, x2, y2)``, normalized unless a docstring says pixels.

The formulas and the prior order are upstream pytorch-ssd's, so existing
checkpoints decode identically.
"""
from __future__ import annotations

import collections
import itertools
import math
from typing import Sequence

import torch

# torchvision.ops is imported where NMS runs: importing torchvision costs ~1.1 s, which every
# script (and --help) would otherwise pay at start-up.

SSDBoxSizes = collections.namedtuple("SSDBoxSizes", ["min", "max"])
SSDSpec = collections.namedtuple("SSDSpec", ["feature_map_size", "shrinkage", "box_sizes", "aspect_ratios"])

# exp() of a wild size prediction must not overflow to inf (torchvision clamps the same way).
_MAX_LOG_SIZE = math.log(1000.0 / 16)


def generate_ssd_priors(specs: Sequence[SSDSpec], image_size: int, clamp: bool = True) -> torch.Tensor:
    """Default boxes for every feature-map cell, in the head's output order.

    Per cell: a square of ``min`` size, a square of ``sqrt(min*max)``, then for every
    aspect ratio ``r`` a ``(w*sqrt(r), h/sqrt(r))`` and a ``(w/sqrt(r), h*sqrt(r))`` box.
    Cells are enumerated row by row (y outer, x inner).

    Returns:
        priors [N, 4] center form, normalized (clamped to 0..1 when ``clamp``).
    """
    priors: list[list[float]] = []
    for spec in specs:
        scale = image_size / spec.shrinkage
        small = spec.box_sizes.min / image_size
        big = math.sqrt(spec.box_sizes.max * spec.box_sizes.min) / image_size
        for j, i in itertools.product(range(spec.feature_map_size), repeat=2):
            cx = (i + 0.5) / scale
            cy = (j + 0.5) / scale
            priors.append([cx, cy, small, small])
            priors.append([cx, cy, big, big])
            for ratio in spec.aspect_ratios:
                r = math.sqrt(ratio)
                priors.append([cx, cy, small * r, small / r])
                priors.append([cx, cy, small / r, small * r])
    out = torch.tensor(priors, dtype=torch.float32)
    if clamp:
        out.clamp_(0.0, 1.0)
    return out


def convert_locations_to_boxes(locations: torch.Tensor, priors: torch.Tensor,
                               center_variance: float, size_variance: float) -> torch.Tensor:
    """Decode regression outputs into center-form boxes.

    Args:
        locations [..., N, 4]: predicted offsets.
        priors [N, 4] (or broadcastable) center form.
    Returns:
        boxes [..., N, 4] center form.
    """
    priors = priors.to(locations.device, locations.dtype)
    if priors.dim() + 1 == locations.dim():
        priors = priors.unsqueeze(0)
    centers = locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2]
    sizes = torch.exp((locations[..., 2:] * size_variance).clamp(max=_MAX_LOG_SIZE)) * priors[..., 2:]
    return torch.cat([centers, sizes], dim=-1)


def convert_boxes_to_locations(center_form_boxes: torch.Tensor, center_form_priors: torch.Tensor,
                               center_variance: float, size_variance: float) -> torch.Tensor:
    """Encode center-form boxes as regression targets relative to the priors (inverse of the above)."""
    priors = center_form_priors
    if priors.dim() + 1 == center_form_boxes.dim():
        priors = priors.unsqueeze(0)
    return torch.cat([
        (center_form_boxes[..., :2] - priors[..., :2]) / priors[..., 2:] / center_variance,
        torch.log(center_form_boxes[..., 2:] / priors[..., 2:]) / size_variance,
    ], dim=-1)


def center_form_to_corner_form(locations: torch.Tensor) -> torch.Tensor:
    return torch.cat([locations[..., :2] - locations[..., 2:] / 2,
                      locations[..., :2] + locations[..., 2:] / 2], dim=-1)


def corner_form_to_center_form(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2,
                      boxes[..., 2:] - boxes[..., :2]], dim=-1)


def area_of(left_top: torch.Tensor, right_bottom: torch.Tensor) -> torch.Tensor:
    """Area of rectangles given their corners (0 for inverted ones)."""
    hw = torch.clamp(right_bottom - left_top, min=0.0)
    return hw[..., 0] * hw[..., 1]


def iou_of(boxes0: torch.Tensor, boxes1: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Broadcasting IoU of corner-form boxes (``[..., 4]`` against ``[..., 4]``)."""
    overlap_left_top = torch.max(boxes0[..., :2], boxes1[..., :2])
    overlap_right_bottom = torch.min(boxes0[..., 2:], boxes1[..., 2:])
    overlap_area = area_of(overlap_left_top, overlap_right_bottom)
    area0 = area_of(boxes0[..., :2], boxes0[..., 2:])
    area1 = area_of(boxes1[..., :2], boxes1[..., 2:])
    return overlap_area / (area0 + area1 - overlap_area + eps)


def assign_priors(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, corner_form_priors: torch.Tensor,
                  iou_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every prior a ground-truth box and label (0 = background).

    A prior takes the box it overlaps most when that IoU >= ``iou_threshold``; on top
    of that every ground-truth box claims its single best prior, so no object goes
    untrained (SSD paper, section 2.2).

    Args:
        gt_boxes [K, 4] corner form; gt_labels [K]; corner_form_priors [N, 4].
    Returns:
        boxes [N, 4] corner form, labels [N] int64.
    """
    num_priors = corner_form_priors.size(0)
    if gt_boxes.numel() == 0:
        return (torch.zeros(num_priors, 4, dtype=corner_form_priors.dtype, device=corner_form_priors.device),
                torch.zeros(num_priors, dtype=torch.int64, device=corner_form_priors.device))
    ious = iou_of(gt_boxes.unsqueeze(0), corner_form_priors.unsqueeze(1))  # [N, K]
    best_target_per_prior, best_target_per_prior_index = ious.max(1)
    best_prior_per_target_index = ious.argmax(0)  # [K]
    # Later targets win a shared best prior, as in upstream's loop.
    best_target_per_prior_index[best_prior_per_target_index] = torch.arange(
        gt_boxes.size(0), device=gt_boxes.device)
    best_target_per_prior.index_fill_(0, best_prior_per_target_index, 2.0)
    labels = gt_labels[best_target_per_prior_index].to(torch.int64)
    labels[best_target_per_prior < iou_threshold] = 0
    boxes = gt_boxes[best_target_per_prior_index]
    return boxes, labels


MINING_RULES = ("per-image", "per-image-min", "batch")


def hard_negative_mining(loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: int,
                         rule: str = "per-image") -> torch.Tensor:
    """Keep all positives and ``neg_pos_ratio`` x as many of the hardest negatives.

    Rules (``MINING_RULES``), which differ in how an image without objects is treated:

    - ``per-image`` (upstream): each image gets ``ratio x its positives`` negatives, so an
      image without boxes contributes nothing to the loss;
    - ``per-image-min``: as ``per-image``, but every image gets at least ``ratio x`` the
      batch's mean positives per image (at least ``ratio``), so background images always count;
    - ``batch``: the budget ``ratio x`` the batch's positives is spent on the hardest
      negatives of the whole batch, wherever they are (background images compete for it).

    Args:
        loss [B, N]: background loss (-log p_background) per prior.
        labels [B, N].
        rule: one of ``MINING_RULES``.
    Returns:
        mask [B, N] bool of priors that enter the classification loss.
    """
    pos_mask = labels > 0
    num_pos = pos_mask.long().sum(dim=1, keepdim=True)
    loss = loss.masked_fill(pos_mask, -math.inf)
    if rule == "batch":
        budget = int(num_pos.sum()) * neg_pos_ratio
        flat = loss.reshape(-1)
        _, order = flat.sort(descending=True)
        neg_mask = torch.zeros_like(flat, dtype=torch.bool)
        neg_mask[order[:budget]] = True
        neg_mask = neg_mask.view_as(loss) & ~pos_mask
        return pos_mask | neg_mask
    if rule not in ("per-image", "per-image-min"):
        raise ValueError(f"unknown hard-negative mining rule {rule!r}; choose from {', '.join(MINING_RULES)}")
    num_neg = num_pos * neg_pos_ratio
    if rule == "per-image-min":
        mean_pos = max(1, round(int(num_pos.sum()) / max(1, labels.size(0))))
        num_neg = num_neg.clamp(min=mean_pos * neg_pos_ratio)
    _, indexes = loss.sort(dim=1, descending=True)
    _, orders = indexes.sort(dim=1)
    neg_mask = (orders < num_neg) & ~pos_mask
    return pos_mask | neg_mask


def hard_nms(box_scores: torch.Tensor, iou_threshold: float, top_k: int = -1,
             candidate_size: int = 200) -> torch.Tensor:
    """Greedy NMS over ``[K, 5]`` (corner box + score) rows; returns the kept rows, best first."""
    if box_scores.numel() == 0:
        return box_scores.reshape(0, 5)
    scores = box_scores[:, 4]
    order = scores.argsort(descending=True)[:candidate_size]
    candidates = box_scores[order]
    from torchvision.ops import nms

    keep = nms(candidates[:, :4], candidates[:, 4], iou_threshold)
    if top_k > 0:
        keep = keep[:top_k]
    return candidates[keep]


def soft_nms(box_scores: torch.Tensor, score_threshold: float, sigma: float = 0.5,
             top_k: int = -1) -> torch.Tensor:
    """Gaussian soft-NMS (Bodla et al. 2017) over ``[K, 5]`` rows; returns kept rows with decayed scores."""
    box_scores = box_scores.clone()
    picked = []
    while box_scores.size(0) > 0:
        best = int(torch.argmax(box_scores[:, 4]))
        current = box_scores[best].clone()
        picked.append(current)
        if 0 < top_k == len(picked) or box_scores.size(0) == 1:
            break
        box_scores[best] = box_scores[-1]
        box_scores = box_scores[:-1]
        ious = iou_of(current[:4].unsqueeze(0), box_scores[:, :4])
        box_scores[:, 4] = box_scores[:, 4] * torch.exp(-(ious * ious) / sigma)
        box_scores = box_scores[box_scores[:, 4] > score_threshold]
    if picked:
        return torch.stack(picked)
    return box_scores.new_zeros((0, 5))


def nms(box_scores: torch.Tensor, nms_method: str | None = None, score_threshold: float | None = None,
        iou_threshold: float | None = None, sigma: float = 0.5, top_k: int = -1,
        candidate_size: int = 200) -> torch.Tensor:
    """Upstream's NMS entry point: ``"soft"`` for soft-NMS, anything else for hard NMS."""
    if nms_method == "soft":
        return soft_nms(box_scores, score_threshold if score_threshold is not None else 0.001, sigma, top_k)
    return hard_nms(box_scores, iou_threshold if iou_threshold is not None else 0.45, top_k, candidate_size)


def batched_postprocess(scores: torch.Tensor, boxes: torch.Tensor, prob_threshold: float = 0.01,
                        iou_threshold: float = 0.45, top_k: int = 200, candidate_size: int = 200,
                        nms_method: str | None = "hard", sigma: float = 0.5,
                        ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Turn the net's test outputs into detections, per image.

    Softmaxed scores are filtered by ``prob_threshold`` (background skipped), each
    class keeps its ``candidate_size`` best boxes, then one ``batched_nms`` call
    suppresses per class, and the ``top_k`` best detections are kept (``top_k <= 0``: all).

    Args:
        scores [B, N, C] softmaxed; boxes [B, N, 4] corner form, normalized.
    Returns:
        per image: (boxes [K, 4] normalized corner form, labels [K] int64 in 1..C-1, scores [K]),
        sorted by score.
    """
    results = []
    num_classes = scores.size(2)
    for img_scores, img_boxes in zip(scores, boxes):
        fg = img_scores[:, 1:]  # [N, C-1]
        prior_idx, cls_idx = torch.nonzero(fg > prob_threshold, as_tuple=True)
        cand_scores = fg[prior_idx, cls_idx]
        if candidate_size > 0 and cand_scores.numel() > candidate_size:
            keep = _best_per_group(cls_idx, cand_scores, num_classes - 1, candidate_size)
            if keep is not None:
                prior_idx, cls_idx, cand_scores = prior_idx[keep], cls_idx[keep], cand_scores[keep]
        labels = cls_idx + 1
        cand_boxes = img_boxes[prior_idx]
        if nms_method == "soft":
            out_b, out_l, out_s = [], [], []
            for c in labels.unique():
                sel = labels == c
                kept = soft_nms(torch.cat([cand_boxes[sel], cand_scores[sel, None]], dim=1),
                                prob_threshold, sigma)
                out_b.append(kept[:, :4])
                out_s.append(kept[:, 4])
                out_l.append(torch.full((kept.size(0),), int(c), dtype=torch.int64, device=kept.device))
            if out_b:
                cand_boxes, cand_scores, labels = torch.cat(out_b), torch.cat(out_s), torch.cat(out_l)
            order = cand_scores.argsort(descending=True)
        else:
            from torchvision.ops import batched_nms

            order = batched_nms(cand_boxes.float(), cand_scores.float(), labels, iou_threshold)
        if top_k > 0:
            order = order[:top_k]
        results.append((cand_boxes[order], labels[order].to(torch.int64), cand_scores[order]))
    return results


def _best_per_group(groups: torch.Tensor, scores: torch.Tensor, num_groups: int,
                    limit: int) -> torch.Tensor | None:
    """Indices of the ``limit`` best-scoring items of each group (any order), or None when no
    group has more than ``limit`` items (keep everything: the common case, so it costs one
    bincount, not a sort).

    groups [K] int64 in 0..num_groups-1, scores [K] finite.
    """
    counts = torch.bincount(groups, minlength=num_groups)
    if int(counts.max()) <= limit:
        return None
    # one sort by (group ascending, score descending): group g's keys lie in (g * span - span, g * span]
    s = scores.to(torch.float64)
    span = float(s.max() - s.min()) + 1.0
    key = groups.to(torch.float64) * span - s
    order = key.argsort()
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(groups.numel(), device=groups.device) - starts[groups[order]]
    return order[rank < limit]
