"""What every detection dataset here shares: the upstream ``__getitem__``
contract, box clean-up, and surviving images that fail to decode.

A long training run must not die on image 80,000 because one JPEG is
truncated, so ``__getitem__`` skips such an image (logging it once and
counting it in ``skipped_images``) and returns the next good sample.
``get_image`` does not skip: evaluation needs index ``i`` to mean image ``i``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vision.datasets.image_io import ImageDecodeError, load_image_rgb
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

MIN_BOX_SIZE = 1.0  # pixels; thinner boxes make log(0) in the box encoding

_substituted = 0  # samples in this process whose image was unreadable and replaced by the next one


def substituted_samples() -> int:
    """How many requested samples, in this process so far, had an unreadable image and were
    replaced by the next readable one (every request counts, not only the first failure):
    the training loader reads it around each sample to report skips per epoch."""
    return _substituted

Transform = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Any, Any, Any]]
TargetTransform = Callable[[Any, Any], tuple[Any, Any]]


def clip_boxes(boxes: np.ndarray, labels: np.ndarray, width: float, height: float,
               min_size: float = MIN_BOX_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Clip corner-form pixel boxes [K,4] (x1,y1,x2,y2) to the image and drop the ones
    thinner than ``min_size`` pixels. Returns new float32 boxes and int64 labels."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(boxes) == 0:
        return boxes, labels.copy()
    np.clip(boxes[:, 0::2], 0.0, float(width), out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, float(height), out=boxes[:, 1::2])
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    if keep.all():
        return boxes, labels.copy()
    return boxes[keep], labels[keep]


def list_image_folder(folder: Path) -> set[str] | None:
    """File names in ``folder`` (one directory read instead of one stat per image), None if absent."""
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it}
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise UserError(f"image folder is not readable (permission denied): {folder}") from None


def format_ids(ids: Sequence[Any], limit: int = 5) -> str:
    """'a, b, c (+N more)' for messages that name offending ids."""
    ids = list(ids)
    head = ", ".join(str(i) for i in ids[:limit])
    return head + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


class DetectionDataset:
    """Base for the COCO / VOC / Open Images readers.

    Subclasses set ``class_names`` (BACKGROUND first) and ``image_ids`` and
    implement ``__len__``, ``image_path(i)``, ``get_annotation(i)`` and
    ``_target(i, width, height)`` -> training boxes float32 [K,4] corner
    pixels and labels int64 [K] (crowd / difficult boxes already removed).
    """

    class_names: list[str]
    image_ids: list

    def __init__(self, transform: Transform | None = None,
                 target_transform: TargetTransform | None = None) -> None:
        self.transform = transform
        self.target_transform = target_transform
        self.skipped_images = 0  # images that failed to decode in this process
        self._bad_indices: set[int] = set()

    # -- to implement -------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def image_path(self, index: int) -> Path:
        raise NotImplementedError

    def get_annotation(self, index: int) -> tuple[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def _target(self, index: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    @property
    def ids(self) -> list:
        """Upstream name for ``image_ids``."""
        return self.image_ids

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _check_index(self, index: int) -> int:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        return int(index)

    def num_boxes(self) -> int:
        """Boxes training (or scoring) can use, counted from the index without decoding an image."""
        return sum(len(self._target(i, 1, 1)[1]) for i in range(len(self)))

    def content_digest(self) -> str:
        """A short digest of the images' ids and their boxes and labels (normalized, from the index,
        no image decoded): processes of one training run compare it, so two folders with the same
        numbers of images but other contents are told apart, wherever each process has them mounted."""
        import hashlib
        h = hashlib.sha256()
        for i in range(len(self)):
            boxes, labels = self._target(i, 1, 1)
            h.update(str(self.image_ids[i]).encode())
            h.update(np.round(np.asarray(boxes, dtype=np.float64), 5).tobytes())
            h.update(np.asarray(labels, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def get_image(self, index: int) -> np.ndarray:
        """RGB uint8 [H,W,3] of image ``index`` (no transform; raises ImageDecodeError)."""
        return load_image_rgb(self.image_path(self._check_index(index)))

    def __getitem__(self, index: int):
        """(image, boxes, labels) after ``transform`` then ``target_transform``.

        Without transforms: image RGB uint8 [H,W,3], boxes float32 [K,4] corner
        pixels clipped to the image, labels int64 [K] in 1..C-1 (K may be 0).
        """
        global _substituted
        index = self._check_index(index)
        n = len(self)
        last_error: ImageDecodeError | None = None
        for step in range(n):
            j = (index + step) % n
            if j in self._bad_indices:
                if step == 0:
                    _substituted += 1
                continue
            try:
                image = load_image_rgb(self.image_path(j))
            except ImageDecodeError as e:
                self._bad_indices.add(j)
                self.skipped_images += 1
                if step == 0:
                    _substituted += 1
                last_error = e
                log.warning("skipping unreadable image (%d so far in this process): %s", self.skipped_images, e)
                continue
            height, width = image.shape[:2]
            boxes, labels = self._target(j, width, height)
            boxes, labels = clip_boxes(boxes, labels, width, height)
            if self.transform is not None:
                image, boxes, labels = self.transform(image, boxes, labels)
            if self.target_transform is not None:
                boxes, labels = self.target_transform(boxes, labels)
            return image, boxes, labels
        raise UserError(f"{type(self).__name__}: none of the {n} images could be decoded"
                        + (f" (last: {last_error})" if last_error else ""))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} images, {len(self.class_names) - 1} classes: "
                f"{format_ids(self.class_names[1:], 10)})")


def count_boxes(dataset: Any) -> int | None:
    """Usable boxes of a dataset (a ``ConcatDataset`` of them too), from the annotations alone;
    None when the dataset cannot say (not one of ours)."""
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        counts = [count_boxes(d) for d in parts]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]
    num_boxes = getattr(dataset, "num_boxes", None)
    return int(num_boxes()) if callable(num_boxes) else None


def require_boxes(dataset: Any, what: str, where: str) -> None:
    """Refuse a set without a single box (``UserError``, exit 2): training on it only learns
    "background everywhere" with a loss of 0, and scoring it has no ground truth to score."""
    if count_boxes(dataset) == 0:
        raise UserError(f"the {what} set in {where} has {len(dataset)} images but not one box: nothing to "
                        f"{'learn from' if what == 'training' else 'score against'}; check the annotations "
                        f"(or the class list they are filtered by)")
