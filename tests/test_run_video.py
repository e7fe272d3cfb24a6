"""Preview as deployed: run_ssd_example.py / run_ssd_live_demo.py on a video the test writes itself
(annotated video out with the same frame count and fps, per-frame lines, fps summary), a
self-describing .onnx needing neither NET nor LABELS, and --postprocess detectnet = the library's
detectNet emulation."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import run_script_inprocess  # noqa: E402

CLASSES = ["BACKGROUND", "apple", "banana"]
RES = 128


def _run(script, args, cwd):
    """The script's main() in this process: the test is about its files and messages, not the process."""
    return run_script_inprocess(script, *args, cwd=cwd)


def _count_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from onnx_export import export_bytes, make_test_image
    from vision.ssd.input_adapter import ExportNet
    from vision.ssd.onnx_metadata import OnnxModelInfo, add_metadata, build_metadata
    from vision.ssd.registry import create_net

    d = tmp_path_factory.mktemp("video")
    torch.manual_seed(0)
    net = create_net("mb1-ssd-lite", len(CLASSES), resolution=RES, is_test=True).eval()
    cfg = net.config
    data = export_bytes(ExportNet(net, cfg.image_mean, cfg.image_std).eval(), torch.zeros(1, 3, RES, RES), 11, False)
    meta = OnnxModelInfo(net_name="mb1-ssd-lite", resolution=RES, class_names=CLASSES, input_normalization="detectnet",
                         input_mean=[127.5] * 3, input_std=[127.5] * 3, num_priors=cfg.num_priors)
    (d / "model.onnx").write_bytes(add_metadata(data, build_metadata(meta)))
    (d / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    writer = cv2.VideoWriter(str(d / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (200, 150))
    assert writer.isOpened()
    for k in range(6):
        writer.write(cv2.cvtColor(make_test_image(150, 200, seed=k), cv2.COLOR_RGB2BGR))
    writer.release()
    cv2.imwrite(str(d / "still.png"), cv2.cvtColor(make_test_image(150, 200, seed=9), cv2.COLOR_RGB2BGR))
    return d


@pytest.mark.slow
def test_video_in_video_out_detectnet(files, tmp_path):
    out = tmp_path / "out"
    r = _run("run_ssd_example.py", [files / "model.onnx", files / "clip.avi", files / "still.png", "--postprocess",
                                    "detectnet", "--threshold", "0.3", "--per-frame", "--output-dir", out], tmp_path)
    assert r.returncode == 0, r.stderr
    assert _count_frames(out / "clip.avi") == (6, 10.0)
    assert (out / "still.png").is_file()
    assert all(f"clip.avi frame {k}:" in r.stdout for k in range(6))
    assert "6 frames at 10 fps" in r.stdout and "fps (read, detect, draw, write)" in r.stderr
    assert not list(out.glob(".*partial*"))

    r = _run("run_ssd_live_demo.py", ["mb1-ssd-lite", files / "model.onnx", files / "labels.txt", files / "clip.avi",
                                      "--max-frames", "4", "--output-dir", tmp_path / "live"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert _count_frames(tmp_path / "live" / "clip.avi")[0] == 4

    r = _run("run_ssd_example.py", [files / "model.onnx", tmp_path / "missing.mp4", "--output-dir", out], tmp_path)
    assert r.returncode == 2 and "missing.mp4" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (tmp_path / "wrong.txt").write_text("BACKGROUND\nbanana\napple\n")
    r = _run("run_ssd_example.py", [files / "model.onnx", tmp_path / "wrong.txt", files / "still.png"], tmp_path)
    assert r.returncode == 2 and "line 2 is 'banana'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_detectnet_preview_is_the_library_emulation(files, tmp_path):
    from vision.datasets.image_io import load_image_rgb
    from vision.ssd.detectnet import DetectNetTransform, detectnet_postprocess
    from vision.ssd.onnx_model import as_deployed, load_onnx_model

    model = load_onnx_model(files / "model.onnx")
    assert model.net_name == "mb1-ssd-lite" and model.class_names == CLASSES
    pred = as_deployed(model.net, model.class_names, 0.3, onnx=True, meta=model.meta)
    image = load_image_rgb(files / "still.png")
    boxes, labels, scores = pred.predict(image)
    x = DetectNetTransform(RES)(image).unsqueeze(0).numpy()
    s, b = model.net.session.run(["scores", "boxes"], {"input_0": x})
    want = detectnet_postprocess(s[0], b[0], image.shape[1], image.shape[0], 0.3)
    np.testing.assert_array_equal(boxes.numpy(), want[0])
    np.testing.assert_array_equal(labels.numpy(), want[1])
    assert len(want[2]) > 0


def test_ctrl_c_keeps_the_recorded_part_and_stops_the_run(files, tmp_path, monkeypatch):
    """Ctrl-C during a video: its annotated copy holds the frames so far (playable, under its real name),
    and the inputs after it are not run (before, the script went on with the next videos and images)."""
    import run_ssd_example

    calls = []

    def fake_detect(predictor, image, args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)

    monkeypatch.setattr(run_ssd_example, "detect", fake_detect)
    out = tmp_path / "out"
    assert run_ssd_example.main([str(files / "model.onnx"), str(files / "clip.avi"), str(files / "still.png"),
                                 "--output-dir", str(out)]) == 0
    assert _count_frames(out / "clip.avi")[0] == 2
    assert sorted(p.name for p in out.iterdir()) == ["clip.avi"]
    assert len(calls) == 3


def test_a_folder_with_images_and_videos_runs_both(files, tmp_path):
    import shutil

    import run_ssd_example

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(files / "clip.avi", mixed)
    shutil.copy(files / "still.png", mixed)
    out = tmp_path / "out"
    assert run_ssd_example.main([str(files / "model.onnx"), str(mixed), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["clip.avi", "still.png"]
    assert _count_frames(out / "clip.avi")[0] == 6


def test_live_demo_takes_a_self_describing_onnx_without_net_and_labels(files, tmp_path):
    import run_ssd_live_demo

    out = tmp_path / "out"
    assert run_ssd_live_demo.main([str(files / "model.onnx"), str(files / "clip.avi"), "--output-dir", str(out)]) == 0
    assert _count_frames(out / "clip.avi")[0] == 6
    out2 = tmp_path / "out2"  # upstream's form still works
    assert run_ssd_live_demo.main(["mb1-ssd-lite", str(files / "model.onnx"), str(files / "labels.txt"),
                                   str(files / "clip.avi"), "--output-dir", str(out2)]) == 0
    assert _count_frames(out2 / "clip.avi")[0] == 6
