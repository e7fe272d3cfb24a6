"""open_images_downloader.py against a fake Open Images mirror: class subset,
depiction/overlap filters, --max-images spread, --stats-only, retry then skip,
resume of a dropped picture, re-run skips, unknown class suggestions."""
from __future__ import annotations

import csv
import json
import random
import subprocess
from pathlib import Path

import cv2
import numpy as np

import pytest

import open_images_downloader as oid
from tests.conftest import run_script as _run_script
from tests.http_server import http_server  # noqa: F401  (pytest fixture)

CLASSES = {"/m/014j1m": "Apple", "/m/0cyhj_": "Orange", "/m/09qck": "Banana", "/m/01yrx": "Cat"}
MID = {v: k for k, v in CLASSES.items()}
HEADER = ",".join(oid.BBOX_COLUMNS)
# (split, image, class, IsGroupOf, IsDepiction)
BOXES = [
    ("train", "t01", "Apple", 0, 0), ("train", "t01", "Apple", 0, 0),
    ("train", "t02", "Apple", 0, 0), ("train", "t03", "Apple", 0, 0), ("train", "t03", "Orange", 0, 0),
    ("train", "t04", "Apple", 0, 0), ("train", "t05", "Orange", 0, 0), ("train", "t06", "Orange", 0, 0),
    ("train", "t07", "Banana", 0, 0), ("train", "t08", "Cat", 0, 0),
    ("train", "t09", "Apple", 0, 1),                                   # a drawing
    ("train", "t10", "Apple", 1, 0), ("train", "t10", "Apple", 0, 0),  # group box + a single box
    ("validation", "v01", "Apple", 0, 0), ("validation", "v02", "Orange", 0, 0),
    ("test", "e01", "Banana", 0, 0), ("test", "e02", "Apple", 0, 0),  # e02 is missing on the server (404)
]
MISSING = {"e02"}


