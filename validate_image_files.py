#!/usr/bin/env python3
"""Find image files that training would choke on, and move them out of the way.

    python3 validate_image_files.py --path coco-data/train2017
    python3 validate_image_files.py --path data/fruit/train --action report --report bad.json

Every (non-hidden) file with an image extension (.jpg .jpeg .png .bmp .tif .tiff
.webp, any case) under --path, subfolders included, is decoded with OpenCV (what
the data loaders use) and scikit-image, after a check for truncated JPEGs (OpenCV
versions differ in whether they notice a missing end). Zero-byte files, non-images
(a text file named .jpg), truncated and unreadable files are "bad". Files with any
other extension (annotations/*.json, labels.txt, ...) are never judged, moved or
deleted: they are counted as "not an image the loaders read, skipped", so pointing --path at a
dataset root instead of its image folder cannot destroy the annotations.

Actions for bad files: ``quarantine`` (default) moves them to the sibling folder
DIR_invalid/ (subfolders kept); ``report`` only lists them; ``delete`` removes them
(add ``--interactive`` to be asked first; that needs a terminal). A JSON report
(path, reason) goes to DIR_invalid/report.json unless --report says otherwise.
Never opens a window, never waits for input unless --interactive.

Exit codes: 0 every image decodes (or, with --ok-after-cleanup, every bad one was
moved away or deleted); 1 bad files were found (or the folder holds no images);
2 bad usage (no such folder, --path is a file, --report is a folder, an image
name or an existing file that is not an earlier report of this script,
--interactive without a terminal). A quarantine folder an earlier run filled
(DIR_invalid/ with its report.json) is not judged again when a parent is checked.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Sequence

from tqdm import tqdm

from vision.utils.misc import (ArgumentParser, Failure, UserError, add_log_level_arg, atomic_write_json, int_range, run_main,
                               setup_logging)
from vision.utils.paths import is_image_file  # what the loaders read; only these are judged

log = logging.getLogger("validate_image_files")

_MAX_REASON = 200


# ----------------------------------------------------------------------------- checking (runs in workers)


def _init_worker() -> None:
    """Quiet, single-threaded decoders: N processes already use the N cores."""
    import cv2
    cv2.setNumThreads(1)
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # older OpenCV
        pass
    from PIL import ImageFile
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncation must raise, not be padded with grey
    warnings.simplefilter("ignore")


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "..."


def jpeg_problem(data: bytes) -> str | None:
    """Structural check of a JPEG's bytes: after the last start-of-scan (FFDA) there must
    be an end-of-image marker (FFD9). Inside entropy-coded data FF is always stuffed,
    so neither marker can appear by accident; trailing bytes after FFD9 are allowed."""
    sos = data.rfind(b"\xff\xda")
    if sos < 0:
        return "JPEG without image data (no start-of-scan marker)"
    if data.rfind(b"\xff\xd9") < sos:
        return "truncated JPEG (no end-of-image marker after the image data)"
    return None


def check_image(path: str) -> tuple[str, str | None]:
    """Return ``(path, None)`` for a good image, ``(path, reason)`` for a bad one."""
    import cv2
    import numpy as np
    import skimage.io

    from vision.datasets.image_io import ImageDecodeError, check_pixel_limit

    if os.path.islink(path) and not os.path.exists(path):
        return path, f"broken symbolic link (to {os.readlink(path)})"
    try:
        size = os.stat(path).st_size
        if size == 0:
            return path, "zero-byte file"
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return path, f"unreadable: {_short(e)}"
    try:  # a decompression bomb is refused from its header, before OpenCV allocates the picture
        check_pixel_limit(data, path)
    except ImageDecodeError as e:
        return path, e.reason
    if data[:3] == b"\xff\xd8\xff":
        problem = jpeg_problem(data)
        if problem:
            return path, problem
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        return path, f"OpenCV cannot decode it: {_short(e)}"
    if img is None or img.size == 0:
        return path, "OpenCV cannot decode it (not an image, or corrupt)"
    del img, data
    try:
        img = skimage.io.imread(path)
    except Exception as e:  # imageio/pillow raise many kinds
        return path, f"scikit-image cannot decode it: {_short(e)}"
    if img.ndim < 2 or img.size == 0:
        return path, f"scikit-image decoded an empty image (shape {img.shape})"
    return path, None


# ----------------------------------------------------------------------------- driver


def is_image_name(path: str) -> bool:
    """True for a file name with an image extension: only such files may ever be judged."""
    return is_image_file(path)


def is_quarantine_folder(path: str) -> bool:
    """A ``NAME_invalid`` folder this script filled earlier: its files were judged already."""
    return path.endswith("_invalid") and _is_own_report(Path(path) / "report.json")


def iter_files(folder: Path) -> Iterator[str]:
    """Every regular, non-hidden file under ``folder`` (hidden folders and earlier quarantine
    folders skipped), sorted."""
    for dirpath, dirnames, filenames in os.walk(folder):
        quarantined = [d for d in dirnames if is_quarantine_folder(os.path.join(dirpath, d))]
        for d in quarantined:
            log.info("skipping %s: bad files quarantined by an earlier run", os.path.join(dirpath, d))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in quarantined)
        for name in sorted(filenames):
            if not name.startswith("."):
                p = os.path.join(dirpath, name)
                if os.path.isfile(p) or (os.path.islink(p) and not os.path.exists(p)):
                    yield p  # a broken link is a bad file, not nothing (the loader would fail on it)


def scan(files: Sequence[str], workers: int, progress: bool | None = None) -> list[tuple[str, str]]:
    """Check ``files`` with ``workers`` processes; return the bad ones as (path, reason).

    Memory stays bounded: workers get file names (in chunks) and send back short
    strings; decoded images never leave the worker.
    """
    bad: list[tuple[str, str]] = []
    bar = tqdm(total=len(files), unit="img", desc="validating", dynamic_ncols=True,
               disable=None if progress is None else not progress)
    try:
        if workers <= 1:
            _init_worker()
            results: Iterator[tuple[str, str | None]] = map(check_image, files)
            pool = None
        else:
            pool = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn").Pool(
                workers, initializer=_init_worker)
            chunk = max(1, min(64, len(files) // (workers * 8) or 1))
            results = pool.imap_unordered(check_image, files, chunksize=chunk)
        try:
            for path, reason in results:
                bar.update(1)
                if reason:
                    log.debug("%s: %s", path, reason)
                    bad.append((path, reason))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        bar.close()
    bad.sort()
    return bad


def _free_name(dest: Path) -> Path:
    """``dest``, or ``dest.1``, ``dest.2``... if taken (never overwrite a quarantined file)."""
    def taken(p: Path) -> bool:
        return p.exists() or p.is_symlink()  # a quarantined broken link counts too

    if not taken(dest):
        return dest
    i = 1
    while taken(dest.with_name(f"{dest.name}.{i}")):
        i += 1
    return dest.with_name(f"{dest.name}.{i}")


def _ask(question: str) -> bool:
    while True:
        try:
            reply = input(f"{question} [y/N] ").strip().lower()
        except EOFError:
            return False
        if reply in ("", "n", "no"):
            return False
        if reply in ("y", "yes"):
            return True


REPORT_KEYS = ("folder", "checked", "bad")  # what marks a JSON file as a report of this script


def _is_own_report(path: Path) -> bool:
    """True when ``path`` holds a report this script wrote (so it may be replaced)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return isinstance(doc, dict) and all(k in doc for k in REPORT_KEYS)


