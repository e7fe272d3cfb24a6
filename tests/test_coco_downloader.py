"""coco_downloader.py and vision/utils/download.py against a local HTTP server:
download, resume with Range after a dropped connection, retry after 5xx, 404,
size mismatch, unsafe/corrupt zips, disk-space refusal, no-op re-run."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import coco_downloader
from tests.conftest import REPO, run_script as _run_script
from tests.http_server import http_server  # noqa: F401  (pytest fixture)
from vision.utils import download as dl
from vision.utils.misc import run_main

FAST = ["--retry-backoff", "0.01", "--timeout", "10"]


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def serve_coco(www: Path) -> dict[str, bytes]:
    """A tiny COCO mirror: val images, a big-ish incompressible file, and the annotation zip."""
    big = os.urandom(300_000)
    make_zip(www / "zips/val2017.zip", {"val2017/000000000001.jpg": b"jpg-1", "val2017/000000000002.jpg": big})
    make_zip(www / "annotations/annotations_trainval2017.zip",
             {"annotations/instances_val2017.json": b'{"images": []}',
              "annotations/instances_train2017.json": b'{"images": []}'})
    make_zip(www / "annotations/image_info_test2017.zip",
             {"annotations/image_info_test-dev2017.json": b"{}"})
    return {"big": big}


def run_script(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return _run_script("coco_downloader.py", *args, timeout=timeout)


# ----------------------------------------------------------------------------- script


def test_download_extract_then_rerun_is_noop(http_server, tmp_path):
    data = serve_coco(http_server.root)
    out = tmp_path / "coco"
    r = run_script("--path", str(out), "--splits", "val", "annotations", "test-info",
                   "--base-url", http_server.url(), *FAST)
    assert r.returncode == 0, r.stderr
    assert (out / "val2017/000000000001.jpg").read_bytes() == b"jpg-1"
    assert (out / "val2017/000000000002.jpg").read_bytes() == data["big"]
    # both annotation zips contain annotations/: merged, not clobbered
    assert (out / "annotations/instances_train2017.json").is_file()
    assert (out / "annotations/image_info_test-dev2017.json").is_file()
    for z in ("val2017.zip", "annotations_trainval2017.zip", "image_info_test2017.zip"):
        assert dl.is_extracted(out, z)
        assert not (out / z).exists(), "zips are deleted after extraction by default"
    assert not list(out.glob("*.part")) and not list(out.glob(".extract-*"))

    n_requests = len(http_server.requests)
    r = run_script("--path", str(out), "--splits", "val", "annotations", "test-info",
                   "--base-url", http_server.url(), *FAST)
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stderr
    assert len(http_server.requests) == n_requests, "a re-run after success must not touch the network"


def test_retry_after_500_and_resume_after_drop(http_server, tmp_path):
    data = serve_coco(http_server.root)
    http_server.fail("zips/val2017.zip", status=500, times=2)
    http_server.drop("zips/val2017.zip", after=50_000, times=1)
    out = tmp_path / "coco"
    r = run_script("--path", str(out), "--splits", "val", "--keep-zips", "--base-url", http_server.url(), *FAST)
    assert r.returncode == 0, r.stderr
    assert (out / "val2017/000000000002.jpg").read_bytes() == data["big"]
    gets = [rng for m, p, rng in http_server.requests if m == "GET" and p == "/zips/val2017.zip"]
    assert len(gets) == 4  # 500, 500, dropped after 50,000 bytes, resumed
    assert gets[-1] == "bytes=50000-", "the last attempt must resume with a Range request"
    assert (out / "val2017.zip").read_bytes() == (http_server.root / "zips/val2017.zip").read_bytes()


def test_404_is_a_clear_error(http_server, tmp_path):
    serve_coco(http_server.root)
    http_server.status("zips/val2017.zip", 404)
    r = run_script("--path", str(tmp_path / "c"), "--splits", "val", "annotations",
                   "--base-url", http_server.url(), *FAST)
    assert r.returncode == 1
    assert http_server.url("zips/val2017.zip") in r.stderr and "404" in r.stderr
    assert "Traceback" not in r.stderr
    # the other archive still went through
    assert dl.is_extracted(tmp_path / "c", "annotations_trainval2017.zip")


def test_retries_used_up_keeps_part_for_later(http_server, tmp_path):
    serve_coco(http_server.root)
    http_server.fail("zips/val2017.zip", status=503, times=3)
    r = run_script("--path", str(tmp_path / "c"), "--splits", "val", "--retries", "1",
                   "--base-url", http_server.url(), *FAST)
    assert r.returncode == 1
    assert "giving up" in r.stderr and "503" in r.stderr
    r = run_script("--path", str(tmp_path / "c"), "--splits", "val", "--retries", "1",
                   "--base-url", http_server.url(), *FAST)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args", [["--base-url", "images.cocodataset.org"], ["--splits", "bogus"],
                                  ["--workers", "0"], ["--retries", "-1"], ["--path", ""]])
def test_bad_usage_exit_2(args, tmp_path):
    r = run_script("--path", str(tmp_path / "c"), *args)
    assert r.returncode == 2, r.stderr


def test_no_download_unzips_what_is_there(tmp_path):
    out = tmp_path / "c"
    make_zip(out / "val2017.zip", {"val2017/a.jpg": b"a"})
    r = run_script("--path", str(out), "--splits", "val", "annotations", "--no-download")
    assert r.returncode == 1, "annotations zip is missing: that is a failure"
    assert "annotations_trainval2017.zip not found" in r.stderr
    assert (out / "val2017/a.jpg").read_bytes() == b"a"
    assert not (out / "val2017.zip").exists()


def test_corrupt_zip_names_the_file(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "val2017.zip").write_bytes(b"this is not a zip at all" * 10)
    r = run_script("--path", str(out), "--splits", "val", "--no-download")
    assert r.returncode == 1
    assert str(out / "val2017.zip") in r.stderr and "Traceback" not in r.stderr
    assert not dl.is_extracted(out, "val2017.zip")


def test_disk_space_refusal_with_numbers(http_server, tmp_path, monkeypatch, capsys):
    serve_coco(http_server.root)
    monkeypatch.setattr(dl, "free_bytes", lambda path: 1000)
    rc = run_main(coco_downloader.main, ["--path", str(tmp_path / "c"), "--splits", "val",
                                         "--base-url", http_server.url(), *FAST])
    assert rc == 1
    msg = capsys.readouterr().err
    assert "not enough free disk space" in msg and "1000 B free" in msg and "need" in msg
    assert http_server.count("GET", "zips/val2017.zip") == 0, "must refuse before downloading"


# ----------------------------------------------------------------------------- library


def test_download_interrupted_then_resumed_in_next_run(http_server, tmp_path):
    blob = os.urandom(200_000)
    (http_server.root / "f.bin").write_bytes(blob)
    http_server.drop("f.bin", after=70_000)
    dest = tmp_path / "f.bin"
    no_retry = dl.RetryPolicy(retries=0, backoff=0.0, timeout=10)
    with pytest.raises(dl.DownloadError) as e:
        dl.download_file(http_server.url("f.bin"), dest, retry=no_retry, progress=False)
    assert http_server.url("f.bin") in str(e.value) and not e.value.permanent
    assert not dest.exists(), "never a partial file under the final name"
    assert dl.part_path(dest).stat().st_size == 70_000
    dl.download_file(http_server.url("f.bin"), dest, retry=no_retry, progress=False)
    assert dest.read_bytes() == blob and not dl.part_path(dest).exists()
    assert http_server.requests[-1] == ("GET", "/f.bin", "bytes=70000-")


def test_resume_when_server_ignores_range(http_server, tmp_path):
    blob = os.urandom(50_000)
    (http_server.root / "f.bin").write_bytes(blob)
    http_server.ignore_range = True
    dest = tmp_path / "f.bin"
    dl.part_path(dest).write_bytes(b"x" * 1000)  # stale partial content
    dl.download_file(http_server.url("f.bin"), dest, retry=dl.RetryPolicy(retries=0), progress=False)
    assert dest.read_bytes() == blob


def test_complete_part_is_finished_without_body(http_server, tmp_path):
    blob = os.urandom(10_000)
    (http_server.root / "f.bin").write_bytes(blob)
    dest = tmp_path / "f.bin"
    dl.part_path(dest).write_bytes(blob)  # killed between the last byte and the rename
    dl.download_file(http_server.url("f.bin"), dest, retry=dl.RetryPolicy(retries=0), progress=False)
    assert dest.read_bytes() == blob
    assert http_server.requests[-1][2] == "bytes=10000-"  # answered 416 -> already complete


def test_size_mismatch_is_an_error(http_server, tmp_path):
    (http_server.root / "f.bin").write_bytes(os.urandom(5000))
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.DownloadError, match="size mismatch") as e:
        dl.download_file(http_server.url("f.bin"), dest, expected_size=4000,
                         retry=dl.RetryPolicy(retries=0), progress=False)
    assert http_server.url("f.bin") in str(e.value)
    assert not dest.exists() and not dl.part_path(dest).exists()


def test_remote_size_and_404(http_server):
    (http_server.root / "f.bin").write_bytes(b"12345")
    assert dl.remote_size(http_server.url("f.bin")) == 5
    with pytest.raises(dl.DownloadError, match="404") as e:
        dl.remote_size(http_server.url("missing.bin"), retry=dl.RetryPolicy(retries=0))
    assert e.value.status == 404 and e.value.permanent


def _symlink_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("val2017/link.jpg")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")


@pytest.mark.parametrize("member, why", [("../evil.txt", "escapes"), ("val2017/../../evil.txt", "escapes"),
                                         ("/tmp/evil_abs.txt", "absolute"), ("C:/evil.txt", "absolute"),
                                         (None, "symbolic link")])
def test_unsafe_zip_members_refused(tmp_path, member, why):
    target = tmp_path / "t" / "coco"
    z = tmp_path / "bad.zip"
    if member is None:
        _symlink_zip(z)
    else:
        make_zip(z, {"val2017/ok.jpg": b"ok", member: b"pwned"})
    with pytest.raises(dl.ArchiveError, match=why) as e:
        dl.extract_zip(z, target, progress=False)
    assert str(z) in str(e.value)
    assert not (tmp_path / "t" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (target / "val2017").exists(), "an unsafe archive is refused whole"
    assert not dl.is_extracted(target, "bad.zip")


def test_unsafe_zip_via_script(tmp_path):
    out = tmp_path / "c"
    make_zip(out / "val2017.zip", {"../escape.txt": b"x"})
    r = run_script("--path", str(out), "--splits", "val", "--no-download")
    assert r.returncode == 1 and "unsafe" in r.stderr
    assert not (tmp_path / "escape.txt").exists()


def test_corrupt_member_detected(tmp_path):
    z = make_zip(tmp_path / "v.zip", {"val2017/a.bin": os.urandom(20_000)})
    raw = bytearray(z.read_bytes())
    raw[200:260] = bytes(60)  # damage the stored data (CRC mismatch / inflate error)
    z.write_bytes(bytes(raw))
    with pytest.raises(dl.ArchiveError, match="corrupt") as e:
        dl.extract_zip(z, tmp_path / "out", progress=False)
    assert str(z) in str(e.value)
    assert not (tmp_path / "out" / "val2017").exists()


def test_truncated_zip_detected(tmp_path):
    z = make_zip(tmp_path / "v.zip", {"val2017/a.bin": os.urandom(20_000)})
    z.write_bytes(z.read_bytes()[:10_000])
    with pytest.raises(dl.ArchiveError, match="not a valid zip"):
        dl.extract_zip(z, tmp_path / "out", progress=False)


def test_killed_extraction_is_not_marked_done(tmp_path, monkeypatch):
    z = make_zip(tmp_path / "v.zip", {f"val2017/{i}.jpg": b"x" * 100 for i in range(5)})
    target = tmp_path / "out"
    calls = {"n": 0}
    real = dl.shutil.copyfileobj

    def dying_copy(src, dst, length=0):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stands in for a kill mid-extraction
        return real(src, dst, length)

    monkeypatch.setattr(dl.shutil, "copyfileobj", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        dl.extract_zip(z, target, progress=False)
    assert not (target / "val2017").exists(), "no half folder in place"
    assert not dl.is_extracted(target, "v.zip")
    monkeypatch.setattr(dl.shutil, "copyfileobj", real)
    dl.extract_zip(z, target, progress=False)
    assert sorted(p.name for p in (target / "val2017").iterdir()) == [f"{i}.jpg" for i in range(5)]
    assert dl.is_extracted(target, "v.zip") and not list(target.glob(".extract-*"))


# ----------------------------------------------------------------------------- issue 12: hostile servers and state


def test_archive_cannot_forge_a_marker(http_server, tmp_path):
    """A val2017.zip holding '.extracted-train2017.zip' made a later run skip train2017."""
    make_zip(http_server.root / "zips/val2017.zip",
             {"val2017/1.jpg": b"x", ".extracted-train2017.zip": b'{"archive": "train2017.zip"}'})
    out = tmp_path / "coco"
    r = run_script("--path", str(out), "--splits", "val", "--base-url", http_server.url(), *FAST)
    assert r.returncode == 1 and "state file" in r.stderr, r.stderr
    assert not (out / ".extracted-train2017.zip").exists() and not dl.is_extracted(out, "train2017.zip")


@pytest.mark.parametrize("name", [".extracted-x.zip", ".validated-val2017", ".download.lock", ".extract-a/b"])
def test_state_names_refused_in_archives(tmp_path, name):
    z = make_zip(tmp_path / "a.zip", {name: b"x", "ok/a": b"y"})
    with pytest.raises(dl.ArchiveError, match="state file"):
        dl.extract_zip(z, tmp_path / "out", progress=False)


@pytest.mark.parametrize("name", ["annotations/.fix_coco_annotations.commit.json",
                                  "annotations/.instances_val2017.json.pending"])
def test_tool_journals_refused_in_archives(tmp_path, name):
    """An annotations zip could plant the fixer's commit journal (or a pending file) in
    annotations/: the next fix_coco_annotations.py run would act on it. Refused, nothing extracted."""
    z = make_zip(tmp_path / "a.zip", {name: b"{}", "annotations/instances_val2017.json": b"{}"})
    with pytest.raises(dl.ArchiveError, match="journal"):
        dl.extract_zip(z, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "annotations").exists()


def test_marker_without_its_folder_does_not_count(http_server, tmp_path):
    """`rm -rf coco/val2017` then a rerun: extracted again, not 'already extracted'."""
    serve_coco(http_server.root)
    out = tmp_path / "coco"
    args = ("--path", str(out), "--splits", "val", "--base-url", http_server.url(), *FAST)
    assert run_script(*args).returncode == 0
    import shutil
    shutil.rmtree(out / "val2017")
    r = run_script(*args)
    assert r.returncode == 0, r.stderr
    assert "is gone" in r.stderr and "nothing to do" not in r.stderr
    assert (out / "val2017/000000000001.jpg").read_bytes() == b"jpg-1"


def test_html_answer_is_a_failure_and_nothing_is_kept(http_server, tmp_path):
    serve_coco(http_server.root)
    http_server.html("zips/val2017.zip", times=1)
    out = tmp_path / "coco"
    args = ("--path", str(out), "--splits", "val", "--base-url", http_server.url(), *FAST)
    r = run_script(*args)
    assert r.returncode == 1 and "HTML page" in r.stderr, r.stderr
    assert not (out / "val2017.zip").exists() and not dl.part_path(out / "val2017.zip").exists()
    r = run_script(*args)  # the mirror is healthy again
    assert r.returncode == 0, r.stderr
    assert (out / "val2017/000000000001.jpg").exists()


@pytest.mark.parametrize("bad", ["html", "truncated"])
def test_bad_file_under_final_name_is_moved_aside_then_fetched(http_server, tmp_path, bad):
    """Used to say 'not a valid zip ... delete it' on every rerun, forever."""
    serve_coco(http_server.root)
    out = tmp_path / "coco"
    out.mkdir()
    good = (http_server.root / "zips/val2017.zip").read_bytes()
    (out / "val2017.zip").write_bytes(b"<html>error</html>" if bad == "html" else good[: len(good) // 2])
    args = ("--path", str(out), "--splits", "val", "--base-url", http_server.url(), *FAST)
    r = run_script(*args)
    assert r.returncode == 1 and "val2017.zip.bad" in r.stderr and "run again" in r.stderr, r.stderr
    assert not (out / "val2017.zip").exists() and (out / "val2017.zip.bad").exists()
    r = run_script(*args)
    assert r.returncode == 0, r.stderr
    assert (out / "val2017/000000000001.jpg").read_bytes() == b"jpg-1"


def test_short_content_length_zip_is_not_kept(http_server, tmp_path):
    serve_coco(http_server.root)
    size = (http_server.root / "zips/val2017.zip").stat().st_size
    dest = tmp_path / "val2017.zip"
    http_server.short("zips/val2017.zip", length=size // 2)
    with pytest.raises(dl.DownloadError, match="damaged"):
        dl.download_file(http_server.url("zips/val2017.zip"), dest, retry=dl.RetryPolicy(retries=0),
                         progress=False, verify=dl.zip_problem)
    assert not dest.exists() and not dl.part_path(dest).exists()


def test_unknown_length_needs_a_check(http_server, tmp_path):
    """A body without Content-Length cut by a clean close looked complete. Now: without a verify
    it is refused; with one, a cut body is retried and the result is the server's file."""
    blob = os.urandom(40_000)
    (http_server.root / "f.bin").write_bytes(blob)
    http_server.cut("f.bin", after=None, times=1)
    with pytest.raises(dl.DownloadError, match="did not say how long"):
        dl.download_file(http_server.url("f.bin"), tmp_path / "a.bin", retry=dl.RetryPolicy(retries=0),
                         progress=False)
    assert not (tmp_path / "a.bin").exists()
    z = make_zip(http_server.root / "z.zip", {"a": os.urandom(30_000)})
    http_server.cut("z.zip", after=20_000, times=1)
    got = dl.download_file(http_server.url("z.zip"), tmp_path / "z.zip", progress=False, verify=dl.zip_problem,
                           retry=dl.RetryPolicy(retries=2, backoff=0.01))
    assert got.read_bytes() == z.read_bytes()


