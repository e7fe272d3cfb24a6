"""Opening the training and validation datasets named on the command line, with clear errors.

A missing folder or COCO annotation file, or a dataset with no images, is a one-line
``UserError`` before any long work starts.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from vision.datasets import COCODataset, OpenImagesDataset, VOCDataset
from vision.datasets.detect_type import detect_dataset_type
from vision.datasets.yolo import YOLODataset
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

def check_dataset_folder(dataset_type: str, root: str | os.PathLike, split: str) -> None:
    """Fail fast, with a one-line ``UserError``, on a missing folder or COCO annotation file.

    ``split`` is ``"train"`` or ``"val"``; for COCO it selects ``annotations/instances_{split}2017.json``
    and the ``{split}2017`` image folder.
    """
    root = Path(root)
    if not root.is_dir() and not (dataset_type == "yolo" and root.is_file()):
        raise UserError(f"dataset folder not found: {root}")
    if dataset_type == "coco":
        ann = root / "annotations" / f"instances_{split}2017.json"
        if not ann.is_file():
            raise UserError(f"COCO annotation file not found: {ann}")
        images = root / f"{split}2017"
        if not images.is_dir():
            raise UserError(f"COCO image folder not found: {images}")


def _coco(root: str, train: bool, **kw: Any) -> Dataset:
    return COCODataset(root, transform=kw["transform"], target_transform=kw["target_transform"],
                       dataset_type="train" if train else "val", keep_empty=kw["keep_empty"],
                       reference_categories=getattr(kw.get("reference"), "categories", None))


def _voc(root: str, train: bool, **kw: Any) -> Dataset:
    return VOCDataset(root, transform=kw["transform"], target_transform=kw["target_transform"], is_test=not train,
                      label_file=kw["label_file"])


def _open_images(root: str, train: bool, **kw: Any) -> Dataset:
    return OpenImagesDataset(root, transform=kw["transform"], target_transform=kw["target_transform"],
                             dataset_type="train" if train else "test", balance_data=kw["balance_data"] and train)


def _yolo(root: str, train: bool, **kw: Any) -> Dataset:
    return YOLODataset(root, transform=kw["transform"], target_transform=kw["target_transform"],
                       split=kw.get("split") or ("train" if train else "val"), keep_empty=kw["keep_empty"])


# --dataset-type -> opener(root, train, transform=, target_transform=, keep_empty=, balance_data=, label_file=,
# split=: the split name as asked, for formats with more than train/val);
# a new format is one row here
OPENERS: dict[str, Callable[..., Dataset]] = {"coco": _coco, "voc": _voc, "open_images": _open_images,
                                              "yolo": _yolo}
DATASET_TYPES: tuple[str, ...] = ("auto", *OPENERS)  # auto: recognised from the folder


def resolve_dataset_type(dataset_type: str, root: str | os.PathLike) -> str:
    """``auto`` -> the type recognised from the folder (logged); any other type as given."""
    if dataset_type != "auto":
        return dataset_type
    kind, evidence = detect_dataset_type(root)
    log.info("dataset type: %s (detected from %s)", kind, evidence)
    return kind


def open_dataset(dataset_type: str, root: str | os.PathLike, *, split: str, transform=None,
                 target_transform=None, balance_data: bool = False, keep_empty: bool = True,
                 label_file: str | os.PathLike | None = None, reference: Dataset | None = None) -> Dataset:
    """One dataset of ``dataset_type`` for ``split`` (``"train"`` or ``"val"``), for training and evaluation.

    Validation splits follow upstream: COCO ``val2017``, VOC's test list (``is_test``), Open
    Images ``test``. ``label_file`` is VOC's class list (default: its labels.txt or the 20 VOC
    classes). ``reference``: the training dataset, whose class numbering a validation split follows
    (COCO files not renumbered by fix_coco_annotations.py). An empty dataset is a ``UserError``.
    """
    dataset_type = resolve_dataset_type(dataset_type, root)
    opener = OPENERS.get(dataset_type)
    if opener is None:
        raise UserError(f"unknown dataset type {dataset_type!r}; expected one of {', '.join(DATASET_TYPES)}")
    check_dataset_folder(dataset_type, root, split)
    try:
        ds = opener(str(root), split == "train", transform=transform, target_transform=target_transform,
                    keep_empty=keep_empty, balance_data=balance_data, label_file=label_file,
                    reference=reference, split=split)
    except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
        raise UserError(f"{dataset_type} dataset {root} ({split}): {e}") from None
    if len(ds) == 0:
        raise UserError(f"no images found in {dataset_type} dataset {root} ({split} split)")
    return ds
