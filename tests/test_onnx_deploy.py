"""The exported graph as jetson-inference runs it: every net's input adapter (ONNX fed detectNet's
normalization == PyTorch fed its own), boxes clamped, and the file's self-description round trip."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import run_script_inprocess  # noqa: E402
from vision.ssd.registry import CANONICAL_NAMES  # noqa: E402

CLASSES = ["BACKGROUND", "apple", "banana"]


def _sensitive_init(net, gain, seed=0):
    """Random weights that keep the signal alive to the heads (fan-in normal, BatchNorm as identity).

    The nets' own init leaves most of them near input-independent at random weights, which would let
    a missing or wrong input adapter pass unnoticed."""
    import math

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(gain / m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1)


def _image(seed=0, h=150, w=200):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16-ssd" else n
                                  for n in CANONICAL_NAMES])
def test_every_net_takes_detectnets_input(name):
    import onnxruntime as ort

    from onnx_export import export_bytes
    from vision.ssd.detectnet import DetectNetTransform
    from vision.ssd.input_adapter import ExportNet
    from vision.ssd.registry import create_net

    torch.manual_seed(0)
    size = 300 if name == "vgg16-ssd" else 160
    net = create_net(name, len(CLASSES), resolution=size, is_test=True).eval()
    _sensitive_init(net, 1.0 if name == "vgg16-ssd" else 2.0)  # vgg: pixel-scale input, keep boxes finite
    mean, std = net.config.image_mean, net.config.image_std
    image = _image()
    x_d = DetectNetTransform(size)(image).unsqueeze(0)
    x_net = DetectNetTransform(size, mean, std)(image).unsqueeze(0)
    with torch.no_grad():  # without the adapter the outputs would be off by more than the tolerance
        wrong = [t.numpy() for t in net(x_d)]
    data = export_bytes(ExportNet(net, mean, std), x_d, 11, dynamic_batch=False)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    scores, boxes = sess.run(["scores", "boxes"], {"input_0": x_d.numpy()})
    with torch.no_grad():
        ref_scores, ref_boxes = (t.numpy() for t in net(x_net))
    assert max(np.abs(wrong[0] - ref_scores).max(), np.abs(wrong[1] - ref_boxes).max()) > 5e-4
    assert np.isfinite(ref_boxes).all()
    assert np.abs(scores - ref_scores).max() <= 1e-4
    assert np.abs(boxes - ref_boxes.clip(0, 1)).max() <= 1e-4
    assert boxes.min() >= 0 and boxes.max() <= 1


def test_without_adapter_the_graph_is_the_net():
    from vision.ssd.input_adapter import ExportNet, affine_from_detectnet, needs_adapter

    a, b = affine_from_detectnet([123, 117, 104], 1.0)
    pixels = np.array([0.0, 100.0, 255.0])
    for c, m in enumerate([123, 117, 104]):
        np.testing.assert_allclose(a[c] * (pixels - 127.5) / 127.5 + b[c], pixels - m)
    assert not needs_adapter(127.5, 127.5) and needs_adapter(127, 128)
    assert not ExportNet(torch.nn.Identity(), 127.5, 127.5).adapt


def test_metadata_round_trip_and_label_check(tmp_path):
    from vision.ssd.onnx_metadata import (OnnxModelInfo, add_metadata, build_metadata, check_labels,
                                          parse_metadata, read_metadata)
    from vision.ssd.onnx_predictor import OnnxPredictor
    from vision.ssd.registry import create_net
    from vision.utils.misc import UserError
    from onnx_export import export_bytes

    net = create_net("mb1-ssd-lite", len(CLASSES), resolution=96, is_test=True).eval()
    info = OnnxModelInfo(net_name="mb1-ssd-lite", resolution=96, class_names=CLASSES, input_normalization="detectnet",
                         input_mean=[127.5] * 3, input_std=[127.5] * 3, num_priors=net.config.num_priors,
                         postprocess={"detectnet_threshold": 0.5}, batch=1, opset=11)
    path = tmp_path / "m.onnx"
    path.write_bytes(add_metadata(export_bytes(net, torch.zeros(1, 3, 96, 96), 11, False), build_metadata(info)))
    assert read_metadata(path) == info
    pred = OnnxPredictor(path)  # size and normalization from the file
    assert pred.size == 96 and pred.transform.mean.tolist() == [127.5] * 3 and pred.info.class_names == CLASSES
    check_labels(info, CLASSES, "labels.txt", path)
    with pytest.raises(UserError, match="line 2 is 'pear'"):
        check_labels(info, ["BACKGROUND", "pear", "banana"], "labels.txt", path)
    with pytest.raises(UserError, match="has 2 classes"):
        check_labels(info, ["BACKGROUND", "apple"], "labels.txt", path)
    assert parse_metadata({}) is None
    with pytest.raises(UserError, match="damaged"):
        parse_metadata({"pytorch_ssd": "1", "net": "\"x\""}, "m.onnx")


@pytest.mark.slow
def test_export_script_writes_metadata_and_skips_detectnet_command_when_it_cannot_run(tmp_path):
    from vision.ssd.onnx_metadata import read_metadata
    from vision.ssd.registry import create_net

    torch.manual_seed(0)
    ckpt = {"epoch": 0, "model": create_net("mb1-ssd-lite", 3, resolution=96).state_dict(), "class_names": CLASSES,
            "net": "mb1-ssd-lite", "resolution": 96, "args": {"net": "mb1-ssd-lite", "resolution": 96}}
    torch.save(ckpt, tmp_path / "m.pth")
    # main() in this process (the test is about the files and messages): one torch start-up, not four
    r = run_script_inprocess("onnx_export.py", "--input", "m.pth", "--output", "out/a.onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "detectnet --model=out/a.onnx --labels=out/labels.txt " in r.stdout  # relative paths
    info = read_metadata(tmp_path / "out" / "a.onnx")
    assert (info.net_name, info.resolution, info.class_names, info.input_normalization) == (
        "mb1-ssd-lite", 96, CLASSES, "detectnet")
    for extra in (["--batch-size", "2"], ["--dynamic-batch"], ["--input-normalization", "net"]):
        r = run_script_inprocess("onnx_export.py", "--input", "m.pth", "--output", "b.onnx", *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "detectnet --model" not in r.stdout and "not for jetson-inference" in r.stderr, extra


def test_exporter_says_which_epoch_best_is_and_the_last_epochs_metric(tmp_path):
    import json

    from vision.training.run_summary import describe_checkpoint

    (tmp_path / "metrics.jsonl").write_text("\n".join(
        json.dumps({"epoch": e, "val_loss": 3 - e * 0.1, "mAP": 0.1 * e}) for e in range(5)) + "\n")
    lines = describe_checkpoint(tmp_path / "best.pth", {"epoch": 1, "best_metric": {"name": "mAP", "epoch": 1}})
    assert lines == ["best.pth is epoch 1 (mAP 0.1000)",
                     "the run's last epoch is 4 (mAP 0.4000); pass --input with its checkpoint to export that one "
                     "instead"]
    assert describe_checkpoint(tmp_path / "sub" / "x.pth", {"epoch": 2, "val_loss": 2.5}) == \
        ["x.pth is epoch 2 (val_loss 2.5000)"]
    assert describe_checkpoint(tmp_path / "plain.pth", None) == []


def test_closing_report_compares_the_net_as_exported(tmp_path):
    """Boxes past the image border are clamped by the graph: that is not a PyTorch/ONNX difference."""
    from onnx_export import export_bytes, make_test_image
    from vision.ssd.detectnet import DetectNetTransform
    from vision.ssd.export_report import export_report
    from vision.ssd.input_adapter import ExportNet
    from vision.ssd.onnx_metadata import OnnxModelInfo, add_metadata, build_metadata
    from vision.ssd.registry import create_net

    torch.manual_seed(0)
    net = create_net("mb1-ssd-lite", len(CLASSES), resolution=96, is_test=True).eval()
    with torch.no_grad():  # every prior scores class 1 ~0.9; boxes grown past the image at the borders
        for heads, bias in ((net.classification_headers, torch.tensor([0.0, 3.0, 0.0])),
                            (net.regression_headers, torch.tensor([0.0, 0.0, 0.5, 0.5]))):
            for h in heads:
                last = [m for m in h.modules() if isinstance(m, torch.nn.Conv2d)][-1]
                last.weight.mul_(0.05)
                last.bias.copy_(bias.repeat(last.bias.numel() // len(bias)))
    image = make_test_image()
    graph = ExportNet(net, net.config.image_mean, net.config.image_std).eval()
    x = DetectNetTransform(96)(image).unsqueeze(0)
    with torch.no_grad():
        assert net(x)[1].min() < -0.05 and net(x)[1].max() > 1.05  # the case the Clip changes
    info = OnnxModelInfo(net_name="mb1-ssd-lite", resolution=96, class_names=CLASSES, input_normalization="detectnet",
                         input_mean=[127.5] * 3, input_std=[127.5] * 3, num_priors=net.config.num_priors)
    path = tmp_path / "m.onnx"
    path.write_bytes(add_metadata(export_bytes(graph, x, 11, False), build_metadata(info)))
    line = next(line for line in export_report(path, net, [("img", image)], CLASSES) if "img:" in line)
    assert "PyTorch 10, ONNX 10, max box diff 0.00 px" in line, line


def test_export_output_is_a_folder_or_the_labels_file(tmp_path, monkeypatch):
    """--output FOLDER writes the default name inside it (not an IsADirectoryError traceback);
    --output .../labels.txt would be overwritten by the labels written beside the model: refused."""
    from onnx_export import main
    from vision.ssd.registry import create_net
    from vision.utils.misc import UserError

    torch.manual_seed(0)
    ckpt = {"epoch": 0, "model": create_net("mb1-ssd-lite", 3, resolution=96).state_dict(), "class_names": CLASSES,
            "net": "mb1-ssd-lite", "resolution": 96, "args": {"net": "mb1-ssd-lite", "resolution": 96}}
    torch.save(ckpt, tmp_path / "m.pth")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="labels.txt is the labels file"):
        main(["--input", "m.pth", "--output", "out/labels.txt"])
    assert not (tmp_path / "out" / "labels.txt").exists()
    assert main(["--input", "m.pth", "--output", "out"]) == 0
    assert (tmp_path / "out" / "mb1-ssd-lite.onnx").is_file() and (tmp_path / "out" / "labels.txt").is_file()
