"""onnx_export.py --int8: a QDQ model calibrated on an image folder, self-describing, close to fp32."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import run_script_inprocess  # noqa: E402


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
    # main() in this process: the test is about the files it writes, not the process
    r = run_script_inprocess("onnx_export.py", "--input", "m.pth", "--output", "m.onnx", "--int8",
                             "--calibration-data", "calib", "--calibration-images", "5", cwd=tmp_path)
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
    assert_net_quantized_head_float(model, np.int8)

    r = run_script_inprocess("onnx_export.py", "--input", "m.pth", "--int8", cwd=tmp_path)
    assert r.returncode == 2 and "--calibration-data" in r.stderr and "Traceback" not in r.stderr

    # another calibration rule gives other activation ranges, and the file says which rule made it
    r = run_script_inprocess("onnx_export.py", "--input", "m.pth", "--output", "p.onnx", "--int8",
                             "--calibration-data", "calib", "--calibration-images", "5",
                             "--calibration-method", "percentile", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "histogram" not in r.stdout + r.stderr  # ONNX Runtime's calibrator chatter goes to the debug log
    props = {m.key: m.value for m in onnx.load(str(tmp_path / "p-int8.onnx")).metadata_props}
    assert props["int8_calibration"] == '"percentile"' and props["int8_target"] == '"tensorrt"'
    # the INT8 copy is opset 13 (per-channel QDQ) and says so, though the fp32 file is opset 11 (review finding)
    int8_model = onnx.load(str(tmp_path / "p-int8.onnx"))
    assert json.loads(props["opset"]) == 13 == next(o.version for o in int8_model.opset_import if o.domain in ("", "ai.onnx"))
    assert {m.key: m.value for m in model.metadata_props}["int8_calibration"] == '"minmax"'
    assert activation_scales(onnx.load(str(tmp_path / "p-int8.onnx"))) != activation_scales(model)

    # INT8-only flags without --int8: one line, exit 2, nothing written
    for extra in (["--calibration-data", "calib"], ["--calibration-method", "entropy"], ["--int8-target", "cpu"],
                  ["--calibration-images", "5"]):
        r = run_script_inprocess("onnx_export.py", "--input", "m.pth", "--output", "x.onnx", *extra, cwd=tmp_path)
        assert r.returncode == 2 and extra[0] in r.stderr and "--int8" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "x.onnx").exists()


def activation_scales(model) -> list[float]:
    """The scale of every activation QuantizeLinear, in graph order."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [float(init[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in init
            and init[n.input[1]].size == 1]


def assert_net_quantized_head_float(model, activation_dtype) -> None:
    """Every Conv of the net reads quantized weights and activations; the heads' last convolutions (class
    logits, box offsets: 2 per feature map), the Softmax and the box decoding stay float."""
    from onnx import helper

    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    float_convs = [n for n in convs if n.input[1] not in producer]  # weights straight from an initializer
    assert len(float_convs) == 12, [n.name for n in float_convs]  # 6 feature maps x (classes, boxes)
    assert all("QuantizeLinear" not in consumers[n.output[0]] for n in float_convs)
    assert all(n.name.split("/")[2].startswith(("classification_headers", "regression_headers")) for n in float_convs)
    quantized = [n for n in convs if n not in float_convs]
    assert len(quantized) > 12 and all(producer[n.input[0]].op_type == "DequantizeLinear"
                                       and producer[n.input[1]].op_type == "DequantizeLinear" for n in quantized)
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert producer[softmax.input[0]].op_type != "DequantizeLinear"
    exp = next(n for n in model.graph.node if n.op_type == "Exp")  # box decoding
    assert producer[exp.input[0]].op_type != "DequantizeLinear"
    zero_points = {i.name: i for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q and all(helper.tensor_dtype_to_np_dtype(zero_points[n.input[2]].data_type) == activation_dtype
                     for n in q)


@pytest.mark.slow
@pytest.mark.parametrize("net_name", ["mb1-ssd-lite", "mb2-ssd-lite"])
def test_cpu_target_uint8_activations(net_name, tmp_path):
    """target "cpu": uint8 activations (ONNX Runtime's fast U8S8 path), every Conv (+ReLU6) quantized."""
    import onnx
    import onnxruntime as ort

    from onnx_export import export_bytes, make_test_image
    from vision.ssd.detectnet import DetectNetTransform
    from vision.ssd.input_adapter import ExportNet
    from vision.ssd.int8 import quantize_int8
    from vision.ssd.registry import create_net

    torch.manual_seed(0)
    net = create_net(net_name, 3, resolution=96, is_test=True)
    net.eval()
    graph = ExportNet(net, net.config.image_mean, net.config.image_std).eval()
    transform = DetectNetTransform(96)
    x = transform(make_test_image(seed=3)).unsqueeze(0)
    fp32 = export_bytes(graph, x, 13, False)
    images = []
    for k in range(4):
        images.append(tmp_path / f"{k}.png")
        cv2.imwrite(str(images[-1]), make_test_image(120, 160, seed=k))
    data = quantize_int8(fp32, tmp_path / "q.onnx", images, transform, target="cpu")
    assert_net_quantized_head_float(onnx.load_from_string(data), np.uint8)
    outs = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(["scores", "boxes"], {"input_0": x.numpy()})
            for b in (fp32, data)]
    assert np.abs(outs[0][0] - outs[1][0]).max() < 0.05
    assert np.abs(outs[0][1] - outs[1][1]).max() < 0.05
    with pytest.raises(Exception, match="target"):
        quantize_int8(fp32, tmp_path / "r.onnx", images, transform, target="gpu")
    with pytest.raises(Exception, match="calibration method"):
        quantize_int8(fp32, tmp_path / "r.onnx", images, transform, target="cpu", method="kl")
    assert not (tmp_path / "r.onnx").exists()
    if net_name != "mb1-ssd-lite":
        return  # the entropy search is slow (Python, per tensor): one net is enough
    entropy = quantize_int8(fp32, tmp_path / "e.onnx", images, transform, target="cpu", method="entropy",
                            entropy_bins=256)
    assert_net_quantized_head_float(onnx.load_from_string(entropy), np.uint8)
    # a real entropy search (ONNX Runtime's default bins made it MinMax's ranges, identical scales)
    assert activation_scales(onnx.load_from_string(entropy)) != activation_scales(onnx.load_from_string(data))
    out = ort.InferenceSession(entropy, providers=["CPUExecutionProvider"]).run(["scores", "boxes"], {"input_0": x.numpy()})
    assert np.abs(outs[0][0] - out[0]).max() < 0.05 and np.abs(outs[0][1] - out[1]).max() < 0.05


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
