"""Detection datasets (COCO, VOC, Open Images, YOLO), image decoding, batching and synthetic data.

Names are imported lazily so that e.g. ``python3 -m vision.datasets.synthetic``
or ``import vision.datasets.image_io`` does not pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "COCODataset": "vision.datasets.coco_dataset",
    "VOCDataset": "vision.datasets.voc_dataset",
    "OpenImagesDataset": "vision.datasets.open_images",
    "YOLODataset": "vision.datasets.yolo",
    "ImageDecodeError": "vision.datasets.image_io",
    "load_image_rgb": "vision.datasets.image_io",
    "collate_padded": "vision.datasets.collation",
    "object_detection_collate": "vision.datasets.collation",
    "generate_coco_dataset": "vision.datasets.synthetic",
    "generate_yolo_dataset": "vision.datasets.synthetic",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vision.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
