"""Smaller CLI faults of issue 12: MODEL and --onnx together, a net name that does not fit an ONNX
file, tqdm bars in non-terminal logs, and an --alg-name that names a path."""
from __future__ import annotations

from pathlib import Path

import pytest

from hostile import NET, RES, assert_clean_error, class_names_of, make_checkpoint, make_coco, run_inproc


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("small")
    coco = make_coco(base / "coco", num_train=4, num_val=3)
    names = class_names_of(coco)
    ckpt = make_checkpoint(base / "m" / "best.pth", names)
    labels = base / "m" / "labels.txt"
    labels.write_text("\n".join(names) + "\n")
    return {"base": base, "coco": coco, "ckpt": ckpt, "labels": labels,
            "img": sorted((coco / "val2017").iterdir())[0]}


@pytest.fixture(scope="module")
def bare_onnx(env):
    """An ONNX file that does not describe itself (exported before the metadata existed)."""
    import onnx
    import torch

    from vision.ssd.registry import create_net

    net = create_net(NET, len(class_names_of(env["coco"])), resolution=RES, is_test=True).eval()
    path = env["base"] / "old.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, RES, RES),), str(path), input_names=["input_0"],
                      output_names=["scores", "boxes"], opset_version=11, dynamo=False)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    return path


def test_model_and_onnx_both_given(env, capsys, tmp_path):
    rc, _, err = run_inproc("run_ssd_example", [NET, env["ckpt"], "--onnx", env["base"] / "x.onnx", env["labels"],
                                                env["img"], "--output-dir", tmp_path / "out"], capsys)
    assert_clean_error(rc, err, ["give MODEL or --onnx, not both"])


def test_net_name_that_does_not_fit_an_onnx_file(env, bare_onnx, capsys, tmp_path):
    rc, _, err = run_inproc("run_ssd_example", ["vgg16-ssd", bare_onnx, env["labels"], env["img"],
                                                "--output-dir", tmp_path / "out"], capsys)
    line = assert_clean_error(rc, err, [str(bare_onnx), "vgg16-ssd"])
    assert "Kernel size" not in err and "kernel" not in line.lower(), err


def test_eval_writes_no_progress_bar_into_a_log(env, capsys, tmp_path):
    """stderr is not a terminal here (captured): no tqdm bar, only log lines."""
    rc, _, err = run_inproc("eval_ssd", ["--trained-model", env["ckpt"], "--dataset-type", "coco", "--dataset",
                                         env["coco"], "--device", "cpu", "--workers", "0",
                                         "--eval_dir", tmp_path / "ev"], capsys)
    assert rc == 0, err
    assert "\r" not in err and "img/s]" not in err and "evaluate:" not in err, err


@pytest.mark.parametrize("name", ["a/../../x", "../x", "a b", "..", "x\\y", ""])
def test_alg_name_is_a_name(name, env, capsys, tmp_path):
    rc, _, err = run_inproc("eval_ssd", ["--trained-model", env["ckpt"], "--dataset-type", "coco", "--dataset",
                                         env["coco"], "--split", "test-dev", "--alg-name", name,
                                         "--eval_dir", tmp_path / "ev"], capsys)
    assert rc == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--alg-name" in lines[0], err
    assert not (tmp_path / "ev").exists() and not (tmp_path.parent / "x").exists()


def test_alg_name_accepts_plain_names():
    import eval_ssd

    for good in ("ssd300", "mb2-ssd-lite_v1.2"):
        assert eval_ssd.build_parser().parse_args(["--trained-model", "m", "--alg-name", good]).alg_name == good
