"""A small, learnable, COCO-2017-shaped dataset made of coloured shapes.

Why: every test and smoke run needs detection data without downloading
COCO. The pictures are easy (each class is one colour + one shape, objects
8-60 % of the image side, muted textured backgrounds) so a small SSD learns
them in minutes on a CPU, while the files carry COCO's real quirks so the
loaders meet them early:

* category ids with gaps (1, 3, 7, 18, 44, 90) and supercategories;
* ``iscrowd`` regions (clusters of tiny shapes) with an uncompressed RLE
  segmentation, ordinary objects with polygon segmentation and ``area``;
* images without any annotation, one grayscale (1-channel) JPEG, images of
  varying size, the ``images`` list not in id order, gapped image and
  annotation ids, ``info`` and ``licenses`` sections.

Two looks (``style``), the same classes, ids, quirks and files: ``shapes`` (the
default, described above; its output for a seed never changes, recorded benchmark
numbers depend on it) and ``scenes`` (photo-like clutter, distractor shapes that are no
class, textured / outlined / shadowed / translucent / defocused objects of any rotation,
6-50 % of the side; see ``vision.datasets.synthetic_scenes``), to check that a training
recipe was not tuned to one look.

Same seed -> byte-identical json and identical pixels (every image has its
own random stream, so its content does not depend on the split size).
``fixed=True`` writes the annotations already in the format
``fix_coco_annotations.py`` produces (see ``coco_dataset.fix_coco_dict``).

Run ``python3 -m vision.datasets.synthetic OUT --train N --val M [--style scenes]``.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Protocol, Sequence

import cv2
import numpy as np

from vision.datasets.coco_dataset import fix_coco_dict
from vision.datasets.synthetic_geometry import shape_mask
from vision.datasets.synthetic_scenes import ScenesLook
from vision.utils.misc import UserError, add_log_level_arg, atomic_write, atomic_write_json, float_range, \
    int_range, non_negative_int, run_main, setup_logging
from vision.utils.paths import check_output_dir

log = logging.getLogger(__name__)

# (original COCO-style id, name, supercategory, RGB colour, shape)
CLASSES: list[tuple[int, str, str, tuple[int, int, int], str]] = [
    (1, "red circle", "round", (220, 35, 35), "circle"),
    (3, "green square", "angular", (40, 185, 50), "square"),
    (7, "blue triangle", "angular", (35, 70, 225), "triangle"),
    (18, "yellow star", "angular", (240, 215, 35), "star"),
    (44, "magenta cross", "angular", (205, 45, 205), "cross"),
    (90, "cyan ring", "round", (35, 205, 215), "ring"),
]
_SPLIT_CODE = {"train": 0, "val": 1}
_OBJECT_COUNT_P = [0.07, 0.25, 0.28, 0.22, 0.18]  # 0..4 objects
_CROWD_P = 0.08
_MIN_VISIBLE = 0.55  # an object may lose at most 45 % of its pixels to later objects
_STYLE_STREAM = {"shapes": (), "scenes": (1,)}  # shapes keeps its original per-image streams


# ----------------------------------------------------------------------------- drawing
def _muted_color(rng: np.random.Generator) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.03, 0.35), rng.uniform(0.25, 0.85))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Muted, textured float32 RGB [H,W,3]: gradient + stripes or blotches + clutter + noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c1, c2, c3 = _muted_color(rng), _muted_color(rng), _muted_color(rng)
    a = rng.uniform(0, 2 * np.pi)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    kind = rng.integers(3)
    if kind == 0:  # stripes
        a2, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * math.cos(a2) + yy * math.sin(a2)) / period)
        amp = rng.uniform(0.25, 0.6)
        img = img * (1 - amp * s[..., None]) + c3 * (amp * s[..., None])
    elif kind == 1:  # blotches: smooth low-frequency noise
        gx, gy = int(rng.integers(3, 10)), int(rng.integers(3, 8))
        s = cv2.resize(rng.random((gy, gx)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        s = np.clip(s, 0, 1) * rng.uniform(0.4, 0.8)
        img = img * (1 - s[..., None]) + c3 * s[..., None]
    # else: plain gradient
    for _ in range(int(rng.integers(0, 4))):  # muted clutter lines (not objects)
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(img, p1, p2, _muted_color(rng).tolist(), int(rng.integers(1, 5)), cv2.LINE_AA)
    img += rng.normal(0.0, rng.uniform(3, 10), size=img.shape).astype(np.float32)
    return img


def _paint(img: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int], rng: np.random.Generator) -> None:
    """Blend a shaded, slightly jittered colour into ``img`` through ``mask`` (in place)."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    a = mask[y:y + h, x:x + w].astype(np.float32)[..., None] / 255.0
    color = np.clip(np.array(rgb, np.float32) + rng.uniform(-18, 18, 3), 0, 255) * rng.uniform(0.85, 1.05)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    t = (xx * math.cos(ang) + yy * math.sin(ang)) / max(w, h)
    shade = (0.85 + 0.2 * (t - t.min()))[..., None]
    roi = img[y:y + h, x:x + w]
    roi[...] = roi * (1 - a) + (color * shade) * a


