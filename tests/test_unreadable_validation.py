"""A truncated JPEG in the validation set: validation and evaluation skip and count it, as
training does, and the epoch is trained, validated and saved (exit 0)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_truncated_validation_jpeg_is_skipped_and_counted(tmp_path, workers):
    from vision.datasets.synthetic import generate_coco_dataset

    data = tmp_path / "syn"
    generate_coco_dataset(data, 8, 6, seed=2)
    bad = sorted((data / "val2017").glob("*.jpg"))[3]
    bad.write_bytes(bad.read_bytes()[:400])  # cut short, as by a dropped download
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "train_ssd.py", "--datasets", data, "--net", "mb1-ssd-lite",
                        "--resolution", "128", "--batch-size", "2", "--epochs", "1", "--workers", str(workers),
                        "--seed", "1", "--device", "cpu", "--validation-mean-ap", "--checkpoint-folder", run],
                       cwd=REPO, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and bad.name in r.stderr
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_skipped_images"] >= 1
    assert record["mAP_metric"] == "mAP (COCO AP@[.50:.95])"
    assert list(run.glob("mb1-ssd-lite-Epoch-0-Loss-*.pth"))
    r = subprocess.run([sys.executable, "eval_ssd.py", "--trained-model", run, "--workers", str(workers),
                        "--use-cuda", "false", "--eval-dir", tmp_path / "eval"],
                       cwd=REPO, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 of 6 images were unreadable and skipped" in r.stderr, r.stderr[-3000:]
