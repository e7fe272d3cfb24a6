#!/usr/bin/env python3
"""Make COCO category ids contiguous (1..K) so they can index the classifier head.

    python3 fix_coco_annotations.py --path coco-data
    python3 fix_coco_annotations.py --path coco-data --splits val --drop-invalid

COCO 2017 has 80 categories with ids 1..90 (gaps); a net with 81 outputs (label 0 =
BACKGROUND) then sees labels > 80 and fails (the CUDA "t >= 0 && t < n_classes"
assert). This rewrites ``annotations/instances_{split}2017.json`` so that:

- categories, sorted by their original id, get ids 1..K; each keeps ``original_id``
  (needed to submit results with COCO's ids); every annotation's ``category_id``
  follows; the file gets ``"pytorch_ssd_fixed": {"version": 1}`` at the top level;
- the first run keeps the original as ``instances_{split}2017.json.orig`` (never
  overwritten); the new file is written atomically (a kill leaves old or new);
- running it again detects the marker and says "already fixed" (exit 0).

It never moves or deletes image files. It checks the annotations while it goes:
annotations pointing at unknown images or categories, non-finite or zero/negative
size boxes, duplicate image or annotation ids are reported with their ids. Then
nothing is written and the exit code is 1, unless ``--drop-invalid`` is given
(they are dropped, the rest is fixed). ``--drop-empty`` removes images without
annotations from the JSON (only from the JSON; files stay on disk).

Exit codes: 0 fixed or already fixed; 1 invalid annotations found (without
--drop-invalid); 2 file missing, not JSON, missing keys or wrong types.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vision.utils.misc import (Failure, UserError, add_log_level_arg, atomic_write, read_json,
                               remove_stale_temp_files, run_main, setup_logging)

log = logging.getLogger("fix_coco_annotations")

MARKER_KEY = "pytorch_ssd_fixed"
MARKER_VERSION = 1
_SHOW = 20  # problems listed per kind before "... and N more"


def annotation_file(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}2017.json"


def is_fixed(coco: dict) -> bool:
    """True when the file carries this script's marker (any later run is a no-op)."""
    return MARKER_KEY in coco


# ----------------------------------------------------------------------------- structure (exit 2)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_structure(coco: Any, path: Path) -> None:
    """Raise ``UserError`` (one line: file and element) unless ``coco`` has the shape of a
    COCO instances file: images/annotations/categories lists of dicts with int ids,
    4-number bboxes."""
    if not isinstance(coco, dict):
        raise UserError(f"{path}: expected a JSON object at the top level, got {type(coco).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise UserError(f"{path}: missing key {key!r} (is this a COCO instances file?)")
        if not isinstance(coco[key], list):
            raise UserError(f"{path}: {key!r} must be a list, got {type(coco[key]).__name__}")
    fixed = is_fixed(coco)
    if fixed and coco[MARKER_KEY] != {"version": MARKER_VERSION}:
        raise UserError(f"{path}: unknown {MARKER_KEY} marker {coco[MARKER_KEY]!r} "
                        f"(this script writes {{'version': {MARKER_VERSION}}})")
    seen: dict[int, int] = {}
    for i, c in enumerate(coco["categories"]):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise UserError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name', got {c!r:.120}")
        if fixed and not _is_int(c.get("original_id")):
            raise UserError(f"{path}: marked fixed but categories[{i}] (id {c['id']}) has no integer 'original_id'")
        if c["id"] in seen:
            raise UserError(f"{path}: duplicate category id {c['id']} (categories[{seen[c['id']]}] and [{i}])")
        seen[c["id"]] = i
    if not coco["categories"]:
        raise UserError(f"{path}: 'categories' is empty")
    for i, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            raise UserError(f"{path}: images[{i}] needs an integer 'id', got {im!r:.120}")
    for i, a in enumerate(coco["annotations"]):
        if not isinstance(a, dict):
            raise UserError(f"{path}: annotations[{i}] must be an object, got {type(a).__name__}")
        for key in ("id", "image_id", "category_id"):
            if not _is_int(a.get(key)):
                raise UserError(f"{path}: annotations[{i}] (id {a.get('id')!r}) needs an integer {key!r}, "
                                f"got {a.get(key)!r}")
        box = a.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(_is_num(v) for v in box):
            raise UserError(f"{path}: annotations[{i}] (id {a['id']}) 'bbox' must be 4 numbers [x, y, w, h], "
                            f"got {box!r:.80}")


# ----------------------------------------------------------------------------- validity (exit 1 / dropped)


@dataclass
class Problems:
    """Invalid entries found, by kind: lists of (message, what to drop)."""

    by_kind: dict[str, list[str]] = field(default_factory=dict)
    drop_image_idx: set[int] = field(default_factory=set)
    drop_ann_idx: set[int] = field(default_factory=set)

    def add(self, kind: str, message: str) -> None:
        self.by_kind.setdefault(kind, []).append(message)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_kind.values())

    def log(self, path: Path, level: int = logging.WARNING) -> None:
        for kind, messages in self.by_kind.items():
            log.log(level, "%s: %d %s", path.name, len(messages), kind)
            for m in messages[:_SHOW]:
                log.log(level, "  %s", m)
            if len(messages) > _SHOW:
                log.log(level, "  ... and %d more", len(messages) - _SHOW)


