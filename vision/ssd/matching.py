"""Turning ground-truth boxes into per-prior training targets.

Two ways, same result:
- ``MatchPrior`` works on one image and runs as the dataset's target transform
  (in the DataLoader workers), as upstream did;
- ``BatchedMatcher`` matches a whole padded batch at once on the training device,
  which takes the work out of the data workers.
"""
from __future__ import annotations

import numpy as np
import torch

from vision.utils import box_utils


def _as_tensor(x, dtype) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    elif not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    return x.to(dtype)


class _PriorMatcher:
    """The priors, variances and IoU threshold both matchers need."""

    def __init__(self, center_form_priors: torch.Tensor, center_variance: float, size_variance: float,
                 iou_threshold: float) -> None:
        self.center_form_priors = center_form_priors
        self.corner_form_priors = box_utils.center_form_to_corner_form(center_form_priors)
        self.center_variance = center_variance
        self.size_variance = size_variance
        self.iou_threshold = iou_threshold


class MatchPrior(_PriorMatcher):
    """Target transform: ``(gt_boxes [K,4] corner normalized, gt_labels [K])`` ->
    ``(locations [N,4] float32 encoded offsets, labels [N] int64)``; ``K == 0`` gives all background."""

    def __call__(self, gt_boxes, gt_labels) -> tuple[torch.Tensor, torch.Tensor]:
        gt_boxes = _as_tensor(gt_boxes, torch.float32).reshape(-1, 4)
        gt_labels = _as_tensor(gt_labels, torch.int64).reshape(-1)
        boxes, labels = box_utils.assign_priors(gt_boxes, gt_labels, self.corner_form_priors, self.iou_threshold)
        locations = encode(boxes, labels, self.center_form_priors, self.center_variance, self.size_variance)
        return locations, labels


def encode(corner_boxes: torch.Tensor, labels: torch.Tensor, center_form_priors: torch.Tensor,
           center_variance: float, size_variance: float) -> torch.Tensor:
    """Encode matched corner-form boxes; background priors get zeros (they carry no regression loss).

    Background rows are replaced by their prior before encoding, so no ``log(0)`` can appear.
    """
    center = box_utils.corner_form_to_center_form(corner_boxes)
    bg = (labels == 0).unsqueeze(-1)
    priors = center_form_priors.expand_as(center)
    center = torch.where(bg, priors, center)
    # a degenerate (zero-size) positive box would give log(0): give it a tiny positive size
    center = torch.cat([center[..., :2], center[..., 2:].clamp(min=1e-6)], dim=-1)
    locations = box_utils.convert_boxes_to_locations(center, center_form_priors, center_variance, size_variance)
    return locations.masked_fill(bg, 0.0)


class BatchedMatcher(_PriorMatcher):
    """Match a padded batch on any device: ``boxes [B,K,4]`` corner normalized, ``labels [B,K]``
    with 0 marking padding -> ``(locations [B,N,4], labels [B,N])``.

    Same rule as ``assign_priors``: IoU >= threshold, plus every real box claims its best prior.
    """

    def to(self, device) -> "BatchedMatcher":
        self.center_form_priors = self.center_form_priors.to(device)
        self.corner_form_priors = self.corner_form_priors.to(device)
        return self

    @torch.no_grad()
    def __call__(self, boxes: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.center_form_priors.device
        boxes = boxes.to(device, torch.float32)
        labels = labels.to(device, torch.int64)
        b, k = labels.shape
        n = self.center_form_priors.size(0)
        if k == 0:
            return (torch.zeros(b, n, 4, device=device), torch.zeros(b, n, dtype=torch.int64, device=device))
        valid = labels > 0  # [B, K]
        ious = box_utils.iou_of(boxes.unsqueeze(1), self.corner_form_priors.view(1, n, 1, 4))  # [B, N, K]
        ious = ious.masked_fill(~valid.unsqueeze(1), -1.0)
        best_iou, best_idx = ious.max(dim=2)  # [B, N]
        best_prior = ious.argmax(dim=1)  # [B, K]
        # force each real box onto its best prior; later boxes win ties, as in assign_priors (the
        # largest box index per prior). Fixed shapes (padding goes to a spare column n): no
        # data-dependent indexing, so the host does not wait for the device here
        target_idx = torch.arange(k, device=device).unsqueeze(0).expand(b, k)
        slot = torch.where(valid, best_prior, n)
        forced = torch.full((b, n + 1), -1, dtype=torch.int64, device=device)
        forced = forced.scatter_reduce(1, slot, target_idx, reduce="amax")[:, :n]
        hit = forced >= 0
        best_idx = torch.where(hit, forced, best_idx)
        best_iou = best_iou.masked_fill(hit, 2.0)
        matched_labels = torch.gather(labels, 1, best_idx)
        matched_labels = matched_labels.masked_fill(best_iou < self.iou_threshold, 0)
        matched_boxes = torch.gather(boxes, 1, best_idx.unsqueeze(-1).expand(b, n, 4))
        locations = encode(matched_boxes, matched_labels, self.center_form_priors,
                           self.center_variance, self.size_variance)
        return locations, matched_labels
