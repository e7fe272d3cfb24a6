"""onnx_export.py --int8: a QDQ model calibrated on an image folder, self-describing, close to fp32."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@pytest.mark.slow
def test_int8_export_runs_and_stays_close_to_fp32(tmp_path):
    import onnx
    import onnxruntime as ort

    from onnx_export import make_test_image
    from vision.ssd.detectnet import DetectNetTransform
    from vision.ssd.onnx_metadata import read_metadata
    from vision.ssd.registry import create_net

    torch.manual_seed(0)
    net = create_net("mb1-ssd-lite", 3, resolution=96)
    torch.save({"epoch": 0, "model": net.state_dict(), "class_names": ["BACKGROUND", "a", "b"], "net": "mb1-ssd-lite",
                "resolution": 96, "args": {"net": "mb1-ssd-lite", "resolution": 96}}, tmp_path / "m.pth")
    calib = tmp_path / "calib" / "sub"
    calib.mkdir(parents=True)
    for k in range(6):
        cv2.imwrite(str(calib / f"{k}.jpg"), make_test_image(120, 160, seed=k))
    (calib / "broken.jpg").write_bytes(b"not a jpeg")  # skipped and counted
    r = subprocess.run([sys.executable, str(REPO / "onnx_export.py"), "--input", "m.pth", "--output", "m.onnx",
                        "--int8", "--calibration-data", "calib", "--calibration-images", "5"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    q = tmp_path / "m-int8.onnx"
    model = onnx.load(str(q))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert read_metadata(q).class_names == ["BACKGROUND", "a", "b"]
    x = DetectNetTransform(96)(make_test_image(seed=11)).unsqueeze(0).numpy()
    outs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["scores", "boxes"], {"input_0": x})
            for p in (tmp_path / "m.onnx", q)]
    assert np.abs(outs[0][0] - outs[1][0]).max() < 0.05  # scores
    assert np.abs(outs[0][1] - outs[1][1]).max() < 0.05  # boxes, 0..1
    assert not np.array_equal(outs[0][0], outs[1][0])  # really another model

    r = subprocess.run([sys.executable, str(REPO / "onnx_export.py"), "--input", "m.pth", "--int8"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--calibration-data" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("calib", ["empty", "notes", "clip.mp4"])
def test_int8_without_usable_calibration_data_fails_before_writing_anything(tmp_path, monkeypatch, calib):
    from onnx_export import main
    from vision.ssd.registry import create_net
    from vision.utils.misc import UserError

    torch.save({"epoch": 0, "model": create_net("mb1-ssd-lite", 3, resolution=96).state_dict(),
                "class_names": ["BACKGROUND", "a", "b"], "net": "mb1-ssd-lite", "resolution": 96}, tmp_path / "m.pth")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an image")
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no images|is a file"):
        main(["--input", "m.pth", "--output", "out/m.onnx", "--int8", "--calibration-data", calib])
    assert not (tmp_path / "out").exists()
