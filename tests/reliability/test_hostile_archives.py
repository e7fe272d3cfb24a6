"""Hostile zip archives through coco_downloader.py --no-download: a member escaping the folder
(zip-slip, absolute path, backslashes), a symlink member, and corrupt or truncated archives are
refused as a whole -- exit 1, one line naming the archive (and member), nothing written anywhere,
no "extracted" marker, the archive kept for inspection."""
from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from hostile import assert_clean_error, run_inproc, run_subprocess


def _zip(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return bio.getvalue()


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _good_members() -> list:
    return [("val2017/000000000001.jpg", b"\xff\xd8 picture bytes " * 50)]


def _valid_zip() -> bytes:
    return _zip(_good_members() + [("val2017/000000000002.jpg", bytes(range(256)) * 40)])


def _corrupt_crc() -> bytes:
    data = bytearray(_zip([("val2017/a.jpg", b"A" * 5000)]))
    # flip a byte of the deflated data (after the 30-byte local header and the name)
    data[30 + len("val2017/a.jpg") + 3] ^= 0xFF
    return bytes(data)


def cases(outside: Path) -> dict[str, tuple[bytes, tuple]]:
    """name -> (archive bytes, needles of the error line besides the archive path)."""
    return {
        "zip_slip": (_zip(_good_members() + [("../evil.txt", b"pwned")]), ("'../evil.txt'", "escapes")),
        "zip_slip_nested": (_zip(_good_members() + [("val2017/../../evil.txt", b"pwned")]), ("escapes",)),
        "zip_slip_backslash": (_zip(_good_members() + [("..\\evil.txt", b"pwned")]), ("escapes",)),
        "absolute_path": (_zip(_good_members() + [(str(outside / "evil_abs.txt"), b"pwned")]), ("absolute",)),
        "symlink_member": (_zip(_good_members() + [_symlink("val2017/link.jpg", str(outside))]),
                           ("'val2017/link.jpg'", "symbolic link")),
        "random_bytes": (b"PK\x03\x04 this is not really a zip " * 20, ("not a valid zip",)),
        "empty_file": (b"", ("not a valid zip",)),
        "truncated": (_valid_zip()[:-40], ("not a valid zip",)),
        "bad_crc": (_corrupt_crc(), ("corrupt",)),
    }


CASE_NAMES = list(cases(Path("/x")))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_coco_downloader_refuses_hostile_zip(name, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "work" / "coco"
    root.mkdir(parents=True)
    data, needles = cases(outside)[name]
    archive = root / "val2017.zip"
    archive.write_bytes(data)
    before_outside = sorted(p.name for p in tmp_path.rglob("*"))
    rc, _, err = run_inproc("coco_downloader", ["--path", root, "--splits", "val", "--no-download"], capsys)
    assert_clean_error(rc, err, [str(archive), *needles], 1, name)
    # kept for inspection: a damaged one as NAME.bad (so the next run downloads it again, issue 12)
    kept = archive if archive.exists() else archive.with_name(archive.name + ".bad")
    assert kept.read_bytes() == data, "the archive must be kept for inspection"
    after = sorted(p.name for p in tmp_path.rglob("*") if p.name != ".download.lock")
    assert after == sorted(n if n != archive.name or archive.exists() else kept.name for n in before_outside), \
        "something was written"
    assert not (root / "val2017").exists() and not list(root.glob(".extracted-*"))
    assert not list(root.glob(".extract-*")), "temp folder left behind"


def test_good_zip_still_extracts(tmp_path, capsys):
    root = tmp_path / "coco"
    root.mkdir()
    (root / "val2017.zip").write_bytes(_valid_zip())
    rc, _, err = run_inproc("coco_downloader", ["--path", root, "--splits", "val", "--no-download"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (root / "val2017").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]


def test_subprocess_zip_slip(tmp_path):
    root = tmp_path / "coco"
    root.mkdir()
    archive = root / "annotations_trainval2017.zip"
    archive.write_bytes(_zip([("annotations/x.json", b"{}"), ("../../evil.txt", b"pwned")]))
    res = run_subprocess("coco_downloader", ["--path", root, "--splits", "annotations", "--no-download"])
    assert_clean_error(res.returncode, res.stderr, [str(archive), "escapes"], 1, "coco_downloader.py")
    assert not (tmp_path / "evil.txt").exists() and not (root / "annotations").exists()
