"""COCO 2017 detection reader: ``annotations/instances_{type}2017.json`` + ``{type}2017/``.

COCO's category ids have gaps (1..90 for 80 classes); an SSD head needs
labels 1..K. We map them here, in the order of the sorted category ids, so
both the original file and one rewritten by ``fix_coco_annotations.py`` give
the same labels; ``label_to_category_id`` always leads back to the ORIGINAL
COCO id (what the evaluation server and pycocotools expect).

The "fixed" format (shared with fix_coco_annotations.py and the synthetic
generator, see ``fix_coco_dict``): categories renumbered 1..K in order of
their original id, each with ``"original_id"``; annotations' ``category_id``
remapped; top-level ``"pytorch_ssd_fixed": {"version": 1}``.

The index is built with plain ``json`` + numpy (no pycocotools): COCO train
(118k images, 860k boxes) indexes in seconds, most of it JSON parsing.
Problems with the file's structure raise a one-line ``UserError`` naming the
file and ids; individual unusable boxes (non-finite, negative size, nothing
left after clipping) are dropped and counted in one summary log line.
"""
from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from vision.datasets.base import DetectionDataset, Transform, TargetTransform, format_ids, \
    list_image_folder, MIN_BOX_SIZE
from vision.utils.labels import BACKGROUND, normalize_class_names
from vision.utils.misc import UserError, read_json

log = logging.getLogger(__name__)

FIXED_MARKER = "pytorch_ssd_fixed"
FIXED_VERSION = 1


# ----------------------------------------------------------------------------- fixed format
def _check_categories(categories: Any, source: str, fixed: bool) -> list[dict]:
    """Validate the categories list; returns it sorted by id."""
    if not isinstance(categories, list):
        raise UserError(f"{source}: 'categories' must be a list, got {type(categories).__name__}")
    if not categories:
        raise UserError(f"{source}: 'categories' is empty")
    seen: dict[int, int] = {}
    for k, c in enumerate(categories):
        if not isinstance(c, dict):
            raise UserError(f"{source}: categories[{k}] is not an object")
        cid = c.get("id")
        if not _is_int(cid):
            raise UserError(f"{source}: categories[{k}] has no integer 'id' (got {cid!r})")
        name = c.get("name")
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"{source}: category id {cid} has no name")
        if cid in seen:
            raise UserError(f"{source}: duplicate category id {cid} (categories[{seen[cid]}] and [{k}])")
        seen[cid] = k
        if fixed and type(c.get("original_id")) is not int:
            raise UserError(f"{source}: file is marked '{FIXED_MARKER}' but category id {cid} "
                            f"has no integer 'original_id'")
    return sorted(categories, key=lambda c: c["id"])


def is_fixed_coco(data: dict) -> bool:
    """True if ``data`` carries the fixed-format marker."""
    return isinstance(data, dict) and FIXED_MARKER in data


def fix_coco_dict(data: dict, source: str = "annotations") -> dict:
    """Return a copy of a COCO annotation dict in the fixed format (idempotent).

    categories[i] = {"id": i+1, "name", "supercategory", "original_id": old id} in order
    of the old ids; every annotation's category_id remapped; marker added. Images and
    everything else untouched. Raises UserError on an unknown category id.
    """
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise UserError(f"{source}: not a COCO annotation file (needs 'annotations' and 'categories')")
    if is_fixed_coco(data):
        _check_categories(data.get("categories"), source, fixed=True)
        return copy.deepcopy(data)
    cats = _check_categories(data.get("categories"), source, fixed=False)
    new_id = {c["id"]: i + 1 for i, c in enumerate(cats)}
    out = {k: v for k, v in data.items() if k not in ("categories", "annotations")}
    new_cats = []
    for c in cats:
        nc = {"id": new_id[c["id"]], "name": c["name"], "supercategory": c.get("supercategory", ""),
              "original_id": c["id"]}
        nc.update({k: v for k, v in c.items() if k not in nc and k != "id"})
        new_cats.append(nc)
    new_anns = []
    for k, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or a.get("category_id") not in new_id:
            aid = a.get("id") if isinstance(a, dict) else None
            raise UserError(f"{source}: annotation id {aid} (annotations[{k}]) has unknown category_id "
                            f"{a.get('category_id') if isinstance(a, dict) else None!r}")
        na = dict(a)
        na["category_id"] = new_id[a["category_id"]]
        new_anns.append(na)
    out["categories"] = new_cats
    out["annotations"] = new_anns
    out[FIXED_MARKER] = {"version": FIXED_VERSION}
    return out


