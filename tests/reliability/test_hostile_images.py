"""Hostile image files (truncated, zero bytes, text named .jpg, CMYK, 16-bit, grayscale, palette, alpha,
EXIF-rotated, decompression bombs) through the image loader, the COCO dataset, validate_image_files.py
and run_ssd_example.py: good files load upright as RGB uint8, bad ones are one line naming the file
or a counted skip -- never a traceback, and a bomb is refused before it is decoded."""
from __future__ import annotations

import json
import logging
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostile import (REPO, assert_clean_error, make_checkpoint, make_coco, reference_picture, run_inproc,
                     write_image_corpus)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("corpus") / "images"
    return folder, write_image_corpus(folder)


def test_loader_on_every_kind_of_file(corpus):
    from vision.datasets.image_io import ImageDecodeError, load_image_rgb

    folder, files = corpus
    for name, spec in files.items():
        path = folder / name
        if spec["bad"]:
            with pytest.raises(ImageDecodeError) as info:
                load_image_rgb(path)
            assert str(path) in str(info.value) and "\n" not in str(info.value), (name, info.value)
        else:
            img = load_image_rgb(path)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
            assert img.shape[:2] == spec["shape"], (name, img.shape)
    # the picture survives every odd encoding in RGB order (lossy ones within a few levels)
    ref = reference_picture().astype(float)
    for name, tol in (("good.jpg", 6), ("cmyk.jpg", 6), ("rgb16.png", 1), ("rgba.png", 1), ("palette.png", 25)):
        assert np.abs(load_image_rgb(folder / name).astype(float) - ref).mean() < tol, name
    gray = load_image_rgb(folder / "gray16.png").astype(float)
    assert np.abs(gray - ref[..., :1]).mean() < 2  # 16-bit scaled down, not clipped
    rotated = load_image_rgb(folder / "exif_rotated.jpg").astype(float)
    assert np.abs(np.rot90(rotated, 1) - ref).mean() < 6  # upright = EXIF's 90-degree turn applied


def test_dataset_skips_and_counts_bad_images(corpus, tmp_path, caplog):
    """Training samples: a bad picture is skipped (logged with its path) and counted, the next one is used."""
    from vision.datasets.coco_dataset import COCODataset

    folder, files = corpus
    root = make_coco(tmp_path / "coco", num_train=len(files), num_val=1)
    ds = COCODataset(root, dataset_type="train")
    targets = sorted(ds.image_path(i) for i in range(len(ds)))
    bad = [n for n, s in files.items() if s["bad"]]
    for target, name in zip(targets, files):  # every picture of the dataset replaced by one of the corpus
        shutil.copyfile(folder / name, target)
    with caplog.at_level(logging.WARNING):
        samples = [ds[i] for i in range(len(ds))]
    assert ds.skipped_images == len(bad)
    for image, boxes, labels in samples:
        assert image.dtype == np.uint8 and image.shape[2] == 3 and len(boxes) == len(labels)
    logged = " ".join(r.getMessage() for r in caplog.records)
    for target, name in zip(targets, files):
        assert (str(target) in logged) == files[name]["bad"], name
    # get_image (evaluation) does not skip: index i stays image i, the error names the file
    from vision.datasets.image_io import ImageDecodeError

    i_bad = next(i for i in range(len(ds)) if ds.image_path(i) == targets[list(files).index(bad[0])])
    with pytest.raises(ImageDecodeError, match=str(ds.image_path(i_bad))):
        ds.get_image(i_bad)


def test_validate_image_files_finds_exactly_the_bad_ones_with_bounded_memory(corpus, tmp_path):
    """Found bugs: the 24 KB PNG bomb was decoded by OpenCV (1.2 GB peak RSS, 3 s) before being flagged."""
    folder, files = corpus
    work = tmp_path / "imgs"
    shutil.copytree(folder, work)
    report = tmp_path / "report.json"
    # measure the script's peak RSS from a fresh parent, so no earlier child of pytest counts
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout); "
             "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    res = subprocess.run([sys.executable, "-c", probe, sys.executable, str(REPO / "validate_image_files.py"),
                          "--path", str(work), "--action", "report", "--report", str(report), "--workers", "2"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    peak_mb = int(res.stdout.split("MAXRSS_KB")[1].split()[0]) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB: a bomb was decoded"
    found = {Path(e["path"]).name: e["reason"] for e in json.loads(report.read_text())["bad"]}
    assert set(found) == {n for n, s in files.items() if s["bad"]}, found
    assert "decompression bomb" in found["bomb.png"] and "decompression bomb" in found["header_bomb.jpg"]
    for name in found:  # one line per bad file, naming it
        assert any(name in line and found[name][:30] in line for line in res.stdout.splitlines()), name


def test_run_ssd_example_reports_each_bad_image_and_goes_on(corpus, tmp_path, capsys):
    folder, files = corpus
    classes = ["BACKGROUND", "a", "b"]
    model = make_checkpoint(tmp_path / "model" / "best.pth", classes)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(classes) + "\n")
    out = tmp_path / "out"
    rc, stdout, err = run_inproc("run_ssd_example", ["sq-ssd-lite", model, labels, folder, "--output-dir", out],
                                 capsys)
    bad = [n for n, s in files.items() if s["bad"]]
    assert "Traceback" not in err
    assert rc == 2, err  # some inputs could not be read: exit 2, after doing the others
    for name in bad:
        assert_clean_error(rc, err, [str(folder / name)], 2, name)
    written = {p.stem for p in out.iterdir() if not p.name.startswith(".")}  # not its hidden record
    assert written == {Path(n).stem for n, s in files.items() if not s["bad"]}, written
    for name, spec in files.items():
        assert (f"{folder / name}:" in stdout) != spec["bad"], name
