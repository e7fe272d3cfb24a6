"""No script writes over one of its inputs, however the path is spelled (relative, symlink, hard
link), nor over a checkpoint it did not write: refused in one line, exit 2, the input unchanged."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostile import NET, assert_clean_error, class_names_of, make_checkpoint, make_coco, run_inproc

from vision.utils.misc import UserError
from vision.utils.paths import refuse_output_dir_over_inputs, refuse_output_over_inputs, same_file


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("over")
    coco = make_coco(base / "coco", num_train=4, num_val=2)
    names = class_names_of(coco)
    m = base / "m"
    ckpt = make_checkpoint(m / "best.pth", names)
    other = make_checkpoint(m / "other.pth", names, seed=1)
    (m / "labels.txt").write_text("\n".join(names) + "\n")
    os.symlink(ckpt, m / "link.pth")
    os.link(ckpt, base / "hard.onnx")
    return {"base": base, "coco": coco, "m": m, "ckpt": ckpt, "other": other}


def test_same_file_spellings(tmp_path, monkeypatch):
    f = tmp_path / "a.pth"
    f.write_bytes(b"x")
    os.symlink(f, tmp_path / "s.pth")
    os.link(f, tmp_path / "h.bin")
    monkeypatch.chdir(tmp_path)
    for spelling in ("a.pth", "./a.pth", "s.pth", "h.bin", str(tmp_path / "sub" / ".." / "a.pth")):
        assert same_file(spelling, f), spelling
    assert not same_file("b.pth", f)
    with pytest.raises(UserError, match="refusing to write over an input"):
        refuse_output_over_inputs([("--output", "s.pth")], [("--input", f)])
    with pytest.raises(UserError, match="did not write"):  # an existing checkpoint that is no input
        refuse_output_over_inputs([("--output", "a.pth")], [])
    refuse_output_over_inputs([("--output", "new.pth")], [("--input", f)])  # a new file is fine
    with pytest.raises(UserError, match="holds --input"):
        refuse_output_dir_over_inputs("--out", tmp_path, [("--input", f)])
    refuse_output_dir_over_inputs("--out", tmp_path / "elsewhere", [("--input", f)])


def _bytes(p: Path) -> bytes:
    return Path(p).read_bytes()


@pytest.mark.parametrize("output", ["best.pth", "./best.pth", "link.pth", "other.pth", "labels.txt", "HARD",
                                    "../m/best.pth"])
def test_onnx_export_never_over_an_input(output, env, capsys, monkeypatch):
    monkeypatch.chdir(env["m"])
    out = str(env["base"] / "hard.onnx") if output == "HARD" else output
    before = {p: _bytes(p) for p in env["m"].iterdir() if p.is_file()}
    rc, _, err = run_inproc("onnx_export", ["--input", env["ckpt"], "--labels", env["m"] / "labels.txt",
                                            "--output", out], capsys)
    assert_clean_error(rc, err, ["--output", str(Path(out))], what=output)
    assert {p: _bytes(p) for p in env["m"].iterdir() if p.is_file()} == before


def test_run_ssd_example_output_dir_among_the_photos(env, capsys, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    src = sorted((env["coco"] / "val2017").iterdir())[0]
    photo = imgs / src.name
    photo.write_bytes(src.read_bytes())
    before = photo.read_bytes()
    for out_dir in (imgs, tmp_path / "." / "imgs"):
        rc, _, err = run_inproc("run_ssd_example", [NET, env["ckpt"], env["m"] / "labels.txt", photo,
                                                    "--output-dir", out_dir], capsys)
        assert_clean_error(rc, err, ["--output-dir", "refusing"])
    assert photo.read_bytes() == before and sorted(imgs.iterdir()) == [photo]


def test_run_ssd_example_single_output_is_the_input(env, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = sorted((env["coco"] / "val2017").iterdir())[0]
    photo = tmp_path / "run_ssd_example_output.jpg"
    photo.write_bytes(src.read_bytes())
    rc, _, err = run_inproc("run_ssd_example", [NET, env["ckpt"], env["m"] / "labels.txt", photo.name], capsys)
    assert_clean_error(rc, err, ["run_ssd_example_output.jpg", "refusing"])
    assert photo.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("where", ["dataset", "model"])
def test_eval_dir_not_among_the_inputs(where, env, capsys):
    eval_dir = env["coco"] if where == "dataset" else env["m"]
    rc, _, err = run_inproc("eval_ssd", ["--trained-model", env["ckpt"], "--dataset-type", "coco", "--dataset",
                                         env["coco"], "--device", "cpu", "--eval_dir", eval_dir], capsys)
    assert_clean_error(rc, err, ["--eval-dir", "refusing"])
    assert not (eval_dir / "metrics.json").exists()


def test_dataset_report_suggest_priors_over_priors_file(env, capsys, tmp_path):
    priors = tmp_path / "priors.json"
    priors.write_text("{}")
    rc, _, err = run_inproc("dataset_report", ["--dataset", env["coco"], "--priors", priors, "--suggest-priors",
                                               priors, "--output", tmp_path / "rep"], capsys)
    assert_clean_error(rc, err, ["--suggest-priors", "refusing"])
    assert priors.read_text() == "{}"


def test_run_ssd_example_never_replaces_a_picture_it_did_not_write(env, capsys, tmp_path):
    """An output folder holding someone's photo of the same name as an output: refused; the script's
    own earlier outputs are replaced on a rerun."""
    src = sorted((env["coco"] / "val2017").iterdir())[0]
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "out"
    argv = [NET, env["ckpt"], env["m"] / "labels.txt", inputs, "--output-dir", out]
    rc, _, err = run_inproc("run_ssd_example", argv, capsys)
    assert rc == 0, err
    rc, _, err = run_inproc("run_ssd_example", argv, capsys)  # a rerun replaces its own outputs
    assert rc == 0, err
    other = tmp_path / "other"
    other.mkdir()
    (other / src.name).write_bytes(b"someone's photo")
    rc, _, err = run_inproc("run_ssd_example", argv[:-1] + [other], capsys)
    assert_clean_error(rc, err, ["--output-dir", src.name, "did not write"])
    assert (other / src.name).read_bytes() == b"someone's photo"
