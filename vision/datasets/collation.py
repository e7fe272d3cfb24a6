"""Batch samples whose box counts differ, for the batched prior matcher.

The default DataLoader collate cannot stack [K,4] boxes of different K, so
we pad every image's boxes to the largest K in the batch with zero boxes and
label 0 (BACKGROUND), which the matcher treats as "no box".
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["collate_padded"]


def collate_padded(batch: Sequence[tuple[Any, Any, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(image [3,S,S], boxes [K_i,4], labels [K_i]), ...] ->
    (images float [B,3,S,S], boxes float32 [B,Kmax,4], labels int64 [B,Kmax]).

    Padding rows are all-zero boxes with label 0. Kmax may be 0 (shape [B,0,4]).
    Boxes/labels may be tensors or numpy arrays.
    """
    if len(batch) == 0:
        raise ValueError("collate_padded: empty batch")
    images = torch.stack([torch.as_tensor(item[0]) for item in batch])
    boxes = [torch.as_tensor(np.asarray(item[1]) if not torch.is_tensor(item[1]) else item[1],
                             dtype=torch.float32).reshape(-1, 4) for item in batch]
    labels = [torch.as_tensor(np.asarray(item[2]) if not torch.is_tensor(item[2]) else item[2],
                              dtype=torch.int64).reshape(-1) for item in batch]
    for i, (b, l) in enumerate(zip(boxes, labels)):
        if len(b) != len(l):
            raise ValueError(f"collate_padded: sample {i} has {len(b)} boxes but {len(l)} labels")
    kmax = max(len(b) for b in boxes)
    out_boxes = torch.zeros((len(batch), kmax, 4), dtype=torch.float32)
    out_labels = torch.zeros((len(batch), kmax), dtype=torch.int64)
    for i, (b, l) in enumerate(zip(boxes, labels)):
        out_boxes[i, :len(b)] = b
        out_labels[i, :len(l)] = l
    return images, out_boxes, out_labels