def _union_with_reference(cats: list[dict], reference: list[dict], src: str) -> list[dict]:
    """This (unfixed) file's categories joined with another split's (``{"id": original id, "name"}``), sorted
    by id: both splits then give the same label to each category. One-line ``UserError`` when this file
    has a category the reference lacks, or one id names two classes."""
    ref = {int(c["id"]): c["name"] for c in reference}
    extra = [c for c in cats if c["id"] not in ref]
    if extra:
        listed = format_ids([f"{c['id']} {c['name']!r}" for c in extra], 5)
        raise UserError(f"{src}: categories {listed} are not in "
                        f"the training split, so the splits would number the classes differently; renumber both "
                        f"files by one mapping with fix_coco_annotations.py DATASET_DIR")
    for c in cats:
        if ref[c["id"]] != c["name"]:
            raise UserError(f"{src}: category id {c['id']} is {c['name']!r} here but {ref[c['id']]!r} in the training "
                            f"split; renumber both files by one mapping with fix_coco_annotations.py DATASET_DIR")
    own = {c["id"] for c in cats}
    missing = [{"id": i, "name": n} for i, n in ref.items() if i not in own]
    if missing:
        log.info("%s lacks %d of the training split's categories (%s); labels follow the training split",
                 src, len(missing), format_ids([c["name"] for c in missing], 5))
    return sorted(list(cats) + missing, key=lambda c: c["id"])


# ----------------------------------------------------------------------------- index helpers
def _first_bad(items: list, ok) -> int:
    for k, v in enumerate(items):
        if not ok(v):
            return k
    return -1


_INT64_MIN, _INT64_MAX = -2 ** 63, 2 ** 63 - 1


def _is_int(v: Any) -> bool:
    """A JSON integer usable as an id: not a bool (JSON true is not 1) and fits in 64 bits."""
    return type(v) is int and _INT64_MIN <= v <= _INT64_MAX


def _int_problem(v: Any) -> str:
    return "out-of-range (over 64 bits)" if type(v) is int else "non-integer"


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float)


def _ann_desc(anns: list, k: int) -> str:
    a = anns[k]
    aid = a.get("id") if isinstance(a, dict) else None
    return f"annotation id {aid} (annotations[{k}])"


