"""Batch samples whose box counts differ, for the batched prior matcher.

The default DataLoader collate cannot stack [K,4] boxes of different K, so
we pad every image's boxes to the largest K in the batch with zero boxes and
label 0 (BACKGROUND), which the matcher treats as "no box".
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["collate_padded", "object_detection_collate"]


def _stack_and_list(batch: Sequence[tuple[Any, Any, Any]], who: str
                    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Images stacked; per-image boxes float32 [K_i,4] and labels int64 [K_i] as tensors, counts checked."""
    if len(batch) == 0:
        raise ValueError(f"{who}: empty batch")
    images = torch.stack([torch.as_tensor(item[0]) for item in batch])
    boxes = [torch.as_tensor(np.asarray(item[1]) if not torch.is_tensor(item[1]) else item[1],
                             dtype=torch.float32).reshape(-1, 4) for item in batch]
    labels = [torch.as_tensor(np.asarray(item[2]) if not torch.is_tensor(item[2]) else item[2],
                              dtype=torch.int64).reshape(-1) for item in batch]
    for i, (b, l) in enumerate(zip(boxes, labels)):
        if len(b) != len(l):
            raise ValueError(f"{who}: sample {i} has {len(b)} boxes but {len(l)} labels")
    return images, boxes, labels


def object_detection_collate(batch: Sequence[tuple[Any, Any, Any]]
                             ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Upstream's collate: (images [B,...] stacked, [boxes_i [K_i,4]], [labels_i [K_i]]), unpadded.

    For code written against upstream; training here uses ``collate_padded`` (the batched matcher
    needs one tensor).
    """
    return _stack_and_list(batch, "object_detection_collate")


def collate_padded(batch: Sequence[tuple[Any, Any, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(image [3,S,S], boxes [K_i,4], labels [K_i]), ...] ->
    (images float [B,3,S,S], boxes float32 [B,Kmax,4], labels int64 [B,Kmax]).

    Padding rows are all-zero boxes with label 0. Kmax may be 0 (shape [B,0,4]).
    Boxes/labels may be tensors or numpy arrays.
    """
    images, boxes, labels = _stack_and_list(batch, "collate_padded")
    kmax = max(len(b) for b in boxes)
    out_boxes = torch.zeros((len(batch), kmax, 4), dtype=torch.float32)
    out_labels = torch.zeros((len(batch), kmax), dtype=torch.int64)
    for i, (b, l) in enumerate(zip(boxes, labels)):
        out_boxes[i, :len(b)] = b
        out_labels[i, :len(l)] = l
    return images, out_boxes, out_labels
