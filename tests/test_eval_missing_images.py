"""Val images listed in the annotation file but missing on disk are scored as images without
detections, as the COCO server would: the AP is COCOeval's on the whole file, never the AP of the
subset that happens to be on disk; the summary says how many images were scored of how many listed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vision.evaluation import compute_metrics
from vision.evaluation.detection import ImageDetections


@pytest.fixture(scope="module")
def coco_one_missing(tmp_path_factory):
    from vision.datasets.synthetic import generate_coco_dataset

    root = tmp_path_factory.mktemp("missing")
    generate_coco_dataset(root, 0, 6, seed=5, image_size=(96, 72))
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    with_boxes = {a["image_id"] for a in data["annotations"]}
    gone = next(im for im in data["images"] if im["id"] in with_boxes)
    (root / "val2017" / gone["file_name"]).unlink()
    return root, gone["id"]


def _perfect(dataset) -> list[ImageDetections]:
    dets = []
    for i in range(len(dataset)):
        _, (boxes, labels, crowd) = dataset.get_annotation(i)
        keep = crowd == 0
        dets.append(ImageDetections(boxes=np.asarray(boxes[keep], np.float32), labels=np.asarray(labels[keep]),
                                    scores=np.linspace(0.9, 0.5, int(keep.sum())).astype(np.float32)))
    return dets


def test_missing_image_counts_as_no_detections(coco_one_missing):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from vision.datasets.coco_dataset import COCODataset
    from vision.evaluation.coco import coco_results

    root, gone = coco_one_missing
    ds = COCODataset(root, dataset_type="val")
    assert gone not in ds.image_ids and ds.missing_image_ids == [gone]
    dets = _perfect(ds)
    m = compute_metrics(ds, dets, coco_backend="pycocotools")

    # the reference: COCOeval on the whole file, no detections for the missing image
    ann = root / "annotations" / "instances_val2017.json"
    gt = COCO(str(ann))
    to_file = {int(c.get("original_id", c["id"])): c["id"] for c in gt.dataset["categories"]}
    results = [dict(r, category_id=to_file[r["category_id"]])
               for r in coco_results(dets, ds.image_ids, ds.label_to_category_id)]
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert m["stats"][0] == pytest.approx(ev.stats[0]) and m["stats"][1] == pytest.approx(ev.stats[1])
    assert m["mAP"] < 1.0  # the perfect detections of the present images do not make a perfect score
    n = len(gt.getImgIds())
    assert m["images"] == {"listed": n, "scored": n - 1, "missing_on_disk": 1}
    assert m["images_note"] == f"scored {n - 1} of {n} listed images; 1 missing on disk counted as no detections"


def test_summary_says_scored_of_listed_without_missing(tmp_path):
    from vision.datasets.coco_dataset import COCODataset
    from vision.datasets.synthetic import generate_coco_dataset

    generate_coco_dataset(tmp_path, 0, 3, seed=1, image_size=(96, 72))
    ds = COCODataset(tmp_path, dataset_type="val")
    m = compute_metrics(ds, _perfect(ds), coco_backend="pycocotools")
    assert m["mAP"] == pytest.approx(1.0)
    assert m["images_note"] == "scored 3 of 3 listed images"