class Look(Protocol):
    """How one style draws: ``_make_image`` places the objects and asks the look for pixels."""

    name: str
    object_size: tuple[float, float]  # log-uniform object size, fraction of the shorter side
    crowd_size: tuple[float, float]  # uniform size of a crowd region's small shapes, same unit

    def background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray: ...

    def mask(self, shape: str, cx: float, cy: float, size: float, rng: np.random.Generator,
             width: int, height: int) -> np.ndarray: ...

    def paint(self, img: np.ndarray, mask: np.ndarray, cls: int, rng: np.random.Generator) -> None: ...

    def finish(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


class ShapesLook:
    """The original look: muted textured backgrounds, one flat shaded colour per class."""

    name = "shapes"
    object_size = (0.1, 0.6)
    crowd_size = (0.035, 0.06)

    def background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        return _background(rng, width, height)

    def mask(self, shape: str, cx: float, cy: float, size: float, rng: np.random.Generator,
             width: int, height: int) -> np.ndarray:
        return shape_mask(shape, cx, cy, size, rng, width, height)

    def paint(self, img: np.ndarray, mask: np.ndarray, cls: int, rng: np.random.Generator) -> None:
        _paint(img, mask, CLASSES[cls][3], rng)

    def finish(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return img


LOOKS: dict[str, Look] = {"shapes": ShapesLook(), "scenes": ScenesLook([c[3] for c in CLASSES])}
STYLES = tuple(LOOKS)  # the first is the default


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a binary [H,W] mask (column-major runs, starting with zeros)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    if flat.size == 0:
        return {"counts": [], "size": list(mask.shape)}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]]))
    counts = runs.tolist()
    if flat[0]:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _polygons(mask: np.ndarray) -> tuple[list[list[float]], float]:
    """Outer outlines of a binary mask as COCO polygons, and the area they enclose.

    COCO polygons cannot have holes (a ring is its outer disc) and COCO's area is
    that of the segmentation, so the area is counted from the filled outlines."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = [c for c in contours if len(c) >= 3]
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return [[float(v) for v in c.reshape(-1)] for c in contours], float(np.count_nonzero(filled))


# ----------------------------------------------------------------------------- one image
def _make_image(rng: np.random.Generator, width: int, height: int, n_objects: int,
                with_crowd: bool, look: Look) -> tuple[np.ndarray, list[dict]]:
    """Render one picture in ``look``. Returns (RGB uint8 [H,W,3], objects) where an object is
    {"class": index into CLASSES, "mask": bool [H,W] visible pixels, "crowd": bool}."""
    img = look.background(rng, width, height)
    side = min(width, height)
    owner = np.full((height, width), -1, dtype=np.int16)  # which object each pixel shows
    objects: list[dict] = []

    def accept(mask: np.ndarray) -> bool:
        covered = owner[mask]
        for j, ob in enumerate(objects):
            if ob["area0"] and np.count_nonzero(covered == j) > (1 - _MIN_VISIBLE) * ob["area0"]:
                return False
        return True

    if with_crowd:
        cls = int(rng.integers(len(CLASSES)))
        reg = rng.uniform(0.25, 0.4) * side
        rx, ry = rng.uniform(reg / 2, width - reg / 2), rng.uniform(reg / 2, height - reg / 2)
        union = np.zeros((height, width), dtype=bool)
        for _ in range(int(rng.integers(7, 14))):
            s = rng.uniform(*look.crowd_size) * side
            m = look.mask(CLASSES[cls][4], rx + rng.uniform(-reg, reg) / 2, ry + rng.uniform(-reg, reg) / 2,
                          s, rng, width, height)
            look.paint(img, m, cls, rng)
            union |= m >= 128
        owner[union] = 0
        objects.append({"class": cls, "crowd": True, "area0": int(union.sum())})

    placed = 0
    for _ in range(n_objects * 12):  # a few tries per object, then give up on that one
        if placed == n_objects:
            break
        cls = int(rng.integers(len(CLASSES)))
        size = math.exp(rng.uniform(math.log(look.object_size[0]), math.log(look.object_size[1]))) * side
        cx = rng.uniform(size * 0.35, width - size * 0.35)
        cy = rng.uniform(size * 0.35, height - size * 0.35)
        m = look.mask(CLASSES[cls][4], cx, cy, size, rng, width, height)
        hard = m >= 128
        if hard.sum() < 16 or not accept(hard):
            continue
        look.paint(img, m, cls, rng)
        owner[hard] = len(objects)
        objects.append({"class": cls, "crowd": False, "area0": int(hard.sum())})
        placed += 1

    for j, ob in enumerate(objects):
        ob["mask"] = owner == j
    img = look.finish(img, rng)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, [ob for ob in objects if ob["mask"].any()]


def _image_id(split: str, k: int) -> int:
    """Gapped, unique across splits (train even, val odd), increasing with k."""
    return 2 * (3 * k + k % 2) + (2 if split == "train" else 1)


def _write_split(out_dir: Path, split: str, n: int, seed: int, image_size: tuple[int, int],
                 grayscale_index: int | None, quality: int, empty_share: float | None = None,
                 folder: Path | None = None, style: str = "shapes") -> dict:
    folder = folder if folder is not None else out_dir / f"{split}2017"
    folder.mkdir(parents=True, exist_ok=True)
    code = _SPLIT_CODE[split]
    look = LOOKS[style]
    images, annotations = [], []
    stats = {"images": n, "annotations": 0, "boxes": 0, "crowd": 0, "empty_images": 0, "grayscale_images": [],
             "boxes_per_class": {c[1]: 0 for c in CLASSES}}
    # Fixed positions for the quirks so small splits always have them.
    forced_empty = 2 if split == "train" else 1
    forced_crowd = 3 if split == "train" else 2
    for k in range(n):
        rng = np.random.default_rng([seed, code, k, *_STYLE_STREAM[style]])
        w = max(32, int(round(image_size[0] * rng.uniform(0.85, 1.15))))
        h = max(32, int(round(image_size[1] * rng.uniform(0.85, 1.15))))
        if empty_share is not None:  # a chosen share of background images, the rest with 1..4 objects
            if rng.random() < empty_share:
                n_obj, crowd = 0, False
            else:
                p = np.asarray(_OBJECT_COUNT_P[1:]) / sum(_OBJECT_COUNT_P[1:])
                n_obj = 1 + int(rng.choice(len(p), p=p))
                crowd = rng.random() < _CROWD_P
        elif k == forced_empty:
            n_obj, crowd = 0, False
        elif k == forced_crowd:
            n_obj, crowd = int(rng.integers(1, 4)), True
        else:
            n_obj = int(rng.choice(len(_OBJECT_COUNT_P), p=_OBJECT_COUNT_P))
            crowd = n_obj > 0 and rng.random() < _CROWD_P
        pixels, objects = _make_image(rng, w, h, n_obj, crowd, look)
        image_id = _image_id(split, k)
        file_name = f"{image_id:012d}.jpg"
        if k == grayscale_index:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
            stats["grayscale_images"].append(file_name)
            ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        else:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover
            raise RuntimeError(f"JPEG encoding failed for {file_name}")
        with atomic_write(folder / file_name, "wb", fsync=False) as f:
            f.write(buf.tobytes())
        images.append({"license": int(rng.integers(1, 4)), "file_name": file_name, "coco_url": "",
                       "height": h, "width": w, "date_captured": "2017-01-01 00:00:00",
                       "flickr_url": "", "id": image_id})
        if not objects:
            stats["empty_images"] += 1
        for j, ob in enumerate(objects):
            x, y, bw, bh = cv2.boundingRect(ob["mask"].astype(np.uint8))
            if ob["crowd"]:
                segmentation, area = rle_encode(ob["mask"]), float(np.count_nonzero(ob["mask"]))
            else:
                segmentation, area = _polygons(ob["mask"])
            ann = {"segmentation": segmentation,
                   "area": area,
                   "iscrowd": int(ob["crowd"]),
                   "image_id": image_id,
                   "bbox": [float(x), float(y), float(bw), float(bh)],
                   "category_id": CLASSES[ob["class"]][0],
                   "id": image_id * 10 + j}
            annotations.append(ann)
            stats["crowd" if ob["crowd"] else "boxes"] += 1
            if not ob["crowd"]:
                stats["boxes_per_class"][CLASSES[ob["class"]][1]] += 1
        stats["annotations"] = len(annotations)
    # COCO's images list is not in id order; loaders must not rely on it.
    perm = np.random.default_rng([seed, code, 1_000_003]).permutation(len(images))
    images = [images[i] for i in perm]
    return {"images": images, "annotations": annotations, "stats": stats}


def _coco_dict(split_data: dict, seed: int, style: str = "shapes") -> dict:
    return {
        "info": {"description": f"pytorch-ssd synthetic {style} (COCO 2017 layout)", "url": "",
                 "version": "1.0", "year": 2017, "contributor": "pytorch-ssd synthetic generator",
                 "date_created": "2017/09/01", "seed": seed},
        "licenses": [{"url": "https://creativecommons.org/publicdomain/zero/1.0/", "id": 1, "name": "CC0 1.0"},
                     {"url": "https://creativecommons.org/licenses/by/4.0/", "id": 2, "name": "CC BY 4.0"},
                     {"url": "https://opensource.org/licenses/MIT", "id": 3, "name": "MIT"}],
        "images": split_data["images"],
        "annotations": split_data["annotations"],
        "categories": [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup, _, _ in CLASSES],
    }


def _check_sizes(num_train: int, num_val: int, image_size: Sequence[int], style: str = "shapes") -> None:
    """The generators' shared argument checks (one-line UserErrors)."""
    if style not in LOOKS:
        raise UserError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    if num_train < 0 or num_val < 0:
        raise UserError(f"image counts must be >= 0, got train={num_train} val={num_val}")
    if num_train + num_val == 0:
        raise UserError("nothing to generate: both --train and --val are 0")
    if len(image_size) != 2 or min(image_size) < 32:
        raise UserError(f"image_size must be (width, height) of at least 32 px, got {image_size}")


