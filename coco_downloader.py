#!/usr/bin/env python3
"""Download the COCO 2017 detection archives and unzip them safely.

    python3 coco_downloader.py --path coco-data
    python3 coco_downloader.py --path coco-data --splits val annotations

Result (what COCODataset and the other scripts expect)::

    coco-data/train2017/  val2017/  test2017/
    coco-data/annotations/instances_{train,val}2017.json, image_info_test*.json

Interrupted downloads resume (HTTP Range into NAME.zip.part); transient network
errors are retried with backoff; free disk space is checked first; each archive
is extracted into a temp folder, moved into place and only then marked done
(``coco-data/.extracted-NAME.zip``), so running it again skips finished work. A
marker counts only while the folders it vouches for exist, and no archive member
may create one (or any other state name of these tools). A download counts only
when its length matches and the zip's directory reads; an HTML answer is refused;
a bad zip under the final name is moved to ``NAME.zip.bad`` and fetched next run.
A connection is failed by ``--timeout`` seconds without data or by less than
``--min-rate`` bytes/s over that long. Ctrl-C ends at once (a second one quits
without waiting); one run per folder at a time (``.download.lock``).

Exit codes: 0 ok (or nothing to do); 1 a download or extraction failed (HTTP 404
or another 4xx, HTML answer, size mismatch, retries used up, corrupt or unsafe zip,
not enough disk space, another run holds the folder) -- the message names the URL
or file; 2 bad usage (unknown split, malformed --base-url, --path is a file). A 404
is exit 1 even with --base-url: the server answered, we cannot tell a wrong mirror
from a mirror missing one file.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests

from vision.utils import download as dl
from vision.utils.misc import (ArgumentParser, Failure, UserError, add_log_level_arg, float_range, non_negative_float, non_negative_int,
                               positive_int, run_main, setup_logging)

log = logging.getLogger("coco_downloader")

DEFAULT_BASE_URL = "http://images.cocodataset.org/"


@dataclass(frozen=True)
class Archive:
    split: str     # name on the command line
    rel_url: str   # path under --base-url
    what: str      # what it contains (for --help and messages)
    provides: tuple[str, ...] = ()  # paths under --path that exist once it is extracted

    @property
    def zip_name(self) -> str:
        return self.rel_url.rsplit("/", 1)[-1]


ARCHIVES: dict[str, Archive] = {a.split: a for a in (
    Archive("train", "zips/train2017.zip", "train2017/ images (~18 GB, 118,287 images)", ("train2017",)),
    Archive("val", "zips/val2017.zip", "val2017/ images (~1 GB, 5,000 images)", ("val2017",)),
    Archive("test", "zips/test2017.zip", "test2017/ images (~6 GB, 40,670 images)", ("test2017",)),
    Archive("annotations", "annotations/annotations_trainval2017.zip",
            "annotations/instances_{train,val}2017.json (~241 MB)",
            ("annotations/instances_train2017.json", "annotations/instances_val2017.json")),
    Archive("test-info", "annotations/image_info_test2017.zip", "annotations/image_info_test*.json",
            ("annotations/image_info_test-dev2017.json",)),
)}


def _url_arg(s: str) -> str:
    try:
        return dl.check_url(s)
    except Exception as e:  # UserError -> argparse usage error (exit 2)
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    splits_help = "; ".join(f"{a.split}: {a.what}" for a in ARCHIVES.values())
    p = ArgumentParser(
        description="Download the COCO 2017 object-detection archives and unzip them into one folder. "
                    "Safe to interrupt and run again: downloads resume, finished archives are skipped.",
        epilog="Note: the test2017 ground truth is not public; test-dev results are scored by the COCO "
               "evaluation server.")
    p.add_argument("--path", "--root", "--data", dest="path", default="coco-data",
                   help="folder to download and unzip into (default: coco-data)")
    p.add_argument("--splits", nargs="+", choices=list(ARCHIVES), default=list(ARCHIVES), metavar="SPLIT",
                   help=f"which archives (default: all five). {splits_help}")
    p.add_argument("--workers", "--num-workers", type=positive_int, default=3,
                   help="parallel downloads (default: 3)")
    p.add_argument("--no-download", action="store_true",
                   help="do not download; only unzip archives already in --path. A split whose folder "
                        "(or annotation files) is already there without its archive counts as extracted")
    p.add_argument("--keep-zips", action="store_true",
                   help="keep the .zip files after extracting them (default: delete them)")
    p.add_argument("--base-url", type=_url_arg, default=DEFAULT_BASE_URL,
                   help=f"mirror to download from (default: {DEFAULT_BASE_URL}); "
                        "archives are fetched from BASE/zips/... and BASE/annotations/...")
    p.add_argument("--retries", type=non_negative_int, default=8,
                   help="retries per file after a network error or a 5xx answer (default: 8)")
    p.add_argument("--retry-backoff", type=non_negative_float, default=2.0,
                   help="seconds before the first retry, doubled each time up to 60 s (default: 2)")
    p.add_argument("--timeout", type=float_range(0, 86400), default=60.0,
                   help="seconds without data before a connection counts as failed (default: 60; at most a day)")
    p.add_argument("--min-rate", type=float_range(0, 1e12, lo_open=False), default=dl.DEFAULT_MIN_RATE, metavar="BYTES_PER_S",
                   help="a connection slower than this over --timeout seconds counts as failed and is retried "
                        f"(a server trickling bytes never trips the idle timeout; default: {dl.DEFAULT_MIN_RATE:.0f}; "
                        "0 = no minimum)")
    add_log_level_arg(p)
    return p


def _download_all(archives: list[Archive], root: Path, args: argparse.Namespace,
                  retry: dl.RetryPolicy) -> dict[str, Exception]:
    """Download the archives not on disk yet, in parallel; return {split: error} for failures."""
    sizes: dict[str, int | None] = {}
    errors: dict[str, Exception] = {}
    with requests.Session() as session:
        for a in archives:
            try:
                sizes[a.split] = dl.remote_size(dl.url_join(args.base_url, a.rel_url), session=session, retry=retry)
            except dl.DownloadError as e:
                errors[a.split] = e
    archives = [a for a in archives if a.split not in errors]
    if not archives:
        return errors
    # Peak disk use: every archive (they are downloaded before any is unzipped) plus its
    # extracted contents (COCO's JPEGs are stored, so about the archive size again).
    need = 0
    for a in archives:
        size = sizes.get(a.split)
        if size is None:
            log.warning("%s: the server did not say its size; the disk-space check cannot count it", a.zip_name)
            continue
        part = dl.part_path(root / a.zip_name)
        have = part.stat().st_size if part.exists() else 0
        need += max(0, size - have) + size
    dl.ensure_free_space(root, need, "downloading and extracting " + ", ".join(a.zip_name for a in archives))

    def work(a: Archive, stop: threading.Event) -> None:
        url = dl.url_join(args.base_url, a.rel_url)
        log.info("downloading %s", url)
        dl.download_file(url, root / a.zip_name, retry=retry, expected_size=sizes.get(a.split), progress=None,
                         position=archives.index(a), stop=stop, verify=dl.zip_problem)

    def done(a: Archive, e: BaseException | None) -> None:
        if e is None:
            log.info("downloaded %s", a.zip_name)
        elif isinstance(e, Failure):
            errors[a.split] = e
        elif isinstance(e, OSError):  # disk full, permission denied...
            errors[a.split] = Failure(f"cannot write {root / a.zip_name}: {e.strerror or e}")
        else:
            raise e

    dl.run_parallel(archives, work, args.workers, done)
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if not args.path.strip():  # an unset shell variable: never "the current folder" by accident
        raise UserError("--path is empty; give the folder to download into")
    root = Path(args.path)
    archives = [ARCHIVES[s] for s in dict.fromkeys(args.splits)]
    retry = dl.RetryPolicy(retries=args.retries, backoff=args.retry_backoff, timeout=args.timeout,
                           min_rate=args.min_rate)
    from vision.utils.paths import check_output_dir

    check_output_dir(root, "--path")  # a file there, below a file, or not writable: one line, exit 2
    root.mkdir(parents=True, exist_ok=True)
    with dl.folder_lock(root):
        return _run(archives, root, args, retry)


def _provided(path: Path) -> bool:
    """An annotation file that is a file, or an image folder that is a folder with something in it
    (a file named ``train2017`` is not the extracted split)."""
    if path.suffix == ".json":
        return path.is_file()
    return path.is_dir() and any(path.iterdir())


def _already_there(a: Archive, root: Path, no_download: bool) -> bool:
    """Extracted by an earlier run (marker + what it vouches for), or, with --no-download,
    extracted by hand: every path the archive provides exists (a folder not empty)."""
    if dl.is_extracted(root, a.zip_name, a.provides):
        log.info("%s: already downloaded and extracted, skipping", a.zip_name)
        return True
    if no_download and not (root / a.zip_name).is_file() and a.provides and all(
            _provided(root / p) for p in a.provides):
        log.info("%s: not here, but %s already is (extracted before): using it", a.zip_name,
                 ", ".join(a.provides))
        return True
    return False


def _run(archives: list[Archive], root: Path, args: argparse.Namespace, retry: dl.RetryPolicy) -> int:
    pending = []
    for a in archives:
        if _already_there(a, root, args.no_download):
            if not args.keep_zips and (root / a.zip_name).is_file():  # a run killed before deleting it
                (root / a.zip_name).unlink()
                log.info("deleted %s, left by an interrupted run (use --keep-zips to keep it)", root / a.zip_name)
        else:
            pending.append(a)
    if not pending:
        log.info("nothing to do: %s already extracted in %s",
                 ", ".join(a.zip_name for a in archives), root)
        return 0

    errors: dict[str, Exception] = {}
    missing = [a for a in pending if not (root / a.zip_name).is_file()]
    if args.no_download:
        for a in missing:
            errors[a.split] = Failure(f"{root / a.zip_name} not found and --no-download was given "
                                      f"(nor is {', '.join(a.provides)} there)")
    elif missing:
        errors.update(_download_all(missing, root, args, retry))

    extracted = 0
    for a in pending:
        zip_path = root / a.zip_name
        if a.split in errors or not zip_path.is_file():
            continue
        log.info("extracting %s into %s", zip_path, root)
        try:
            n = dl.extract_zip(zip_path, root, progress=None)
        except dl.ArchiveError as e:
            if e.corrupt:  # a bad download under the final name: never stuck on it
                bad = dl.move_aside(zip_path, "cannot be extracted")
                e = Failure(f"{e}; moved to {bad.name}, run again to download it again"
                            + (" (--no-download: put a good copy there)" if args.no_download else ""))
            errors[a.split] = e
            continue
        except Failure as e:
            errors[a.split] = e
            continue
        extracted += 1
        log.info("extracted %d entries from %s", n, a.zip_name)
        if not args.keep_zips:
            zip_path.unlink()
            log.info("deleted %s (use --keep-zips to keep it)", zip_path)

    if errors:
        for split, e in errors.items():
            log.error("%s: %s", ARCHIVES[split].zip_name, e)
            if getattr(e, "status", None) == 404 and args.base_url != DEFAULT_BASE_URL:
                log.error("  (is --base-url %s right? it should hold zips/ and annotations/)", args.base_url)
        raise Failure(f"{len(errors)} of {len(archives)} archives failed "
                      f"({', '.join(ARCHIVES[s].zip_name for s in errors)}); fix the cause and run again "
                      "(finished archives are skipped, partial downloads resume)")
    log.info("done: %d archive(s) extracted into %s", extracted, root)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
