#!/usr/bin/env python3
"""Download the Open Images boxes and pictures of a few classes, in the layout
``train_ssd.py --dataset-type open_images`` (OpenImagesDataset) reads.

    python3 open_images_downloader.py --class-names "Apple,Orange,Banana" --data data/fruit
    python3 open_images_downloader.py --class-names "Apple,Orange" --max-images 500 --stats-only
    python3 train_ssd.py --dataset-type open_images --data data/fruit ...

What it writes under --data (upstream's layout)::

    class-descriptions-boxable.csv, {split}-annotations-bbox.csv   metadata, downloaded once (cached)
    sub-{split}-annotations-bbox.csv   boxes of the chosen classes (+ columns id, ClassName)
    {split}/{ImageID}.jpg              the pictures
    labels.txt                         BACKGROUND + the classes, sorted (the dataset's label order;
                                       a different one there before is kept as labels.txt.bak)
    download-report.json               what failed in the last run

Metadata downloads resume and are cached (a cached CSV without its header or with
a cut last line is moved to NAME.bad and fetched again); pictures download in
parallel threads, each retried with backoff, then skipped and listed in the report
(the run goes on). A picture is written under its final name only when complete:
a JPEG/PNG that decodes fully (an HTML answer or a cut body is a failure). Running
it again checks the pictures on disk and downloads only what is missing or damaged.
The sub-*.csv files list only pictures that are on disk, so training never meets a
missing file. One run per --data folder at a time.

Exit codes: 0 done (pictures missing on the server -- HTTP 403/404/410 -- are
skipped and reported, not retried); 1 some pictures failed for other reasons
(run again to retry them), metadata could not be downloaded, the chosen classes
have no boxes (nothing to train on), or another run holds the folder; 2 bad usage
(unknown class name, with the closest names suggested; --data is a file).
"""
from __future__ import annotations

import argparse
import csv
import difflib
import logging
import os
import random
import re
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from vision.utils import download as dl
from vision.utils.labels import BACKGROUND, read_labels, write_labels
from vision.utils.misc import (ArgumentParser, Failure, UserError, add_log_level_arg, atomic_write, atomic_write_json,
                               float_range, int_range, non_negative_float, non_negative_int, positive_int,
                               run_main, setup_logging)

log = logging.getLogger("open_images_downloader")

DEFAULT_BASE_URL = "https://storage.googleapis.com/openimages/2018_04/"
DEFAULT_IMAGES_BASE_URL = "https://open-images-dataset.s3.amazonaws.com/"
SPLITS = ("train", "validation", "test")
CLASS_FILE = "class-descriptions-boxable.csv"
BBOX_COLUMNS = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
                "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]
OUT_COLUMNS = BBOX_COLUMNS + ["id", "ClassName"]
MISSING_STATUS = frozenset({403, 404, 410})  # S3 answers 403 for a key that does not exist
_IMAGE_ID = re.compile(r"^[0-9A-Za-z_-]+$")   # also keeps a hostile CSV from writing outside --data


# ----------------------------------------------------------------------------- metadata