def _lookup(sorted_keys: np.ndarray, order: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each value in the original key array, and a found-mask."""
    if len(sorted_keys) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    pos = np.searchsorted(sorted_keys, values)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    found = sorted_keys[pos] == values
    return order[pos], found


def _check_top_level(data: Any, src: str) -> bool:
    """The file is an object with images/annotations/categories lists; returns whether it is in the
    fixed format (fix_coco_annotations.py), whose version this code must understand."""
    if not isinstance(data, dict):
        raise UserError(f"{src}: top level must be a JSON object with images/annotations/categories, "
                        f"got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            hint = " (an image_info file has no boxes to train on)" if key == "annotations" else ""
            raise UserError(f"{src}: missing '{key}'{hint}")
        if not isinstance(data[key], list):
            raise UserError(f"{src}: '{key}' must be a list, got {type(data[key]).__name__}")
    fixed = is_fixed_coco(data)
    if fixed and not (isinstance(data[FIXED_MARKER], dict)
                      and type(data[FIXED_MARKER].get("version")) is int):
        raise UserError(f"{src}: '{FIXED_MARKER}' must be an object with an integer 'version'")
    if fixed and data[FIXED_MARKER]["version"] > FIXED_VERSION:
        raise UserError(f"{src}: fixed-format version {data[FIXED_MARKER]['version']} is newer than "
                        f"this code understands ({FIXED_VERSION})")
    return fixed


class _Images(NamedTuple):
    ids: np.ndarray  # [n] int64, file order
    order: np.ndarray  # argsort of ids
    sorted_ids: np.ndarray
    file_names: list[str]
    widths: np.ndarray  # [n] float64, NaN where the file has no usable size
    heights: np.ndarray


def _index_images(images: list, src: str) -> _Images:
    """Image ids (integers, unique) and file names (non-empty strings), with their sizes."""
    try:
        img_ids_list = [im["id"] for im in images]
        file_names = [im["file_name"] for im in images]
    except (KeyError, TypeError):
        k = _first_bad(images, lambda im: isinstance(im, dict) and "id" in im and "file_name" in im)
        raise UserError(f"{src}: images[{k}] needs 'id' and 'file_name'") from None
    k = _first_bad(img_ids_list, _is_int)
    if k >= 0:
        raise UserError(f"{src}: images[{k}] has a {_int_problem(img_ids_list[k])} id {img_ids_list[k]!r}")
    k = _first_bad(file_names, lambda s: isinstance(s, str) and s != "")
    if k >= 0:
        raise UserError(f"{src}: image id {img_ids_list[k]} has an invalid file_name {file_names[k]!r}")
    img_ids = np.array(img_ids_list, dtype=np.int64).reshape(-1)
    img_order = np.argsort(img_ids, kind="stable")
    img_sorted = img_ids[img_order]
    if len(img_sorted) > 1:
        dup = np.unique(img_sorted[1:][img_sorted[1:] == img_sorted[:-1]])
        if len(dup):
            raise UserError(f"{src}: duplicate image ids: {format_ids(dup.tolist())}")
    widths = np.array([_dim(im.get("width")) for im in images], dtype=np.float64).reshape(-1)
    heights = np.array([_dim(im.get("height")) for im in images], dtype=np.float64).reshape(-1)
    return _Images(img_ids, img_order, img_sorted, file_names, widths, heights)


class _Annotations(NamedTuple):
    items: list  # the file's annotation dicts (for ids in messages)
    img_idx: np.ndarray  # [m] index into the images
    labels: np.ndarray  # [m] int64 1..K
    boxes: np.ndarray  # [m, 4] float64 x, y, w, h as in the file
    crowd: np.ndarray  # [m] bool


def _read_annotations(anns: list, src: str, images: _Images, file_cat_ids: np.ndarray) -> _Annotations:
    """Every annotation's image (must exist), label (its category must exist), bbox (4 numbers) and
    iscrowd, checked type by type (numpy would turn JSON true into 1 and 2**70 into an object array)."""
    n_ann = len(anns)
    try:
        a_img = [a["image_id"] for a in anns]
        a_cat = [a["category_id"] for a in anns]
        a_box = [a["bbox"] for a in anns]
        a_crowd = [a.get("iscrowd", 0) for a in anns]
    except (KeyError, TypeError, AttributeError):
        k = _first_bad(anns, lambda a: isinstance(a, dict) and all(x in a for x in
                                                                   ("image_id", "category_id", "bbox")))
        raise UserError(f"{src}: {_ann_desc(anns, k)} needs 'image_id', 'category_id' and 'bbox'") from None
    k = _first_bad(a_img, _is_int)
    if k >= 0:
        raise UserError(f"{src}: {_ann_desc(anns, k)} has a {_int_problem(a_img[k])} image_id {a_img[k]!r}")
    k = _first_bad(a_cat, _is_int)
    if k >= 0:
        raise UserError(f"{src}: {_ann_desc(anns, k)} has a {_int_problem(a_cat[k])} category_id {a_cat[k]!r}")
    a_img_arr = np.array(a_img, dtype=np.int64).reshape(-1)
    a_cat_arr = np.array(a_cat, dtype=np.int64).reshape(-1)
    img_idx, found = _lookup(images.sorted_ids, images.order, a_img_arr.astype(np.int64))
    if not found.all():
        bad = np.flatnonzero(~found)
        raise UserError(f"{src}: {len(bad)} annotation(s) reference unknown image ids: "
                        + format_ids([f"{_ann_desc(anns, k)} -> image {a_img[k]}" for k in bad[:5]], 3))
    cat_order = np.argsort(file_cat_ids)
    labels_idx, found = _lookup(file_cat_ids[cat_order], cat_order, a_cat_arr.astype(np.int64))
    if not found.all():
        bad = np.flatnonzero(~found)
        raise UserError(f"{src}: {len(bad)} annotation(s) reference unknown category ids: "
                        + format_ids([f"{_ann_desc(anns, k)} -> category {a_cat[k]}" for k in bad[:5]], 3))
    labels = labels_idx.astype(np.int64) + 1
    try:
        box_arr = np.array(a_box) if n_ann else np.zeros((0, 4))
    except (ValueError, TypeError):
        box_arr = np.zeros(0)
    if box_arr.ndim != 2 or box_arr.shape[1] != 4 or box_arr.dtype.kind not in "fiu":
        k = _first_bad(a_box, lambda b: isinstance(b, list) and len(b) == 4 and all(map(_is_num, b)))
        raise UserError(f"{src}: {_ann_desc(anns, k)} has an invalid bbox {a_box[k]!r} "
                        f"(expected [x, y, width, height] numbers)")
    crowd_arr = np.array(a_crowd) if n_ann else np.zeros(0, np.int64)
    if crowd_arr.dtype.kind not in "biuf" or crowd_arr.ndim != 1:
        k = _first_bad(a_crowd, lambda v: type(v) in (int, bool, float))
        raise UserError(f"{src}: {_ann_desc(anns, k)} has an invalid iscrowd {a_crowd[k]!r}")
    return _Annotations(anns, img_idx, labels, box_arr.astype(np.float64), crowd_arr != 0)


class COCODataset(DetectionDataset):
    """COCO-format detection dataset (upstream-compatible ``__getitem__``).

    ``dataset_type`` picks ``annotations/instances_{type}2017.json`` and the image
    folder ``{type}2017/`` under ``root`` (``ann_file`` / ``image_dir`` override).
    Crowd boxes never reach training targets; ``get_annotation`` reports them
    with ``is_difficult = 1`` so a VOC-style evaluation ignores them as COCO does.
    ``keep_empty``: images without boxes stay as pure-background samples.
    ``check_images``: drop images whose file is not in the image folder.
    ``strict``: raise instead of dropping individual invalid boxes.
    ``reference_categories``: the ``categories`` of another split (the training one) of an unfixed
    file: labels are then numbered by the union of both by original id, so a validation file that
    lacks a category keeps the training labels; a category the reference lacks is a one-line error
    (renumber both with fix_coco_annotations.py).
    """

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None,
                 target_transform: TargetTransform | None = None, dataset_type: str = "train",
                 keep_empty: bool = True, check_images: bool = True,
                 ann_file: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
                 strict: bool = False, reference_categories: list[dict] | None = None) -> None:
        super().__init__(transform, target_transform)
        self.reference_categories = reference_categories
        if not isinstance(dataset_type, str) or not dataset_type.strip():
            raise UserError(f"COCO dataset_type must be a name like 'train' or 'val', got {dataset_type!r}")
        self.root = Path(root)
        self.dataset_type = dataset_type.strip().lower()
        self.ann_file = Path(ann_file) if ann_file is not None else \
            self.root / "annotations" / f"instances_{self.dataset_type}2017.json"
        self.image_dir = Path(image_dir) if image_dir is not None else self.root / f"{self.dataset_type}2017"
        self.keep_empty = keep_empty
        self.check_images = check_images
        self.strict = strict
        self.stats: dict[str, int] = {}
        self._invalid_examples: list = []
        self._degenerate_examples: list = []
        data = read_json(self.ann_file, "COCO annotation file")
        self._build(data)

    # ------------------------------------------------------------------ index building
    def _build(self, data: Any) -> None:
        """Check the file and index it: categories -> labels, images, annotations, box checks, then
        the images and boxes kept (each step raises a one-line UserError naming what is wrong)."""
        src = str(self.ann_file)
        fixed = _check_top_level(data, src)
        file_cat_ids = self._index_categories(data["categories"], src, fixed)
        images = _index_images(data["images"], src)
        anns = _read_annotations(data["annotations"], src, images, file_cat_ids)
        corners, invalid, degenerate = self._check_boxes(anns, images, src)
        self._keep(images, anns, corners, invalid, degenerate)
        self._log_summary(src)
        if not self.image_ids:
            raise UserError(f"{src}: no usable images ({self.stats['images_in_file']} listed, "
                            f"{self.stats['images_missing']} missing from {self.image_dir}, "
                            f"{self.stats['images_without_boxes_dropped']} without boxes dropped)")

    def _index_categories(self, categories: Any, src: str, fixed: bool) -> np.ndarray:
        """Categories -> contiguous labels 1..K in order of the file's ids; returns the file's ids."""
        cats = _check_categories(categories, src, fixed)
        self.is_fixed = fixed or all("original_id" in c for c in cats)
        if not self.is_fixed and self.reference_categories is not None:
            cats = _union_with_reference(cats, self.reference_categories, src)
        # by original id: what another split of the same data is numbered by (see reference_categories)
        self.categories: list[dict] = [{"id": c["original_id"] if type(c.get("original_id")) is int else c["id"],
                                        "name": c["name"]} for c in cats]
        file_cat_ids = np.array([c["id"] for c in cats], dtype=np.int64)
        original = [c["original_id"] if type(c.get("original_id")) is int else c["id"] for c in cats]
        self.class_names = normalize_class_names([BACKGROUND] + [c["name"] for c in cats], source=src)
        self.label_to_category_id: dict[int, int] = {i + 1: int(o) for i, o in enumerate(original)}
        self.label_to_file_category_id: dict[int, int] = {i + 1: int(c) for i, c in enumerate(file_cat_ids)}
        self.category_id_to_label: dict[int, int] = {v: k for k, v in self.label_to_category_id.items()}
        if not self.is_fixed and file_cat_ids[0] == 0:
            log.warning("%s: category ids start at 0: this file looks renumbered by an old fixer, so the "
                        "original COCO ids are unknown (results will use these ids)", src)
        return file_cat_ids

    def _check_boxes(self, anns: "_Annotations", images: "_Images",
                     src: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(corner boxes clipped to the image, invalid, degenerate)``: a non-finite or negative-size
        box is invalid (an error with ``strict``); a clipped box thinner than MIN_BOX_SIZE is degenerate."""
        box_arr = anns.boxes
        invalid = ~np.isfinite(box_arr).all(axis=1) | (box_arr[:, 2] < 0) | (box_arr[:, 3] < 0)
        if invalid.any():
            bad_ids = [anns.items[k].get("id") for k in np.flatnonzero(invalid)[:5]]
            if self.strict:
                raise UserError(f"{src}: {int(invalid.sum())} annotation(s) with a non-finite or negative-size "
                                f"bbox: ids {format_ids(bad_ids)}")
            self._invalid_examples = bad_ids
        corners = np.empty_like(box_arr)
        with np.errstate(invalid="ignore", over="ignore"):
            corners[:, :2] = box_arr[:, :2]
            corners[:, 2:] = box_arr[:, :2] + box_arr[:, 2:]
            w_lim = np.where(np.isfinite(images.widths), images.widths, np.inf)[anns.img_idx]
            h_lim = np.where(np.isfinite(images.heights), images.heights, np.inf)[anns.img_idx]
            corners[:, 0] = np.clip(corners[:, 0], 0, w_lim)
            corners[:, 2] = np.clip(corners[:, 2], 0, w_lim)
            corners[:, 1] = np.clip(corners[:, 1], 0, h_lim)
            corners[:, 3] = np.clip(corners[:, 3], 0, h_lim)
            degenerate = ~invalid & (((corners[:, 2] - corners[:, 0]) < MIN_BOX_SIZE)
                                     | ((corners[:, 3] - corners[:, 1]) < MIN_BOX_SIZE))
        self._degenerate_examples = [anns.items[k].get("id") for k in np.flatnonzero(degenerate)[:5]]
        return corners, invalid, degenerate

    def _keep(self, images: "_Images", anns: "_Annotations", corners: np.ndarray, invalid: np.ndarray,
              degenerate: np.ndarray) -> None:
        """Keep the images present on disk and (unless keep_empty) with a training box, and their
        valid boxes, packed per image; fill ``stats``."""
        keep_ann = ~invalid & ~degenerate
        img_idx, crowd = anns.img_idx, anns.crowd
        n_img = len(images.ids)
        present = np.ones(n_img, dtype=bool)
        if self.check_images:
            present = self._present_on_disk(images.file_names)
        has_box = np.bincount(img_idx[keep_ann & ~crowd], minlength=n_img) > 0
        keep_img = present & (has_box | self.keep_empty)

        keep_ann &= keep_img[img_idx]
        new_index = np.cumsum(keep_img) - 1
        a_new = new_index[img_idx[keep_ann]]
        order = np.argsort(a_new, kind="stable")
        self._boxes = corners[keep_ann][order].astype(np.float32)
        self._labels = anns.labels[keep_ann][order]
        self._crowd = crowd[keep_ann][order]
        counts = np.bincount(a_new, minlength=int(keep_img.sum()))
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        kept = np.flatnonzero(keep_img)
        self.image_ids: list[int] = images.ids[kept].tolist()
        self._file_names: list[str] = [images.file_names[k] for k in kept]
        # listed in the file but not on disk: evaluation scores them as images without detections (as
        # the COCO server would), so a missing picture never turns the score into one of a subset
        self.missing_image_ids: list[int] = images.ids[~present].tolist()

        n_empty_total = int((~has_box & present).sum())
        self.stats = {
            "images_in_file": n_img,
            "images": len(self.image_ids),
            "images_missing": int((~present).sum()),
            "images_without_boxes": n_empty_total,
            "images_without_boxes_dropped": 0 if self.keep_empty else n_empty_total,
            "annotations_in_file": len(anns.items),
            "boxes": int((keep_ann & ~crowd).sum()),
            "crowd_boxes": int((keep_ann & crowd).sum()),
            "invalid_boxes": int(invalid.sum()),
            "degenerate_boxes": int(degenerate.sum()),
        }

    def _present_on_disk(self, file_names: list[str]) -> np.ndarray:
        names = list_image_folder(self.image_dir)
        if names is None:
            raise UserError(f"image folder not found: {self.image_dir} (needed by {self.ann_file}; "
                            f"pass image_dir= if it lives elsewhere)")
        out = np.empty(len(file_names), dtype=bool)
        for k, name in enumerate(file_names):
            if "/" in name or os.sep in name:
                out[k] = (self.image_dir / name).is_file()
            else:
                out[k] = name in names
        return out

    def _log_summary(self, src: str) -> None:
        s = self.stats
        problems = []
        if s["images_missing"]:
            problems.append(f"{s['images_missing']} images missing from {self.image_dir}")
        if s["invalid_boxes"]:
            problems.append(f"{s['invalid_boxes']} invalid boxes dropped "
                            f"(non-finite or negative size, ids {format_ids(self._invalid_examples)})")
        if s["degenerate_boxes"]:
            problems.append(f"{s['degenerate_boxes']} boxes under {MIN_BOX_SIZE:g} px after clipping dropped "
                            f"(ids {format_ids(self._degenerate_examples)})")
        empty = f"{s['images_without_boxes']} without boxes " + \
            ("kept as background" if self.keep_empty else "dropped")
        msg = (f"COCO {src}: {s['images']} of {s['images_in_file']} images ({empty}), {s['boxes']} boxes, "
               f"{len(self.class_names) - 1} classes, {s['crowd_boxes']} crowd boxes not trained on"
               + ("; " + "; ".join(problems) if problems else ""))
        (log.warning if problems else log.info)(msg)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.image_dir / self._file_names[index]

    def coco_image_id(self, index: int) -> int:
        """The COCO image id of sample ``index`` (what results files refer to)."""
        return self.image_ids[self._check_index(index)]

    def get_annotation(self, index: int) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(coco image id, (boxes float32 [K,4] corner pixels, labels int64 [K], is_difficult uint8 [K])).

        Crowd boxes are included, flagged is_difficult=1.
        """
        index = self._check_index(index)
        s, e = self._offsets[index], self._offsets[index + 1]
        return self.image_ids[index], (self._boxes[s:e].copy(), self._labels[s:e].copy(),
                                       self._crowd[s:e].astype(np.uint8))

    def _target(self, index: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self._offsets[index], self._offsets[index + 1]
        keep = ~self._crowd[s:e]
        return self._boxes[s:e][keep], self._labels[s:e][keep]


def _dim(v: Any) -> float:
    """A usable image width/height from the json, or NaN (then we clip at load time)."""
    if (type(v) is int or type(v) is float) and math.isfinite(v) and v > 0:
        return float(v)
    return math.nan
