"""Crash safety of fix_coco_annotations.py: a SIGKILL at any moment leaves each annotation file
either byte-identical to the original or completely fixed (never truncated), the ``.orig`` backup
is the original, and running the script again finishes the job without leaving temp files behind.

Exact moments (via crash_runner hooks): half-way through writing the new file, and with the new
file complete but not yet renamed over the old one. Random moments: kills spread over a clean
run's duration on a larger file.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crash_runner import REPO, Child

pytestmark = pytest.mark.slow

CATS = [(1, "person"), (3, "car"), (18, "dog"), (90, "toothbrush")]  # gapped ids, like COCO's


def coco_json(n_images: int, seed: int) -> bytes:
    rng = random.Random(seed)
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480} for i in range(n_images)]
    anns = []
    for im in images:
        for _ in range(rng.randrange(0, 6)):
            w, h = rng.uniform(2, 200), rng.uniform(2, 200)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": rng.choice(CATS)[0],
                         "bbox": [rng.uniform(0, 400), rng.uniform(0, 250), w, h], "area": w * h, "iscrowd": 0,
                         "segmentation": [[rng.uniform(0, 600) for _ in range(8)]]})
    cats = [{"id": c, "name": n, "supercategory": "thing"} for c, n in CATS]
    return json.dumps({"info": {"year": 2017}, "images": images, "annotations": anns,
                       "categories": cats}).encode()


def make_root(base: Path, n_images: int, splits=("train", "val"), seed: int = 0) -> tuple[Path, dict[str, bytes]]:
    root = base / "coco"
    (root / "annotations").mkdir(parents=True)
    original = {}
    for i, s in enumerate(splits):
        original[s] = coco_json(n_images, seed + i)
        (root / "annotations" / f"instances_{s}2017.json").write_bytes(original[s])
    return root, original


def fix(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "fix_coco_annotations.py", "--path", str(root), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def expected_fixed(tmp_path: Path, original: dict[str, bytes]) -> dict[str, bytes]:
    """What an uninterrupted run writes for the same input."""
    root, _ = make_root(tmp_path / "clean", 1, splits=tuple(original))
    for s, data in original.items():
        (root / "annotations" / f"instances_{s}2017.json").write_bytes(data)
    r = fix(root, "--splits", *original)
    assert r.returncode == 0, r.stderr
    return {s: (root / "annotations" / f"instances_{s}2017.json").read_bytes() for s in original}


def check_old_or_new(root: Path, original: dict[str, bytes], fixed: dict[str, bytes]) -> dict[str, str]:
    """Every annotation file is exactly the old or the new one; every backup is the original."""
    state = {}
    for s in original:
        path = root / "annotations" / f"instances_{s}2017.json"
        data = path.read_bytes()
        assert data in (original[s], fixed[s]), f"{path.name} is neither old nor new ({len(data)} bytes)"
        state[s] = "old" if data == original[s] else "new"
        backup = path.with_name(path.name + ".orig")
        if backup.exists():
            assert backup.read_bytes() == original[s], f"{backup.name} is not the original"
        else:
            assert state[s] == "old", f"{path.name} was replaced but no backup exists"
    return state


def check_finished(root: Path, original: dict[str, bytes], fixed: dict[str, bytes]) -> None:
    for s in original:
        path = root / "annotations" / f"instances_{s}2017.json"
        assert path.read_bytes() == fixed[s]
        assert path.with_name(path.name + ".orig").read_bytes() == original[s]
    leftovers = sorted(p.name for p in (root / "annotations").iterdir()
                       if p.name not in {f"instances_{s}2017.json{x}" for s in original for x in ("", ".orig")})
    assert not leftovers, f"files left behind by the killed run: {leftovers}"


@pytest.mark.parametrize("moment, hooks, expected", [
    ("half-way through writing the new val file",
     {"CRASH_HOOK_WRITE": r"instances_val2017\.json", "CRASH_HOOK_WRITE_BYTES": "20000"},
     {"train": "old", "val": "old"}),  # before the commit point: nothing changed
    ("new val file complete, not yet renamed",
     {"CRASH_HOOK_REPLACE": r"^instances_val2017\.json$"},
     {"train": "new", "val": "old"}),  # after it: the next run finishes val
])
def test_kill_at_exact_moments_leaves_old_or_new_and_rerun_finishes(tmp_path, moment, hooks, expected):
    root, original = make_root(tmp_path, 300)
    fixed = expected_fixed(tmp_path, original)
    child = Child("fix_coco_annotations.py", ["--path", root], hooks)
    try:
        child.wait_for("CRASH-HOOK", timeout=60)
    finally:
        child.kill()
    state = check_old_or_new(root, original, fixed)
    assert state == expected, (moment, state)

    r = fix(root)
    assert r.returncode == 0, r.stderr
    if expected["train"] == "new":
        assert "finished an interrupted write" in r.stderr
    check_finished(root, original, fixed)


def test_kill_at_random_moments_never_truncates(tmp_path):
    root, original = make_root(tmp_path, 3000, splits=("val",))
    fixed = expected_fixed(tmp_path, original)
    t0 = time.monotonic()
    assert fix(root, "--splits", "val").returncode == 0  # how long a whole run takes here (start-up included)
    duration = time.monotonic() - t0
    root_path = root / "annotations" / "instances_val2017.json"
    root_path.write_bytes(original["val"])
    root_path.with_name(root_path.name + ".orig").unlink()

    rng = random.Random(7)
    states = []
    for trial in range(5):
        child = Child("fix_coco_annotations.py", ["--path", root, "--splits", "val"])
        time.sleep(rng.uniform(0.4, 1.2) * duration)
        child.kill()
        states.append(check_old_or_new(root, original, fixed)["val"])
        if list(root.glob("annotations/.*.tmp")):
            states[-1] += " (killed while writing)"
        if states[-1] == "new":  # done: start over from the original to kill another write
            root_path.write_bytes(original["val"])
    print("states after each kill:", states)
    r = fix(root, "--splits", "val")
    assert r.returncode == 0, r.stderr
    check_finished(root, original, fixed)


def test_full_disk_while_writing_keeps_the_original_and_says_why(tmp_path):
    root, original = make_root(tmp_path, 300)
    fixed = expected_fixed(tmp_path, original)
    child = Child("fix_coco_annotations.py", ["--path", root],
                  {"CRASH_HOOK_FAIL": r"instances_val2017\.json", "CRASH_HOOK_FAIL_AFTER": "20000"})
    assert child.wait(timeout=120) == 1, child.text
    assert "Traceback" not in child.text, child.text
    errors = [line for line in child.text.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "instances_val2017.json" in errors[0], \
        child.text
    assert check_old_or_new(root, original, fixed) == {"train": "old", "val": "old"}, "all files or none"
    assert not [p for p in root.glob("annotations/.*") if p.suffix in (".tmp", ".pending")], \
        "the failed write's temp file was left behind"
    r = fix(root)  # space is back
    assert r.returncode == 0, r.stderr
    check_finished(root, original, fixed)
