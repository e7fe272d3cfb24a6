"""The mAP train_ssd.py --validation-mean-ap logs is the number eval_ssd.py gives for the same
checkpoint (VOC: both the VOC07 11-point AP, top-k 200), and each says which metric it is."""
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def coco_to_voc(coco_root: Path, voc_root: Path) -> list[str]:
    """Write the synthetic COCO set in VOC layout (train -> trainval.txt, val -> test.txt)."""
    (voc_root / "Annotations").mkdir(parents=True)
    (voc_root / "JPEGImages").mkdir()
    (voc_root / "ImageSets" / "Main").mkdir(parents=True)
    names = None
    for split, listing in (("train", "trainval.txt"), ("val", "test.txt")):
        coco = json.loads((coco_root / "annotations" / f"instances_{split}2017.json").read_text())
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        names = ["BACKGROUND"] + [cats[k] for k in sorted(cats)]
        by_image = {}
        for a in coco["annotations"]:
            if not a["iscrowd"]:
                by_image.setdefault(a["image_id"], []).append(a)
        ids = []
        for im in coco["images"]:
            stem = Path(im["file_name"]).stem
            ids.append(stem)
            shutil.copy(coco_root / f"{split}2017" / im["file_name"], voc_root / "JPEGImages" / im["file_name"])
            ann = ET.Element("annotation")
            size = ET.SubElement(ann, "size")
            ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = str(im["width"]), str(im["height"])
            for a in by_image.get(im["id"], []):
                obj = ET.SubElement(ann, "object")
                ET.SubElement(obj, "name").text = cats[a["category_id"]]
                ET.SubElement(obj, "difficult").text = "0"
                bb = ET.SubElement(obj, "bndbox")
                x, y, w, h = a["bbox"]
                for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x + 1, y + 1, x + w, y + h)):
                    ET.SubElement(bb, tag).text = str(int(round(v)))
            ET.ElementTree(ann).write(voc_root / "Annotations" / f"{stem}.xml")
        (voc_root / "ImageSets" / "Main" / listing).write_text("\n".join(ids) + "\n")
    (voc_root / "labels.txt").write_text("\n".join(names) + "\n")
    return names


@pytest.mark.slow
def test_training_validation_map_equals_eval_ssd_on_voc(tmp_path):
    from vision.datasets.synthetic import generate_coco_dataset

    generate_coco_dataset(tmp_path / "coco", 64, 24, seed=11)
    coco_to_voc(tmp_path / "coco", tmp_path / "voc")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "train_ssd.py", "--dataset-type", "voc", "--datasets", tmp_path / "voc",
                        "--net", "mb1-ssd-lite", "--resolution", "128", "--batch-size", "8", "--epochs", "2",
                        "--lr", "0.01", "--optimizer", "adamw", "--workers", "0", "--seed", "1", "--device", "cpu",
                        "--validation-mean-ap", "--checkpoint-folder", run],
                       cwd=REPO, capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mAP (VOC07 11-point, IoU > 0.5) " in r.stderr
    record = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert record["mAP_metric"] == "mAP (VOC07 11-point, IoU > 0.5)"
    assert record["mAP"] > 0, "the test needs a net that finds something"
    ckpt = next(run.glob(f"mb1-ssd-lite-Epoch-{record['epoch']}-Loss-*.pth"))
    r = subprocess.run([sys.executable, "eval_ssd.py", "--trained-model", ckpt, "--dataset-type", "voc",
                        "--dataset", tmp_path / "voc", "--workers", "0", "--use-cuda", "false",
                        "--eval-dir", tmp_path / "eval"], cwd=REPO, capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["mAP"] == pytest.approx(record["mAP"], abs=1e-6)


def test_no_ground_truth_is_said_in_words_never_a_bare_minus_one():
    from pycocotools.coco import COCO

    from vision.evaluation.coco import coco_evaluate
    from vision.evaluation.evaluate import describe_map, metrics_record

    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": 100, "height": 100}], "annotations": [],
                  "categories": [{"id": 1, "name": "a"}]}
    gt.createIndex()
    m = coco_evaluate(gt, [], [1])
    assert m["stats"][0] == -1
    assert all("no ground truth" in line for line in m["summary"].splitlines() if "-1.000" in line)
    record = metrics_record({"mAP": float("nan"), "AP50": float("nan"), "metric": "mAP (COCO AP@[.50:.95])",
                             "note": "no ground truth"})
    assert record["mAP"] is None and record["mAP_note"] == "no ground truth"
    text = describe_map(record)
    assert "no ground truth" in text and "-1" not in text and "nan" not in text
    assert describe_map({"mAP": 0.25, "AP50": 0.5, "mAP_metric": "mAP (VOC07 11-point, IoU > 0.5)"}) == \
        ", mAP (VOC07 11-point, IoU > 0.5) 0.2500, AP50 0.5000"