def test_trickle_fails_by_the_minimum_rate(http_server, tmp_path):
    (http_server.root / "f.bin").write_bytes(os.urandom(1000))
    http_server.trickle("f.bin", interval=0.2)
    with pytest.raises(dl.DownloadError, match="too slow"):
        dl.download_file(http_server.url("f.bin"), tmp_path / "f.bin", progress=False,
                         retry=dl.RetryPolicy(retries=0, timeout=1.0, min_rate=100))


def test_second_downloader_on_the_same_folder_is_refused(http_server, tmp_path):
    serve_coco(http_server.root)
    out = tmp_path / "coco"
    out.mkdir()
    with dl.folder_lock(out):
        r = run_script("--path", str(out), "--splits", "val", "--base-url", http_server.url(), *FAST)
    assert r.returncode == 1 and "another download is running" in r.stderr, r.stderr
    assert not list(out.glob("*.part"))


def test_ctrl_c_during_a_stalled_connection_ends_at_once(http_server, tmp_path):
    """Waited out --timeout (60 s), then logged 'retry 1/8'."""
    import signal
    import time
    serve_coco(http_server.root)
    http_server.stall("zips/val2017.zip", after=1000)
    out = tmp_path / "coco"
    p = subprocess.Popen([sys.executable, "coco_downloader.py", "--path", str(out), "--splits", "val",
                          "--base-url", http_server.url(), "--timeout", "60"], cwd=REPO,
                         stderr=subprocess.PIPE, text=True)
    part = dl.part_path(out / "val2017.zip")
    deadline = time.monotonic() + 30
    while not part.exists() and time.monotonic() < deadline:  # the body is being read (then stalls)
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=20)  # far below the 60 s timeout it used to wait out
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "retry" not in err and "Traceback" not in err, err
    assert part.stat().st_size >= 1000, "the partial download is kept"


