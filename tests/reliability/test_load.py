"""Load with broken data: a training run over a dataset with 5 % corrupt pictures completes and learns
like a clean run; data-loader workers survive them; validate_image_files.py checks 20,000 files with
bounded memory and finds every bad one."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostile import NET, REPO, make_coco, run_subprocess

N_TRAIN, N_CORRUPT = 40, 2


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """The same synthetic COCO twice: clean, and with 2 of 40 training pictures corrupt (5 %)."""
    base = tmp_path_factory.mktemp("load")
    clean = make_coco(base / "clean", num_train=N_TRAIN, num_val=8, image_size=(96, 72))
    corrupt = base / "corrupt"
    shutil.copytree(clean, corrupt)
    pictures = sorted((corrupt / "train2017").iterdir())
    truncated, empty = pictures[4], pictures[19]
    truncated.write_bytes(truncated.read_bytes()[:700])
    empty.write_bytes(b"")
    return clean, corrupt, [truncated, empty]


def _train(root: Path, folder: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    res = run_subprocess("train_ssd", [
        "--dataset-type", "coco", "--datasets", root, "--net", NET, "--resolution", "160", "--epochs", "3",
        "--workers", "2", "--batch-size", "8", "--use-cuda", "false", "--seed", "0", "--scheduler", "none",
        "--checkpoint-folder", folder], timeout=300)
    records = []
    if (folder / "metrics.jsonl").is_file():
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    return res, records


@pytest.fixture(scope="module")
def runs(datasets, tmp_path_factory):
    clean, corrupt, bad = datasets
    out = tmp_path_factory.mktemp("runs")
    return _train(clean, out / "clean"), _train(corrupt, out / "corrupt"), bad


@pytest.mark.slow
def test_training_with_5_percent_corrupt_images_completes_like_a_clean_run(runs):
    (clean_res, clean), (bad_res, corrupt), bad = runs
    for res in (clean_res, bad_res):
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(clean) == len(corrupt) == 3
    for path in bad:  # each corrupt file named, with why, in a warning (once per worker that meets it)
        lines = [line for line in bad_res.stderr.splitlines() if "skipping unreadable image" in line and str(path) in line]
        assert lines, (path, bad_res.stderr[-3000:])
    summaries = [line for line in bad_res.stderr.splitlines() if "unreadable images were skipped" in line]
    assert len(summaries) == 3 and all(f": {len(bad)} unreadable" in line for line in summaries), bad_res.stderr[-3000:]
    assert "skipping unreadable image" not in clean_res.stderr
    # the same learning curve: both decrease, and 2 substituted pictures of 40 barely move it
    for records in (clean, corrupt):
        losses = [r["train_loss"] for r in records]
        assert losses[-1] < losses[0] and all(map(lambda v: v == v, losses)), losses
        val = [r["val_loss"] for r in records]
        assert val[-1] < val[0], val
    for a, b in zip(clean, corrupt):
        assert abs(a["train_loss"] - b["train_loss"]) / a["train_loss"] < 0.1, (a, b)
        assert abs(a["val_loss"] - b["val_loss"]) / a["val_loss"] < 0.1, (a, b)


@pytest.mark.slow
def test_training_reports_the_number_of_skipped_images(runs):
    (_, clean), (_, corrupt), bad = runs
    assert all(r.get("skipped_images") == len(bad) for r in corrupt), corrupt
    assert all(r.get("skipped_images") == 0 for r in clean), clean


def test_dataloader_workers_survive_corrupt_images(datasets):
    """The DataLoader level: two worker processes go through an epoch; the main process counts skips."""
    import torch

    from vision.datasets.coco_dataset import COCODataset

    _, corrupt, bad = datasets
    ds = COCODataset(corrupt, dataset_type="train")
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=list)
    samples = [s for batch in loader for s in batch]
    assert len(samples) == N_TRAIN
    assert all(img.ndim == 3 and img.shape[2] == 3 for img, _, _ in samples)
    for i in range(len(ds)):  # in the main process the count is kept on the dataset
        ds[i]
    assert ds.skipped_images == N_CORRUPT


# ----------------------------------------------------------------------------- validate_image_files.py
N_FILES, BAD_EVERY = 20_000, 100  # 3 bad files in every 100: 600 bad


@pytest.mark.slow
def test_validate_20000_files_bounded_memory(tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8))
    good = buf.tobytes()
    bad_kinds = {1: good[: len(good) // 2], 2: b"", 3: b"not an image at all"}
    expected_bad = set()
    for i in range(N_FILES):
        data = bad_kinds.get(i % BAD_EVERY, good)
        name = f"{i:06d}.jpg"
        if data is not good:
            expected_bad.add(name)
        (folder / name).write_bytes(data)
    report = tmp_path / "report.json"
    probe = ("import resource, subprocess, sys, time; t = time.monotonic(); "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stderr); print('SECONDS', time.monotonic() - t); "
             "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    res = subprocess.run([sys.executable, "-c", probe, sys.executable, str(REPO / "validate_image_files.py"),
                          "--path", str(folder), "--action", "report", "--report", str(report), "--workers", "2"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    peak_mb = int(re.search(r"MAXRSS_KB (\d+)", res.stdout).group(1)) / 1024
    seconds = float(re.search(r"SECONDS ([\d.]+)", res.stdout).group(1))
    print(f"validate_image_files.py: {N_FILES} files in {seconds:.1f} s, peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB"
    found = {Path(e["path"]).name for e in json.loads(report.read_text())["bad"]}
    assert found == expected_bad
    assert f"checked {N_FILES} files" in res.stderr and f"{len(expected_bad)} bad" in res.stderr
