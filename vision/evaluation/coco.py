"""COCO protocol: detections in the COCO results format, scored by COCOeval.

COCOeval comes from one of two backends with the same API and the same numbers:
faster-coco-eval (C++ evaluate/accumulate, 5-8x faster at COCO-val scale by
bench/coco_eval.py, which is what ``--validation-mean-ap`` on real COCO pays) when it is installed,
else pycocotools, which stays the reference (``backend="pycocotools"``).

Two category-id spaces meet here. Results files (what users keep, and what the test-dev
server reads) carry the ORIGINAL COCO ids (1..90 with gaps). The annotation file we
evaluate against may have been renumbered by fix_coco_annotations.py; its categories
then keep the original id in ``"original_id"`` and COCOeval must see the file's own ids.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vision.evaluation.detection import ImageDetections
from vision.utils.misc import UserError, atomic_write, atomic_write_json, read_json

log = logging.getLogger(__name__)

STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)


def coco_results(detections: Sequence[ImageDetections], image_ids: Sequence[int],
                 label_to_category_id: Mapping[int, int]) -> list[dict]:
    """Detections as COCO results: ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``.

    Values are rounded (bbox 0.01 px, score 1e-5) so a written file scores exactly as the
    in-memory list does.
    """
    results = []
    for det, image_id in zip(detections, image_ids):
        if len(det) == 0:
            continue
        xywh = det.boxes.astype(np.float64).copy()
        xywh[:, 2:] -= xywh[:, :2]
        xywh = np.round(xywh, 2)
        scores = np.round(det.scores.astype(np.float64), 5)
        for box, label, score in zip(xywh.tolist(), det.labels.tolist(), scores.tolist()):
            try:
                category_id = int(label_to_category_id[int(label)])
            except KeyError:
                raise ValueError(f"no COCO category id for label {label}") from None
            results.append({"image_id": int(image_id), "category_id": category_id,
                            "bbox": box, "score": score})
    return results


COCO_BACKENDS = ("auto", "faster", "pycocotools")


def _faster_coco_eval_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_coco_backend(backend: str = "auto") -> str:
    """``"faster"`` or ``"pycocotools"``: the COCOeval implementation ``backend`` stands for.

    ``"auto"`` is faster-coco-eval when it imports, else pycocotools (the reference; same
    numbers, slower). Naming a backend that is not installed is a UserError saying how to get it.
    """
    if backend not in COCO_BACKENDS:
        raise ValueError(f"unknown COCO metrics backend {backend!r} (choose from {', '.join(COCO_BACKENDS)})")
    if backend in ("auto", "faster") and _faster_coco_eval_available():
        return "faster"
    if backend == "faster":
        raise UserError("COCO backend 'faster' needs faster-coco-eval: pip install faster-coco-eval")
    try:
        import pycocotools.coco  # noqa: F401
        import pycocotools.cocoeval  # noqa: F401
    except ImportError:
        raise UserError("COCO metrics need faster-coco-eval or pycocotools: pip install faster-coco-eval "
                        "pycocotools") from None
    if backend == "auto":
        log.debug("faster-coco-eval not installed; COCO metrics by pycocotools (slower)")
    return "pycocotools"


_announced_backends: set[str] = set()


def _log_backend(backend: str, num_images: int, num_results: int) -> None:
    """Which COCOeval scores the numbers: INFO the first time per process (validation runs every
    epoch), DEBUG after that."""
    package = "faster-coco-eval" if backend == "faster" else "pycocotools"
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # e.g. a source checkout on sys.path
        version = "(version unknown)"
    level = logging.DEBUG if backend in _announced_backends else logging.INFO
    _announced_backends.add(backend)
    log.log(level, "COCO metrics by %s %s (%d images, %d detections)", package, version, num_images, num_results)


def _coco_api(backend: str) -> tuple[type, type]:
    """(COCO, COCOeval) classes of a resolved backend name."""
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


@contextlib.contextmanager
def _quiet_stdout() -> Any:
    """COCOeval prints progress to stdout; keep it off the script output (debug log instead)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf
    if buf.getvalue().strip():
        log.debug("COCOeval: %s", buf.getvalue().strip())


def _print_line(*args: Any) -> None:
    """faster-coco-eval's print hook, routed to stdout like pycocotools' prints (a plain ``print``
    would make it re-point the shared ground-truth object's logging at stdout)."""
    print(*args)