def generate_coco_dataset(out_dir: str | Path, num_train: int, num_val: int, seed: int = 0,
                          fixed: bool = False, image_size: tuple[int, int] = (320, 240),
                          jpeg_quality: int = 90, overwrite: bool = True,
                          empty_share: float | None = None, style: str = "shapes") -> dict[str, Any]:
    """Write a synthetic COCO-2017-layout dataset under ``out_dir`` and return a summary.

    Layout: annotations/instances_{train,val}2017.json, train2017/*.jpg, val2017/*.jpg.
    ``image_size`` is the nominal (width, height); each image varies by +-15 %.
    The second train image (or the first when there is one) is a grayscale JPEG.
    ``overwrite=False`` refuses to replace existing annotation files.
    ``empty_share`` (0..1): each image has no objects with this probability (background images,
    to study how training treats them); by default ~7 % are empty plus one forced per split.
    ``style``: "shapes" (default) or "scenes", the look of the pictures (module docstring).
    """
    if empty_share is not None and not 0.0 <= empty_share <= 1.0:
        raise UserError(f"empty_share must be in [0, 1], got {empty_share}")
    _check_sizes(num_train, num_val, image_size, style)
    out = Path(out_dir)
    ann_dir = out / "annotations"
    if not overwrite:
        existing = [p for p in (ann_dir / "instances_train2017.json", ann_dir / "instances_val2017.json")
                    if p.exists()]
        if existing:
            raise UserError(f"{existing[0]} already exists (use overwrite to replace it)")
    summary: dict[str, Any] = {"out_dir": str(out), "seed": seed, "fixed": fixed, "style": style,
                               "image_size": list(image_size),
                               "categories": [{"id": c[0], "name": c[1]} for c in CLASSES],
                               "splits": {}, "ann_files": {}}
    for split, n in (("train", num_train), ("val", num_val)):
        gray = None
        if split == "train" and n > 0:
            gray = min(1, n - 1)
        elif split == "val" and num_train == 0:
            gray = 0
        data = _write_split(out, split, n, seed, tuple(image_size), gray, jpeg_quality, empty_share, style=style)
        coco = _coco_dict(data, seed, style)
        if fixed:
            coco = fix_coco_dict(coco, source=f"synthetic {split}")
        ann_file = ann_dir / f"instances_{split}2017.json"
        atomic_write_json(ann_file, coco, indent=None)
        summary["splits"][split] = data["stats"]
        summary["ann_files"][split] = str(ann_file)
    log.info("synthetic COCO dataset (%s) in %s: train %d images / %d boxes, val %d images / %d boxes%s",
             style, out, num_train, summary["splits"]["train"]["boxes"], num_val, summary["splits"]["val"]["boxes"],
             " (fixed ids)" if fixed else "")
    return summary