def find_problems(coco: dict) -> Problems:
    """Duplicate ids, annotations pointing nowhere, and boxes no loss can train on."""
    p = Problems()
    image_ids: dict[int, int] = {}
    for i, im in enumerate(coco["images"]):
        if im["id"] in image_ids:
            p.add("duplicate image ids", f"image id {im['id']}: images[{image_ids[im['id']]}] and images[{i}]")
            p.drop_image_idx.add(i)
        else:
            image_ids[im["id"]] = i
    category_ids = {c["id"] for c in coco["categories"]}
    ann_ids: dict[int, int] = {}
    for i, a in enumerate(coco["annotations"]):
        aid = a["id"]
        if aid in ann_ids:
            p.add("duplicate annotation ids", f"annotation id {aid}: annotations[{ann_ids[aid]}] and [{i}]")
            p.drop_ann_idx.add(i)
            continue
        ann_ids[aid] = i
        if a["image_id"] not in image_ids:
            p.add("annotations of unknown images", f"annotation id {aid}: image id {a['image_id']} not in images")
            p.drop_ann_idx.add(i)
        elif a["category_id"] not in category_ids:
            p.add("annotations of unknown categories",
                  f"annotation id {aid} (image id {a['image_id']}): category id {a['category_id']} not in categories")
            p.drop_ann_idx.add(i)
        else:
            x, y, w, h = a["bbox"]
            if not all(math.isfinite(v) for v in (x, y, w, h)):
                p.add("non-finite boxes", f"annotation id {aid} (image id {a['image_id']}): bbox {a['bbox']}")
                p.drop_ann_idx.add(i)
            elif w <= 0 or h <= 0:
                p.add("zero or negative size boxes",
                      f"annotation id {aid} (image id {a['image_id']}): bbox {a['bbox']} (width {w}, height {h})")
                p.drop_ann_idx.add(i)
    return p


# ----------------------------------------------------------------------------- fixing


def contiguous_mapping(categories: list[dict]) -> dict[int, int]:
    """Original category id -> 1..K, in order of original id (label 0 stays BACKGROUND)."""
    return {orig: new for new, orig in enumerate(sorted(c["id"] for c in categories), start=1)}


def remap_categories(coco: dict) -> dict[int, int]:
    """Rewrite categories and annotations in place to contiguous ids; add the marker."""
    mapping = contiguous_mapping(coco["categories"])
    cats = []
    for c in sorted(coco["categories"], key=lambda c: c["id"]):
        rest = {k: v for k, v in c.items() if k not in ("id", "original_id")}
        cats.append({"id": mapping[c["id"]], "original_id": c["id"], **rest})
    coco["categories"] = cats
    for a in coco["annotations"]:
        a["category_id"] = mapping[a["category_id"]]
    coco[MARKER_KEY] = {"version": MARKER_VERSION}
    return mapping


def drop_indices(items: list, indices: set[int]) -> list:
    return [x for i, x in enumerate(items) if i not in indices] if indices else items


