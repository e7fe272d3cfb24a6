"""Hostile model files through every script that loads one: eval_ssd.py, onnx_export.py,
run_ssd_example.py, train_ssd.py --pretrained-ssd / --resume.

A pickle that would run code is refused (weights_only=True) and the code never runs; truncated,
empty or non-weight files, weights of another net / class count, and garbage self-description are
one line naming the file -- never a traceback, never a net silently built wrong."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hostile import NET, RES, assert_clean_error, class_names_of, make_checkpoint, make_coco, run_inproc

CLASSES = ["BACKGROUND", "a", "b"]


class _RunsCode:
    """Unpickling this calls exec(): it writes a marker file (harmless proof that code ran)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    good = make_checkpoint(d / "good.pth", CLASSES)
    data = good.read_bytes()
    out = {"good": good}
    marker = d / "PWNED"
    ckpt = torch.load(good, weights_only=True)
    torch.save({**ckpt, "payload": _RunsCode(marker)}, d / "runs_code.pth")
    torch.save(_RunsCode(marker), d / "runs_code_bare.pth")
    (d / "truncated.pth").write_bytes(data[: len(data) // 2])
    (d / "zero.pth").write_bytes(b"")
    (d / "text.pth").write_text("this is not a model\n")
    torch.save([1, 2, 3], d / "a_list.pth")
    torch.save({"epoch": 3, "optimizer": {}}, d / "no_weights.pth")
    make_checkpoint(d / "other_net.pth", CLASSES, net="mb1-ssd-lite")                 # says it is mb1-ssd-lite
    make_checkpoint(d / "other_net_plain.pth", CLASSES, net="mb1-ssd-lite", plain=True)
    make_checkpoint(d / "other_classes_plain.pth", ["BACKGROUND", "a", "b", "c", "d"], plain=True)
    lying = torch.load(d / "other_classes_plain.pth", weights_only=True)             # 5-class heads ...
    torch.save({"epoch": 0, "model": lying, "class_names": CLASSES, "net": NET}, d / "lying_classes.pth")  # ... 3 names
    for key, value in (("resolution", "abc"), ("resolution", 7), ("resolution", -300), ("net", 42),
                       ("class_names", "abc"), ("class_names", 5), ("args", "x")):
        torch.save({**ckpt, key: value}, d / f"garbage_{key}_{value}.pth")
    out.update({p.stem: p for p in d.glob("*.pth")})
    out["marker"] = marker
    return out


BAD_FILES = {
    # name: needles the error line must hold besides the file name
    "runs_code": ("refusing", "could run code"),
    "runs_code_bare": ("refusing", "could run code"),
    "truncated": ("truncated or corrupt",),
    "zero": ("truncated or corrupt",),
    "text": ("truncated or corrupt",),
    "a_list": ("not model weights",),
    "no_weights": ("not model weights",),
    "other_net": ("mb1-ssd-lite", NET),
    "other_net_plain": ("mb1-ssd-lite", NET),
    "other_classes_plain": ("5", "3"),
    "lying_classes": ("5", "3"),
    "garbage_resolution_abc": ("resolution",),
    "garbage_resolution_7": ("resolution",),
    "garbage_resolution_-300": ("resolution",),
    "garbage_net_42": ("42",),
    "garbage_class_names_abc": ("class",),
    "garbage_class_names_5": ("class",),
}


def _args(script: str, model: Path, tmp_path: Path, labels: Path, image: Path) -> list:
    if script == "eval_ssd":
        return ["--trained-model", model, "--net", NET, "--label_file", labels, "--dataset", tmp_path,
                "--use-cuda", "false", "--eval-dir", tmp_path / "eval"]
    if script == "onnx_export":
        return ["--input", model, "--net", NET, "--labels", labels, "--output", tmp_path / "out.onnx"]
    return [NET, model, labels, image, "--output-dir", tmp_path / "out"]


@pytest.fixture
def labels_and_image(tmp_path):
    import cv2
    import numpy as np

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(CLASSES) + "\n")
    image = tmp_path / "img.jpg"
    cv2.imwrite(str(image), np.full((48, 64, 3), 100, np.uint8))
    return labels, image


@pytest.mark.parametrize("script", ["eval_ssd", "onnx_export", "run_ssd_example"])
@pytest.mark.parametrize("name", list(BAD_FILES))
def test_scripts_refuse_bad_model_files(script, name, files, tmp_path, labels_and_image, capsys):
    """Found bugs: garbage self-description (resolution "abc", class_names 5) was a traceback."""
    labels, image = labels_and_image
    model = files[name]
    rc, out, err = run_inproc(script, _args(script, model, tmp_path, labels, image), capsys)
    assert_clean_error(rc, err, [str(model), *BAD_FILES[name]], 2, f"{script} {name}")
    assert not files["marker"].exists(), "unpickling ran code"
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "out").exists()


