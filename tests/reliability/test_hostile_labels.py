"""Hostile labels.txt files through vision.utils.labels and every script that takes one
(run_ssd_example.py LABELS, eval_ssd.py --label_file, onnx_export.py --labels): blank lines and
stray spaces never become classes, a missing BACKGROUND is added, duplicates and a class count that
does not fit the model are one line naming the file."""
from __future__ import annotations

import logging

import pytest

from hostile import assert_clean_error, make_checkpoint, run_inproc

CLASSES = ["BACKGROUND", "apple", "banana"]


@pytest.mark.parametrize("text", [
    "BACKGROUND\napple\nbanana\n",
    "BACKGROUND\n\napple\n\n\nbanana\n\n",          # blank lines (a class each in detectNet)
    "BACKGROUND  \n apple\t\nbanana   \n",           # trailing / leading spaces and tabs
    "BACKGROUND\r\napple\r\nbanana\r\n",             # Windows line ends
    "\ufeffBACKGROUND\napple\nbanana",               # UTF-8 BOM, no final newline
    "   \nBACKGROUND\n  \napple\nbanana\n \t \n",    # whitespace-only lines
], ids=["plain", "blank_lines", "spaces", "crlf", "bom", "whitespace_lines"])
def test_read_labels_ignores_blanks_and_spaces(text, tmp_path):
    from vision.utils.labels import read_labels

    p = tmp_path / "labels.txt"
    p.write_text(text, encoding="utf-8", newline="")
    assert read_labels(p) == CLASSES


@pytest.mark.parametrize("first", ["apple", "background", "Background", "__background__"])
def test_missing_or_differently_spelled_background(first, tmp_path, caplog):
    """Found bug: a labels file starting with "background" (lower case, as other tools write it) got
    BACKGROUND prepended, so "background" became object class 1 and every class id shifted by one."""
    from vision.utils.labels import read_labels

    p = tmp_path / "labels.txt"
    names = ["apple", "banana"] if first == "apple" else [first, "apple", "banana"]
    p.write_text("\n".join(names) + "\n")
    with caplog.at_level(logging.WARNING):
        assert read_labels(p) == CLASSES
    assert any(str(p) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("text,needles", [
    ("BACKGROUND\napple\nbanana\napple\n", ("duplicate", "'apple'")),
    ("BACKGROUND\napple \n apple\n", ("duplicate", "'apple'")),      # duplicates once spaces are gone
    ("apple\nBACKGROUND\nbanana\n", ("BACKGROUND", "first")),
    ("BACKGROUND\napple\nbackground\n", ("background", "first")),
    ("BACKGROUND\n", ("no object classes",)),
    ("\n\n  \n", ("no class names",)),
    ("", ("no class names",)),
], ids=["duplicate", "duplicate_after_strip", "background_not_first", "background_spelling_later",
        "only_background", "only_blank", "empty"])
def test_bad_labels_are_one_line_errors(text, needles, tmp_path):
    from vision.utils.labels import read_labels
    from vision.utils.misc import UserError

    p = tmp_path / "labels.txt"
    p.write_text(text)
    with pytest.raises(UserError) as info:
        read_labels(p)
    msg = str(info.value)
    assert str(p) in msg and "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg


def test_unreadable_labels_files(tmp_path):
    from vision.utils.labels import read_labels
    from vision.utils.misc import UserError

    (tmp_path / "latin1.txt").write_bytes("BACKGROUND\nh\xe9las\n".encode("latin-1"))
    for p in (tmp_path / "missing.txt", tmp_path, tmp_path / "latin1.txt"):
        with pytest.raises(UserError, match=str(p)):
            read_labels(p)


# ----------------------------------------------------------------------------- through the scripts
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A plain state_dict (no class names inside: the labels file decides) and a test image."""
    import cv2
    import numpy as np

    d = tmp_path_factory.mktemp("labels_model")
    path = make_checkpoint(d / "plain.pth", CLASSES, plain=True)
    cv2.imwrite(str(d / "img.jpg"), np.full((48, 64, 3), 128, np.uint8))
    return path


def _labels(tmp_path, text: str):
    p = tmp_path / "labels.txt"
    p.write_text(text)
    return p


def _script_args(script: str, model, labels, tmp_path) -> list:
    if script == "run_ssd_example":
        return ["sq-ssd-lite", model, labels, model.parent / "img.jpg", "--resolution", "64",
                "--output-dir", tmp_path / "out"]
    if script == "eval_ssd":
        return ["--net", "sq-ssd-lite", "--trained-model", model, "--label_file", labels, "--resolution", "64",
                "--dataset", tmp_path, "--use-cuda", "false", "--eval-dir", tmp_path / "eval"]
    return ["--net", "sq-ssd-lite", "--input", model, "--labels", labels, "--resolution", "64",
            "--output", tmp_path / "m.onnx"]


SCRIPTS = ["run_ssd_example", "eval_ssd", "onnx_export"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("text,needles", [
    ("BACKGROUND\napple\napple\n", ("duplicate",)),
    ("BACKGROUND\napple\nbanana\ncherry\n", ("4 classes", "3")),   # does not fit the model's heads
    ("apple\n", ("2 classes", "3")),                              # BACKGROUND added: still one short
], ids=["duplicate", "one_too_many", "one_too_few"])
def test_scripts_refuse_bad_labels(script, text, needles, model, tmp_path, capsys):
    labels = _labels(tmp_path, text)
    rc, _, err = run_inproc(script, _script_args(script, model, labels, tmp_path), capsys)
    assert_clean_error(rc, err, [str(labels), *needles], 2, script)


@pytest.mark.parametrize("script", ["run_ssd_example", "onnx_export"])
def test_scripts_accept_blank_lines_spaces_and_missing_background(script, model, tmp_path, capsys):
    labels = _labels(tmp_path, "\napple  \n\n  banana\n\n")  # 2 names, no BACKGROUND, blank lines
    rc, out, err = run_inproc(script, _script_args(script, model, labels, tmp_path), capsys)
    assert rc == 0 and "Traceback" not in err, err
    if script == "onnx_export":  # what detectNet will read: BACKGROUND first, no blank line
        assert (tmp_path / "labels.txt").read_text() == "BACKGROUND\napple\nbanana\n"
        assert (tmp_path / "labels.txt.bak").read_text() == "\napple  \n\n  banana\n\n"
    else:
        assert (tmp_path / "out" / "img.jpg").is_file()
