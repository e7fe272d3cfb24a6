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
- all files are renumbered by ONE mapping (over the union of their categories, by
  original id), so an id means the same class in train and val even when their
  category lists differ (a file lacking a category gets it added);
- every file is read and checked before anything is written, then ALL files are
  replaced or none (a journal in annotations/ lets the next run finish a commit a
  kill interrupted); the first run keeps each original as ``.orig`` (never
  overwritten); running it again says "already fixed" (exit 0).

It never moves or deletes image files. It checks the annotations while it goes:
- annotations pointing at unknown images or categories and duplicate image or
  annotation ids are reported with their ids; then nothing is written and the exit
  code is 1, unless ``--drop-invalid`` is given (they are dropped, the rest is fixed);
- degenerate boxes (zero/negative width or height, non-finite) and images listed in
  the file but missing from ``{split}2017/`` are reported by id (count and first ids)
  and kept -- the loader drops them itself, so real COCO 2017 (two zero-height boxes
  in train, image ids 200365 and 550395) is fixed without extra flags; --drop-invalid
  removes them from the JSON as well.
``--drop-empty`` removes images without annotations from the JSON (only from the
JSON; files stay on disk). ``--report FILE.json`` writes a summary per file.

Exit codes: 0 fixed or already fixed; 1 blocking invalid annotations found (without
--drop-invalid) or a file could not be written (no file changed); 2 file missing, not
JSON, missing keys or wrong types, --path is a file, categories that disagree.
"""
from __future__ import annotations

import argparse
import filecmp
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

from vision.utils.file_set import commit_files, finish_interrupted_commit
from vision.utils.misc import (ArgumentParser, Failure, UserError, add_log_level_arg, atomic_write_json, read_json,
                               remove_stale_temp_files, run_main, setup_logging)

log = logging.getLogger("fix_coco_annotations")

MARKER_KEY = "pytorch_ssd_fixed"
MARKER_VERSION = 1
_SHOW = 20  # problems listed per kind before "... and N more"
JOURNAL = ".fix_coco_annotations.commit.json"  # in annotations/: see vision/utils/file_set.py
DEFAULT_SPLITS = ("train", "val")


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


def _got(item: Any, key: str) -> str:
    """What was found instead, in a few words: the offending value, never the whole entry."""
    if not isinstance(item, dict):
        return f"got {type(item).__name__} {item!r:.40}"
    if key not in item:
        return f"no {key!r} key"
    return f"got {item[key]!r:.60}"


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
            what = _got(c, "id") if not isinstance(c, dict) or not _is_int(c.get("id")) else _got(c, "name")
            raise UserError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name', {what}")
        if fixed and not _is_int(c.get("original_id")):
            raise UserError(f"{path}: marked fixed but categories[{i}] (id {c['id']}) has no integer 'original_id'")
        if c["id"] in seen:
            raise UserError(f"{path}: duplicate category id {c['id']} (categories[{seen[c['id']]}] and [{i}])")
        seen[c["id"]] = i
    if not coco["categories"]:
        raise UserError(f"{path}: 'categories' is empty")
    for i, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            raise UserError(f"{path}: images[{i}] needs an integer 'id', {_got(im, 'id')}")
    for i, a in enumerate(coco["annotations"]):
        if not isinstance(a, dict):
            raise UserError(f"{path}: annotations[{i}] must be an object, got {type(a).__name__}")
        for key in ("id", "image_id", "category_id"):
            if not _is_int(a.get(key)):
                raise UserError(f"{path}: annotations[{i}] (id {a.get('id')!r:.30}) needs an integer {key!r}, "
                                f"{_got(a, key)}")
        box = a.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(_is_num(v) for v in box):
            raise UserError(f"{path}: annotations[{i}] (id {a['id']}) 'bbox' must be 4 numbers [x, y, w, h], "
                            f"got {box!r:.80}")


# ----------------------------------------------------------------------------- validity


# Kinds of problem that stop the run (nothing written) unless --drop-invalid: the ids cannot be
# renumbered or mean two things. Every other kind is reported by id and kept (the loader drops
# those boxes and images itself) unless --drop-invalid.
BLOCKING_KINDS = ("duplicate image ids", "duplicate annotation ids", "annotations of unknown images",
                  "annotations of unknown categories")
DEGENERATE = "degenerate boxes (zero/negative size or non-finite; the loader drops them)"
MISSING_ON_DISK = "images listed but missing on disk (the loader skips them)"


@dataclass
class Problems:
    """Invalid entries found, by kind: lists of messages, and what --drop-invalid drops."""

    by_kind: dict[str, list[str]] = field(default_factory=dict)
    drop_image_idx: set[int] = field(default_factory=set)
    drop_ann_idx: set[int] = field(default_factory=set)
    missing_image_ids: list[int] = field(default_factory=list)

    def add(self, kind: str, message: str) -> None:
        self.by_kind.setdefault(kind, []).append(message)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_kind.values())

    @property
    def blocking(self) -> int:
        return sum(len(v) for k, v in self.by_kind.items() if k in BLOCKING_KINDS)

    def log(self, path: Path, level: int = logging.WARNING) -> None:
        for kind, messages in self.by_kind.items():
            log.log(level, "%s: %d %s", path.name, len(messages), kind)
            for m in messages[:_SHOW]:
                log.log(level, "  %s", m)
            if len(messages) > _SHOW:
                log.log(level, "  ... and %d more", len(messages) - _SHOW)


def find_problems(coco: dict, image_dir: Path | None = None) -> Problems:
    """Duplicate ids, annotations pointing nowhere, boxes no loss can train on, and (when
    ``image_dir`` exists) images listed in the file but missing on disk."""
    p = Problems()
    image_ids: dict[int, int] = {}
    for i, im in enumerate(coco["images"]):
        if im["id"] in image_ids:
            p.add("duplicate image ids", f"image id {im['id']}: images[{image_ids[im['id']]}] and images[{i}]")
            p.drop_image_idx.add(i)
        else:
            image_ids[im["id"]] = i
    if image_dir is not None and not image_dir.is_dir():
        log.info("no %s folder: not checking that the listed images are on disk", image_dir)
    elif image_dir is not None:
        on_disk = {e.name for e in os.scandir(image_dir)}  # one listing, not 118k stat calls
        for i, im in enumerate(coco["images"]):
            name = im.get("file_name")
            if i in p.drop_image_idx or not isinstance(name, str):
                continue
            if (name not in on_disk if "/" not in name else not (image_dir / name).is_file()):
                p.add(MISSING_ON_DISK, f"image id {im['id']}: {image_dir / name} not found")
                p.missing_image_ids.append(im["id"])
                p.drop_image_idx.add(i)
    missing = set(p.missing_image_ids)
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
                p.add(DEGENERATE, f"annotation id {aid} (image id {a['image_id']}): non-finite bbox {a['bbox']}")
                p.drop_ann_idx.add(i)
            elif w <= 0 or h <= 0:
                p.add(DEGENERATE,
                      f"annotation id {aid} (image id {a['image_id']}): bbox {a['bbox']} (width {w}, height {h})")
                p.drop_ann_idx.add(i)
            elif a["image_id"] in missing:
                p.drop_ann_idx.add(i)  # its image is dropped with --drop-invalid: so is the annotation
    return p


# ----------------------------------------------------------------------------- fixing


def contiguous_mapping(categories: list[dict]) -> dict[int, int]:
    """Original category id -> 1..K, in order of original id (label 0 stays BACKGROUND)."""
    return {orig: new for new, orig in enumerate(sorted(c["id"] for c in categories), start=1)}


def original_categories(coco: dict) -> dict[int, dict]:
    """original id -> category entry (``original_id`` of a fixed file, ``id`` of an unfixed one)."""
    key = "original_id" if is_fixed(coco) else "id"
    return {c[key]: c for c in coco["categories"]}


def shared_mapping(docs: dict[Path, dict]) -> dict[int, int]:
    """One original-id -> 1..K mapping for every file, over the union of their categories,
    so an id means the same class in train and val even when their category lists differ.

    A category id named differently in two files, or a file fixed earlier with another
    numbering, is a ``UserError`` (nothing can be renumbered consistently).
    """
    union: dict[int, tuple[str, Path]] = {}
    for path, coco in docs.items():
        for orig, c in original_categories(coco).items():
            if orig in union and union[orig][0] != c["name"]:
                raise UserError(f"category id {orig} is {union[orig][0]!r} in {union[orig][1]} but "
                                f"{c['name']!r} in {path}; the files do not describe the same classes")
            union.setdefault(orig, (c["name"], path))
    mapping = {orig: new for new, orig in enumerate(sorted(union), start=1)}
    for path, coco in docs.items():
        if is_fixed(coco):
            cats = original_categories(coco)
            if set(cats) != set(union) or any(mapping[o] != c["id"] for o, c in cats.items()):
                raise UserError(f"{path} was fixed with another numbering than the other files "
                                f"({', '.join(str(p.name) for p in docs if p != path)}); restore it from "
                                f"{path.name}.orig and run again so all are renumbered together")
    return mapping


def remap_categories(coco: dict, mapping: dict[int, int] | None = None,
                     extra_categories: Sequence[dict] = ()) -> dict[int, int]:
    """Rewrite categories and annotations in place to ``mapping`` (default: this file's own
    contiguous ids), adding ``extra_categories`` (other files' categories this one lacks, so
    every file lists the same classes); add the marker."""
    if mapping is None:
        mapping = contiguous_mapping(coco["categories"])
    cats = []
    for c in sorted([*coco["categories"], *extra_categories], key=lambda c: c["id"]):
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
    """Keep the original as ``PATH.orig`` unless one with the same content exists (a hard link
    when possible: instant and no extra space; the fixed file is written as a new file anyway).
    A ``.orig`` that holds something else (the file was replaced since: a new download, another
    version, or a fixed file about to lose entries to --drop-*) stays, and this version is kept
    as ``PATH.orig.1`` (``.2``...): no version is ever changed without a copy."""
    first = backup = path.with_name(path.name + ".orig")
    i = 0
    while backup.exists():
        if os.path.samefile(path, backup) or filecmp.cmp(path, backup, shallow=False):
            log.info("backup %s already exists; keeping it", backup)
            return backup
        i += 1
        backup = first.with_name(f"{first.name}.{i}")
    if i:
        log.warning("%s differs from its earlier backup %s; keeping this version as %s", path, first.name,
                    backup.name)
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


def load_file(path: Path) -> dict:
    """Read and structure-check one annotation file (``UserError`` naming it when broken)."""
    for p in (path, path.with_name(path.name + ".orig")):  # a killed earlier run's temp files
        remove_stale_temp_files(p)
    coco = read_json(path, "COCO annotation file")
    check_structure(coco, path)
    if not coco["images"]:
        log.warning("%s: the file lists no images; the loaders will refuse it (is it the right file?)", path)
    return coco


@dataclass
class FilePlan:
    """What fixing one file will change (``coco`` is already changed in memory)."""

    path: Path
    coco: dict
    problems: Problems
    changes: list[str] = field(default_factory=list)


def plan_fix(path: Path, coco: dict, mapping: dict[int, int], all_categories: dict[int, dict],
             problems: Problems, *, drop_empty: bool, drop_invalid: bool) -> FilePlan:
    """Apply the fix to ``coco`` in memory; nothing is written here."""
    plan = FilePlan(path, coco, problems)
    if problems.count and drop_invalid:
        coco["images"] = drop_indices(coco["images"], problems.drop_image_idx)
        coco["annotations"] = drop_indices(coco["annotations"], problems.drop_ann_idx)
        plan.changes.append(f"dropped {len(problems.drop_image_idx)} image and {len(problems.drop_ann_idx)} "
                            "annotation entries (--drop-invalid)")
    if drop_empty:
        used = {a["image_id"] for a in coco["annotations"]}
        before = len(coco["images"])
        coco["images"] = [im for im in coco["images"] if im["id"] in used]
        if before != len(coco["images"]):
            plan.changes.append(f"dropped {before - len(coco['images'])} images without annotations from the "
                                "JSON (files stay on disk)")
    if not is_fixed(coco):
        own = {c["id"] for c in coco["categories"]}
        extra = [{k: v for k, v in c.items() if k != "original_id"} | {"id": orig}
                 for orig, c in sorted(all_categories.items()) if orig not in own]
        remap_categories(coco, mapping, extra)
        gaps = sum(1 for o, n in mapping.items() if o != n)
        plan.changes.append(f"{len(mapping)} categories -> ids 1..{len(mapping)} ({gaps} changed), "
                            f"{len(coco['annotations'])} annotations remapped")
        if extra:
            plan.changes.append(f"added {len(extra)} categories the other file(s) list "
                                f"({', '.join(str(c['name']) for c in extra[:5])}{', ...' if len(extra) > 5 else ''})"
                                " so the ids mean the same classes in every file")
    return plan


def summary_of(plan: FilePlan, status: str) -> dict:
    missing = plan.problems.missing_image_ids
    return {"status": status, "changes": plan.changes,
            "problems": {k: len(v) for k, v in plan.problems.by_kind.items()},
            "images_missing_on_disk": len(missing), "first_missing_image_ids": missing[:10],
            "images": len(plan.coco["images"]), "annotations": len(plan.coco["annotations"])}


def fix_files(paths: Sequence[Path], root: Path, *, drop_empty: bool, drop_invalid: bool) -> dict[str, dict]:
    """Fix all ``paths`` together: validate every file first, then write all of them or none.

    Returns {file name: summary}. Blocking problems (see ``BLOCKING_KINDS``) without
    ``drop_invalid`` raise ``Failure`` before anything is written.
    """
    finish_interrupted_commit(root / "annotations" / JOURNAL, list(paths))
    docs = {p: load_file(p) for p in paths}
    # The split files not chosen this time (--splits val) still decide the numbering: fixing
    # the splits one run at a time must give the same ids as fixing them together.
    others = {}
    for split in DEFAULT_SPLITS:
        other = annotation_file(root, split)
        if other not in docs and other.is_file():
            log.info("%s is not in --splits; reading its categories so the ids agree with it", other.name)
            others[other] = load_file(other)
    mapping = shared_mapping({**docs, **others})
    all_categories: dict[int, dict] = {}
    for coco in [*docs.values(), *others.values()]:
        for orig, c in original_categories(coco).items():
            all_categories.setdefault(orig, c)
    problems = {p: find_problems(coco, image_dir_of(root, p)) for p, coco in docs.items()}
    blocked = [p for p, pr in problems.items() if pr.blocking and not drop_invalid]
    for p, pr in problems.items():
        if pr.count:
            pr.log(p, logging.ERROR if p in blocked else logging.WARNING)
        if pr.missing_image_ids:
            ids = pr.missing_image_ids
            log.warning("%s: %d image(s) listed but missing on disk (first ids: %s)%s", p.name, len(ids),
                        ", ".join(map(str, ids[:10])), " -- dropped" if drop_invalid else
                        "; kept in the JSON (the loader skips them; --drop-invalid removes them)")
    if blocked:
        raise Failure(f"invalid annotations in {', '.join(str(p) for p in blocked)}; nothing written to any "
                      "file (see above; --drop-invalid drops them)")
    plans = [plan_fix(p, docs[p], mapping, all_categories, problems[p], drop_empty=drop_empty,
                      drop_invalid=drop_invalid) for p in paths]
    todo = [pl for pl in plans if pl.changes]
    if todo:
        try:
            for pl in todo:
                keep_backup(pl.path)
            commit_files(root / "annotations" / JOURNAL,
                         [(pl.path, lambda f, c=pl.coco: json.dump(c, f, separators=(",", ":"))) for pl in todo])
        except OSError as e:  # disk full, read-only folder: every file is as it was
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            raise Failure(f"cannot write {', '.join(str(pl.path) for pl in todo)}: {e.strerror or e}{where}; "
                          "no file was changed, run again once that is fixed") from None
    out = {}
    for pl in plans:
        if pl.changes:
            for c in pl.changes:
                log.info("%s: %s", pl.path.name, c)
            log.info("%s: written", pl.path)
        else:
            log.info("%s: already fixed, nothing to do", pl.path)
        out[pl.path.name] = summary_of(pl, "fixed" if pl.changes else "already fixed")
    return out


def image_dir_of(root: Path, annotation: Path) -> Path:
    """instances_val2017.json -> ROOT/val2017 (where COCODataset looks for its images)."""
    return root / annotation.name[len("instances_"):-len(".json")]


def _is_own_report(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return isinstance(doc, dict) and set(doc) == {"root", "files"}


def check_report_path(report: Path, root: Path) -> None:
    """Refuse a --report that would replace an annotation file, its ``.orig`` backup or any
    other file that is not an earlier report of this script (``UserError``, nothing written)."""
    if report.is_dir():
        raise UserError(f"--report {report} is a folder; give a file name such as fix-report.json")
    ann = (root / "annotations").resolve()
    if report.resolve().parent == ann and report.name.startswith(("instances_", "image_info_", ".")):
        raise UserError(f"--report {report} is an annotation file (or its backup) of {root}; give another "
                        "file name such as fix-report.json")
    # an empty file holds nothing to lose (setup_coco passes one made by mktemp)
    if report.exists() and report.stat().st_size and not _is_own_report(report):
        raise UserError(f"--report {report} exists and is not a report of this script; refusing to overwrite "
                        "it (give a new file name)")
    # where it can be written: vision.utils.paths.check_output_file, called next


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description="Renumber COCO category ids to 1..K (keeping each one's original id) so they fit the "
                    "classifier head. Safe to run again ('already fixed'); keeps a .orig backup; never "
                    "moves image files.")
    p.add_argument("--path", "--root", "--data", dest="path", default="coco-data",
                   help="COCO root holding annotations/instances_{split}2017.json (default: coco-data)")
    p.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), metavar="SPLIT",
                   help="which files: instances_SPLIT2017.json (default: train val); the train/val file "
                        "not chosen is still read so both get the same numbering")
    p.add_argument("--drop-empty", action="store_true",
                   help="remove images without annotations from the JSON (the image files stay)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop invalid entries from the JSON: annotations of unknown images or categories and "
                        "duplicate ids (which otherwise stop the run with exit 1, nothing written), and the "
                        "degenerate boxes and images missing on disk (which otherwise are reported by id and "
                        "kept: the loader skips them)")
    p.add_argument("--report", metavar="FILE.json",
                   help="also write a JSON summary per file (status, problems counted by kind, images "
                        "missing on disk with the first ids); setup_coco uses it for its final summary")
    add_log_level_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if not args.path.strip():  # an unset shell variable: never "the current folder" by accident
        raise UserError("--path is empty; give a folder")
    root = Path(args.path)
    if root.is_file():
        raise UserError(f"--path {root} is a file; give the COCO root folder that holds annotations/")
    if not root.is_dir():
        raise UserError(f"--path {root}: no such folder; give the COCO root folder that holds annotations/")
    if not (root / "annotations").is_dir() and (root.absolute().parent / "annotations").is_dir():
        raise UserError(f"--path {root} has no annotations/ folder, its parent has: give the COCO root "
                        f"(--path {root.absolute().parent}), not an image folder")
    paths = [annotation_file(root, s) for s in dict.fromkeys(args.splits)]
    if args.report:
        check_report_path(Path(args.report), root)
        from vision.utils.paths import check_output_file, refuse_output_over_inputs

        check_output_file(args.report, "--report")
        refuse_output_over_inputs([("--report", args.report)],
                                  [("annotation file", p) for p in paths] +
                                  [("backup", p.with_name(p.name + ".orig")) for p in paths])
    for p in paths:
        if p.is_dir():
            raise UserError(f"{p} is a folder, expected the annotation file")
        if not p.is_file():
            raise UserError(f"annotation file not found: {p} (download it with coco_downloader.py "
                            "--splits annotations, or check --path/--splits)")
    summary = fix_files(paths, root, drop_empty=args.drop_empty, drop_invalid=args.drop_invalid)
    if args.report:
        try:
            atomic_write_json(args.report, {"root": str(root), "files": summary})
        except OSError as e:
            raise Failure(f"the annotations are fixed, but the report {args.report} cannot be written: "
                          f"{e.strerror or e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
