"""bench/detection_errors.py: each false detection gets one cause, on hand-built cases."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from tests.conftest import run_script  # noqa: E402


def ground_truth() -> dict:
    return {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
            "annotations": [
                {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0},
                {"id": 11, "image_id": 1, "category_id": 2, "bbox": [60, 60, 20, 20], "iscrowd": 0},
                {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 70, 10, 10], "iscrowd": 1},
                {"id": 13, "image_id": 2, "category_id": 2, "bbox": [40, 40, 30, 30], "iscrowd": 0}]}


def test_every_kind_of_mistake_is_told_apart():
    from detection_errors import classify, summary

    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},  # found
        {"image_id": 1, "category_id": 1, "bbox": [11, 10, 20, 20], "score": 0.8},  # the same object again
        {"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.7},  # the class-2 object, as class 1
        {"image_id": 1, "category_id": 2, "bbox": [66, 66, 20, 20], "score": 0.6},  # class 2, IoU 0.32: badly placed
        {"image_id": 1, "category_id": 1, "bbox": [0, 70, 10, 10], "score": 0.4},  # on the crowd region
        {"image_id": 1, "category_id": 2, "bbox": [85, 0, 10, 10], "score": 0.3},  # on nothing
        {"image_id": 2, "category_id": 1, "bbox": [40, 40, 30, 30], "score": 0.05},  # wrong class, low score
    ]
    r = classify(ground_truth(), dets)
    assert r["tp"] == [0.9]
    assert r["duplicate"] == [0.8] and r["location"] == [0.6] and sorted(r["class"]) == [0.05, 0.7]
    assert r["crowd"] == [0.4] and r["background"] == [0.3]
    assert r["ground_truth"] == 3 and r["missed"] == 2  # the class-2 objects: never found as class 2 at IoU 0.5
    s = summary(r)
    assert s["detections"]["class"] == {"all": 2, ">0.1": 1, ">0.2": 1, ">0.5": 1}


def test_script_prints_the_table_and_refuses_bad_files(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth()))
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": 2, "category_id": 2, "bbox": [40, 40, 30, 30],
                                                   "score": 0.9}]))
    r = run_script("bench/detection_errors.py", "--annotations", "gt.json", "--detections", "dt.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.splitlines()[0])
    assert line["missed"] == 2 and line["detections"]["tp"]["all"] == 1
    (tmp_path / "bad.json").write_text("{not json")
    for a, d in (("gt.json", "missing.json"), ("gt.json", "bad.json"), ("dt.json", "dt.json"), ("gt.json", "gt.json")):
        r = run_script("bench/detection_errors.py", "--annotations", a, "--detections", d, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_detections_that_do_not_fit_the_ground_truth_are_named(tmp_path):
    """Review finding: detections on foreign image ids, unknown classes or without area were counted as
    ordinary mistakes without a word; files from two datasets gave a normal-looking table."""
    gt = ground_truth()
    gt["categories"] = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    dets = [{"image_id": 2, "category_id": 2, "bbox": [40, 40, 30, 30], "score": 0.9},
            {"image_id": 999999, "category_id": 2, "bbox": [40, 40, 30, 30], "score": 0.8},
            {"image_id": 2, "category_id": 12345, "bbox": [40, 40, 30, 30], "score": 0.7},
            {"image_id": 2, "category_id": 2, "bbox": [10, 10, 0, 5], "score": 0.6}]
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    r = run_script("bench/detection_errors.py", "--annotations", "gt.json", "--detections", "dt.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 detections are on image ids not in --annotations (e.g. 999999)" in r.stderr
    assert "1 detections have category ids not in --annotations (e.g. 12345)" in r.stderr
    assert "1 detections have no area" in r.stderr
    (tmp_path / "other.json").write_text(json.dumps(dets[1:2]))
    r = run_script("bench/detection_errors.py", "--annotations", "gt.json", "--detections", "other.json", cwd=tmp_path)
    assert r.returncode == 2 and "different datasets" in r.stderr and "Traceback" not in r.stderr
