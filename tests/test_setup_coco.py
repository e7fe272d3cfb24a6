"""setup_coco: the whole download -> validate -> fix pipeline against a local mirror,
stop at the first failure, skip finished steps; --demo writes a fixed synthetic set."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.http_server import http_server  # noqa: F401  (pytest fixture)

REPO = Path(__file__).resolve().parents[1]


def _jpeg(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _instances(n: int) -> bytes:
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 32, "height": 24} for i in range(n)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 90 if i % 2 else 1, "bbox": [1, 1, 10, 10],
             "area": 100, "iscrowd": 0} for i in range(n)]
    cats = [{"id": 1, "name": "person", "supercategory": "person"},
            {"id": 90, "name": "toothbrush", "supercategory": "indoor"}]
    return json.dumps({"images": images, "annotations": anns, "categories": cats}).encode()


def serve_mini_coco(www: Path, corrupt_val: bool = False) -> None:
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        members = {f"{split}2017/{i + 1:012d}.jpg": _jpeg(i) for i in range(n)}
        if corrupt_val and split == "val":
            members["val2017/000000000002.jpg"] = _jpeg(1)[:200]
        _zip(www / f"zips/{split}2017.zip", members)
    _zip(www / "annotations/annotations_trainval2017.zip",
         {"annotations/instances_train2017.json": _instances(3), "annotations/instances_val2017.json": _instances(2)})
    _zip(www / "annotations/image_info_test2017.zip", {"annotations/image_info_test-dev2017.json": b"{}"})


def run_setup(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run([str(REPO / "setup_coco"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_full_pipeline_then_rerun_skips(http_server, tmp_path):
    serve_mini_coco(http_server.root)
    data = tmp_path / "coco"
    r = run_setup("--path", str(data), "--base-url", http_server.url(), "--workers", "1")
    assert r.returncode == 0, r.stderr
    d = json.loads((data / "annotations/instances_train2017.json").read_text())
    assert d["pytorch_ssd_fixed"] == {"version": 1}
    assert {a["category_id"] for a in d["annotations"]} == {1, 2}
    assert len(list((data / "test2017").iterdir())) == 2
    for s in ("train", "val", "test"):
        assert (data / f".validated-{s}2017").is_file()

    n = len(http_server.requests)
    r = run_setup("--path", str(data), "--base-url", http_server.url())
    assert r.returncode == 0, r.stderr
    assert len(http_server.requests) == n
    assert "already checked" in r.stderr and "already fixed" in r.stderr


def test_bad_image_is_quarantined_and_the_run_goes_on(http_server, tmp_path):
    """The image check needed a second run after quarantining (exit 1 the first time)."""
    serve_mini_coco(http_server.root, corrupt_val=True)
    data = tmp_path / "coco"
    r = run_setup("--path", str(data), "--base-url", http_server.url())
    assert r.returncode == 0, r.stderr
    assert (data / "val2017_invalid/000000000002.jpg").exists()
    assert (data / ".validated-val2017").exists() and (data / ".validated-test2017").exists()
    assert json.loads((data / "annotations/instances_val2017.json").read_text())["pytorch_ssd_fixed"]
    assert "1 unreadable image(s) of val2017" in r.stderr
    assert "instances_val2017.json are missing on disk (first ids: 2)" in r.stderr
    assert r.stderr.rstrip().endswith(f"COCO 2017 ready in {data}")


def test_download_failure_stops(http_server, tmp_path):
    serve_mini_coco(http_server.root)
    http_server.status("zips/test2017.zip", 404)
    r = run_setup("--path", str(tmp_path / "c"), "--base-url", http_server.url())
    assert r.returncode == 1 and "404" in r.stderr and "download" in r.stderr
    assert not (tmp_path / "c/.validated-train2017").exists()


@pytest.mark.parametrize("args", [["--workers", "0"], ["--bogus"], ["--path"], ["--demo", "--no-download"]])
def test_bad_usage(args):
    r = run_setup(*args)
    assert r.returncode == 2 and "setup_coco" in r.stderr


def test_help():
    r = run_setup("--help")
    assert r.returncode == 0 and "--demo" in r.stdout and "--no-download" in r.stdout


@pytest.mark.parametrize("keep", ["train json", "own image"])
def test_demo_never_writes_over_a_folder_with_data(tmp_path, keep):
    """--demo into a folder holding a real train json (no val json) replaced it, and it replaced the
    user's 000000000002.jpg (the demo's names are real COCO names). Refused now, nothing written."""
    data = tmp_path / "coco-data"
    if keep == "train json":
        (data / "annotations").mkdir(parents=True)
        (data / "annotations/instances_train2017.json").write_text('{"images": [], "mine": 1}')
    else:
        (data / "train2017").mkdir(parents=True)
        (data / "train2017/000000000002.jpg").write_bytes(b"mine")
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    r = run_setup("--demo", "--path", str(data), cwd=tmp_path)
    assert r.returncode == 2 and "not empty" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_demo(tmp_path):
    if importlib.util.find_spec("vision.datasets.synthetic") is None:
        pytest.skip("vision.datasets.synthetic (data owner) not written yet")
    data = tmp_path / "demo"
    r = run_setup("--demo", "--path", str(data), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "already fixed" in r.stderr, "the generator's --fixed output must be the format the fixer writes"
    d = json.loads((data / "annotations/instances_train2017.json").read_text())
    assert d["pytorch_ssd_fixed"] == {"version": 1}
    assert len(d["images"]) == 400
    assert len(json.loads((data / "annotations/instances_val2017.json").read_text())["images"]) == 100
    ids = sorted(c["id"] for c in d["categories"])
    assert ids == list(range(1, len(ids) + 1)) and all("original_id" in c for c in d["categories"])
    r = run_setup("--demo", "--path", str(data), cwd=tmp_path)
    assert r.returncode == 0 and "already" in r.stderr
    if importlib.util.find_spec("vision.datasets.coco_dataset") is None:
        return  # loader (data owner) not written yet
    from vision.datasets.coco_dataset import COCODataset
    ds = COCODataset(str(data), dataset_type="val")
    assert len(ds) == 100
    assert ds.label_to_category_id == {c["id"]: c["original_id"] for c in d["categories"]}
    image, boxes, labels = ds[0]
    assert image.ndim == 3 and boxes.shape[1] == 4
    assert labels.min() >= 1 and labels.max() < len(ds.class_names)


def test_deleted_split_is_not_ready(http_server, tmp_path):
    """`rm -rf coco/val2017` then ./setup_coco said 'COCO 2017 ready', exit 0."""
    import shutil
    serve_mini_coco(http_server.root)
    data = tmp_path / "coco"
    assert run_setup("--path", str(data), "--base-url", http_server.url()).returncode == 0
    shutil.rmtree(data / "val2017")
    r = run_setup("--path", str(data), "--base-url", http_server.url(), "--no-download")
    assert r.returncode == 1 and "val2017.zip not found" in r.stderr, r.stderr
    assert "COCO 2017 ready" not in r.stderr
    r = run_setup("--path", str(data), "--base-url", http_server.url())
    assert r.returncode == 0, r.stderr
    assert len(list((data / "val2017").iterdir())) == 2
    assert "check the images in" in r.stderr and "val2017 already checked" not in r.stderr


def test_no_download_on_an_extracted_folder(http_server, tmp_path):
    """--no-download on data already on disk said 'train2017.zip not found' for every archive."""
    serve_mini_coco(http_server.root)
    data = tmp_path / "coco"
    for zp in http_server.root.rglob("*.zip"):
        with zipfile.ZipFile(zp) as zf:
            zf.extractall(data)
    r = run_setup("--path", str(data), "--no-download", "--splits", "train", "val", "annotations")
    assert r.returncode == 0, r.stderr
    assert (data / ".validated-train2017").exists() and not (data / ".validated-test2017").exists()
    d = json.loads((data / "annotations/instances_train2017.json").read_text())
    assert d["pytorch_ssd_fixed"] == {"version": 1}


def test_splits_choose_what_is_fetched_and_checked(http_server, tmp_path):
    serve_mini_coco(http_server.root)
    data = tmp_path / "coco"
    r = run_setup("--path", str(data), "--base-url", http_server.url(), "--splits", "val", "annotations")
    assert r.returncode == 0, r.stderr
    assert (data / "val2017").is_dir() and not (data / "train2017").exists()
    assert not any("train2017.zip" in p for _, p, _ in http_server.requests)
    r = run_setup("--splits", "bogus")
    assert r.returncode == 2 and "unknown split" in r.stderr


def test_path_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    r = run_setup("--path", str(f))
    assert r.returncode == 2 and "is a file" in r.stderr