def check_report_path(report: Path) -> None:
    """Refuse a --report that would overwrite something that is not an earlier report of this
    script (an annotation file, an image, any other file) or that cannot be a file."""
    if report.is_dir():
        raise UserError(f"--report {report} is a folder; give a file name such as bad.json")
    if is_image_name(str(report)):
        raise UserError(f"--report {report} has an image extension; give a file name such as bad.json "
                        "(the report is JSON and must never replace an image)")
    # an empty file holds nothing to lose (setup_coco passes one made by mktemp)
    if report.exists() and report.stat().st_size and not _is_own_report(report):
        raise UserError(f"--report {report} exists and is not a report of this script; refusing to "
                        "overwrite it (give a new file name)")
    # where it can be written: vision.utils.paths.check_output_file, called next


def _merge_previous(report_path: Path, entries: list[dict]) -> list[dict]:
    """Keep entries of an earlier report whose quarantined file is still there, so the
    quarantine folder's report keeps describing everything in it (also a file quarantined
    before under the same name: it was moved to a new name, ``NAME.1``, this time)."""
    if not report_path.is_file():
        return entries
    try:
        old = json.loads(report_path.read_text(encoding="utf-8")).get("bad", [])
    except (ValueError, OSError, AttributeError):
        log.warning("replacing unreadable earlier report %s", report_path)
        return entries
    now = {e["moved_to"] for e in entries if e.get("moved_to")}
    kept = [e for e in old if isinstance(e, dict) and e.get("moved_to") and e["moved_to"] not in now
            and Path(e["moved_to"]).exists()]
    for e in kept:  # a run killed half-way: what it had moved is quarantined
        if e.get("action") == "quarantining":
            e["action"] = "quarantined"
    return kept + entries


