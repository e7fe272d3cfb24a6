"""Which images onnx_export.py's closing report runs on: a few real validation images where the
export knows them, so PyTorch vs ONNX and NMS vs detectNet are compared on pictures like the ones
the Jetson will see (a generated picture hides a net that finds nothing on real data).

Where they come from, in order: ``--report-data DIR`` (a dataset of any type training reads, its
validation split; or a plain folder of images), else the validation dataset recorded by the run
the checkpoint belongs to (its ``args.json``, else the checkpoint's own arguments) if it is still on
disk, else none (the caller falls back to its generated test image). Order is deterministic: the
dataset's own order, or file names sorted. An unreadable image is skipped, counted and replaced by
the next one; never fatal.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vision.utils.paths import IMAGE_EXTENSIONS
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

TRIES_PER_IMAGE = 10  # candidates read per image asked for before giving up on a mostly broken folder


@dataclass
class ReportImages:
    """Candidate images for the report, in order, and where they come from (in words, for the report)."""
    source: str
    paths: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # as shown in the report (file name or path below the folder)


def _image_folder(root: Path, flag: str) -> ReportImages | None:
    """The images under a plain folder (recursive, sorted by path), None if it holds none."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        return None
    return ReportImages(source=f"image folder {root} ({flag})", paths=files,
                        names=[p.relative_to(root).as_posix() for p in files])


def _dataset(dataset_type: str, root: Path, limit: int, why: str) -> ReportImages:
    """The first ``limit`` images of the validation split of the dataset at ``root`` (UserError if unreadable)."""
    from vision.training.dataset_folders import open_dataset, resolve_dataset_type

    kind = resolve_dataset_type(dataset_type, root)
    ds = open_dataset(kind, root, split="val")
    paths = [Path(ds.image_path(i)) for i in range(min(len(ds), limit))]
    return ReportImages(source=f"the validation split of {kind} dataset {root} ({why}, {len(ds)} images)",
                        paths=paths, names=[p.name for p in paths])


def _from_report_data(report_data: str | os.PathLike, limit: int) -> ReportImages:
    from vision.datasets.detect_type import detect_dataset_type

    root = Path(report_data)
    if not root.exists():
        raise UserError(f"--report-data not found: {root}")
    try:
        detect_dataset_type(root, type_flag=None)  # --report-data has no --dataset-type beside it
    except UserError as e:  # not a dataset: a plain folder of images
        if not root.is_dir():
            raise UserError(f"--report-data: {e}") from None
        found = _image_folder(root, "--report-data")
        if found is None:
            raise UserError(f"--report-data {root}: no images ({' '.join(IMAGE_EXTENSIONS)}) in it, and {e}") from None
        return found
    try:
        return _dataset("auto", root, limit, "--report-data")
    except UserError as e:  # e.g. a COCO folder without instances_val2017.json: say which flag it is about
        raise UserError(f"--report-data: {e}") from None


def _recorded_args(model_path: Path, checkpoint: dict | None) -> tuple[dict, str] | None:
    """The training arguments of the run ``model_path`` belongs to, and which file said so."""
    from vision.cli.models import read_folder_args

    try:
        saved = read_folder_args(model_path.parent)
    except UserError as e:
        log.warning("closing report: %s", e)
        saved = None
    if saved and isinstance(saved.get("args"), dict):
        return saved["args"], f"{model_path.parent.name}/args.json"
    if checkpoint and isinstance(checkpoint.get("args"), dict):
        return checkpoint["args"], f"{model_path.name}'s training arguments"
    return None


def _from_run(model_path: Path, checkpoint: dict | None, limit: int) -> ReportImages | None:
    recorded = _recorded_args(model_path, checkpoint)
    if recorded is None:
        return None
    args, said_by = recorded
    datasets = args.get("datasets")
    first = datasets[0] if isinstance(datasets, list) and datasets and isinstance(datasets[0], str) else None
    val = args.get("validation_dataset")
    root = val if isinstance(val, str) and val else first
    if root is None:
        return None
    dataset_type = args.get("dataset_type") if isinstance(args.get("dataset_type"), str) else "auto"
    if not Path(root).exists():
        log.info("closing report: the run's validation dataset %s (%s) is no longer there", root, said_by)
        return None
    try:
        return _dataset(dataset_type, Path(root), limit, f"recorded in {said_by}")
    except UserError as e:  # the report is a courtesy: a dataset changed since training does not stop the export
        log.warning("closing report: cannot use the run's validation dataset: %s", e)
        return None


def choose_report_images(count: int, report_data: str | os.PathLike | None, model_path: str | os.PathLike,
                         checkpoint: dict[str, Any] | None = None) -> ReportImages | None:
    """Candidates for ``count`` report images (see the module docstring); None: no real images known.

    A bad ``report_data`` (missing, neither a dataset nor a folder with images) is a ``UserError``;
    problems with the run's recorded dataset only cost the real images (logged).
    """
    if count < 0:
        raise UserError(f"--report-images must be >= 0, got {count}")
    if count == 0:
        if report_data is not None and not Path(report_data).exists():
            raise UserError(f"--report-data not found: {report_data}")
        return None
    limit = count * TRIES_PER_IMAGE
    if report_data is not None:
        chosen = _from_report_data(report_data, limit)
    else:
        chosen = _from_run(Path(model_path), checkpoint, limit)
    if chosen is not None:
        chosen.paths, chosen.names = chosen.paths[:limit], chosen.names[:limit]
    return chosen


def load_report_images(chosen: ReportImages | None, count: int) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The first ``count`` readable images of ``chosen`` as (name, RGB array), and the names of those
    skipped as unreadable (each logged with its reason)."""
    from vision.datasets.image_io import load_image_rgb

    images: list[tuple[str, np.ndarray]] = []
    skipped: list[str] = []
    if chosen is None or count <= 0:
        return images, skipped
    for path, name in zip(chosen.paths, chosen.names):
        if len(images) == count:
            break
        try:
            images.append((name, load_image_rgb(path)))
        except UserError as e:  # a damaged image is skipped and counted
            log.warning("closing report: %s (skipped)", e)
            skipped.append(name)
    return images, skipped


def report_rows(chosen: ReportImages | None, count: int, first: tuple[str, np.ndarray],
                first_given: bool) -> tuple[list[tuple[str, np.ndarray]], str, list[str]]:
    """The report's rows, where they come from (in words) and the unreadable images skipped.

    ``first`` is the export's own test image: shown first when the user gave it (``first_given``,
    ``--test-image``), else only when no real image could be had (the generated picture)."""
    rows, skipped = load_report_images(chosen, count)
    if rows:
        source = f"{len(rows)} from {chosen.source}"  # type: ignore[union-attr]
    elif chosen is not None:
        source = f"no readable image in {chosen.source}"
    elif count == 0:
        source = "--report-images 0"
    else:
        source = "no validation images known (pass --report-data DIR)"
    if first_given:
        return [first, *rows], f"--test-image, then {source}" if rows else f"--test-image ({source})", skipped
    if not rows:
        return [first], f"a generated test image ({source})", skipped
    return rows, source, skipped