def csv_problem(path: Path, columns: Sequence[str] = (), min_fields: int = 2) -> str | None:
    """Why a downloaded CSV is incomplete, or None: it must not be empty, must hold ``columns``
    in its header, and its last line must be complete (a newline, or every field there) -- a
    connection cut without a Content-Length leaves half a row."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.readline(1 << 16)
            f.seek(max(0, size - (1 << 16)))
            tail = f.read()
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if size == 0:
        return "empty file"
    if columns:
        header = next(csv.reader([head.decode("utf-8-sig", "replace")]), [])
        missing = [c for c in columns if c not in header]
        if missing:
            return f"the header lacks {', '.join(missing)} (not this CSV, or an error page)"
        min_fields = len(header)
    if tail.endswith(b"\n"):
        return None
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    fields = next(csv.reader([last]), [])
    if len(fields) < min_fields or not fields[-1].strip():
        return f"the last line is cut short ({last[-60:]!r})"
    return None


def fetch(url: str, dest: Path, retry: dl.RetryPolicy, columns: Sequence[str] = ()) -> Path:
    """Download a metadata file once (kept in --data; a partial one resumes). A cached copy
    that is incomplete (see ``csv_problem``) is moved aside and downloaded again."""
    def verify(path: Path) -> str | None:
        return csv_problem(path, columns)

    if dest.is_dir():
        raise UserError(f"{dest} is a folder; the downloader keeps {dest.name} there (move the folder away)")
    if dest.is_file():
        problem = verify(dest)
        if problem is None:
            log.debug("using cached %s", dest)
            return dest
        dl.move_aside(dest, f"incomplete ({problem})")
    log.info("downloading %s", url)
    return dl.download_file(url, dest, retry=retry, progress=None, verify=verify)


def read_class_descriptions(path: Path) -> dict[str, str]:
    """ClassName -> LabelName (MID) from class-descriptions-boxable.csv (no header row)."""
    names: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for i, row in enumerate(csv.reader(f), start=1):
                if not row:
                    continue
                if len(row) < 2:
                    raise UserError(f"{path}:{i}: expected 'LabelName,ClassName', got {row!r}")
                names.setdefault(row[1].strip(), row[0].strip())
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (delete it to download it again)") from None
    if not names:
        raise UserError(f"{path} lists no classes (delete it to download it again)")
    return names


def resolve_class_names(requested: Sequence[str], known: dict[str, str], source: str) -> list[str]:
    """Map each requested name to its exact spelling in ``known``; an unknown name is a
    ``UserError`` that suggests the closest names."""
    lower: dict[str, list[str]] = defaultdict(list)
    for name in known:
        lower[name.lower()].append(name)
    out: list[str] = []
    for name in requested:
        if name in known:
            out.append(name)
        elif len(lower.get(name.lower(), [])) == 1:
            canonical = lower[name.lower()][0]
            log.info("class %r taken as %r", name, canonical)
            out.append(canonical)
        else:
            close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
            close += [n for n in difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.6)
                      for n in lower[n] if n not in close]
            hint = f"; did you mean: {', '.join(close[:5])}?" if close else f"; see {source} for the names"
            raise UserError(f"unknown class {name!r} (not in {Path(source).name}){hint}")
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise UserError(f"--class-names lists {', '.join(dupes)} more than once")
    return out


def read_boxes(path: Path, mids: dict[str, str], include_depiction: bool) -> list[list[str]]:
    """Rows of ``path`` (an Open Images bbox CSV) whose LabelName is in ``mids``
    (MID -> ClassName), as OUT_COLUMNS values. Streams the file: the train CSV is >1 GB."""
    rows: list[list[str]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader([f.readline()]), [])
        missing = [c for c in BBOX_COLUMNS if c not in header]
        if missing:
            raise UserError(f"{path}: missing columns {', '.join(missing)} (delete it to download it again)")
        idx = [header.index(c) for c in BBOX_COLUMNS]
        label_i, depiction_i, image_i = (header.index(c) for c in ("LabelName", "IsDepiction", "ImageID"))
        needles = tuple(mids)
        matched = (line for line in f if any(m in line for m in needles))  # cheap pre-filter
        for row in csv.reader(matched):
            if len(row) != len(header):
                raise UserError(f"{path}: a row has {len(row)} fields, the header {len(header)}: {row!r:.120}")
            mid = row[label_i]
            if mid not in mids:
                continue
            if not include_depiction and row[depiction_i] == "1":
                continue
            if not _IMAGE_ID.match(row[image_i]):
                log.warning("%s: skipping a box with an odd ImageID %r", path.name, row[image_i])
                continue
            rows.append([row[i] for i in idx] + [mid, mids[mid]])
    return rows


def remove_overlapped(rows: list[list[str]]) -> list[list[str]]:
    """Upstream's --remove-overlapped: in pictures that have a group box (IsGroupOf=1),
    drop the single boxes (they are covered by the group box)."""
    g = OUT_COLUMNS.index("IsGroupOf")
    with_group = {r[0] for r in rows if r[g] == "1"}
    return [r for r in rows if not (r[0] in with_group and r[g] != "1")]


# ----------------------------------------------------------------------------- selection


def split_budgets(counts: dict[str, int], max_images: int) -> dict[str, int]:
    """Share ``max_images`` between splits in proportion to their picture counts
    (largest remainder, so the shares add up to exactly ``max_images``)."""
    total = sum(counts.values())
    if total <= max_images:
        return dict(counts)
    exact = {s: max_images * n / total for s, n in counts.items()}
    budget = {s: int(v) for s, v in exact.items()}
    for s in sorted(exact, key=lambda s: exact[s] - budget[s], reverse=True)[: max_images - sum(budget.values())]:
        budget[s] += 1
    return budget


def choose_balanced(image_classes: dict[str, set[str]], budget: int, classes: Sequence[str],
                    rng: random.Random) -> set[str]:
    """Pick ``budget`` pictures, the classes taking turns (round robin over a shuffled
    list per class), so a rare class is not crowded out by a common one."""
    if budget >= len(image_classes):
        return set(image_classes)
    per_class: dict[str, list[str]] = {c: [] for c in classes}
    for image_id in sorted(image_classes):
        for c in image_classes[image_id]:
            per_class[c].append(image_id)
    for c in classes:
        rng.shuffle(per_class[c])
    chosen: set[str] = set()
    pos = dict.fromkeys(classes, 0)
    while len(chosen) < budget:
        progressed = False
        for c in classes:
            if len(chosen) >= budget:
                break
            lst = per_class[c]
            while pos[c] < len(lst) and lst[pos[c]] in chosen:
                pos[c] += 1
            if pos[c] < len(lst):
                chosen.add(lst[pos[c]])
                pos[c] += 1
                progressed = True
        if not progressed:
            break
    return chosen


def image_classes_of(rows: list[list[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        out[r[0]].add(r[-1])
    return out


# ----------------------------------------------------------------------------- statistics


def count_table(rows_by_split: dict[str, list[list[str]]], classes: Sequence[str],
                present: dict[str, set[str]] | None = None) -> list[tuple[str, str, int, int]]:
    """(split, class, pictures, boxes); with ``present`` only pictures in it count."""
    table = []
    for split, rows in rows_by_split.items():
        images: dict[str, set[str]] = defaultdict(set)
        boxes: dict[str, int] = defaultdict(int)
        for r in rows:
            if present is not None and r[0] not in present[split]:
                continue
            images[r[-1]].add(r[0])
            boxes[r[-1]] += 1
        for c in classes:
            table.append((split, c, len(images[c]), boxes[c]))
        all_images = {r[0] for r in rows if present is None or r[0] in present[split]}
        table.append((split, "(all classes)", len(all_images), sum(boxes.values())))
    return table


def print_table(title: str, table: list[tuple[str, str, int, int]]) -> None:
    width = max([len(c) for _, c, _, _ in table] + [5])
    print(title)
    print(f"  {'split':<10}  {'class':<{width}}  {'images':>8}  {'boxes':>8}")
    for split, c, n_img, n_box in table:
        print(f"  {split:<10}  {c:<{width}}  {n_img:>8}  {n_box:>8}")


# ----------------------------------------------------------------------------- pictures


_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def picture_problem(path: Path) -> str | None:
    """Why a downloaded picture cannot be trained on, or None: it must be a JPEG or PNG (an
    HTML page answered with 200 is not) and decode completely (a cut one does not)."""
    from vision.datasets.image_io import ImageDecodeError, decode_image_bytes
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if not data.startswith((_JPEG_MAGIC, _PNG_MAGIC)):
        return f"not a JPEG or PNG (starts with {data[:16]!r})"
    try:
        decode_image_bytes(data, path)
    except ImageDecodeError as e:
        return e.reason if hasattr(e, "reason") else str(e)
    return None


@dataclass
class ImageResults:
    downloaded: int = 0
    present: int = 0
    replaced: int = 0  # damaged pictures found on disk and fetched again
    failed: list[dict] = field(default_factory=list)


def _check_present(path: Path) -> bool:
    """True for a good picture already on disk. A damaged one is moved back to ``.part`` when
    it starts like a picture (the download resumes where it was cut) or deleted when it does
    not (an HTML page saved by an older version); either way it is fetched again."""
    if not path.is_file():
        return False
    problem = picture_problem(path)
    if problem is None:
        return True
    with open(path, "rb") as f:
        looks_right = f.read(8).startswith((_JPEG_MAGIC, _PNG_MAGIC))
    if looks_right:
        path.replace(dl.part_path(path))
        log.warning("%s on disk is damaged (%s); downloading the rest of it", path, problem)
    else:
        path.unlink()
        log.warning("%s on disk is not a picture (%s); deleted, downloading it again", path, problem)
    return False


def download_images(jobs: list[tuple[str, str]], root: Path, images_base_url: str, retry: dl.RetryPolicy,
                    workers: int) -> ImageResults:
    """Download ``(split, ImageID)`` pictures to ``root/split/ImageID.jpg`` with a thread pool.

    Pictures already on disk are checked (decoded) first; each download is checked the same
    way before it takes its final name. A failed picture never stops the others: it is
    recorded (``permanent`` when the server says it does not exist) and the rest go on.
    """
    res = ImageResults()
    for split in {s for s, _ in jobs}:
        if (root / split).exists() and not (root / split).is_dir():
            raise UserError(f"{root / split} is a file; the pictures of {split} go into a folder of that name")
        (root / split).mkdir(parents=True, exist_ok=True)
    local = threading.local()

    def one(job: tuple[str, str], stop: threading.Event) -> str:
        split, image_id = job
        dest = root / split / f"{image_id}.jpg"
        existed = dest.is_file()
        if _check_present(dest):
            return "present"
        if not hasattr(local, "session"):
            local.session = dl.new_session()
        url = dl.url_join(images_base_url, f"{split}/{image_id}.jpg")
        dl.download_file(url, dest, session=local.session, retry=retry, progress=False, stop=stop,
                         verify=picture_problem)
        return "replaced" if existed else "downloaded"

    outcome: dict[tuple[str, str], str] = {}
    bar = tqdm(total=len(jobs), unit="img", desc="pictures", dynamic_ncols=True, disable=None)

    def done(job: tuple[str, str], e: BaseException | None) -> None:
        split, image_id = job
        bar.update(1)
        if e is None:
            return
        if not isinstance(e, (dl.DownloadError, OSError)):
            raise e
        status = getattr(e, "status", None)
        missing = status in MISSING_STATUS
        (log.info if missing else log.warning)("%s/%s.jpg: %s", split, image_id, e)
        res.failed.append({"split": split, "image_id": image_id,
                           "url": getattr(e, "url", None) or dl.url_join(images_base_url, f"{split}/{image_id}.jpg"),
                           "error": str(e), "status": status, "missing_on_server": missing})

    def work(job: tuple[str, str], stop: threading.Event) -> None:
        outcome[job] = one(job, stop)

    log.info("checking or downloading %d picture(s) with %d thread(s)", len(jobs), workers)
    try:
        dl.run_parallel(jobs, work, workers, done)
    finally:
        bar.close()
    for kind in outcome.values():
        setattr(res, kind, getattr(res, kind) + 1)
    if res.replaced:
        log.warning("%d damaged picture(s) on disk were downloaded again", res.replaced)
    return res


def write_sub_csv(path: Path, rows: list[list[str]]) -> None:
    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(OUT_COLUMNS)
        w.writerows(rows)


# ----------------------------------------------------------------------------- CLI


def _url_arg(s: str) -> str:
    try:
        return dl.check_url(s)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description="Download Open Images (v4 boxes) pictures and boxes of chosen classes into the layout "
                    "train_ssd.py --dataset-type open_images reads. Safe to run again: only what is "
                    "missing is downloaded.")
    p.add_argument("--root", "--data", dest="root", default="data",
                   help="folder for the dataset (default: data)")
    p.add_argument("--class-names", "--class_names", dest="class_names", required=True,
                   help='comma-separated class names exactly as in class-descriptions-boxable.csv, '
                        'e.g. "Apple,Orange,Banana" (case is forgiven; a wrong name gets suggestions)')
    p.add_argument("--include-depiction", "--include_depiction", action="store_true",
                   help="also keep boxes of drawings/depictions (IsDepiction=1)")
    p.add_argument("--remove-overlapped", "--remove_overlapped", action="store_true",
                   help="in pictures with a group box, drop the single boxes it covers")
    p.add_argument("--max-images", "--max_images", type=positive_int, default=None,
                   help="download at most this many pictures in all, shared between the splits in "
                        "proportion and between the classes in turn (default: all)")
    p.add_argument("--stats-only", "--stats_only", action="store_true",
                   help="print the picture and box counts per class and split, then stop (downloads "
                        "only the metadata)")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), metavar="SPLIT",
                   help="which splits: train validation test (default: all three)")
    p.add_argument("--num-workers", "--num_workers", "--workers", dest="num_workers", type=int_range(1, 256),
                   default=10, help="parallel picture downloads (default: 10)")
    p.add_argument("--retry", type=non_negative_int, default=10,
                   help="retries per file after a network error or a 5xx answer (default: 10)")
    p.add_argument("--retry-backoff", type=non_negative_float, default=1.0,
                   help="seconds before the first retry, doubled each time up to 60 s (default: 1)")
    p.add_argument("--timeout", type=float_range(0, 86400), default=60.0,
                   help="seconds without data before a connection counts as failed (default: 60; at most a day)")
    p.add_argument("--min-rate", type=float_range(0, 1e12, lo_open=False), default=dl.DEFAULT_MIN_RATE, metavar="BYTES_PER_S",
                   help="a connection slower than this over --timeout seconds counts as failed and is retried "
                        f"(default: {dl.DEFAULT_MIN_RATE:.0f}; 0 = no minimum)")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0,
                   help="random seed of the --max-images choice (default: 0)")
    p.add_argument("--base-url", type=_url_arg, default=DEFAULT_BASE_URL,
                   help=f"where the metadata CSVs are (default: {DEFAULT_BASE_URL}): BASE/{CLASS_FILE} and "
                        "BASE/{split}/{split}-annotations-bbox.csv")
    p.add_argument("--images-base-url", type=_url_arg, default=DEFAULT_IMAGES_BASE_URL,
                   help=f"where the pictures are (default: {DEFAULT_IMAGES_BASE_URL}): BASE/{{split}}/ID.jpg")
    add_log_level_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    requested = [n.strip() for n in args.class_names.split(",") if n.strip()]
    if not requested:
        raise UserError("--class-names is empty; give names like \"Apple,Orange\"")
    root = Path(args.root)
    from vision.utils.paths import check_output_dir

    check_output_dir(root, "--data")  # a file there, below a file, or not writable: one line, exit 2
    root.mkdir(parents=True, exist_ok=True)
    retry = dl.RetryPolicy(retries=args.retry, backoff=args.retry_backoff, timeout=args.timeout,
                           min_rate=args.min_rate)
    with dl.folder_lock(root):
        return _run(args, requested, root, retry)


def _select(args: argparse.Namespace, requested: list[str], root: Path, retry: dl.RetryPolicy,
            splits: list[str]) -> tuple[list[str], dict[str, list[list[str]]]]:
    """Fetch the metadata and choose the boxes: (sorted class names, {split: rows})."""
    class_file = fetch(dl.url_join(args.base_url, CLASS_FILE), root / CLASS_FILE, retry)
    known = read_class_descriptions(class_file)
    classes = resolve_class_names(requested, known, str(class_file))
    mids = {known[c]: c for c in classes}
    classes = sorted(classes)  # the label order OpenImagesDataset uses (upstream: sorted ClassName)

    rows_by_split: dict[str, list[list[str]]] = {}
    for split in splits:
        name = f"{split}-annotations-bbox.csv"
        path = fetch(dl.url_join(args.base_url, f"{split}/{name}"), root / name, retry, BBOX_COLUMNS)
        start = time.monotonic()
        rows = read_boxes(path, mids, args.include_depiction)
        if args.remove_overlapped:
            rows = remove_overlapped(rows)
        rows_by_split[split] = rows
        log.info("%s: %d boxes of the chosen classes in %d pictures (%.1f s)", split, len(rows),
                 len({r[0] for r in rows}), time.monotonic() - start)

    if args.max_images is not None:
        per_split = {s: image_classes_of(r) for s, r in rows_by_split.items()}
        budgets = split_budgets({s: len(v) for s, v in per_split.items()}, args.max_images)
        rng = random.Random(args.seed)
        for split in splits:
            chosen = choose_balanced(per_split[split], budgets[split], classes, rng)
            rows_by_split[split] = [r for r in rows_by_split[split] if r[0] in chosen]
        log.info("--max-images %d: %s", args.max_images,
                 ", ".join(f"{s} {len({r[0] for r in rows_by_split[s]})}" for s in splits))
    return classes, rows_by_split


def _write_labels(root: Path, classes: list[str]) -> None:
    labels_path = root / "labels.txt"
    labels = [BACKGROUND] + classes
    if labels_path.is_file():
        try:
            old = read_labels(labels_path)
        except UserError:
            old = None
        if old != labels:  # another class list (or another dataset's file): keep it, never lose it
            kept, i = labels_path.with_name("labels.txt.bak"), 0
            while kept.exists():
                i += 1
                kept = labels_path.with_name(f"labels.txt.bak.{i}")
            os.replace(labels_path, kept)
            log.warning("replacing %s (it listed %s); the old one is kept as %s", labels_path, old, kept.name)
    write_labels(labels_path, labels)


def _run(args: argparse.Namespace, requested: list[str], root: Path, retry: dl.RetryPolicy) -> int:
    splits = list(dict.fromkeys(args.splits))
    classes, rows_by_split = _select(args, requested, root, retry, splits)
    print_table("Selected pictures and boxes:", count_table(rows_by_split, classes))
    if args.stats_only:
        return 0
    if not any(rows_by_split.values()):
        raise Failure(f"no boxes of {', '.join(classes)} in {', '.join(splits)}: nothing to train on "
                      "(choose other --class-names or --splits; --include-depiction adds drawings)")

    jobs = [(s, image_id) for s in splits for image_id in dict.fromkeys(r[0] for r in rows_by_split[s])]
    res = download_images(jobs, root, args.images_base_url, retry, args.num_workers)

    present = {s: {i for i in dict.fromkeys(r[0] for r in rows_by_split[s])
                   if (root / s / f"{i}.jpg").is_file()} for s in splits}
    for split in splits:
        kept = [r for r in rows_by_split[split] if r[0] in present[split]]
        write_sub_csv(root / f"sub-{split}-annotations-bbox.csv", kept)
        if not kept:
            log.warning("%s: no pictures of these classes; sub-%s-annotations-bbox.csv is empty", split, split)
    _write_labels(root, classes)
    missing = [f for f in res.failed if f["missing_on_server"]]
    failed = [f for f in res.failed if not f["missing_on_server"]]
    atomic_write_json(root / "download-report.json", {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "classes": classes, "splits": splits,
        "selected": len(jobs), "downloaded": res.downloaded, "already_present": res.present,
        "replaced_damaged": res.replaced,
        "missing_on_server": missing, "failed": failed})

    print_table(f"Dataset in {root} (pictures on disk):", count_table(rows_by_split, classes, present))
    print(f"pictures: {res.downloaded} downloaded, {res.present} already there, "
          + (f"{res.replaced} damaged on disk and downloaded again, " if res.replaced else "")
          + f"{len(missing)} missing on the server (skipped), {len(failed)} failed")
    if failed:
        raise Failure(f"{len(failed)} picture(s) failed to download (listed in {root / 'download-report.json'}); "
                      "run the same command again to retry them")
    if not any(present.values()):
        raise Failure(f"none of the {len(jobs)} selected pictures is on disk (see "
                      f"{root / 'download-report.json'}): nothing to train on")
    log.info("done; train with: python3 train_ssd.py --dataset-type open_images --data %s", root)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
