"""Opening the training and validation datasets named on the command line, with clear errors.

A missing folder or COCO annotation file, or a dataset with no images, is a one-line
``UserError`` before any long work starts.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from torch.utils.data import Dataset

from vision.utils.misc import UserError

log = logging.getLogger(__name__)

DATASET_TYPES = ("auto", "coco", "voc", "open_images", "yolo")


def resolve_dataset_type(dataset_type: str, root: str | os.PathLike) -> str:
    """``auto`` -> the type recognised from the folder (logged); any other type as given."""
    if dataset_type != "auto":
        return dataset_type
    from vision.datasets.detect_type import detect_dataset_type

    kind, evidence = detect_dataset_type(root)
    log.info("dataset type: %s (detected from %s)", kind, evidence)
    return kind


def check_dataset_folder(dataset_type: str, root: str | os.PathLike, split: str) -> None:
    """Fail fast, with a one-line ``UserError``, on a missing folder or COCO annotation file.

    ``split`` is ``"train"`` or ``"val"``; for COCO it selects ``annotations/instances_{split}2017.json``
    and the ``{split}2017`` image folder.
    """
    root = Path(root)
    if not root.is_dir() and not (dataset_type == "yolo" and root.is_file()):  # YOLO: DIR or DIR/data.yaml
        raise UserError(f"dataset folder not found: {root}")
    if dataset_type == "coco":
        ann = root / "annotations" / f"instances_{split}2017.json"
        if not ann.is_file():
            raise UserError(f"COCO annotation file not found: {ann}")
        images = root / f"{split}2017"
        if not images.is_dir():
            raise UserError(f"COCO image folder not found: {images}")


def open_dataset(dataset_type: str, root: str | os.PathLike, *, split: str, transform=None,
                 target_transform=None, balance_data: bool = False, keep_empty: bool = True) -> Dataset:
    """One dataset of ``dataset_type`` for ``split`` (``"train"`` or ``"val"``).

    Validation splits follow upstream: COCO ``val2017``, VOC's test list (``is_test``), Open
    Images ``test``. An empty dataset is a ``UserError``.
    """
    from vision.datasets import COCODataset, OpenImagesDataset, VOCDataset

    dataset_type = resolve_dataset_type(dataset_type, root)
    check_dataset_folder(dataset_type, root, split)
    root = str(root)
    train = split == "train"
    try:
        if dataset_type == "coco":
            ds = COCODataset(root, transform=transform, target_transform=target_transform,
                             dataset_type="train" if train else "val", keep_empty=keep_empty)
        elif dataset_type == "voc":
            ds = VOCDataset(root, transform=transform, target_transform=target_transform, is_test=not train)
        elif dataset_type == "open_images":
            ds = OpenImagesDataset(root, transform=transform, target_transform=target_transform,
                                   dataset_type="train" if train else "test",
                                   balance_data=balance_data and train)
        elif dataset_type == "yolo":
            from vision.datasets.yolo import YOLODataset

            ds = YOLODataset(root, transform=transform, target_transform=target_transform, split=split,
                             keep_empty=keep_empty)
        else:
            raise UserError(f"unknown dataset type {dataset_type!r}; expected one of {', '.join(DATASET_TYPES)}")
    except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
        raise UserError(f"{dataset_type} dataset {root} ({split}): {e}") from None
    if len(ds) == 0:
        raise UserError(f"no images found in {dataset_type} dataset {root} ({split} split)")
    return ds
