"""Every script that writes files, given each kind of bad output path, ends with ONE line naming the
path, exit 1 or 2, no traceback, and nothing written over an input.

Kinds: a file where a folder is expected / a folder where a file is expected (``wrong-kind``), a path
below an existing file (``below-file``), a path in a location nobody can write, root included
(``read-only``: under /proc/self; ``chmod`` does not stop root, which these tests run as), and an
output equal to one of the script's inputs (``input``). A new script that writes files gets a row
in OUTPUTS.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import pytest

from hostile import NET, RES, assert_clean_error, class_names_of, error_lines, make_checkpoint, make_coco, run_inproc

KINDS = ["wrong-kind", "below-file", "read-only", "input"]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("outputs")
    coco = make_coco(base / "coco", num_train=4, num_val=2)
    names = class_names_of(coco)
    models = base / "models"
    ckpt = make_checkpoint(models / "best.pth", names)
    labels = models / "labels.txt"
    labels.write_text("\n".join(names) + "\n")
    imgs = base / "imgs"
    imgs.mkdir()
    for src in sorted((coco / "val2017").iterdir())[:2]:
        (imgs / src.name).write_bytes(src.read_bytes())
    (base / "file.txt").write_text("not a folder\n")
    (base / "a-folder").mkdir()
    return {"base": base, "coco": coco, "ckpt": ckpt, "labels": labels, "imgs": imgs,
            "img": sorted(imgs.iterdir())[0], "ann": coco / "annotations" / "instances_val2017.json"}


# script -> (output is a "file" or a "dir", argv builder (env, OUT), the input an output may not land on, or None)
OUTPUTS: dict[str, tuple[str, Callable[[dict, str], list[str]], Callable[[dict], Path] | None]] = {
    "train_ssd": ("dir", lambda e, o: ["--dataset-type", "coco", "--datasets", e["coco"], "--net", NET,
                                        "--resolution", RES, "--num-epochs", "1", "--batch-size", "2",
                                        "--workers", "0", "--checkpoint-folder", o], lambda e: e["coco"]),
    "eval_ssd": ("dir", lambda e, o: ["--trained-model", e["ckpt"], "--dataset-type", "coco", "--dataset", e["coco"],
                                      "--device", "cpu", "--workers", "0", "--eval_dir", o], lambda e: e["ckpt"].parent),
    "onnx_export": ("file", lambda e, o: ["--input", e["ckpt"], "--output", o], lambda e: e["ckpt"]),
    "run_ssd_example": ("dir", lambda e, o: [NET, e["ckpt"], e["labels"], e["imgs"], "--output-dir", o],
                        lambda e: e["imgs"]),
    "run_ssd_live_demo": ("dir", lambda e, o: [NET, e["ckpt"], e["labels"], "0", "--output-dir", o], None),
    "validate_image_files": ("file", lambda e, o: ["--path", e["imgs"], "--action", "report", "--report", o],
                             lambda e: e["img"]),
    "fix_coco_annotations": ("file", lambda e, o: ["--path", e["coco"], "--splits", "val", "--report", o],
                             lambda e: e["ann"]),
    "coco_downloader": ("dir", lambda e, o: ["--path", o, "--splits", "val", "--base-url", "http://127.0.0.1:9/",
                                             "--retries", "0"], None),
    "open_images_downloader": ("dir", lambda e, o: ["--data", o, "--class-names", "Apple", "--base-url",
                                                    "http://127.0.0.1:9/", "--retry", "0"], None),
    "dataset_report": ("dir", lambda e, o: ["--dataset", e["coco"], "--dataset-type", "coco", "--output", o],
                       lambda e: e["coco"]),
}


def _bad_path(kind: str, expects: str, e: dict, script: str) -> Path | None:
    base = e["base"]
    if kind == "wrong-kind":
        return base / ("file.txt" if expects == "dir" else "a-folder")
    if kind == "below-file":
        return base / "file.txt" / "sub" / ("out" if expects == "dir" else "out.json")
    if kind == "read-only":
        return Path("/proc/self/no-such-folder") / ("out" if expects == "dir" else "out.json")
    inp = OUTPUTS[script][2]
    return inp(e) if inp else None


def _digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode() + f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("script", sorted(OUTPUTS))
def test_bad_output_path(script, kind, env, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    expects, build, _ = OUTPUTS[script]
    out = _bad_path(kind, expects, env, script)
    if out is None:
        pytest.skip(f"{script} reads no file or folder its output could land on")
    if script == "onnx_export" and kind == "wrong-kind":
        pytest.skip("onnx_export --output FOLDER writes NAME.onnx inside it (documented); see test_onnx_deploy")
    before = _digest(out) if kind == "input" else None
    rc, _, err = run_inproc(script, [str(a) for a in build(env, str(out))], capsys)
    assert_clean_error(rc, err, [str(out)], expected_rc=(1, 2), what=f"{script} {kind}")
    assert len(error_lines(err)) == 1, err
    if before is not None:
        assert _digest(out) == before, f"{script} changed its input {out}"


@pytest.mark.parametrize("exc", [PermissionError(13, "Permission denied", "/data/out/x.json"),
                                 OSError(28, "No space left on device", "/data/out/x.json"),
                                 IsADirectoryError(21, "Is a directory", "/data/out/x.json")])
def test_run_main_turns_a_path_error_into_one_line(exc, caplog):
    """What the up-front checks cannot foresee (a disk filling, a folder removed mid-run) still ends
    as one line naming the path, exit 1, not a traceback."""
    from vision.utils.misc import run_main

    def main(argv):
        raise exc

    assert run_main(main, []) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"/data/out/x.json: {exc.strerror}"]


def test_run_main_keeps_the_traceback_of_an_error_without_a_path():
    from vision.utils.misc import run_main

    def main(argv):
        raise OSError("something else")

    with pytest.raises(OSError):
        run_main(main, [])