def _jpeg(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def make_mirror(www: Path) -> None:
    meta = www / "meta"
    meta.mkdir(parents=True)
    (meta / "class-descriptions-boxable.csv").write_text(
        "".join(f"{m},{n}\n" for m, n in CLASSES.items()) + "/m/0k4j,Car\n/m/0199g,Bicycle\n")
    for split in oid.SPLITS:
        lines = [HEADER]
        for s, image, cls, group, depiction in BOXES:
            if s == split:
                lines.append(f"{image},xclick,{MID[cls]},1,0.1,0.5,0.2,0.6,0,0,{group},{depiction},0")
        (meta / split).mkdir()
        (meta / split / f"{split}-annotations-bbox.csv").write_text("\n".join(lines) + "\n")
    for k, (split, image, *_rest) in enumerate(BOXES):
        if image not in MISSING:
            (www / "img" / split).mkdir(parents=True, exist_ok=True)
            (www / "img" / split / f"{image}.jpg").write_bytes(_jpeg(k))


def run_script(server, data: Path, *args: str) -> subprocess.CompletedProcess:
    return _run_script("open_images_downloader.py", "--data", data, "--base-url", server.url("meta/"),
                       "--images-base-url", server.url("img/"), "--retry-backoff", "0.01", "--timeout", "10",
                       "--num-workers", "4", *args, timeout=60)


def read_sub(data: Path, split: str) -> list[dict]:
    with open(data / f"sub-{split}-annotations-bbox.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def test_subset_retry_skip_resume_and_rerun(http_server, tmp_path):
    make_mirror(http_server.root)
    http_server.fail("img/train/t02.jpg", status=500, times=2)   # fails twice, then works
    http_server.drop("img/train/t03.jpg", after=100)              # dropped mid-body once: resumes
    data = tmp_path / "fruit"
    r = run_script(http_server, data, "--class-names", "Apple,orange", "--retry", "3")
    assert r.returncode == 0, r.stderr   # the 404 picture is skipped and reported, not an error

    with open(data / "sub-train-annotations-bbox.csv", newline="") as f:
        assert next(csv.reader(f)) == oid.OUT_COLUMNS
    train = read_sub(data, "train")
    assert {row["ClassName"] for row in train} == {"Apple", "Orange"}
    assert {row["ImageID"] for row in train} == {"t01", "t02", "t03", "t04", "t05", "t06", "t10"}
    assert all(row["id"] == row["LabelName"] == MID[row["ClassName"]] for row in train)
    assert len([row for row in train if row["ImageID"] == "t01"]) == 2
    assert {row["ImageID"] for row in read_sub(data, "validation")} == {"v01", "v02"}
    assert read_sub(data, "test") == [], "e02 is missing on the server: not listed, so training never meets it"
    for image in ("t01", "t02", "t03", "t10", "v01"):
        split = "validation" if image.startswith("v") else "train"
        src = http_server.root / "img" / split / f"{image}.jpg"
        assert (data / split / f"{image}.jpg").read_bytes() == src.read_bytes()
    assert not (data / "train" / "t07.jpg").exists() and not (data / "train" / "t08.jpg").exists()
    assert not (data / "train" / "t09.jpg").exists(), "depictions are left out by default"
    assert not list(data.rglob("*.part"))
    assert http_server.count("GET", "img/train/t02.jpg") == 3
    assert [rng for m, p, rng in http_server.requests if p == "/img/train/t03.jpg"][-1] == "bytes=100-"
    assert (data / "labels.txt").read_text().split() == ["BACKGROUND", "Apple", "Orange"]
    report = json.loads((data / "download-report.json").read_text())
    assert [f["image_id"] for f in report["missing_on_server"]] == ["e02"] and report["failed"] == []
    assert "Apple" in r.stdout and "missing on the server" in r.stdout

    n = len(http_server.requests)
    r = run_script(http_server, data, "--class-names", "Apple,Orange")
    assert r.returncode == 0, r.stderr
    new = [p for m, p, _ in http_server.requests[n:]]
    assert new == ["/img/test/e02.jpg"], f"a re-run only asks again for what is missing, got {new}"
    assert "0 downloaded, 9 already there" in r.stdout

    try:
        from vision.datasets.open_images import OpenImagesDataset
    except ImportError:
        return  # loader (data owner) not written yet
    ds = OpenImagesDataset(data, dataset_type="train")
    assert list(ds.class_names) == (data / "labels.txt").read_text().split()
    assert len(ds) == 7


def test_failed_picture_is_reported_then_retried(http_server, tmp_path):
    make_mirror(http_server.root)
    http_server.fail("img/validation/v02.jpg", status=503, times=3)
    data = tmp_path / "d"
    r = run_script(http_server, data, "--class-names", "Orange", "--splits", "validation", "--retry", "1")
    assert r.returncode == 1 and "run the same command again" in r.stderr
    report = json.loads((data / "download-report.json").read_text())
    assert [f["image_id"] for f in report["failed"]] == ["v02"] and "503" in report["failed"][0]["error"]
    assert read_sub(data, "validation") == [] and not (data / "validation/v02.jpg").exists()
    r = run_script(http_server, data, "--class-names", "Orange", "--splits", "validation", "--retry", "1")
    assert r.returncode == 0, r.stderr
    assert [row["ImageID"] for row in read_sub(data, "validation")] == ["v02"]


def test_stats_only(http_server, tmp_path):
    make_mirror(http_server.root)
    data = tmp_path / "d"
    r = run_script(http_server, data, "--class-names", "Apple,Banana", "--stats-only")
    assert r.returncode == 0, r.stderr
    lines = {tuple(l.split()[:2]): l.split()[-2:] for l in r.stdout.splitlines() if l.startswith("  ")}
    assert lines[("train", "Apple")] == ["5", "7"]  # t01 (2 boxes), t02, t03, t04, t10 (2); t09 is a drawing
    assert lines[("train", "Banana")] == ["1", "1"]
    assert lines[("test", "Apple")] == ["1", "1"]
    assert not (data / "train").exists() and not list(data.glob("sub-*"))
    assert not any(p.startswith("/img/") for _, p, _ in http_server.requests)


def test_depiction_and_overlap_flags(http_server, tmp_path):
    make_mirror(http_server.root)
    data = tmp_path / "d"
    r = run_script(http_server, data, "--class-names", "Apple", "--splits", "train", "--include-depiction",
                   "--remove-overlapped", "--stats-only")
    assert r.returncode == 0, r.stderr
    r = run_script(http_server, data, "--class-names", "Apple", "--splits", "train", "--include-depiction",
                   "--remove-overlapped")
    assert r.returncode == 0, r.stderr
    rows = read_sub(data, "train")
    assert "t09" in {row["ImageID"] for row in rows}
    assert [row["IsGroupOf"] for row in rows if row["ImageID"] == "t10"] == ["1"]


def test_max_images_spread(http_server, tmp_path):
    make_mirror(http_server.root)
    data = tmp_path / "d"
    r = run_script(http_server, data, "--class-names", "Apple,Orange,Banana", "--max-images", "6")
    assert r.returncode == 0, r.stderr
    picked = {s: {row["ImageID"] for row in read_sub(data, s)} for s in oid.SPLITS}
    # 8 train / 2 validation / 2 test pictures available (e02 is 404) -> shares 4 / 1 / 1
    assert len(picked["train"]) == 4 and len(picked["validation"]) == 1
    classes = {row["ClassName"] for row in read_sub(data, "train")}
    assert classes == {"Apple", "Orange", "Banana"}, "the classes take turns"


@pytest.mark.parametrize("names, suggestion", [("Aple", "Apple"), ("Oranges", "Orange"), ("Zebra crossing", "")])
def test_unknown_class_suggests(http_server, tmp_path, names, suggestion):
    make_mirror(http_server.root)
    r = run_script(http_server, tmp_path / "d", "--class-names", f"Banana,{names}")
    assert r.returncode == 2
    assert "unknown class" in r.stderr and suggestion in r.stderr and "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if "ERROR" in line]) == 1


@pytest.mark.parametrize("args", [["--class-names", ","], ["--class-names", "Apple,Apple"],
                                  ["--class-names", "Apple", "--max-images", "0"],
                                  ["--class-names", "Apple", "--splits", "val"]])
def test_bad_usage(http_server, tmp_path, args):
    make_mirror(http_server.root)
    assert run_script(http_server, tmp_path / "d", *args).returncode == 2


def test_metadata_404_names_url(http_server, tmp_path):
    r = run_script(http_server, tmp_path / "d", "--class-names", "Apple")
    assert r.returncode == 1 and http_server.url("meta/class-descriptions-boxable.csv") in r.stderr


def test_selection_units():
    assert oid.split_budgets({"train": 8, "validation": 2, "test": 1}, 5) == {"train": 4, "validation": 1, "test": 0}
    assert sum(oid.split_budgets({"a": 7, "b": 7, "c": 7}, 10).values()) == 10
    images = {f"a{i}": {"A"} for i in range(50)} | {"b1": {"B"}, "b2": {"B"}}
    chosen = oid.choose_balanced(images, 4, ["A", "B"], random.Random(0))
    assert len(chosen) == 4 and {"b1", "b2"} <= chosen


@pytest.mark.slow
def test_download_then_train_one_epoch(http_server, tmp_path):
    # the README's two commands: download a class subset, then train on it
    make_mirror(http_server.root)
    data = tmp_path / "fruit"
    r = run_script(http_server, data, "--class-names", "Apple,Banana")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    r = _run_script("train_ssd.py", "--dataset-type", "open_images", "--data", data, "--net", "mb1-ssd-lite",
                    "--resolution", "128", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--seed", "0",
                    "--checkpoint-folder", run, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "labels.txt").read_text().split() == ["BACKGROUND", "Apple", "Banana"]
    assert list(run.glob("mb1-ssd-lite-Epoch-0-Loss-*.pth"))


# ----------------------------------------------------------------------------- issue 12: hostile mirrors


def _apple_train(http_server, data: Path, *args: str) -> subprocess.CompletedProcess:
    return run_script(http_server, data, "--class-names", "Apple", "--splits", "train", *args)


APPLE_TRAIN = ["t01", "t02", "t03", "t04", "t10"]


def test_html_pictures_fail_and_are_fetched_on_the_next_run(http_server, tmp_path):
    """A mirror answering every picture with 200 text/html gave '5 downloaded ... 0 failed', exit 0."""
    make_mirror(http_server.root)
    for i in APPLE_TRAIN:
        http_server.html(f"img/train/{i}.jpg", times=1)
    data = tmp_path / "d"
    r = _apple_train(http_server, data, "--retry", "0")
    assert r.returncode == 1, r.stderr
    assert f"0 downloaded, 0 already there, 0 missing on the server (skipped), {len(APPLE_TRAIN)} failed" in r.stdout
    assert "HTML page" in r.stderr
    assert not list((data / "train").glob("*.jpg"))
    r = _apple_train(http_server, data)  # the mirror is healthy again
    assert r.returncode == 0, r.stderr
    assert f"{len(APPLE_TRAIN)} downloaded, 0 already there" in r.stdout
    for i in APPLE_TRAIN:
        assert (data / f"train/{i}.jpg").read_bytes() == (http_server.root / f"img/train/{i}.jpg").read_bytes()


def test_pictures_cut_without_length_are_fetched_again(http_server, tmp_path):
    """Cut by a clean close without Content-Length, all were kept as complete."""
    make_mirror(http_server.root)
    for i in APPLE_TRAIN:
        http_server.cut(f"img/train/{i}.jpg", after=300, times=1)
    data = tmp_path / "d"
    r = _apple_train(http_server, data, "--retry", "2")
    assert r.returncode == 0, r.stderr
    for i in APPLE_TRAIN:
        assert (data / f"train/{i}.jpg").read_bytes() == (http_server.root / f"img/train/{i}.jpg").read_bytes()


def test_damaged_pictures_on_disk_are_not_counted_as_there(http_server, tmp_path):
    """Left by an older version: an HTML page and a cut JPEG under final names ('already there')."""
    make_mirror(http_server.root)
    data = tmp_path / "d"
    assert _apple_train(http_server, data).returncode == 0
    (data / "train/t01.jpg").write_bytes(b"<html><body>sign in</body></html>")
    good = (data / "train/t02.jpg").read_bytes()
    (data / "train/t02.jpg").write_bytes(good[:200])
    r = _apple_train(http_server, data)
    assert r.returncode == 0, r.stderr
    assert "3 already there, 2 damaged on disk and downloaded again" in r.stdout
    assert (data / "train/t02.jpg").read_bytes() == good
    assert [rng for m, p, rng in http_server.requests if p == "/img/train/t02.jpg"][-1] == "bytes=200-"
    assert (data / "train/t01.jpg").read_bytes() == (http_server.root / "img/train/t01.jpg").read_bytes()


def test_cut_csv_is_fetched_again(http_server, tmp_path):
    """A bbox CSV cut mid-row (no Content-Length) was kept: half of the boxes, exit 0, never re-fetched."""
    make_mirror(http_server.root)
    csv_rel = "meta/train/train-annotations-bbox.csv"
    full = (http_server.root / csv_rel).read_bytes()
    http_server.cut(csv_rel, after=len(full) // 2 + 7, times=1)
    data = tmp_path / "d"
    r = _apple_train(http_server, data, "--retry", "0")
    assert r.returncode == 1 and "cut short" in r.stderr, r.stderr
    assert not (data / "train-annotations-bbox.csv").exists()
    r = _apple_train(http_server, data)
    assert r.returncode == 0, r.stderr
    assert (data / "train-annotations-bbox.csv").read_bytes() == full
    # a cut copy cached by an older version is moved aside and fetched again
    (data / "train-annotations-bbox.csv").write_bytes(full[: len(full) // 2 + 7])
    r = _apple_train(http_server, data)
    assert r.returncode == 0, r.stderr
    assert "moved it to train-annotations-bbox.csv.bad" in r.stderr
    assert (data / "train-annotations-bbox.csv").read_bytes() == full


def test_csv_problem_unit(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(oid.BBOX_COLUMNS[0] + ",x\n")
    assert "header lacks" in oid.csv_problem(p, oid.BBOX_COLUMNS)
    p.write_text("a,b,c\n1,2,3\n1,2")
    assert "cut short" in oid.csv_problem(p, ("a",))
    p.write_text("a,b,c\n1,2,3")  # no final newline, but the row is whole
    assert oid.csv_problem(p, ("a",)) is None
    p.write_bytes(b"")
    assert oid.csv_problem(p) == "empty file"


def test_classes_without_boxes_say_nothing_to_train_on(http_server, tmp_path):
    make_mirror(http_server.root)  # 'Car' is a known class without any box
    r = run_script(http_server, tmp_path / "d", "--class-names", "Car")
    assert r.returncode == 1 and "nothing to train on" in r.stderr, r.stderr
    assert "train with" not in r.stderr


def test_data_is_a_file_and_lock(http_server, tmp_path):
    make_mirror(http_server.root)
    f = tmp_path / "f"
    f.write_text("x")
    r = run_script(http_server, f, "--class-names", "Apple")
    assert r.returncode == 2 and "is a file" in r.stderr
    from vision.utils import download as dl
    data = tmp_path / "d"
    data.mkdir()
    with dl.folder_lock(data):
        r = run_script(http_server, data, "--class-names", "Apple")
    assert r.returncode == 1 and "another download is running" in r.stderr


def test_wrong_kind_of_path_inside_data(http_server, tmp_path):
    make_mirror(http_server.root)
    data = tmp_path / "d"
    (data / "class-descriptions-boxable.csv").mkdir(parents=True)
    r = run_script(http_server, data, "--class-names", "Apple")
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    data = tmp_path / "e"
    data.mkdir()
    (data / "train").write_text("x")
    r = run_script(http_server, data, "--class-names", "Apple", "--splits", "train")
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr


def test_another_labels_txt_is_kept_not_lost(http_server, tmp_path):
    """--data at a folder holding another labels.txt (another class list, a model's folder): it was
    replaced with a warning and lost. The old one is kept as labels.txt.bak."""
    make_mirror(http_server.root)
    data = tmp_path / "d"
    data.mkdir()
    (data / "labels.txt").write_text("BACKGROUND\ncat\ndog\n")
    r = _apple_train(http_server, data)
    assert r.returncode == 0, r.stderr
    assert (data / "labels.txt").read_text().split() == ["BACKGROUND", "Apple"]
    assert (data / "labels.txt.bak").read_text() == "BACKGROUND\ncat\ndog\n"
    r = _apple_train(http_server, data)  # the same list again: nothing more kept
    assert r.returncode == 0 and not (data / "labels.txt.bak.1").exists(), r.stderr
