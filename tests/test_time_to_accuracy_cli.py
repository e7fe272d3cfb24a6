"""bench/time_to_accuracy.py's usage errors: one line, exit 2, no traceback."""
from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import run_script


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr and lines, stderr
    return lines[-1]


def test_out_that_is_a_file(tmp_path) -> None:
    a_file = tmp_path / "result.txt"
    a_file.write_text("x")
    r = run_script("bench/time_to_accuracy.py", "--out", a_file, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(a_file) in r.stderr and "is a file" in r.stderr
    assert a_file.read_text() == "x"


def test_budget_that_ends_during_start_up_keeps_the_log(tmp_path) -> None:
    """A budget shorter than train_ssd.py's start-up: a clear line (not "no checkpoint was
    written"), and the training process's output log is kept and named."""
    r = run_script("bench/time_to_accuracy.py", "--minutes", "0.001", "--train-images", "2", "--val-images", "1",
                   "--log-level", "error", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    line = _one_line(r.stderr)
    assert "the budget (0.06 s) ended before training started" in line and "raise --minutes" in line, line
    kept = Path(re.search(r"training output: (\S+)\)", line).group(1))
    try:
        assert kept.is_file()  # copied out of the temporary run folder, which is gone
    finally:
        kept.unlink(missing_ok=True)
    out = tmp_path / "run"
    r = run_script("bench/time_to_accuracy.py", "--minutes", "0.001", "--train-images", "2", "--val-images", "1",
                   "--out", out, "--no-fit-priors", "--log-level", "error", cwd=tmp_path)
    assert r.returncode == 2 and f"training output: {out / 'calibration.log'})" in _one_line(r.stderr), r.stderr
    assert (out / "calibration.log").is_file()
    assert not (out / "priors.json").exists()  # --no-fit-priors: the net's default priors


def test_style_help_names_its_real_default(tmp_path) -> None:
    r = run_script("bench/time_to_accuracy.py", "--help", cwd=tmp_path)
    assert r.returncode == 0
    style = " ".join(r.stdout.split("--style {shapes,scenes}\n", 1)[1].split("--seed")[0].split())
    assert "(default: None)" not in style and "(default: shapes)" in style, style


def test_train_flags_in_the_equals_form_are_checked(tmp_path) -> None:
    """`--flag=value` after `--` is read like `--flag value`: a missing --priors file and a --epochs the
    benchmark sets are refused up front (exit 2, one line), before any data is made."""
    r = run_script("bench/time_to_accuracy.py", "--out", tmp_path / "o", "--", f"--priors={tmp_path / 'nope.json'}",
                   cwd=tmp_path)
    assert r.returncode == 2 and "--priors" in _one_line(r.stderr) and "file not found" in _one_line(r.stderr)
    r = run_script("bench/time_to_accuracy.py", "--out", tmp_path / "o", "--", "--epochs=3", cwd=tmp_path)
    assert r.returncode == 2 and "--epochs is set by this benchmark" in _one_line(r.stderr), r.stderr
    assert not (tmp_path / "o" / "data-shapes").exists()
