"""Pascal VOC layout reader (also CVAT / LabelImg exports, as dusty-nv's fork accepts).

Layout under ``root``: ``Annotations/<id>.xml``, ``JPEGImages/<id>.<ext>`` (any
common image extension, any case), ``ImageSets/Main/<set>.txt``. The image
set is ``trainval.txt`` (then ``train.txt``, then CVAT's ``default.txt``) for
training and ``test.txt`` (then ``val.txt``, then ``default.txt``) with
``is_test=True``. Classes come from ``label_file``, else ``root/labels.txt``,
else the 20 VOC classes; BACKGROUND is prepended when missing.

All XML is parsed once here (not per sample). As upstream, coordinates are
shifted by -1 (VOC counts pixels from 1). Images that are listed but have no
XML, no objects, or no picture on disk are skipped and counted in one
summary log line; so are individual boxes with min > max or no area. A
malformed XML file or non-numeric coordinates raise a UserError naming the file.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from vision.datasets.base import DetectionDataset, Transform, TargetTransform, format_ids, \
    list_image_folder, MIN_BOX_SIZE
from vision.utils.labels import BACKGROUND, read_labels
from vision.utils.misc import UserError
from vision.utils.paths import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

VOC_CLASSES = (BACKGROUND, "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
TRAIN_SETS = ("trainval.txt", "train.txt", "default.txt")
TEST_SETS = ("test.txt", "val.txt", "default.txt")


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


class VOCDataset(DetectionDataset):
    """VOC-format detection dataset (upstream-compatible interface).

    ``get_annotation(i)`` -> (image id str, (boxes float32 [K,4] corner pixels, labels
    int64 [K], is_difficult uint8 [K])) including difficult boxes; ``__getitem__``
    drops difficult boxes unless ``keep_difficult``.
    """

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None,
                 target_transform: TargetTransform | None = None, is_test: bool = False,
                 keep_difficult: bool = False, label_file: str | os.PathLike | None = None) -> None:
        super().__init__(transform, target_transform)
        self.root = Path(root)
        self.is_test = is_test
        self.keep_difficult = keep_difficult
        if not self.root.is_dir():
            raise UserError(f"VOC dataset folder not found: {self.root}")
        self.image_sets_file = self._find_image_set()

        if label_file is not None:
            self.class_names = read_labels(label_file)
            self.label_file: Path | None = Path(label_file)
        elif (self.root / "labels.txt").is_file():
            self.label_file = self.root / "labels.txt"
            self.class_names = read_labels(self.label_file)
        else:
            self.label_file = None
            self.class_names = list(VOC_CLASSES)
        self.class_dict = {name: i for i, name in enumerate(self.class_names)}
        self._class_dict_lower = {name.lower(): i for i, name in enumerate(self.class_names)}
        self._load()

    def _find_image_set(self) -> Path:
        main = self.root / "ImageSets" / "Main"
        names = TEST_SETS if self.is_test else TRAIN_SETS
        for name in names:
            if (main / name).is_file():
                return main / name
        raise UserError(f"{self.root}: no image set file; looked for " +
                        ", ".join(f"ImageSets/Main/{n}" for n in names))

    def _load(self) -> None:
        ids: list[str] = []
        seen: set[str] = set()
        try:
            lines = self.image_sets_file.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise UserError(f"image set file is not UTF-8 text: {self.image_sets_file}") from None
        for line in lines:
            parts = line.split()
            if parts and parts[0] not in seen:
                seen.add(parts[0])
                ids.append(parts[0])

        image_dir = self.root / "JPEGImages"
        listing = list_image_folder(image_dir)
        if listing is None:
            raise UserError(f"VOC image folder not found: {image_dir}")
        by_stem: dict[str, str] = {}
        rank = {ext: r for r, ext in enumerate(IMAGE_EXTENSIONS)}
        for name in listing:
            stem, ext = os.path.splitext(name)
            r = rank.get(ext.lower())
            if r is not None and (stem not in by_stem or r < rank[os.path.splitext(by_stem[stem])[1].lower()]):
                by_stem[stem] = name

        self.image_ids: list[str] = []
        self._files: list[str] = []
        self._annotations: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        counts = {"no_xml": 0, "no_objects": 0, "only_bad_boxes": 0, "no_image": 0, "bad_boxes": 0}
        examples: dict[str, list[str]] = {k: [] for k in counts}
        unknown: dict[str, int] = {}
        for image_id in ids:
            xml = self.root / "Annotations" / f"{image_id}.xml"
            reason = None
            if not xml.is_file():
                reason = "no_xml"
            else:
                boxes, labels, difficult, n_objects, n_bad = self._parse(xml, unknown)
                counts["bad_boxes"] += n_bad
                if n_bad:
                    examples["bad_boxes"].append(image_id)
                if n_objects == 0:
                    reason = "no_objects"
                elif n_bad and len(boxes) == 0:
                    # its objects are there but unusable: training it as pure background would be wrong
                    reason = "only_bad_boxes"
                elif image_id not in by_stem:
                    reason = "no_image"
            if reason:
                counts[reason] += 1
                examples[reason].append(image_id)
                continue
            self.image_ids.append(image_id)
            self._files.append(by_stem[image_id])
            self._annotations.append((boxes, labels, difficult))
        self.stats = {"listed": len(ids), "images": len(self.image_ids), **counts,
                      "unknown_class_boxes": sum(unknown.values())}
        parts = []
        texts = {"no_xml": "without an XML file", "no_objects": "without objects",
                 "only_bad_boxes": "whose every box is invalid",
                 "no_image": f"without a picture in {image_dir}"}
        for key, text in texts.items():
            if counts[key]:
                parts.append(f"{counts[key]} listed images {text} skipped (e.g. {format_ids(examples[key], 3)})")
        if counts["bad_boxes"]:
            parts.append(f"{counts['bad_boxes']} boxes with min > max or no area dropped "
                         f"(in {format_ids(examples['bad_boxes'], 3)})")
        if unknown:
            parts.append("boxes of classes not in the label list ignored: "
                         + format_ids([f"{k} x{v}" for k, v in sorted(unknown.items())]))
        msg = (f"VOC {self.image_sets_file}: {len(self.image_ids)} of {len(ids)} images, "
               f"{len(self.class_names) - 1} classes" + ("; " + "; ".join(parts) if parts else ""))
        (log.warning if parts else log.info)(msg)
        if not self.image_ids:
            raise UserError(f"VOC dataset {self.root}: no usable images in {self.image_sets_file}")

    def _parse(self, xml: Path, unknown: dict[str, int]):
        """-> (boxes [K,4], labels [K], difficult [K], number of <object>s, dropped boxes)."""
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as e:
            raise UserError(f"malformed XML annotation {xml}: {e}") from None
        except OSError as e:
            raise UserError(f"cannot read annotation {xml}: {e}") from None
        width = height = None
        size = root.find("size")
        if size is not None:
            try:
                w, h = float(_text(size, "width") or 0), float(_text(size, "height") or 0)
            except ValueError:
                raise UserError(f"{xml}: <size> width/height are not numbers") from None
            if w > 0 and h > 0:  # LabelImg writes 0x0 when it could not read the image: ignore
                width, height = w, h
        objects = root.findall("object")
        boxes, labels, difficult = [], [], []
        n_bad = 0
        for k, obj in enumerate(objects):
            name = _text(obj, "name")
            if not name:
                raise UserError(f"{xml}: object {k + 1} has no <name>")
            label = self.class_dict.get(name, self._class_dict_lower.get(name.lower()))
            if label is None or label == 0:
                unknown[name] = unknown.get(name, 0) + 1
                continue
            bb = obj.find("bndbox")
            try:
                x1, y1, x2, y2 = (float(_text(bb, t)) - 1.0 for t in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise UserError(f"{xml}: object {k + 1} ({name}) needs a <bndbox> with numeric "
                                f"xmin/ymin/xmax/ymax") from None
            if not all(np.isfinite((x1, y1, x2, y2))):
                raise UserError(f"{xml}: object {k + 1} ({name}) has non-finite coordinates")
            x1, y1 = max(x1, 0.0), max(y1, 0.0)
            if width is not None:
                x2, y2 = min(x2, width), min(y2, height)
            if x2 - x1 < MIN_BOX_SIZE or y2 - y1 < MIN_BOX_SIZE:
                n_bad += 1
                continue
            d = _text(obj, "difficult")
            try:
                is_diff = int(float(d)) if d else 0
            except ValueError:
                is_diff = 1 if d.lower() in ("true", "yes") else 0
            boxes.append((x1, y1, x2, y2))
            labels.append(label)
            difficult.append(1 if is_diff else 0)
        return (np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64),
                np.array(difficult, dtype=np.uint8), len(objects), n_bad)

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.root / "JPEGImages" / self._files[index]

    def get_annotation(self, index: int) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        index = self._check_index(index)
        boxes, labels, difficult = self._annotations[index]
        return self.image_ids[index], (boxes.copy(), labels.copy(), difficult.copy())

    def _target(self, index: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        boxes, labels, difficult = self._annotations[index]
        if self.keep_difficult:
            return boxes, labels
        keep = difficult == 0
        return boxes[keep], labels[keep]