def load_coco(ann_file: str | os.PathLike, backend: str = "auto") -> Any:
    """The backend's ``COCO`` for an annotation file (cached while the file is unchanged, so the
    training loop's validation does not re-read a large file every epoch)."""
    p = Path(ann_file)
    try:
        st = p.stat()
    except OSError as e:
        raise UserError(f"COCO annotation file not readable: {p}: {e.strerror}") from None
    return _load_coco_cached(str(p.resolve()), st.st_mtime_ns, st.st_size, resolve_coco_backend(backend))


@functools.lru_cache(maxsize=2)
def _load_coco_cached(path: str, _mtime_ns: int, _size: int, backend: str) -> Any:
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise UserError(f"not a COCO annotation file (no 'images'/'categories'): {path}")
    data.setdefault("annotations", [])
    return _indexed(_coco_api(backend)[0], data)


def _indexed(coco_class: type, data: dict) -> Any:
    coco = coco_class()
    coco.dataset = data
    with _quiet_stdout():
        coco.createIndex()
    return coco


def original_to_file_category_ids(coco_gt: Any) -> dict[int, int]:
    """Map ORIGINAL COCO category id -> id used in this annotation file (identity unless renumbered)."""
    out = {}
    for cat in coco_gt.dataset["categories"]:
        out[int(cat.get("original_id", cat["id"]))] = int(cat["id"])
    return out


def _results_coco(coco_gt: Any, results: list[dict]) -> Any:
    if results:
        with _quiet_stdout():
            return coco_gt.loadRes([dict(r) for r in results])
    # pycocotools' loadRes cannot take an empty list; an empty result set scores 0 (or -1 where no ground truth)
    return _indexed(type(coco_gt), {"images": list(coco_gt.dataset["images"]),
                                    "categories": list(coco_gt.dataset["categories"]), "annotations": []})


def coco_evaluate(coco_gt: Any, results: list[dict], image_ids: Sequence[int], backend: str = "auto") -> dict:
    """Run COCOeval (bbox) on ``results`` (category ids as in ``coco_gt``), restricted to ``image_ids``.

    ``backend``: ``"auto"`` (faster-coco-eval if installed, else pycocotools), ``"faster"`` or
    ``"pycocotools"``; both give the same numbers. A ``coco_gt`` of the other backend is re-indexed
    (sharing its annotation dicts).
    Returns ``{"stats": 12 floats, "per_category": {category_id: AP@[.5:.95] or NaN}, "summary": text,
    "backend": name}``; per-category AP averages COCOeval's precision over IoU thresholds and recall
    points (area "all", 100 detections), skipping the -1 entries (NaN when the category has no ground truth).
    """
    backend = resolve_coco_backend(backend)
    coco_class, cocoeval_class = _coco_api(backend)
    if not isinstance(coco_gt, coco_class):
        coco_gt = _indexed(coco_class, coco_gt.dataset)
    known = set(coco_gt.getImgIds())
    missing = [i for i in image_ids if i not in known]
    if missing:
        raise UserError(f"{len(missing)} evaluated image ids are not in the annotation file (first: {missing[0]})")
    coco_dt = _results_coco(coco_gt, results)
    extra = {"print_function": _print_line} if backend == "faster" else {}
    ev = cocoeval_class(coco_gt, coco_dt, "bbox", **extra)
    ev.params.imgIds = sorted(set(int(i) for i in image_ids))
    _log_backend(backend, len(ev.params.imgIds), len(results))
    with _quiet_stdout():
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    # faster-coco-eval also prints AR@.50 and AR@.75; the summary is COCO's usual 12 lines
    summary_text = "\n".join(summary.getvalue().rstrip().splitlines()[:len(STAT_NAMES)])
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_category = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_category[int(cat_id)] = float(p.mean()) if p.size else float("nan")
    # COCOeval prints -1 where no ground truth of that kind (size) exists: say so on the line
    text = "\n".join(line + " (no ground truth of this kind)" if line.rstrip().endswith("= -1.000") else line
                     for line in summary_text.splitlines())
    return {"stats": [float(s) for s in ev.stats[:len(STAT_NAMES)]], "per_category": per_category,
            "summary": text, "backend": backend}


