"""eval_ssd.py on an exported .onnx: the same metrics as the .pth it came from (NMS), detectNet's
post-processing as deployed, and the file's self-description replacing --net/--labels."""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import run_script_inprocess  # noqa: E402

NAMES = ["BACKGROUND", "cat", "dog"]


def _run(args):
    """The script's main() in this process: the test is about metrics and messages, not the process
    (five commands, one torch start-up)."""
    return run_script_inprocess(*args)


def _write_voc(root: Path, n=4, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    ids = []
    for i in range(n):
        image_id = f"{i:06d}"
        ids.append(image_id)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
        ann = ET.Element("annotation")
        for k, name in enumerate(["cat", "dog"][: 1 + i % 2]):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = name
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (10 + 40 * k, 10, 60 + 40 * k, 90)):
                ET.SubElement(bb, tag).text = str(v)
        ET.ElementTree(ann).write(root / "Annotations" / f"{image_id}.xml")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    (root / "labels.txt").write_text("\n".join(NAMES) + "\n")


@pytest.mark.slow
def test_eval_onnx_equals_pth_and_detectnet_mode(tmp_path):
    from vision.ssd.registry import create_net

    _write_voc(tmp_path / "voc")
    torch.manual_seed(0)
    net = create_net("mb1-ssd-lite", len(NAMES), resolution=128)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"epoch": 0, "model": net.state_dict(), "class_names": NAMES, "net": "mb1-ssd-lite",
                "resolution": 128, "args": {"net": "mb1-ssd-lite", "resolution": 128, "dataset_type": "voc"}},
               run / "best.pth")
    r = _run(["onnx_export.py", "--model-dir", run])
    assert r.returncode == 0, r.stderr
    onnx = run / "mb1-ssd-lite.onnx"
    common = ["--dataset", tmp_path / "voc", "--dataset-type", "voc", "--workers", "0", "--use-cuda", "false"]

    results = {}
    for label, model in (("pth", run / "best.pth"), ("onnx", onnx)):
        out = tmp_path / f"eval_{label}"
        r = _run(["eval_ssd.py", "--trained-model", model, "--eval-dir", out, *common])
        assert r.returncode == 0, r.stderr
        results[label] = json.loads((out / "metrics.json").read_text())
        assert (out / "det_test_cat.txt").is_file()
    assert results["onnx"]["net"] == "mb1-ssd-lite" and results["onnx"]["resolution"] == 128
    assert results["pth"]["num_detections"] > 0
    assert abs(results["onnx"]["mAP"] - results["pth"]["mAP"]) <= 0.01
    # not the same count: the graph clamps boxes to the image, so boxes sticking out of it (many, with
    # random weights) become near-duplicates that NMS suppresses; the metrics stay within the tolerance
    assert results["onnx"]["num_detections"] > 0.8 * results["pth"]["num_detections"]

    out = tmp_path / "eval_detectnet"
    r = _run(["eval_ssd.py", "--trained-model", onnx, "--eval-dir", out, "--postprocess", "detectnet",
              "--prob-threshold", "0.3", *common])
    assert r.returncode == 0, r.stderr
    assert "boxes/image" in r.stderr and "NMS" in r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["settings"]["postprocess"] == "detectnet" and m["settings"]["prob_threshold"] == 0.3

    # a labels file that contradicts the file: one line, exit 2
    (tmp_path / "wrong.txt").write_text("BACKGROUND\ndog\ncat\n")
    r = _run(["eval_ssd.py", "--trained-model", onnx, "--labels", tmp_path / "wrong.txt", *common])
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "line 2 is 'dog'" in r.stderr
