"""run_ssd_example.py end to end: annotated images, printed detections, ONNX Runtime = PyTorch, errors."""
from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch

from tests.conftest import REPO, run_script, run_script_inprocess
SCRIPT = str(REPO / "run_ssd_example.py")
CLASSES = ["BACKGROUND", "apple", "banana"]
RES = 128


def _run(args, cwd):
    return run_script("run_ssd_example.py", *args, cwd=cwd)


def _run_inprocess(args, cwd):
    """main() in this process: for checks of messages and exit codes, not of the process."""
    return run_script_inprocess("run_ssd_example.py", *args, cwd=cwd)


def _detections(stdout: str) -> dict[str, list[tuple[str, float, list[float]]]]:
    """Parse the script's output: ``IMAGE: N objects -> OUT`` then one tab-separated line per detection."""
    out: dict[str, list] = {}
    current = None
    for line in stdout.splitlines():
        if not line.startswith("  "):
            current = line.split(":")[0]
            out[current] = []
            assert f": {line.split(': ')[1].split(' objects')[0]} objects -> " in line
        else:
            name, score, box = line.strip().split("\t")
            out[current].append((name, float(score), [float(v) for v in box.split()]))
    return out


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A random mb1-ssd-lite (128 px) as a checkpoint folder, a plain .pth, its ONNX export, and images."""
    from onnx_export import export_bytes, make_test_image
    from vision.ssd.registry import create_net

    d = tmp_path_factory.mktemp("example")
    torch.manual_seed(0)
    net = create_net("mb1-ssd-lite", len(CLASSES), resolution=RES)
    (d / "run").mkdir()
    torch.save({"epoch": 0, "model": net.state_dict(), "class_names": CLASSES, "net": "mb1-ssd-lite",
                "resolution": RES, "args": {"net": "mb1-ssd-lite", "resolution": RES}}, d / "run" / "best.pth")
    torch.save(net.state_dict(), d / "plain.pth")
    (d / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    test_net = create_net("mb1-ssd-lite", len(CLASSES), resolution=RES, is_test=True)
    test_net.load_state_dict(net.state_dict())
    test_net.eval()
    (d / "model.onnx").write_bytes(export_bytes(test_net, torch.zeros(1, 3, RES, RES), 11, False))
    imgs = d / "images"
    imgs.mkdir()
    for k in range(2):
        img = make_test_image(300 + 40 * k, 400 - 50 * k, seed=k)
        cv2.imwrite(str(imgs / f"img{k}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return d


@pytest.mark.slow
def test_single_image_checkpoint_folder_writes_upstream_output(model_files, tmp_path):
    image = model_files / "images" / "img0.jpg"
    r = _run(["mb1-ssd-lite", model_files / "run", model_files / "labels.txt", image, "--threshold", "0.3"],
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run_ssd_example_output.jpg"
    assert out.is_file()
    dets = _detections(r.stdout)[str(image)]
    assert 0 < len(dets) <= 10  # default --top-k 10
    assert all(name in CLASSES[1:] and score >= 0.3 for name, score, _ in dets)
    annotated = cv2.imread(str(out))
    original = cv2.imread(str(image))
    assert annotated.shape == original.shape
    assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100  # boxes were drawn


@pytest.mark.slow
def test_onnx_gives_the_same_detections_as_pytorch(model_files, tmp_path):
    folder = model_files / "images"
    common = ["--threshold", "0.3", "--top-k", "5", "--resolution", str(RES)]
    r_pt = _run(["mb1-ssd-lite", model_files / "plain.pth", model_files / "labels.txt", folder,
                 "--output-dir", tmp_path / "pt", *common], cwd=tmp_path)
    assert r_pt.returncode == 0, r_pt.stderr
    r_ox = _run(["mb1-ssd-lite", "--onnx", model_files / "model.onnx", model_files / "labels.txt", folder,
                 "--output-dir", tmp_path / "ox", *common], cwd=tmp_path)
    assert r_ox.returncode == 0, r_ox.stderr
    pt, ox = _detections(r_pt.stdout), _detections(r_ox.stdout)
    assert sorted(pt) == sorted(ox) == sorted(str(p) for p in folder.iterdir())
    for image in pt:
        a, b = sorted(pt[image], key=lambda d: d[2]), sorted(ox[image], key=lambda d: d[2])
        assert len(a) == len(b) > 0
        for (na, sa, ba), (nb, sb, bb) in zip(a, b):
            assert na == nb and sa == pytest.approx(sb, abs=2e-3)
            np.testing.assert_allclose(ba, bb, atol=0.2)
    assert sorted(p.name for p in (tmp_path / "ox").iterdir() if not p.name.startswith(".")) == ["img0.jpg", "img1.jpg"]


@pytest.mark.slow
def test_errors_are_one_line_exit_2(model_files, tmp_path):
    image = model_files / "images" / "img0.jpg"
    labels = model_files / "labels.txt"
    r = _run_inprocess(["resnet-ssd", model_files / "plain.pth", labels, image], cwd=tmp_path)
    assert r.returncode == 2 and "mb1-ssd-lite" in r.stderr and "mb2-ssd-lite" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _run_inprocess(["mb2-ssd-lite", model_files / "plain.pth", labels, image], cwd=tmp_path)
    assert r.returncode == 2 and "mb1-ssd-lite" in r.stderr and "mb2-ssd-lite" in r.stderr
    assert "Traceback" not in r.stderr
    four = tmp_path / "four.txt"
    four.write_text("BACKGROUND\na\nb\nc\n")
    r = _run_inprocess(["mb1-ssd-lite", model_files / "run", four, image], cwd=tmp_path)  # checkpoint has 3 classes
    assert r.returncode == 2 and "3" in r.stderr and "4" in r.stderr and "Traceback" not in r.stderr
    # one unreadable image among good ones: the good ones are still done, exit 2
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    r = _run_inprocess(["mb1-ssd-lite", model_files / "run", labels, bad, image, "--output-dir", tmp_path / "o",
              "--threshold", "0.3"], cwd=tmp_path)
    assert r.returncode == 2 and "broken.jpg" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "o" / "img0.jpg").is_file() and str(image) in r.stdout