def generate_yolo_dataset(out_dir: str | Path, num_train: int, num_val: int, seed: int = 0,
                          image_size: tuple[int, int] = (320, 240), jpeg_quality: int = 90,
                          overwrite: bool = True, style: str = "shapes") -> dict[str, Any]:
    """The same pictures as ``generate_coco_dataset`` (same seed and style), in the YOLO (Ultralytics) layout.

    Layout: data.yaml (names as a list), images/{train,val}/*.jpg, labels/{train,val}/*.txt with
    ``class cx cy w h`` normalised lines, class = index in ``CLASSES``. Crowd regions are left out
    (YOLO has no crowd flag; Ultralytics' COCO converter drops them too) and images without boxes
    get no label file (background images). ``stats`` counts match what a reader must find.
    """
    _check_sizes(num_train, num_val, image_size, style)
    out = Path(out_dir)
    yaml_file = out / "data.yaml"
    if not overwrite and yaml_file.exists():
        raise UserError(f"{yaml_file} already exists (use overwrite to replace it)")
    summary: dict[str, Any] = {"out_dir": str(out), "seed": seed, "style": style, "image_size": list(image_size),
                               "names": [c[1] for c in CLASSES], "splits": {}, "yaml": str(yaml_file)}
    index_of = {c[0]: k for k, c in enumerate(CLASSES)}
    for split, n in (("train", num_train), ("val", num_val)):
        gray = min(1, n - 1) if split == "train" and n > 0 else (0 if split == "val" and num_train == 0 else None)
        data = _write_split(out, split, n, seed, tuple(image_size), gray, jpeg_quality,
                            folder=out / "images" / split, style=style)
        sizes = {im["id"]: (im["width"], im["height"], im["file_name"]) for im in data["images"]}
        lines: dict[int, list[str]] = {}
        for a in data["annotations"]:
            if a["iscrowd"]:
                continue
            w, h, _ = sizes[a["image_id"]]
            x, y, bw, bh = a["bbox"]
            lines.setdefault(a["image_id"], []).append(
                f"{index_of[a['category_id']]} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} "
                f"{bw / w:.6f} {bh / h:.6f}")
        label_dir = out / "labels" / split
        label_dir.mkdir(parents=True, exist_ok=True)
        for image_id, rows in lines.items():
            stem = sizes[image_id][2].rsplit(".", 1)[0]
            with atomic_write(label_dir / f"{stem}.txt", fsync=False) as f:
                f.write("\n".join(rows) + "\n")
        st = data["stats"]
        st["background_images"] = n - len(lines)
        summary["splits"][split] = st
    names = "".join(f"  - {c[1]}\n" for c in CLASSES)
    with atomic_write(yaml_file) as f:
        f.write(f"# pytorch-ssd synthetic {style} (YOLO layout), seed {seed}\n"
                f"path: .\ntrain: images/train\nval: images/val\nnc: {len(CLASSES)}\nnames:\n{names}")
    log.info("synthetic YOLO dataset (%s) in %s: train %d images / %d boxes, val %d images / %d boxes",
             style, out, num_train, summary["splits"]["train"]["boxes"], num_val, summary["splits"]["val"]["boxes"])
    return summary