def keep_backup(path: Path) -> Path:
    """Keep the original as ``PATH.orig`` unless one exists (a hard link when possible:
    instant and no extra space; the fixed file is written as a new file anyway)."""
    backup = path.with_name(path.name + ".orig")
    if backup.exists():
        log.info("backup %s already exists; keeping it", backup)
        return backup
    try:
        os.link(path, backup)
    except FileExistsError:
        pass
    except OSError:  # no hard links here: copy through a temp file, then rename
        fd, tmp = tempfile.mkstemp(prefix=f".{backup.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            shutil.copy2(path, tmp)
            os.replace(tmp, backup)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    log.info("original kept as %s", backup)
    return backup


def fix_file(path: Path, *, drop_empty: bool, drop_invalid: bool) -> tuple[str, list[tuple[int, str]]]:
    """Fix one annotation file. Returns (status, [(original id, name)]) where status is
    'fixed', 'already fixed' or 'invalid' (nothing written)."""
    for p in (path, path.with_name(path.name + ".orig")):  # a killed earlier run's temp files
        remove_stale_temp_files(p)
    coco = read_json(path, "COCO annotation file")
    check_structure(coco, path)
    if not coco["images"]:
        log.warning("%s: the file lists no images; the loaders will refuse it (is it the right file?)", path)
    fixed = is_fixed(coco)
    cat_key = "original_id" if fixed else "id"
    categories = sorted((c[cat_key], c["name"]) for c in coco["categories"])
    problems = find_problems(coco)
    if problems.count and not drop_invalid:
        problems.log(path, logging.ERROR)
        log.error("%s: %d invalid entries; nothing written. Re-run with --drop-invalid to drop them "
                  "(the original is kept as .orig).", path, problems.count)
        return "invalid", categories
    changes = []
    if problems.count:
        problems.log(path)
        coco["images"] = drop_indices(coco["images"], problems.drop_image_idx)
        coco["annotations"] = drop_indices(coco["annotations"], problems.drop_ann_idx)
        changes.append(f"dropped {len(problems.drop_image_idx)} image and {len(problems.drop_ann_idx)} "
                       "annotation entries")
    if drop_empty:
        used = {a["image_id"] for a in coco["annotations"]}
        before = len(coco["images"])
        coco["images"] = [im for im in coco["images"] if im["id"] in used]
        if before != len(coco["images"]):
            changes.append(f"dropped {before - len(coco['images'])} images without annotations from the JSON "
                           "(files stay on disk)")
    if not fixed:
        mapping = remap_categories(coco)
        gaps = sum(1 for o, n in mapping.items() if o != n)
        changes.append(f"{len(mapping)} categories -> ids 1..{len(mapping)} ({gaps} changed), "
                       f"{len(coco['annotations'])} annotations remapped")
    if not changes:
        log.info("%s: already fixed, nothing to do", path)
        return "already fixed", categories
    try:
        keep_backup(path)
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(coco, f, separators=(",", ":"))
    except OSError as e:  # disk full, read-only folder: atomic_write left the file as it was
        raise Failure(f"cannot write {path}: {e.strerror or e}; the file is unchanged, run again once "
                      "that is fixed") from None
    for c in changes:
        log.info("%s: %s", path.name, c)
    log.info("%s: written", path)
    return "fixed", categories


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Renumber COCO category ids to 1..K (keeping each one's original id) so they fit the "
                    "classifier head. Safe to run again ('already fixed'); keeps a .orig backup; never "
                    "moves image files.")
    p.add_argument("--path", "--root", "--data", dest="path", default="coco-data",
                   help="COCO root holding annotations/instances_{split}2017.json (default: coco-data)")
    p.add_argument("--splits", nargs="+", default=["train", "val"], metavar="SPLIT",
                   help="which files: instances_SPLIT2017.json (default: train val)")
    p.add_argument("--drop-empty", action="store_true",
                   help="remove images without annotations from the JSON (the image files stay)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop invalid annotations/images (unknown image or category, non-finite or empty "
                        "boxes, duplicate ids) instead of stopping with exit 1")
    add_log_level_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    root = Path(args.path)
    paths = [annotation_file(root, s) for s in dict.fromkeys(args.splits)]
    for p in paths:
        if not p.is_file():
            raise UserError(f"annotation file not found: {p} (download it with coco_downloader.py "
                            "--splits annotations, or check --path/--splits)")
    invalid, seen_categories = [], {}
    for p in paths:
        status, categories = fix_file(p, drop_empty=args.drop_empty, drop_invalid=args.drop_invalid)
        if status == "invalid":
            invalid.append(p)
        seen_categories[p] = categories
    if len({tuple(c) for c in seen_categories.values()}) > 1:
        log.warning("the files do not share the same categories (%s): their new ids do not mean the same "
                    "classes", ", ".join(f"{p.name}: {len(c)}" for p, c in seen_categories.items()))
    if invalid:
        raise Failure(f"invalid annotations in {', '.join(str(p) for p in invalid)}; nothing written there "
                      "(see above; --drop-invalid drops them)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
