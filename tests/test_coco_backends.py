"""COCO metrics backends: faster-coco-eval gives pycocotools' 12 numbers (and per-category AP, and
summary text) on the demo set's ground truth, with crowd regions, images without detections and
gapped category ids; ``backend`` picks the one that runs, "auto" falls back to pycocotools."""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from vision.evaluation import coco
from vision.evaluation.coco import COCO_BACKENDS, coco_evaluate, load_coco, resolve_coco_backend
from vision.utils.misc import UserError

pytest.importorskip("pycocotools")
pytest.importorskip("faster_coco_eval")

TOL = 1e-4


@pytest.fixture(scope="module")
def demo_val(tmp_path_factory) -> Path:
    """The demo set's validation split (100 images, seed 0) with the original, gapped category ids."""
    from vision.datasets.synthetic import generate_coco_dataset

    root = tmp_path_factory.mktemp("demo")
    summary = generate_coco_dataset(root, 0, 100, seed=0)
    return Path(summary["ann_files"]["val"])


def _gt(ann_file: Path) -> dict:
    return json.loads(ann_file.read_text())


def _detections(gt: dict, seed: int = 0, skip_images: frozenset = frozenset()) -> list[dict]:
    """COCO results: ground truth jittered (~10 % missed, ~15 % relabelled, duplicates), detections on
    the crowd regions, random false positives; no detection at all on ``skip_images``."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for image_id, (w, h) in sorted(sizes.items()):
        if image_id in skip_images:
            continue
        for a in by_image.get(image_id, []):
            if rng.random() < 0.1:
                continue
            x, y, bw, bh = a["bbox"]
            for _ in range(1 + int(rng.random() < 0.2)):  # sometimes a duplicate
                jx, jy = rng.normal(0, 0.08, 2) * (bw, bh)
                sw, sh = np.exp(rng.normal(0, 0.1, 2))
                cat = a["category_id"] if rng.random() > 0.15 else int(rng.choice(cat_ids))
                out.append({"image_id": image_id, "category_id": cat,
                            "bbox": [round(x + jx, 2), round(y + jy, 2), round(max(1.0, bw * sw), 2),
                                     round(max(1.0, bh * sh), 2)],
                            "score": round(float(rng.uniform(0.2, 1.0)), 5)})
        for _ in range(int(rng.integers(0, 6))):  # false positives, small to large
            bw, bh = np.exp(rng.uniform(np.log(4), np.log(0.8 * min(w, h)), 2))
            out.append({"image_id": image_id, "category_id": int(rng.choice(cat_ids)),
                        "bbox": [round(float(rng.uniform(0, w - bw)), 2), round(float(rng.uniform(0, h - bh)), 2),
                                 round(float(bw), 2), round(float(bh), 2)],
                        "score": round(float(rng.uniform(0.0, 0.7)), 5)})
    return out


def _both(ann_file: Path, results: list[dict], image_ids: list[int]) -> tuple[dict, dict]:
    return tuple(coco_evaluate(load_coco(ann_file, b), results, image_ids, backend=b)
                 for b in ("pycocotools", "faster"))


def _assert_same(ref: dict, fast: dict) -> None:
    assert (ref["backend"], fast["backend"]) == ("pycocotools", "faster")
    assert len(ref["stats"]) == len(fast["stats"]) == 12
    np.testing.assert_allclose(fast["stats"], ref["stats"], rtol=0, atol=TOL)
    assert fast["per_category"].keys() == ref["per_category"].keys()
    for cat_id, ap in ref["per_category"].items():
        if math.isnan(ap):
            assert math.isnan(fast["per_category"][cat_id]), cat_id
        else:
            assert fast["per_category"][cat_id] == pytest.approx(ap, abs=TOL), cat_id
    assert fast["summary"] == ref["summary"]
    assert len(ref["summary"].splitlines()) == 12


def test_demo_set_quirks_are_there(demo_val):
    """The cases below only mean something if the ground truth has them."""
    gt = _gt(demo_val)
    ids = sorted(c["id"] for c in gt["categories"])
    assert ids != list(range(1, len(ids) + 1))  # gapped
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert len({a["image_id"] for a in gt["annotations"]}) < len(gt["images"])  # images without ground truth


def test_same_12_stats_on_the_demo_set(demo_val):
    gt = _gt(demo_val)
    results = _detections(gt)
    image_ids = [im["id"] for im in gt["images"]]
    ref, fast = _both(demo_val, results, image_ids)
    _assert_same(ref, fast)
    assert 0.1 < ref["stats"][0] < 0.95 and ref["stats"][1] > ref["stats"][0]  # a real, imperfect curve
    assert sum(s == -1 for s in ref["stats"]) <= 2  # small/medium/large all exercised (at most one empty)


def test_same_stats_with_images_without_detections(demo_val):
    gt = _gt(demo_val)
    with_gt = sorted({a["image_id"] for a in gt["annotations"]})
    skip = frozenset(with_gt[::3])
    results = _detections(gt, seed=1, skip_images=skip)
    image_ids = [im["id"] for im in gt["images"]]
    ref, fast = _both(demo_val, results, image_ids)
    _assert_same(ref, fast)
    full, _ = _both(demo_val, _detections(gt, seed=1), image_ids)
    assert ref["stats"][8] < full["stats"][8]  # the skipped images' ground truth counts as missed


def test_same_stats_without_any_detection(demo_val):
    gt = _gt(demo_val)
    ref, fast = _both(demo_val, [], [im["id"] for im in gt["images"]])
    _assert_same(ref, fast)
    assert set(ref["stats"]) <= {0.0, -1.0}


def test_crowd_regions_are_ignored_alike(demo_val):
    """Exact non-crowd boxes plus detections on every crowd region: the crowd hits are neither true
    nor false positives in either backend, so AP stays 1."""
    gt = _gt(demo_val)
    results = []
    for a in gt["annotations"]:
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                        "score": 0.5 if a["iscrowd"] else 0.9})
        if a["iscrowd"]:  # a smaller box inside the region: IoU < 0.5 with the region, still ignored
            x, y, w, h = a["bbox"]
            results.append({"image_id": a["image_id"], "category_id": a["category_id"],
                            "bbox": [x + w / 4, y + h / 4, w / 2, h / 2], "score": 0.95})
    assert any(a["iscrowd"] for a in gt["annotations"])
    ref, fast = _both(demo_val, results, [im["id"] for im in gt["images"]])
    _assert_same(ref, fast)
    assert ref["stats"][0] == pytest.approx(1.0) and fast["stats"][0] == pytest.approx(1.0)


def test_gapped_category_ids_and_a_category_without_ground_truth(demo_val):
    """A subset of images where one (gapped-id) category has no ground truth: NaN per-category AP
    in both, the same mean over the others."""
    gt = _gt(demo_val)
    cats_of = {}
    for a in gt["annotations"]:
        cats_of.setdefault(a["image_id"], set()).add(a["category_id"])
    absent = 90
    subset = [im["id"] for im in gt["images"] if absent not in cats_of.get(im["id"], set())][:30]
    results = _detections(gt, seed=2)  # still has detections of category 90 on these images
    assert any(r["category_id"] == absent and r["image_id"] in subset for r in results)
    ref, fast = _both(demo_val, results, subset)
    _assert_same(ref, fast)
    assert math.isnan(ref["per_category"][absent]) and math.isnan(fast["per_category"][absent])
    assert sorted(fast["per_category"]) == sorted(c["id"] for c in gt["categories"])


# ----------------------------------------------------------------------------- choosing the backend
def _spy(monkeypatch, cls, calls: list, name: str) -> None:
    original = cls.evaluate

    def evaluate(self):
        calls.append(name)
        return original(self)

    monkeypatch.setattr(cls, "evaluate", evaluate)


@pytest.mark.parametrize("backend, expected", [("auto", "faster"), ("faster", "faster"),
                                               ("pycocotools", "pycocotools")])
def test_chosen_backend_runs_and_is_logged(demo_val, monkeypatch, caplog, backend, expected):
    import faster_coco_eval
    import pycocotools.cocoeval

    calls: list[str] = []
    _spy(monkeypatch, faster_coco_eval.COCOeval_faster, calls, "faster")
    _spy(monkeypatch, pycocotools.cocoeval.COCOeval, calls, "pycocotools")
    monkeypatch.setattr(coco, "_announced_backends", set())
    gt = _gt(demo_val)
    image_ids = [im["id"] for im in gt["images"]][:20]
    with caplog.at_level(logging.INFO, logger="vision.evaluation.coco"):
        m = coco_evaluate(load_coco(demo_val, backend), _detections(gt), image_ids, backend=backend)
        coco_evaluate(load_coco(demo_val, backend), _detections(gt), image_ids, backend=backend)
    assert calls == [expected, expected]
    assert m["backend"] == expected
    package = "faster-coco-eval" if expected == "faster" else "pycocotools"
    announced = [r for r in caplog.records if "COCO metrics by" in r.getMessage()]
    assert len(announced) == 1 and announced[0].levelno == logging.INFO  # once per process, not per epoch
    assert f"COCO metrics by {package} " in announced[0].getMessage()


def test_ground_truth_of_the_other_backend_is_reindexed(demo_val):
    gt = _gt(demo_val)
    image_ids = [im["id"] for im in gt["images"]]
    results = _detections(gt, seed=3)
    ref = coco_evaluate(load_coco(demo_val, "pycocotools"), results, image_ids, backend="pycocotools")
    fast = coco_evaluate(load_coco(demo_val, "pycocotools"), results, image_ids, backend="faster")
    _assert_same(ref, fast)


def test_auto_falls_back_to_pycocotools_without_faster_coco_eval(demo_val, monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import now raises ImportError
    assert resolve_coco_backend("auto") == "pycocotools"
    with pytest.raises(UserError, match="pip install faster-coco-eval"):
        resolve_coco_backend("faster")
    gt = _gt(demo_val)
    image_ids = [im["id"] for im in gt["images"]]
    results = _detections(gt, seed=4)
    m = coco_evaluate(load_coco(demo_val), results, image_ids)
    assert m["backend"] == "pycocotools"
    assert m["stats"] == coco_evaluate(load_coco(demo_val, "pycocotools"), results, image_ids,
                                       backend="pycocotools")["stats"]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown COCO metrics backend 'fast'"):
        resolve_coco_backend("fast")


def test_compute_metrics_passes_the_backend_through(demo_val):
    from vision.datasets.coco_dataset import COCODataset
    from vision.evaluation import compute_metrics
    from vision.evaluation.detection import ImageDetections

    ds = COCODataset(demo_val.parents[1], dataset_type="val")
    dets = []
    for i in range(len(ds)):
        _, (boxes, labels, _) = ds.get_annotation(i)
        dets.append(ImageDetections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                                    np.linspace(0.9, 0.5, len(labels)).astype(np.float32)))
    by = {b: compute_metrics(ds, dets, coco_backend=b) for b in ("pycocotools", "faster")}
    assert {b: m["coco_backend"] for b, m in by.items()} == {"pycocotools": "pycocotools", "faster": "faster"}
    np.testing.assert_allclose(by["faster"]["stats"], by["pycocotools"]["stats"], rtol=0, atol=TOL)
    assert by["faster"]["results"] == by["pycocotools"]["results"]


def test_eval_ssd_offers_the_same_backends():
    import eval_ssd

    action = next(a for a in eval_ssd.build_parser()._actions if a.dest == "coco_backend")
    assert tuple(action.choices) == COCO_BACKENDS and action.default == "auto"
    assert "--coco-backend" in action.option_strings