# ----------------------------------------------------------------------------- CLI
def write_large_coco_json(path: str | Path, n_img: int = 118_287, n_ann: int = 860_001, seed: int = 0) -> None:
    """A COCO-train-size annotation file (default: 118,287 images, 860,001 boxes, COCO's 80 gapped
    category ids, 1 % crowd) without pictures: for the annotation loader's scale tests and benchmark."""
    rng = np.random.default_rng(seed)
    img_ids = np.sort(rng.choice(700_000, n_img, replace=False)) + 1
    gaps = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    cats = [{"supercategory": "s", "id": c, "name": f"class {c}"} for c in range(1, 91) if c not in gaps]
    cat_ids = np.array([c["id"] for c in cats])
    a_img = img_ids[rng.integers(0, n_img, n_ann)].tolist()
    a_cat = cat_ids[rng.integers(0, len(cat_ids), n_ann)].tolist()
    xy = np.round(rng.uniform(0, 500, (n_ann, 2)), 2).tolist()
    wh = np.round(rng.uniform(1, 140, (n_ann, 2)), 2).tolist()
    crowd = (rng.random(n_ann) < 0.01).astype(int).tolist()
    # JSON text written directly: much faster than building 860k dicts and json.dump-ing them
    images = ",".join(f'{{"license":1,"file_name":"{i:012d}.jpg","height":480,"width":640,"id":{i}}}'
                      for i in img_ids.tolist())
    anns = ",".join(f'{{"area":1.0,"iscrowd":{c},"image_id":{a},"bbox":[{p[0]},{p[1]},{q[0]},{q[1]}],'
                    f'"category_id":{k},"id":{j}}}'
                    for j, (a, k, p, q, c) in enumerate(zip(a_img, a_cat, xy, wh, crowd), start=1))
    with open(path, "w") as f:
        f.write(f'{{"info":{{}},"images":[{images}],"annotations":[{anns}],"categories":{json.dumps(cats)}}}')


