"""Bad usage of any script is one line, ``SCRIPT.py: error: WHAT (see --help)``, exit 2: no usage block.

argparse prints the whole usage (29 lines for train_ssd.py) before its error; the shared
``vision.utils.misc.ArgumentParser`` replaces that with the one line, for every script.
"""
from __future__ import annotations

import importlib

import pytest

from hostile import run_subprocess  # noqa: F401  (also puts the repository on sys.path)

SCRIPTS = ["train_ssd", "eval_ssd", "onnx_export", "run_ssd_example", "run_ssd_live_demo", "coco_downloader",
           "open_images_downloader", "validate_image_files", "fix_coco_annotations", "dataset_report"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("argv", [["--no-such-flag"], ["--log-level", "loud"]], ids=["unknown", "bad-choice"])
def test_bad_usage_is_one_line(script, argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(script)
    with pytest.raises(SystemExit) as info:
        mod.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ": error: " in lines[0] and lines[0].endswith("(see --help)"), err  # prog: sys.argv[0]
    assert "usage:" not in err


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_still_shows_usage(script, capsys):
    mod = importlib.import_module(script)
    with pytest.raises(SystemExit) as info:
        mod.build_parser().parse_args(["--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.slow
def test_subprocess_one_line():
    res = run_subprocess("train_ssd", ["--batch-size", "zero"], timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "train_ssd.py: error: argument --batch-size/--batch_size: expected int, got 'zero' (see --help)"] \
        or len(res.stderr.strip().splitlines()) == 1, res.stderr