_STUCK = """
import sys, time, logging
sys.path.insert(0, {repo!r})
from vision.utils import download as dl
logging.basicConfig(level=logging.INFO)
print("ready", flush=True)
dl.run_parallel([1], lambda t, stop: time.sleep(60), 1, lambda t, e: None, grace={grace})
"""


@pytest.mark.parametrize("grace, signals", [(60.0, 2), (0.5, 1)])
def test_a_ctrl_c_is_never_ignored(grace, signals):
    """A worker that cannot be stopped: a second Ctrl-C (or the grace period) ends the process."""
    import signal
    import time
    p = subprocess.Popen([sys.executable, "-c", _STUCK.format(repo=str(REPO), grace=grace)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    for _ in range(signals):
        p.send_signal(signal.SIGINT)
        time.sleep(0.3)
    try:
        _, err = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "quitting without waiting" in err


def test_no_download_recognises_extracted_splits(tmp_path):
    """setup_coco --no-download on data already on disk said 'train2017.zip not found' for each."""
    out = tmp_path / "coco"
    (out / "val2017").mkdir(parents=True)
    (out / "val2017/1.jpg").write_bytes(b"x")
    (out / "annotations").mkdir()
    for s in ("train", "val"):
        (out / f"annotations/instances_{s}2017.json").write_text("{}")
    r = run_script("--path", str(out), "--splits", "val", "annotations", "--no-download")
    assert r.returncode == 0, r.stderr
    assert "using it" in r.stderr
    r = run_script("--path", str(out), "--splits", "train", "--no-download")
    assert r.returncode == 1 and "train2017.zip not found" in r.stderr


def test_path_is_a_file_exit_2(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    r = run_script("--path", str(f), "--no-download")
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("hostile", ["hang", "stall"])
def test_stop_cuts_a_stalled_server_at_once(http_server, tmp_path, hostile):
    """A stop (Ctrl-C in a worker thread's caller) used to wait out --timeout (30 s here) while the
    server held back the headers ('hang') or the body ('stall'); and then it logged a retry."""
    import threading
    (http_server.root / "f.bin").write_bytes(os.urandom(5000))
    getattr(http_server, hostile)("f.bin")
    stop = threading.Event()
    outcome = []

    def run():
        try:
            dl.download_file(http_server.url("f.bin"), tmp_path / "f.bin", progress=False, stop=stop,
                             retry=dl.RetryPolicy(retries=3, timeout=30))
            outcome.append("done")
        except dl.DownloadCancelled:
            outcome.append("cancelled")
        except Exception as e:  # noqa: BLE001 - reported below
            outcome.append(repr(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    while not any(p[1] == "/f.bin" for p in http_server.requests):
        t.join(0.02)
    t.join(0.3)
    stop.set()
    t.join(10)  # far below the 30 s read timeout
    assert not t.is_alive(), "the stop did not cut the stalled connection"
    assert outcome == ["cancelled"]
    assert http_server.count("GET", "f.bin") == 1, "no retry after a stop"


def test_no_download_does_not_take_a_file_for_a_split_folder(tmp_path):
    """A file named train2017 (or a folder named like an annotation file) is not an extracted split."""
    out = tmp_path / "coco"
    out.mkdir()
    (out / "train2017").write_text("x")
    (out / "annotations/instances_train2017.json").mkdir(parents=True)
    (out / "annotations/instances_val2017.json").write_text("{}")
    for split in ("train", "annotations"):
        r = run_script("--path", str(out), "--splits", split, "--no-download")
        assert r.returncode == 1 and "not found" in r.stderr and "using it" not in r.stderr, r.stderr


def test_extraction_keeps_a_changed_file_it_replaces(tmp_path):
    """Re-extracting the annotations (one json was deleted, so the archive is fetched and unzipped
    again) silently replaced the other json, fixed or edited since. Its old version is kept."""
    z = make_zip(tmp_path / "a.zip", {"annotations/instances_train2017.json": b'{"orig": 1}',
                                       "annotations/instances_val2017.json": b'{"orig": 2}'})
    out = tmp_path / "coco"
    dl.extract_zip(z, out, progress=False)
    train = out / "annotations/instances_train2017.json"
    train.write_text('{"edited": 1}')
    (out / "annotations/instances_val2017.json").unlink()
    for round_ in range(2):
        dl.extract_zip(z, out, progress=False)
        assert train.read_bytes() == b'{"orig": 1}'
        assert (out / "annotations/instances_train2017.json.before-extract").read_text() == '{"edited": 1}'
        train.write_text('{"edited again": 1}')
    assert (out / "annotations/instances_train2017.json.before-extract.1").read_text() == '{"edited again": 1}'
    kept = sorted(p.name for p in (out / "annotations").iterdir())
    assert kept == ["instances_train2017.json", "instances_train2017.json.before-extract",
                    "instances_train2017.json.before-extract.1", "instances_val2017.json"]
