"""Every training box of a dataset, with its image's size, in one set of arrays.

Why: statistics over a dataset (``dataset_report.py``) need all boxes at once,
in the pixels of their image, exactly as training sees them: crowd / difficult
boxes left out, clipped to the image, too-thin boxes dropped (``clip_boxes``).
Image sizes come from the file headers (``image_size``), so no picture is decoded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from vision.datasets.base import DetectionDataset, clip_boxes, format_ids
from vision.datasets.image_io import ImageDecodeError
from vision.datasets.image_size import image_size

log = logging.getLogger(__name__)


@dataclass
class DatasetBoxes:
    """Boxes of a dataset: ``boxes`` [K,4] corner pixels of image ``box_image[k]``, ``labels`` [K]."""

    class_names: list[str]
    image_ids: list[str] = field(default_factory=list)  # printable id of each readable image
    image_paths: list[str] = field(default_factory=list)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (width, height)
    box_image: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unreadable: list[str] = field(default_factory=list)  # "path: reason"

    def normalized(self) -> np.ndarray:
        """Boxes [K,4] as fractions of their image (= the net's input after the square stretch)."""
        wh = self.sizes[self.box_image]
        return self.boxes / np.concatenate([wh, wh], axis=1)


def collect_boxes(datasets: list[tuple[str, DetectionDataset]], max_images: int | None = None) -> DatasetBoxes:
    """The boxes of every (name, dataset) pair; ``max_images``: at most that many of each.

    Image ids are ``name/id`` when several datasets are given. Images whose header cannot be
    read are skipped and counted (training would skip them too).
    """
    if not datasets:
        raise ValueError("no dataset")
    out = DatasetBoxes(class_names=list(datasets[0][1].class_names))
    sizes, box_image, boxes, labels = [], [], [], []
    for name, ds in datasets:
        n = len(ds) if max_images is None else min(len(ds), max_images)
        for i in range(n):
            path = ds.image_path(i)
            try:
                width, height = image_size(path)
            except ImageDecodeError as e:
                out.unreadable.append(str(e))
                continue
            b, lab = ds._target(i, width, height)
            b, lab = clip_boxes(b, lab, width, height)
            k = len(sizes)
            sizes.append((width, height))
            out.image_ids.append(f"{name}/{ds.image_ids[i]}" if len(datasets) > 1 else str(ds.image_ids[i]))
            out.image_paths.append(str(path))
            box_image.append(np.full(len(b), k, np.int64))
            boxes.append(b)
            labels.append(lab)
    if out.unreadable:
        log.warning("%d unreadable images skipped (%s)", len(out.unreadable), format_ids(out.unreadable, 2))
    if sizes:
        out.sizes = np.array(sizes, dtype=np.float32).reshape(-1, 2)
        out.box_image = np.concatenate(box_image)
        out.boxes = np.concatenate(boxes).astype(np.float32).reshape(-1, 4)
        out.labels = np.concatenate(labels).astype(np.int64)
    return out