def _has_entries(folder: str) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def _check_cli_out(out: str, overwrite: bool) -> None:
    """The CLI writes only into a new or empty folder unless ``--overwrite``: the generated file
    names (``000000000001.jpg``, ``instances_train2017.json``) are real COCO names, so writing
    into a real dataset would silently replace its originals."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UserError(f"OUT {out} is a file, not a folder")
    check_output_dir(out, "OUT")
    if not overwrite and os.path.isdir(out) and _has_entries(out):
        raise UserError(f"OUT {out} is not empty; give a new or empty folder, or pass --overwrite to "
                        f"replace the files of the same names there (nothing was written)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m vision.datasets.synthetic",
        description="Write a small synthetic detection dataset in COCO 2017 layout (coloured shapes on "
                    "textured backgrounds, 6 classes with COCO-style gapped ids). Useful for smoke tests "
                    "and for trying the training pipeline without downloading COCO.")
    p.add_argument("out", help="output folder (gets annotations/, train2017/, val2017/; with --format yolo: "
                               "data.yaml, images/, labels/)")
    p.add_argument("--format", choices=("coco", "yolo"), default="coco",
                   help="dataset layout: coco (COCO 2017) or yolo (Ultralytics data.yaml + labels/*.txt; "
                        "crowd regions are left out) (default coco)")
    p.add_argument("--train", type=non_negative_int, default=200, help="number of training images (default 200)")
    p.add_argument("--val", type=non_negative_int, default=50, help="number of validation images (default 50)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed; same seed, same files (default 0)")
    p.add_argument("--fixed", action="store_true",
                   help="write category ids already renumbered 1..K with 'original_id' "
                        "(the format fix_coco_annotations.py produces)")
    p.add_argument("--image-size", nargs=2, type=int_range(32, 4096), metavar=("W", "H"), default=[320, 240],
                   help="nominal image width and height in pixels; each image varies by +-15%% (default 320 240)")
    p.add_argument("--jpeg-quality", type=int_range(30, 100), default=90, help="JPEG quality (default 90)")
    clobber = p.add_mutually_exclusive_group()
    clobber.add_argument("--overwrite", action="store_true",
                         help="write into an OUT that is not empty, replacing the annotation files and "
                              "images of the same names there (no backup)")
    clobber.add_argument("--no-overwrite", action="store_true",
                         help="refuse an OUT that is not empty (the default; kept for older scripts)")
    p.add_argument("--style", choices=STYLES, default="shapes",
                   help="look of the pictures: shapes (flat-coloured shapes on muted textured backgrounds) or "
                        "scenes (the same classes textured, outlined, shadowed, any rotation, on photo-like "
                        "clutter with distractor shapes that are no class) (default shapes)")
    p.add_argument("--empty-share", type=float_range(0, 1, lo_open=False), default=None, metavar="P",
                   help="share of images with no objects, 0..1 (default: about 7%% plus one per split)")
    add_log_level_arg(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    _check_cli_out(args.out, args.overwrite)
    size = (args.image_size[0], args.image_size[1])
    if args.format == "yolo":
        if args.fixed:
            raise UserError("--fixed is for --format coco only")
        summary = generate_yolo_dataset(args.out, args.train, args.val, seed=args.seed, image_size=size,
                                        jpeg_quality=args.jpeg_quality, overwrite=args.overwrite,
                                        style=args.style)
        for split, st in summary["splits"].items():
            print(f"{split}: {st['images']} images, {st['boxes']} boxes, {st['background_images']} background "
                  f"images -> {summary['yaml']}")
        return 0
    summary = generate_coco_dataset(args.out, args.train, args.val, seed=args.seed, fixed=args.fixed,
                                    image_size=size,
                                    jpeg_quality=args.jpeg_quality, overwrite=args.overwrite,
                                    empty_share=args.empty_share, style=args.style)
    for split, st in summary["splits"].items():
        print(f"{split}: {st['images']} images, {st['boxes']} boxes, {st['crowd']} crowd regions, "
              f"{st['empty_images']} empty images -> {summary['ann_files'][split]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
