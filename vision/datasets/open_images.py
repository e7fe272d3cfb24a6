"""Open Images reader in upstream's layout (what open_images_downloader.py writes).

``root/sub-{type}-annotations-bbox.csv`` with at least the columns ImageID,
XMin, XMax, YMin, YMax (normalised 0..1) and ClassName; pictures in
``root/{type}/{ImageID}.jpg``. Class names are the csv's ClassName values
sorted, BACKGROUND first (as upstream). Boxes are stored normalised and
scaled to the decoded image's pixels when a sample is read.

``balance_data`` (upstream): keep, for every class, at most as many images as
the rarest class has, drawn at random (``balance_seed`` makes it repeatable).
"""
from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path

import numpy as np

from vision.datasets.base import DetectionDataset, Transform, TargetTransform, format_ids, list_image_folder
from vision.datasets.image_io import load_image_rgb
from vision.utils.labels import BACKGROUND, normalize_class_names, read_labels
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("ImageID", "XMin", "XMax", "YMin", "YMax", "ClassName")


class OpenImagesDataset(DetectionDataset):
    """Open Images detection dataset (upstream-compatible interface).

    ``get_annotation(i)`` -> (ImageID, (boxes float32 [K,4] corner pixels, labels int64 [K],
    is_difficult uint8 [K] all zero)); it decodes the image once to learn its size.
    """

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None,
                 target_transform: TargetTransform | None = None, dataset_type: str = "train",
                 balance_data: bool = False, balance_seed: int | None = None) -> None:
        super().__init__(transform, target_transform)
        self.root = Path(root)
        self.dataset_type = str(dataset_type).lower()
        self.ann_file = self.root / f"sub-{self.dataset_type}-annotations-bbox.csv"
        self.image_dir = self.root / self.dataset_type
        self.balance_data = balance_data
        self.min_image_num = -1
        self._sizes: dict[int, tuple[int, int]] = {}  # index -> (width, height), learnt on load
        self._read()
        if balance_data:
            self._balance(np.random.default_rng(balance_seed))

    def _read(self) -> None:
        src = self.ann_file
        try:
            f = open(src, newline="", encoding="utf-8-sig")
        except FileNotFoundError:
            raise UserError(f"Open Images annotation file not found: {src}") from None
        except OSError as e:
            raise UserError(f"cannot read {src}: {e}") from None
        per_image: dict[str, list[tuple[float, float, float, float, str]]] = {}
        n_bad = 0
        with f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise UserError(f"{src}: empty file (expected a header with {', '.join(REQUIRED_COLUMNS)})") \
                    from None
            except (csv.Error, UnicodeDecodeError) as e:
                raise UserError(f"{src}: not a CSV text file ({e})") from None
            header = [h.strip() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise UserError(f"{src}: missing column(s) {', '.join(missing)} "
                                f"(found: {', '.join(header) or 'none'})")
            col = [header.index(c) for c in REQUIRED_COLUMNS]
            width = max(col) + 1
            try:
                for row in reader:
                    if not row:
                        continue
                    if len(row) < width:
                        raise UserError(f"{src}:{reader.line_num}: row has {len(row)} fields, "
                                        f"expected at least {width}")
                    image_id, xmin, xmax, ymin, ymax, name = (row[i] for i in col)
                    try:
                        x1, x2, y1, y2 = float(xmin), float(xmax), float(ymin), float(ymax)
                    except ValueError:
                        raise UserError(f"{src}:{reader.line_num}: non-numeric box coordinates "
                                        f"{[xmin, xmax, ymin, ymax]}") from None
                    if not all(map(math.isfinite, (x1, x2, y1, y2))):
                        n_bad += 1
                        continue
                    x1, x2 = min(max(x1, 0.0), 1.0), min(max(x2, 0.0), 1.0)
                    y1, y2 = min(max(y1, 0.0), 1.0), min(max(y2, 0.0), 1.0)
                    if x2 <= x1 or y2 <= y1 or not image_id.strip() or not name.strip():
                        n_bad += 1
                        continue
                    per_image.setdefault(image_id.strip(), []).append((x1, y1, x2, y2, name.strip()))
            except (csv.Error, UnicodeDecodeError) as e:
                raise UserError(f"{src}:{reader.line_num}: unreadable CSV ({e})") from None

        names = sorted({b[4] for boxes in per_image.values() for b in boxes})
        if not names:
            raise UserError(f"{src}: no usable boxes")
        labels_file = Path(self.root) / "labels.txt"
        if labels_file.is_file():
            # the class list of the whole download (open_images_downloader.py writes it): a class
            # missing from one split must not shift the label ids of the others
            self.class_names = read_labels(labels_file)
            unknown = sorted(set(names) - set(self.class_names))
            if unknown:
                raise UserError(f"{src}: class(es) {', '.join(unknown)} are not in {labels_file}")
        else:
            self.class_names = normalize_class_names([BACKGROUND] + names, source=str(src))
        self.class_dict = {n: i for i, n in enumerate(self.class_names)}

        listing = list_image_folder(self.image_dir)
        if listing is None:
            raise UserError(f"Open Images image folder not found: {self.image_dir}")
        self.image_ids: list[str] = []
        self._boxes: list[np.ndarray] = []   # normalised corner form [K,4]
        self._labels: list[np.ndarray] = []
        missing = []
        for image_id in sorted(per_image):
            if f"{image_id}.jpg" not in listing:
                missing.append(image_id)
                continue
            rows = per_image[image_id]
            self.image_ids.append(image_id)
            self._boxes.append(np.array([r[:4] for r in rows], dtype=np.float32).reshape(-1, 4))
            self._labels.append(np.array([self.class_dict[r[4]] for r in rows], dtype=np.int64))
        problems = []
        if missing:
            problems.append(f"{len(missing)} images missing from {self.image_dir} skipped "
                            f"(e.g. {format_ids(missing, 3)})")
        if n_bad:
            problems.append(f"{n_bad} boxes with no area or bad values dropped")
        msg = (f"Open Images {src}: {len(self.image_ids)} images, "
               f"{sum(len(b) for b in self._boxes)} boxes, {len(self.class_names) - 1} classes"
               + ("; " + "; ".join(problems) if problems else ""))
        (log.warning if problems else log.info)(msg)
        if not self.image_ids:
            raise UserError(f"Open Images dataset {self.root}: no images with boxes found in {self.image_dir}")

    def _balance(self, rng: np.random.Generator) -> None:
        per_class: list[list[int]] = [[] for _ in self.class_names]
        for i, labels in enumerate(self._labels):
            for label in set(labels.tolist()):
                per_class[label].append(i)
        counts = [len(v) for v in per_class[1:]]
        self.min_image_num = min(counts)
        chosen: set[int] = set()
        for indexes in per_class[1:]:
            chosen.update(rng.permutation(indexes)[:self.min_image_num].tolist())
        keep = sorted(chosen)
        log.info("balanced Open Images data: %d of %d images (at most %d per class)",
                 len(keep), len(self.image_ids), self.min_image_num)
        self.image_ids = [self.image_ids[i] for i in keep]
        self._boxes = [self._boxes[i] for i in keep]
        self._labels = [self._labels[i] for i in keep]

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.image_dir / f"{self.image_ids[index]}.jpg"

    def get_image(self, index: int) -> np.ndarray:
        image = super().get_image(index)
        self._sizes[self._check_index(index)] = (image.shape[1], image.shape[0])
        return image

    def get_annotation(self, index: int) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        index = self._check_index(index)
        if index not in self._sizes:
            image = load_image_rgb(self.image_path(index))
            self._sizes[index] = (image.shape[1], image.shape[0])
        boxes, labels = self._target(index, *self._sizes[index])
        return self.image_ids[index], (boxes, labels.copy(), np.zeros(len(labels), dtype=np.uint8))

    def num_boxes(self) -> int:
        """Boxes in the CSV rows kept (``_target`` would record a fake image size)."""
        return sum(len(labels) for labels in self._labels)

    def _target(self, index: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        self._sizes[index] = (width, height)
        scale = np.array([width, height, width, height], dtype=np.float32)
        return self._boxes[index] * scale, self._labels[index]
