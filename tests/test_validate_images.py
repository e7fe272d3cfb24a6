"""validate_image_files.py: bad files (truncated JPEG, zero-byte, text named .jpg,
truncated PNG) are found and quarantined/reported/deleted; good ones (RGB JPEG,
grayscale JPEG, PNG, JPEG with bytes after its end marker) stay."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import validate_image_files as vif
from tests.conftest import REPO, run_script as _run_script

GOOD = ["rgb.jpg", "gray.jpg", "pic.png", "sub/nested.jpg", "trailing.jpg"]
BAD = {"truncated.jpg": "truncated JPEG", "empty.jpg": "zero-byte", "notes.jpg": "OpenCV cannot decode",
       "half.png": "cannot decode"}


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "sub").mkdir()
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    (root / "rgb.jpg").write_bytes(_jpeg(rgb))
    (root / "gray.jpg").write_bytes(_jpeg(rgb[..., 0]))
    (root / "sub/nested.jpg").write_bytes(_jpeg(rgb[:20, :20]))
    (root / "trailing.jpg").write_bytes(_jpeg(rgb) + b"\x00" * 64)  # padding after EOI is fine
    ok, png = cv2.imencode(".png", rgb)
    (root / "pic.png").write_bytes(png.tobytes())
    full = _jpeg(rgb)
    (root / "truncated.jpg").write_bytes(full[: len(full) * 2 // 3])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not an image\n" * 20)
    (root / "half.png").write_bytes(png.tobytes()[: len(png) // 2])
    (root / ".hidden").write_text("ignored")
    return root


def run_script(*args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return _run_script("validate_image_files.py", *args, timeout=120, stdin=stdin)


def test_quarantine_default(tmp_path):
    d = make_folder(tmp_path / "val2017")
    r = run_script("--path", str(d), "--workers", "2")
    assert r.returncode == 1, r.stderr
    inv = tmp_path / "val2017_invalid"
    for name in BAD:
        assert not (d / name).exists() and (inv / name).exists(), name
    for name in GOOD:
        assert (d / name).exists(), name
    assert (d / ".hidden").exists()
    report = json.loads((inv / "report.json").read_text())
    reasons = {Path(e["path"]).name: e["reason"] for e in report["bad"]}
    assert set(reasons) == set(BAD)
    for name, why in BAD.items():
        assert why in reasons[name], (name, reasons[name])
    assert report["checked"] == len(GOOD) + len(BAD)
    # everything left is good now: exit 0, and the quarantine report is kept
    r = run_script("--path", str(d), "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert len(json.loads((inv / "report.json").read_text())["bad"]) == len(BAD)


def test_report_only_moves_nothing(tmp_path):
    d = make_folder(tmp_path / "imgs")
    rep = tmp_path / "r.json"
    r = run_script("--path", str(d), "--action", "report", "--report", str(rep), "--workers", "1")
    assert r.returncode == 1
    assert all((d / n).exists() for n in list(BAD) + GOOD)
    assert not (tmp_path / "imgs_invalid").exists()
    assert {Path(e["path"]).name for e in json.loads(rep.read_text())["bad"]} == set(BAD)
    assert "truncated.jpg" in r.stdout


def test_delete_action(tmp_path):
    d = make_folder(tmp_path / "imgs")
    r = run_script("--path", str(d), "--action", "delete", "--workers", "2")
    assert r.returncode == 1
    assert not any((d / n).exists() for n in BAD)
    assert all((d / n).exists() for n in GOOD)


def test_interactive_without_terminal_refuses(tmp_path):
    d = make_folder(tmp_path / "imgs")
    r = run_script("--path", str(d), "--action", "delete", "--interactive")
    assert r.returncode == 2 and "terminal" in r.stderr
    assert all((d / n).exists() for n in BAD), "nothing deleted"


def test_interactive_answer_no_keeps_files(tmp_path, monkeypatch):
    d = make_folder(tmp_path / "imgs")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    rc = vif.run_main(vif.main, ["--path", str(d), "--action", "delete", "--interactive", "--workers", "1"])
    assert rc == 1
    assert all((d / n).exists() for n in BAD)
    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    rc = vif.run_main(vif.main, ["--path", str(d), "--action", "delete", "--interactive", "--workers", "1"])
    assert rc == 1 and not any((d / n).exists() for n in BAD)


def test_all_good_exit_0(tmp_path):
    d = tmp_path / "ok"
    d.mkdir()
    (d / "a.jpg").write_bytes(_jpeg(np.zeros((8, 8, 3), np.uint8)))
    r = run_script("--path", str(d))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "ok_invalid").exists()


@pytest.mark.parametrize("args", [["--path", "/nonexistent/folder"], ["--path", ".", "--workers", "0"],
                                  ["--path", ".", "--action", "burn"]])
def test_bad_usage(args):
    assert run_script(*args).returncode == 2


def test_jpeg_problem_unit():
    data = _jpeg(np.full((16, 16, 3), 7, np.uint8))
    assert vif.jpeg_problem(data) is None
    assert "truncated" in vif.jpeg_problem(data[:-2])
    assert vif.jpeg_problem(data[:100]) is not None


def test_scan_many_files_bounded(tmp_path):
    """Many small files through the pool: all found, results are small tuples only."""
    d = tmp_path / "many"
    d.mkdir()
    blob = _jpeg(np.zeros((4, 4, 3), np.uint8))
    for i in range(400):
        (d / f"{i:05d}.jpg").write_bytes(blob if i % 100 else b"")
    files = list(vif.iter_files(d))
    bad = vif.scan(files, workers=2, progress=False)
    assert [Path(p).name for p, _ in bad] == ["00000.jpg", "00100.jpg", "00200.jpg", "00300.jpg"]


def _dataset_root(tmp_path: Path) -> Path:
    """A COCO-like root: annotations (json, txt, no extension) beside an image folder."""
    root = tmp_path / "coco-data"
    make_folder(root / "val2017")
    (root / "annotations").mkdir()
    (root / "annotations/instances_val2017.json").write_text('{"images": []}')
    (root / "labels.txt").write_text("BACKGROUND\ncat\n")
    (root / "README").write_text("not an image")
    (root / "val2017/notes.txt").write_text("not an image either")
    return root


NON_IMAGES = ["annotations/instances_val2017.json", "labels.txt", "README", "val2017/notes.txt"]


@pytest.mark.parametrize("action", ["delete", "quarantine"])
def test_dataset_root_never_touches_non_images(tmp_path, action):
    """Issue 12 case 1: --path at the dataset root deleted annotations/*.json (OpenCV cannot decode
    JSON). Only image extensions are ever judged; the rest is counted as skipped."""
    root = _dataset_root(tmp_path)
    before = {n: (root / n).read_bytes() for n in NON_IMAGES}
    r = run_script("--path", str(root), "--action", action, "--workers", "1")
    assert r.returncode == 1, r.stderr
    for n, data in before.items():
        assert (root / n).read_bytes() == data, f"{n} was touched"
    assert "4 file(s) not an image the loaders read, skipped" in r.stderr
    assert not any((root / "val2017" / n).exists() for n in BAD), "the bad images are still dealt with"
    if action == "quarantine":
        moved = {p.name for p in (tmp_path / "coco-data_invalid").rglob("*") if p.is_file()}
        assert moved == set(BAD) | {"report.json"}
        report = json.loads((tmp_path / "coco-data_invalid/report.json").read_text())
        assert report["skipped_not_images"] == 4


def test_only_non_images_is_a_failure_not_a_deletion(tmp_path):
    d = tmp_path / "ann"
    d.mkdir()
    (d / "a.json").write_text("{}")
    r = run_script("--path", str(d), "--action", "delete")
    assert r.returncode == 1 and "no image files" in r.stderr
    assert (d / "a.json").exists()


def test_ok_after_cleanup_exit_0_in_one_run(tmp_path):
    d = make_folder(tmp_path / "val2017")
    r = run_script("--path", str(d), "--workers", "1", "--ok-after-cleanup")
    assert r.returncode == 0, r.stderr
    assert not any((d / n).exists() for n in BAD)
    r = run_script("--path", str(d), "--workers", "1", "--action", "report", "--ok-after-cleanup",
                   "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, "nothing bad is left"
    (d / "late.jpg").write_bytes(b"")
    r = run_script("--path", str(d), "--workers", "1", "--action", "report", "--ok-after-cleanup")
    assert r.returncode == 1, "report only: the bad file is still there"


def test_wrong_kind_of_path(tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    r = run_script("--path", str(f))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr
    d = make_folder(tmp_path / "imgs")
    r = run_script("--path", str(d), "--report", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr
    assert all((d / n).exists() for n in BAD), "refused before touching anything"


def test_quarantine_folder_is_a_file(tmp_path):
    d = make_folder(tmp_path / "imgs")
    (tmp_path / "imgs_invalid").write_text("x")
    r = run_script("--path", str(d), "--workers", "1")
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr
    assert all((d / n).exists() for n in BAD)


@pytest.mark.parametrize("target", ["annotations/instances_val2017.json", "val2017/rgb.jpg", "val2017/new.JPG"])
def test_report_never_overwrites_an_input(tmp_path, target):
    """--report pointing at an annotation file or an image replaced it with the report (a second
    hostile trial): refused, exit 2, nothing touched."""
    root = _dataset_root(tmp_path)
    d = root / "val2017"
    (d / "rgb.jpg").write_bytes((d / "gray.jpg").read_bytes())
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    r = run_script("--path", str(d), "--action", "report", "--report", str(root / target), "--workers", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    # an earlier report of this script may be replaced
    rep = tmp_path / "r.json"
    for _ in range(2):
        r = run_script("--path", str(d), "--action", "report", "--report", str(rep), "--workers", "1")
        assert r.returncode == 1 and json.loads(rep.read_text())["bad"], r.stderr


def test_unwritable_report_and_root_path_are_one_line(tmp_path):
    d = make_folder(tmp_path / "imgs")
    under_file = tmp_path / "a.txt"
    under_file.write_text("x")
    for args in (["--report", str(under_file / "r.json")], ["--report", "/proc/nope/r.json"]):
        r = run_script("--path", str(d), "--action", "report", "--workers", "1", *args)
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr and "r.json" in r.stderr, r.stderr
    r = run_script("--path", "/", "--action", "report")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "root" in r.stderr, r.stderr


def test_failed_move_still_writes_the_report(tmp_path, monkeypatch, caplog):
    """A quarantine that fails half-way (disk full, read-only folder) must still say where the
    files moved so far went, and end in one line (exit 1), not a traceback."""
    d = make_folder(tmp_path / "imgs")
    real_move = vif.shutil.move
    calls = []

    def move(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", dst)
        return real_move(src, dst)

    monkeypatch.setattr(vif.shutil, "move", move)
    with pytest.raises(vif.Failure, match="No space left"):
        vif.main(["--path", str(d), "--workers", "1"])
    report = json.loads((tmp_path / "imgs_invalid/report.json").read_text())
    moved = [e for e in report["bad"] if e["action"] == "quarantined"]
    assert len(moved) == 1 and Path(moved[0]["moved_to"]).is_file()
    assert sum(e["action"] == "reported" for e in report["bad"]) == len(BAD) - 1


def test_report_keeps_a_file_quarantined_twice_under_one_name(tmp_path):
    """The second zero-byte empty.jpg goes to empty.jpg.1; the report must still list the first."""
    d = make_folder(tmp_path / "imgs")
    assert run_script("--path", str(d), "--workers", "1").returncode == 1
    (d / "empty.jpg").write_bytes(b"")
    assert run_script("--path", str(d), "--workers", "1").returncode == 1
    inv = tmp_path / "imgs_invalid"
    listed = {Path(e["moved_to"]).name for e in json.loads((inv / "report.json").read_text())["bad"]}
    assert listed == {p.name for p in inv.iterdir() if p.name != "report.json"}
    assert {"empty.jpg", "empty.jpg.1"} <= listed


def test_earlier_quarantine_inside_is_not_judged_again(tmp_path):
    """Checking the dataset root after a split: the split's _invalid folder is left alone."""
    root = _dataset_root(tmp_path)
    assert run_script("--path", str(root / "val2017"), "--workers", "1").returncode == 1
    inv = root / "val2017_invalid"
    before = sorted(p.name for p in inv.iterdir())
    r = run_script("--path", str(root), "--action", "delete", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in inv.iterdir()) == before


def test_broken_symlink_is_bad_not_ignored(tmp_path):
    """A broken link named .jpg was neither checked nor counted: 'all readable', and training then
    failed on it. It is a bad file now: quarantined (the link moves, its target is not followed)."""
    d = make_folder(tmp_path / "imgs")
    for n in BAD:
        (d / n).unlink()
    (d / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (d / "ok.jpg").symlink_to(d / "rgb.jpg")
    r = run_script("--path", str(d), "--workers", "1")
    assert r.returncode == 1 and "broken symbolic link" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "imgs_invalid/gone.jpg").is_symlink() and not (d / "gone.jpg").is_symlink()
    assert (d / "ok.jpg").is_symlink() and (d / "rgb.jpg").is_file()
    (d / "gone.jpg").symlink_to(tmp_path / "elsewhere.jpg")  # a second one under the same name
    assert run_script("--path", str(d), "--workers", "1").returncode == 1
    assert (tmp_path / "imgs_invalid/gone.jpg").is_symlink() and (tmp_path / "imgs_invalid/gone.jpg.1").is_symlink()


def test_killed_quarantine_leaves_no_unlisted_file(tmp_path):
    """SIGKILL after some moves: the report was written only at the end, so the quarantined files
    were listed nowhere (and the next run's report did not know them either)."""
    d = make_folder(tmp_path / "imgs")
    code = ("import sys, shutil, os, signal; sys.argv = ['v', '--path', sys.argv[1], '--workers', '1']\n"
            "import validate_image_files as v\n"
            "real = shutil.move; n = []\n"
            "def move(a, b):\n"
            "    real(a, b); n.append(a)\n"
            "    if len(n) == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
            "v.shutil.move = move\n"
            "sys.exit(v.run_main(v.main))\n")
    r = subprocess.run([sys.executable, "-c", code, str(d)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    assert run_script("--path", str(d), "--workers", "1").returncode == 1
    inv = tmp_path / "imgs_invalid"
    report = json.loads((inv / "report.json").read_text())
    listed = {Path(e["moved_to"]).name for e in report["bad"]}
    assert listed == {p.name for p in inv.rglob("*") if p.is_file() and p.name != "report.json"} == set(BAD)
    assert all(e["action"] == "quarantined" for e in report["bad"])


def test_empty_path_is_not_the_current_folder(tmp_path):
    """--path "$UNSET" checked (and with --action delete, cleaned) the current folder."""
    r = subprocess.run([sys.executable, str(REPO / "validate_image_files.py"), "--path", "", "--action", "delete"],
                       cwd=make_folder(tmp_path / "imgs"), capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "--path is empty" in r.stderr, r.stderr
    assert all((tmp_path / "imgs" / n).exists() for n in BAD)


def test_someone_elses_report_json_in_the_invalid_folder_is_kept(tmp_path):
    """photos_invalid/ was the user's own folder with a report.json of theirs: it was replaced."""
    d = make_folder(tmp_path / "photos")
    (tmp_path / "photos_invalid").mkdir()
    (tmp_path / "photos_invalid/report.json").write_text('{"my": "notes"}')
    r = run_script("--path", str(d), "--workers", "1")
    assert r.returncode == 2 and "not a report of this script" in r.stderr, r.stderr
    assert (tmp_path / "photos_invalid/report.json").read_text() == '{"my": "notes"}'
    assert all((d / n).exists() for n in BAD), "refused before moving anything"
