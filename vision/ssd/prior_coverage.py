"""How well a set of priors (default boxes) can catch a set of ground-truth boxes.

Why: a box whose best prior overlaps it by less than the matching threshold only
gets the single prior the matcher forces onto it, whose regression starts far
off; when many boxes are like that (small or oddly shaped objects), the net
barely learns them. ``dataset_report.py`` measures this before anyone trains.

The rule is the matcher's (``box_utils.assign_priors`` / ``matching.BatchedMatcher``):
a prior is positive for a box when their IoU is **>=** the threshold, computed
with the same ``box_utils.iou_of`` on corner-form priors in 0..1 of the net's
(square, stretched) input.
"""
from __future__ import annotations

import torch

from vision.ssd.config.base import MATCH_IOU
from vision.utils.box_utils import center_form_to_corner_form, iou_of

MATCH_IOU_THRESHOLD = MATCH_IOU  # what training matches priors with (SSDConfig.match_iou); >= counts


def best_prior_iou(boxes: torch.Tensor, center_form_priors: torch.Tensor,
                   chunk_elements: int = 8_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """(best IoU [K], index of that prior [K]) of corner-form boxes [K,4] in 0..1 against priors [N,4].

    Computed in chunks of boxes so a million boxes against 35k priors fits in memory.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    priors = center_form_to_corner_form(torch.as_tensor(center_form_priors, dtype=torch.float32))
    k = boxes.size(0)
    best = torch.zeros(k, dtype=torch.float32)
    index = torch.zeros(k, dtype=torch.int64)
    step = max(1, chunk_elements // max(1, priors.size(0)))
    for s in range(0, k, step):
        ious = iou_of(boxes[s:s + step].unsqueeze(1), priors.unsqueeze(0))  # [k, N]
        best[s:s + step], index[s:s + step] = ious.max(dim=1)
    return best, index


def covered(best_iou: torch.Tensor, threshold: float = MATCH_IOU_THRESHOLD) -> torch.Tensor:
    """Boolean [K]: the box has a prior the matcher would call positive (IoU >= threshold)."""
    return best_iou >= threshold
