"""Crash safety of coco_downloader.py (against a local HTTP server): a SIGKILL while downloading or
unzipping, then a plain re-run. The re-run must finish the job, download no completed file again
(a partial one resumes with a Range request), and a folder is only ever marked extracted once it
is complete. The kill moments are exact (crash_runner hooks): mid-download, a complete download
not yet renamed, mid-extraction, the folder moved into place but not marked, marked but the zip
not yet deleted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from crash_runner import REPO, Child

from tests.http_server import http_server  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.slow

VAL, ANN = "zips/val2017.zip", "annotations/annotations_trainval2017.zip"
FAST = ["--retry-backoff", "0.01", "--timeout", "20", "--splits", "val", "annotations"]


def serve(www: Path) -> dict[str, bytes]:
    """A tiny COCO mirror; one val image is 3 MB of noise so a write can be stopped half-way."""
    files = {"val2017/000000000001.jpg": b"jpg-1", "val2017/000000000002.jpg": os.urandom(3_000_000),
             "val2017/000000000003.jpg": b"jpg-3",
             "annotations/instances_val2017.json": b'{"images": []}',
             "annotations/instances_train2017.json": os.urandom(2_500_000).hex().encode()[:2_500_000]}
    for rel, prefix in ((VAL, "val2017/"), (ANN, "annotations/")):
        (www / rel).parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(www / rel, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in files.items():
                if name.startswith(prefix):
                    zf.writestr(name, data)
    return files


def download(out: Path, server) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "coco_downloader.py", "--path", str(out), "--base-url", server.url(),
                           *FAST], cwd=REPO, capture_output=True, text=True, timeout=120)


def gets(server, rel: str, since: int = 0) -> list[str | None]:
    """The Range headers of the GETs of ``rel`` (None: a whole-file download) after request ``since``."""
    return [rng for m, p, rng in server.requests[since:] if m == "GET" and p == "/" + rel]


def check_complete(out: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (out / name).read_bytes() == data, name
    for z in ("val2017.zip", "annotations_trainval2017.zip"):
        assert (out / f".extracted-{z}").is_file(), z
        assert not (out / z).exists(), f"{z} should be deleted after extraction"
    left = sorted(p.name for p in out.iterdir() if p.name.endswith((".part", ".tmp")) or p.name.startswith(".extract-"))
    assert not left, f"left behind: {left}"


def check_marks_are_true(out: Path, files: dict[str, bytes]) -> None:
    """Right after the kill: whatever is marked extracted is complete."""
    for z, prefix in (("val2017.zip", "val2017/"), ("annotations_trainval2017.zip", "annotations/")):
        if (out / f".extracted-{z}").exists():
            for name, data in files.items():
                if name.startswith(prefix):
                    assert (out / name).is_file() and (out / name).read_bytes() == data, \
                        f"{z} marked done, {name} is not"


def test_kill_mid_download_resumes_and_keeps_finished_files(http_server, tmp_path):
    files = serve(http_server.root)
    out = tmp_path / "coco"
    child = Child("coco_downloader.py", ["--path", out, "--base-url", http_server.url(), *FAST, "--workers", "2"],
                  {"CRASH_HOOK_WRITE": r"^annotations_trainval2017\.zip\.part$",
                   "CRASH_HOOK_WRITE_BYTES": "1000000"})
    try:
        child.wait_for("CRASH-HOOK write", timeout=60)
        deadline = time.monotonic() + 30
        while not (out / "val2017.zip").exists():  # the other download completes meanwhile
            assert time.monotonic() < deadline, child.text
            time.sleep(0.05)
    finally:
        child.kill()
    part = out / "annotations_trainval2017.zip.part"
    have = part.stat().st_size
    assert 1_000_000 <= have < (http_server.root / ANN).stat().st_size
    assert not list(out.glob(".extracted-*"))
    before = len(http_server.requests)

    r = download(out, http_server)
    assert r.returncode == 0, r.stderr
    check_complete(out, files)
    assert gets(http_server, VAL, before) == [], "the finished val2017.zip was downloaded again"
    assert gets(http_server, ANN, before) == [f"bytes={have}-"], "the partial download did not resume"


@pytest.mark.parametrize("moment, hooks", [
    ("download complete, .part not yet renamed", {"CRASH_HOOK_REPLACE": r"^val2017\.zip$"}),
    ("half-way through unzipping a member", {"CRASH_HOOK_WRITE": r"^000000000002\.jpg$",
                                             "CRASH_HOOK_WRITE_BYTES": "1000000"}),
    ("folder moved into place, not marked extracted", {"CRASH_HOOK_REPLACE": r"^\.extracted-val2017\.zip$"}),
    ("marked extracted, zip not yet deleted", {"CRASH_HOOK_UNLINK": r"^val2017\.zip$"}),
])
def test_kill_during_unzip_is_redone_without_downloading_again(http_server, tmp_path, moment, hooks):
    files = serve(http_server.root)
    out = tmp_path / "coco"
    child = Child("coco_downloader.py", ["--path", out, "--base-url", http_server.url(), *FAST], hooks)
    try:
        child.wait_for("CRASH-HOOK", timeout=60)
    finally:
        child.kill()
    check_marks_are_true(out, files)
    before = len(http_server.requests)

    r = download(out, http_server)
    assert r.returncode == 0, (moment, r.stderr)
    check_complete(out, files)
    assert gets(http_server, VAL, before) == [], f"{moment}: val2017.zip was downloaded again"


def test_full_disk_while_unzipping_is_one_error_line_and_rerun_finishes(http_server, tmp_path):
    files = serve(http_server.root)
    out = tmp_path / "coco"
    child = Child("coco_downloader.py", ["--path", out, "--base-url", http_server.url(), *FAST],
                  {"CRASH_HOOK_FAIL": r"^000000000002\.jpg$", "CRASH_HOOK_FAIL_AFTER": "1000000"})
    assert child.wait(timeout=120) == 1, child.text
    assert "Traceback" not in child.text, child.text
    assert "No space left on device" in child.text and "val2017.zip" in child.text, child.text
    assert not (out / ".extracted-val2017.zip").exists() and not (out / "val2017").exists()
    assert not list(out.glob(".extract-*")), "the half-extracted temp folder was left behind"
    assert (out / "val2017.zip").is_file(), "the downloaded zip must be kept for the next run"
    before = len(http_server.requests)
    r = download(out, http_server)  # space is back
    assert r.returncode == 0, r.stderr
    check_complete(out, files)
    assert gets(http_server, VAL, before) == []