def evaluate_coco_dataset(dataset: Any, detections: Sequence[ImageDetections], backend: str = "auto") -> dict:
    """COCO metrics of a ``COCODataset``'s detections against ``dataset.ann_file`` (``backend``: see
    ``coco_evaluate``).

    Returns coco_evaluate's dict plus ``"results"`` (with ORIGINAL category ids, ready to be
    written) and ``"per_class"`` {class name: AP}.
    """
    image_ids = [int(dataset.coco_image_id(i)) for i in range(len(dataset))]
    label_to_original = {int(k): int(v) for k, v in dataset.label_to_category_id.items()}
    results = coco_results(detections, image_ids, label_to_original)
    coco_gt = load_coco(dataset.ann_file, backend)
    to_file = original_to_file_category_ids(coco_gt)
    unknown = sorted(set(label_to_original.values()) - set(to_file))
    if unknown:
        raise UserError(f"{dataset.ann_file}: categories {unknown[:5]} of the dataset's labels are not in "
                        f"the annotation file")
    eval_results = [dict(r, category_id=to_file[r["category_id"]]) for r in results]
    missing = [int(i) for i in getattr(dataset, "missing_image_ids", [])]
    metrics = coco_evaluate(coco_gt, eval_results, image_ids + missing, backend)
    metrics["images"] = {"listed": len(image_ids) + len(missing), "scored": len(image_ids),
                         "missing_on_disk": len(missing)}
    metrics["images_note"] = scored_images_note(metrics["images"])
    if missing:
        log.warning("%s", metrics["images_note"])
    names = list(dataset.class_names)
    metrics["per_class"] = {
        names[label]: metrics["per_category"].get(to_file[orig], float("nan"))
        for label, orig in sorted(label_to_original.items()) if 0 < label < len(names)
    }
    metrics["results"] = results
    return metrics


def scored_images_note(images: dict) -> str:
    """"scored 99 of 100 listed images; 1 missing on disk counted as no detections"."""
    note = f"scored {images['scored']} of {images['listed']} listed images"
    if images.get("missing_on_disk"):
        note += f"; {images['missing_on_disk']} missing on disk counted as no detections"
    return note


class CocoImageList:
    """Images of a COCO image-info file without ground truth (test-dev): the part of the
    dataset interface evaluation needs (``get_image``, ``coco_image_id``, ``class_names``,
    ``label_to_category_id``).

    Labels map to categories by NAME, so a model trained on renumbered annotations still
    writes the original ids the server expects.
    """

    def __init__(self, info_file: str | os.PathLike, image_dir: str | os.PathLike,
                 class_names: Sequence[str]) -> None:
        info = read_json(info_file, "COCO image info file")
        if not isinstance(info, dict) or not isinstance(info.get("images"), list):
            raise UserError(f"not a COCO image info file (no 'images' list): {info_file}")
        self.info_file = Path(info_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise UserError(f"image folder not found: {self.image_dir}")
        self.images = sorted(info["images"], key=lambda im: int(im["id"]))
        self.class_names = list(class_names)
        by_name = {str(c["name"]): int(c.get("original_id", c["id"])) for c in info.get("categories", [])}
        missing = [n for n in self.class_names[1:] if n not in by_name]
        if missing:
            raise UserError(f"{info_file}: classes {missing[:5]} of the model are not COCO categories "
                            f"(test-dev needs a model trained on the COCO classes)")
        self.label_to_category_id = {i: by_name[n] for i, n in enumerate(self.class_names) if i > 0}
        self.ids = [int(im["id"]) for im in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def coco_image_id(self, index: int) -> int:
        return self.ids[index]

    def get_image(self, index: int) -> np.ndarray:
        from vision.datasets.image_io import load_image_rgb

        return load_image_rgb(self.image_dir / self.images[index]["file_name"])


def write_results(path: str | os.PathLike, results: list[dict]) -> Path:
    """Write a COCO results JSON atomically (compact: test-dev files are large)."""
    atomic_write_json(path, results, indent=None)
    return Path(path)


def write_test_dev_submission(eval_dir: str | os.PathLike, results: list[dict], alg_name: str) -> tuple[Path, Path]:
    """``detections_test-dev2017_{alg}_results.json`` and the same zipped, as the evaluation server expects."""
    eval_dir = Path(eval_dir)
    name = f"detections_test-dev2017_{alg_name}_results"
    json_path = write_results(eval_dir / f"{name}.json", results)
    zip_path = eval_dir / f"{name}.zip"
    with atomic_write(zip_path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.write(json_path, arcname=json_path.name)
    return json_path, zip_path