def _confirmed_action(args: argparse.Namespace, invalid_dir: Path, n_bad: int) -> str:
    """--action, or "report" when --interactive and the user said no."""
    if args.action != "report" and args.interactive:
        verb = "Delete" if args.action == "delete" else f"Move to {invalid_dir}"
        if not _ask(f"{verb} these {n_bad} file(s)?"):
            log.info("nothing changed")
            return "report"
    return args.action


def _apply_action(entries: list[dict], act: str, abs_folder: Path, invalid_dir: Path) -> OSError | None:
    """Quarantine or delete the bad files listed in ``entries`` (updated in place). Stops at
    the first file that cannot be moved or deleted and returns that error, so the report
    still tells where every file moved so far went."""
    done = 0
    try:
        for e in entries:
            if act == "quarantine":
                src = Path(e["path"])
                dest = (Path(e["moved_to"]) if e.get("moved_to")
                        else _free_name(invalid_dir / src.relative_to(abs_folder)))
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), str(dest))
                e.update(action="quarantined", moved_to=str(dest))
            elif act == "delete":
                Path(e["path"]).unlink()
                e["action"] = "deleted"
            done += 1
    except OSError as err:
        return err
    finally:
        if act == "quarantine":
            log.info("moved %d file(s) to %s", done, invalid_dir)
        elif act == "delete":
            log.info("deleted %d file(s)", done)
    return None


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description="Decode every image in a folder with OpenCV and scikit-image and deal with the ones that "
                    "fail (zero-byte, truncated, not an image, unreadable). Exit 0 = all good, 1 = bad files "
                    "found, 2 = bad usage.")
    p.add_argument("--path", required=True, help="folder of images to check (subfolders included)")
    p.add_argument("--workers", "--num-workers", type=int_range(1, 256), default=min(os.cpu_count() or 1, 256),
                   help="processes decoding in parallel (default: number of CPU cores)")
    p.add_argument("--action", choices=["report", "quarantine", "delete"], default="quarantine",
                   help="what to do with bad files: report = only list them; quarantine (default) = move "
                        "them to the sibling folder PATH_invalid/; delete = remove them")
    p.add_argument("--report", metavar="FILE.json",
                   help="where to write the JSON report (default: PATH_invalid/report.json, written only "
                        "when bad files are found); never over an image or a file that is not an "
                        "earlier report")
    p.add_argument("--ok-after-cleanup", action="store_true",
                   help="exit 0 when every bad file was quarantined or deleted (the folder is clean now), "
                        "so a pipeline such as setup_coco goes on without a second run (default: exit 1 "
                        "whenever bad files were found)")
    p.add_argument("--interactive", action="store_true",
                   help="ask before moving or deleting (needs a terminal; without one the script refuses "
                        "instead of waiting)")
    add_log_level_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if not args.path.strip():  # an unset shell variable: never "the current folder" by accident
        raise UserError("--path is empty; give a folder")
    folder = Path(args.path)
    if folder.is_file():
        raise UserError(f"--path {folder} is a file; give the folder of images (e.g. coco-data/train2017)")
    if not folder.is_dir():
        raise UserError(f"--path {folder}: no such folder")
    if args.report:
        check_report_path(Path(args.report))
        from vision.utils.paths import IMAGE_SUFFIXES, check_output_file, refuse_output_over_inputs

        check_output_file(args.report, "--report")
        refuse_output_over_inputs([("--report", args.report)], [("--path", folder)], protect=IMAGE_SUFFIXES)
    if args.interactive and not sys.stdin.isatty():
        raise UserError("--interactive needs a terminal to ask on (stdin is not one); "
                        "run without --interactive (the --action flag is the consent)")
    abs_folder = Path(os.path.abspath(folder))
    if abs_folder == abs_folder.parent:
        raise UserError(f"--path {folder} is the root of the filesystem; give the folder of images "
                        "(e.g. coco-data/train2017)")
    invalid_dir = abs_folder.with_name(abs_folder.name + "_invalid")
    report_path = Path(args.report) if args.report else invalid_dir / "report.json"
    if args.action == "quarantine" and invalid_dir.exists() and not invalid_dir.is_dir():
        raise UserError(f"{invalid_dir} is a file; bad images are moved into a folder of that name "
                        "(move the file away or use --action report)")
    if not args.report and report_path.is_file() and report_path.stat().st_size and not _is_own_report(report_path):
        raise UserError(f"{report_path} exists and is not a report of this script (is {invalid_dir} a folder of "
                        "yours?); give --report FILE.json, or move it away")

    all_files = list(iter_files(folder))
    files = [f for f in all_files if is_image_name(f)]
    skipped = len(all_files) - len(files)
    if skipped:
        others = sorted({os.path.splitext(f)[1].lower() or "(no extension)" for f in all_files
                         if not is_image_name(f)})
        log.info("%d file(s) not an image the loaders read, skipped (left alone): %s", skipped, ", ".join(others[:10]))
    if not files:
        raise Failure(f"no image files to check in {folder}"
                      + (f" ({skipped} other file(s) left alone)" if skipped else ""))
    workers = min(args.workers, max(1, len(files) // 64))  # a pool does not pay for a handful of files
    log.info("checking %d files in %s with %d worker(s)", len(files), folder, workers)
    start = time.monotonic()
    bad = scan(files, workers)
    log.info("checked %d files in %.1f s: %d bad", len(files), time.monotonic() - start, len(bad))

    entries = [{"path": os.path.abspath(p), "reason": r, "action": "reported", "moved_to": None}
               for p, r in bad]
    def write_report(act_error: OSError | None = None) -> None:
        try:
            atomic_write_json(report_path, {
                "folder": str(abs_folder), "checked": len(files), "skipped_not_images": skipped,
                "action": args.action,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "bad": _merge_previous(report_path, entries)})
        except OSError as e:
            raise Failure(f"cannot write the report {report_path}: {e.strerror or e}"
                          + (f"; and {args.action} stopped early: {act_error}" if act_error else "")) from None

    act_error = None
    if bad:
        print(f"{len(bad)} bad file(s) in {folder}:")
        for p, r in bad:
            print(f"  {p}: {r}")
        act = _confirmed_action(args, invalid_dir, len(bad))
        if act == "quarantine":  # the report names every destination before the first move, so a
            for e in entries:    # run killed half-way leaves no quarantined file it does not list
                src = Path(e["path"])
                e.update(action="quarantining", moved_to=str(_free_name(invalid_dir / src.relative_to(abs_folder))))
            write_report()
        act_error = _apply_action(entries, act, abs_folder, invalid_dir)
        if act_error is not None:
            for e in entries:
                if e["action"] == "quarantining":
                    e.update(action="reported", moved_to=None)
    if bad or args.report:
        write_report(act_error)
        log.info("report written to %s", report_path)
    if act_error is not None:
        raise Failure(f"cannot {'delete' if args.action == 'delete' else 'move'} {act_error.filename or ''}: "
                      f"{act_error.strerror or act_error}; the files handled so far are listed in {report_path}")
    if bad:
        cleaned = all(e["action"] in ("quarantined", "deleted") for e in entries)
        if args.ok_after_cleanup and cleaned:
            log.info("%d bad file(s) %s; the %d left in %s are readable images", len(bad),
                     "deleted" if entries[0]["action"] == "deleted" else f"moved to {invalid_dir}",
                     len(files) - len(bad), folder)
            return 0
        return 1
    log.info("all %d image files are readable", len(files))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
