"""SSD's MultiBox loss: smooth-L1 on matched priors + cross-entropy with hard-negative mining."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vision.utils import box_utils

# every image gets negatives, so background images always count; in bench/background_mining.py
# it had the highest AP and, in the longer run, the lowest scores on background images
DEFAULT_MINING = "per-image-min"


class MultiboxLoss(nn.Module):
    """Both terms are summed over the batch and divided by the number of positive priors.

    The divisor is ``max(1, num_pos)``: a batch of pure-background images gives a finite
    classification loss instead of upstream's NaN.
    ``priors``, ``iou_threshold`` and the variances are kept for upstream signature
    compatibility; targets arrive already encoded (``MatchPrior`` / ``BatchedMatcher``).

    ``mining`` picks the hard-negative rule (``box_utils.MINING_RULES``); the default
    ``DEFAULT_MINING`` makes images without objects count (upstream's ``per-image`` gives them
    no loss at all); bench/README.md "Background images" has the measurement behind the choice.
    """

    def __init__(self, priors: torch.Tensor, iou_threshold: float, neg_pos_ratio: int,
                 center_variance: float, size_variance: float, device: torch.device | str | None = None,
                 mining: str | None = None) -> None:
        super().__init__()
        mining = mining or DEFAULT_MINING
        if mining not in box_utils.MINING_RULES:
            raise ValueError(f"unknown hard-negative mining rule {mining!r}; "
                             f"choose from {', '.join(box_utils.MINING_RULES)}")
        self.mining = mining
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.center_variance = center_variance
        self.size_variance = size_variance
        self.priors = priors if device is None else priors.to(device)

    def forward(self, confidence: torch.Tensor, predicted_locations: torch.Tensor, labels: torch.Tensor,
                gt_locations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            confidence [B, N, C] logits; predicted_locations [B, N, 4];
            labels [B, N] int64 (0 = background); gt_locations [B, N, 4] encoded targets.
        Returns:
            (regression_loss, classification_loss), scalars.
        """
        num_classes = confidence.size(2)
        confidence = confidence.float()
        predicted_locations = predicted_locations.float()
        with torch.no_grad():
            # -log p(background) ranks the negatives
            bg_loss = -F.log_softmax(confidence, dim=2)[:, :, 0]
            mask = box_utils.hard_negative_mining(bg_loss, labels, self.neg_pos_ratio, self.mining)
        pos_mask = labels > 0
        num_pos = pos_mask.sum().clamp(min=1).to(confidence.dtype)
        classification_loss = F.cross_entropy(confidence[mask].reshape(-1, num_classes), labels[mask],
                                              reduction="sum")
        smooth_l1_loss = F.smooth_l1_loss(predicted_locations[pos_mask].reshape(-1, 4),
                                          gt_locations[pos_mask].reshape(-1, 4).to(predicted_locations.dtype),
                                          reduction="sum")
        return smooth_l1_loss / num_pos, classification_loss / num_pos
