"""onnx_export.py end to end: jetson-inference's contract (names, shapes, static batch 1, opset), the
ONNX Runtime check, --model-dir's lowest-loss pick, priors rebuilt for another resolution, errors."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from tests.conftest import REPO, run_script

CLASSES = ["BACKGROUND", "apple", "banana"]


def _run(args, cwd=REPO):
    return run_script("onnx_export.py", *args, cwd=cwd)


def _net(seed, resolution=128, is_test=False):
    from vision.ssd.registry import create_net

    torch.manual_seed(seed)
    return create_net("mb1-ssd-lite", len(CLASSES), resolution=resolution, is_test=is_test)


def _checkpoint(net, resolution=128, epoch=1):
    return {"epoch": epoch, "step_in_epoch": 0, "model": net.state_dict(), "class_names": CLASSES,
            "net": "mb1-ssd-lite", "resolution": resolution,
            "args": {"net": "mb1-ssd-lite", "resolution": resolution, "mb2_width_mult": 1.0}}


def _dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def _torch_outputs(state_dict, x, resolution):
    from vision.ssd.registry import create_net

    net = create_net("mb1-ssd-lite", len(CLASSES), resolution=resolution, is_test=True)
    net.load_state_dict(state_dict)
    net.eval()
    with torch.no_grad():
        return [t.numpy() for t in net(x)]


@pytest.mark.slow
def test_model_dir_export_meets_the_detectnet_contract(tmp_path):
    import onnx
    import onnxruntime as ort

    from onnx_export import make_test_image
    from vision.ssd.detectnet import DetectNetTransform

    folder = tmp_path / "models" / "fruit"
    folder.mkdir(parents=True)
    worse, better = _net(1), _net(2)
    torch.save(_checkpoint(worse), folder / "mb1-ssd-lite-Epoch-1-Loss-3.25.pth")
    torch.save(_checkpoint(better, epoch=2), folder / "mb1-ssd-lite-Epoch-2-Loss-2.5.pth")
    torch.save(_checkpoint(worse, epoch=3), folder / "mb1-ssd-lite-Epoch-3-Loss-nan.pth")
    (folder / "labels.txt").write_text("BACKGROUND\n\napple\nbanana\n\n")  # blank lines: backed up, rewritten
    engine = folder / "mb1-ssd-lite.onnx.1.1.8201.GPU.FP16.engine"
    engine.write_bytes(b"")

    r = _run(["--model-dir", folder, "--resolution", "160"])  # trained at 128: priors rebuilt for 160
    assert r.returncode == 0, r.stderr
    out = folder / "mb1-ssd-lite.onnx"
    assert "Epoch-2-Loss-2.5" in r.stderr  # the lowest finite loss was picked
    assert "is epoch 2" in r.stderr
    assert (f"detectnet --model={out} --labels={folder / 'labels.txt'} --input-blob=input_0 "
            f"--output-cvg=scores --output-bbox=boxes") in r.stdout
    assert "before 2022-08" in r.stderr and str(engine) in r.stderr
    assert (folder / "labels.txt").read_text() == "BACKGROUND\napple\nbanana\n"
    assert (folder / "labels.txt.bak").read_text() == "BACKGROUND\n\napple\nbanana\n\n"

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 11
    from vision.ssd.registry import get_config

    n = get_config("mb1-ssd-lite", 160).num_priors
    assert n != better.config.num_priors
    assert [(i.name, _dims(i)) for i in model.graph.input] == [("input_0", [1, 3, 160, 160])]
    assert [(o.name, _dims(o)) for o in model.graph.output] == [("scores", [1, n, 3]), ("boxes", [1, n, 4])]
    assert "NonMaxSuppression" not in {node.op_type for node in model.graph.node}

    cfg = better.config
    image = make_test_image(seed=5)
    x = DetectNetTransform(160)(image).unsqueeze(0)  # the graph takes detectNet's input ...
    x_net = DetectNetTransform(160, cfg.image_mean, cfg.image_std)(image).unsqueeze(0)  # ... the net its own
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    scores, boxes = sess.run(["scores", "boxes"], {"input_0": x.numpy()})
    ref_scores, ref_boxes = _torch_outputs(better.state_dict(), x_net, 160)
    ref_boxes = ref_boxes.clip(0, 1)  # clamped in the graph
    assert np.abs(scores - ref_scores).max() <= 1e-4 and np.abs(boxes - ref_boxes).max() <= 1e-4
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)  # softmaxed
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()  # corner form
    other_scores, _ = _torch_outputs(worse.state_dict(), x_net, 160)
    assert np.abs(scores - other_scores).max() > 1e-3  # really the better checkpoint's weights


def test_dynamic_batch_graph_takes_other_batch_sizes():
    import onnxruntime as ort

    from onnx_export import check_graph, export_bytes

    net = _net(3, resolution=96, is_test=True).eval()
    data = export_bytes(net, torch.zeros(1, 3, 96, 96), 13, dynamic_batch=True)
    check_graph(data, None, 96, len(CLASSES), net.config.num_priors)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 96, 96) * 2 - 1
    scores, boxes = sess.run(["scores", "boxes"], {"input_0": x.numpy()})
    with torch.no_grad():
        ref_scores, ref_boxes = net(x)
    assert scores.shape == (3, net.config.num_priors, len(CLASSES))
    assert np.abs(scores - ref_scores.numpy()).max() <= 1e-4 and np.abs(boxes - ref_boxes.numpy()).max() <= 1e-4


@pytest.mark.slow
def test_bad_inputs_are_one_line_exit_2(tmp_path):
    from vision.ssd.registry import create_net

    torch.manual_seed(0)
    torch.save(create_net("mb1-ssd-lite", 3).state_dict(), tmp_path / "plain.pth")
    (tmp_path / "labels.txt").write_text("BACKGROUND\na\nb\n")
    cases = [
        (["--net", "mb2-ssd-lite", "--labels", tmp_path / "labels.txt"], "mb1-ssd-lite"),  # another net
        (["--net", "mb1-ssd-lite", "--labels", tmp_path / "missing.txt"], "labels file not found"),
        (["--net", "mb1-ssd-lite", "--labels", tmp_path / "labels.txt", "--width", "640", "--height", "480"],
         "non-square"),
    ]
    for extra, needle in cases:
        r = _run(["--input", tmp_path / "plain.pth", "--output", tmp_path / "x.onnx", *extra])
        assert r.returncode == 2, (extra, r.stderr)
        lines = [line for line in r.stderr.splitlines() if "ERROR" in line]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_export_bytes_and_graph_check_in_process():
    """The in-process pieces, quick: static batch 2, names and shapes, ORT agrees with PyTorch."""
    from onnx_export import check_graph, compare_with_onnxruntime, export_bytes

    net = _net(4, resolution=96, is_test=True).eval()
    x = torch.rand(2, 3, 96, 96)
    data = export_bytes(net, x, 11, dynamic_batch=False)
    check_graph(data, 2, 96, len(CLASSES), int(net.config.priors.size(0)))
    d_scores, d_boxes = compare_with_onnxruntime(data, net, x)
    assert d_scores <= 1e-4 and d_boxes <= 1e-4
    from vision.utils.misc import Failure

    with pytest.raises(Failure):  # a contract violation is caught
        check_graph(data, 1, 96, len(CLASSES), int(net.config.priors.size(0)))


def test_onnx_predictor_matches_pytorch_predictor_with_static_batch(tmp_path):
    """OnnxPredictor feeds a static-batch model in chunks (padding the last) and gives the Predictor's result."""
    from onnx_export import export_bytes, make_test_image
    from vision.ssd.onnx_predictor import OnnxPredictor
    from vision.ssd.registry import create_predictor
    from vision.utils.misc import UserError

    net = _net(5, resolution=96, is_test=True).eval()
    path = tmp_path / "b2.onnx"
    path.write_bytes(export_bytes(net, torch.zeros(2, 3, 96, 96), 11, dynamic_batch=False))
    cfg = net.config
    onnx_pred = OnnxPredictor(path, mean=cfg.image_mean, std=cfg.image_std)
    torch_pred = create_predictor(net)
    assert onnx_pred.size == 96 and onnx_pred.fixed_batch == 2
    images = [make_test_image(100 + 10 * k, 120, seed=k) for k in range(3)]
    x = torch.stack([torch_pred.transform(im) for im in images])
    sizes = [im.shape[:2] for im in images]
    got = onnx_pred.predict_batch(x, sizes, top_k=5, prob_threshold=0.3)
    want = torch_pred.predict_batch(x, sizes, top_k=5, prob_threshold=0.3)
    assert sum(len(s) for _, _, s in want) > 0
    for (b1, l1, s1), (b2, l2, s2) in zip(got, want):
        # equal scores may come out in either order: compare as sets, ordered by label and box
        o1 = sorted(range(len(l1)), key=lambda i: (int(l1[i]), *[round(float(v)) for v in b1[i]]))
        o2 = sorted(range(len(l2)), key=lambda i: (int(l2[i]), *[round(float(v)) for v in b2[i]]))
        assert torch.equal(l1[o1], l2[o2])
        torch.testing.assert_close(s1[o1], s2[o2], atol=1e-4, rtol=0)
        torch.testing.assert_close(b1[o1], b2[o2], atol=1e-2, rtol=0)
    with pytest.raises(UserError):
        OnnxPredictor(path, size=128)  # the model is 96 px
    with pytest.raises(UserError):
        OnnxPredictor(tmp_path / "missing.onnx")