def test_unsafe_pickle_message_is_explicit(files):
    from vision.utils.model_io import load_state_dict_file
    from vision.utils.misc import UserError

    with pytest.raises(UserError) as info:
        load_state_dict_file(files["runs_code"])
    assert "(exec)" in str(info.value) and "could run code" in str(info.value)
    assert not files["marker"].exists()


def test_other_resolution_is_allowed_with_a_warning(files, tmp_path, labels_and_image, capsys):
    """SSD weights do not depend on the input size: a 64 px checkpoint runs at 128 px (priors rebuilt)."""
    labels, image = labels_and_image
    rc, out, err = run_inproc("run_ssd_example", [NET, files["good"], labels, image, "--resolution", "128",
                                                  "--output-dir", tmp_path / "out"], capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert "trained at 64 px; running it at 128 px" in err


# ----------------------------------------------------------------------------- train_ssd.py
@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("train_coco") / "coco", num_train=4, num_val=2)


def _train_args(coco: Path, folder: Path) -> list:
    return ["--dataset-type", "coco", "--datasets", str(coco), "--net", NET, "--resolution", str(RES),
            "--epochs", "1", "--workers", "0", "--batch-size", "2", "--use-cuda", "false", "--seed", "0",
            "--checkpoint-folder", str(folder)]


@pytest.mark.parametrize("name", ["runs_code", "truncated", "zero", "text", "a_list", "other_net_plain"])
def test_train_pretrained_ssd_refuses_bad_files(name, files, coco, tmp_path, capsys):
    model = files[name]
    rc, _, err = run_inproc("train_ssd", _train_args(coco, tmp_path / "run") + ["--pretrained-ssd", model], capsys)
    needles = {"runs_code": ("could run code",), "other_net_plain": ("mb1-ssd-lite",)}.get(name, ())
    assert_clean_error(rc, err, [str(model), *needles], 2, f"train --pretrained-ssd {name}")
    assert not files["marker"].exists()
    assert not list((tmp_path / "run").glob("*.pth"))


@pytest.mark.parametrize("name", [
    "runs_code", "truncated", "zero", "text", "a_list"])
def test_train_resume_refuses_bad_files(name, files, coco, tmp_path, capsys):
    import train_ssd

    folder = tmp_path / "run"
    folder.mkdir()
    saved = vars(train_ssd.build_parser().parse_args(_train_args(coco, folder)))
    (folder / "args.json").write_text(json.dumps({"args": saved, "class_names": class_names_of(coco, "train")}))
    ckpt = folder / f"{NET}-Epoch-0-Loss-1.0.pth"
    ckpt.write_bytes(files[name].read_bytes())
    rc, _, err = run_inproc("train_ssd", ["--resume", ckpt], capsys)
    needles = {"runs_code": ("code",)}.get(name, ())
    assert_clean_error(rc, err, [str(ckpt), *needles], 2, f"train --resume {name}")
    assert not files["marker"].exists()
