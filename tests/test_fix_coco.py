"""fix_coco_annotations.py: contiguous ids with original ids kept, marker, backup,
idempotent second run, invalid annotations reported (or dropped), images untouched."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fix_coco_annotations as fca
from tests.conftest import REPO, run_script as _run_script

CATS = [(1, "person"), (3, "car"), (18, "dog"), (90, "toothbrush")]  # gapped, like COCO


def coco_dict(n_images: int = 4) -> dict:
    images = [{"id": 100 + i, "file_name": f"{100 + i:012d}.jpg", "width": 64, "height": 48}
              for i in range(n_images)]
    anns, aid = [], 1
    for i, im in enumerate(images[:-1]):  # the last image has no annotations
        for cid, _ in CATS[: 1 + i % len(CATS)]:
            anns.append({"id": aid, "image_id": im["id"], "category_id": cid, "bbox": [1.0, 2.0, 10.0, 12.0],
                         "area": 120.0, "iscrowd": 0})
            aid += 1
    # unsorted on purpose: new ids follow the ORIGINAL id order, not the list order
    cats = [{"id": c, "name": n, "supercategory": "thing"} for c, n in reversed(CATS)]
    return {"info": {"year": 2017}, "images": images, "annotations": anns, "categories": cats}


def make_root(tmp_path: Path, splits=("train", "val"), mutate=None) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for s in splits:
        d = coco_dict()
        if mutate:
            mutate(d)
        (root / "annotations" / f"instances_{s}2017.json").write_text(json.dumps(d))
        img_dir = root / f"{s}2017"
        img_dir.mkdir()
        for im in d["images"]:
            (img_dir / im["file_name"]).write_bytes(b"jpeg")
    return root


def run_script(*args: str) -> subprocess.CompletedProcess:
    return _run_script("fix_coco_annotations.py", *args, timeout=60)


def test_fix_then_second_run_is_noop(tmp_path):
    root = make_root(tmp_path)
    files_before = sorted(p.relative_to(root) for p in root.rglob("*.jpg"))
    original = (root / "annotations/instances_train2017.json").read_bytes()
    r = run_script("--path", str(root))
    assert r.returncode == 0, r.stderr
    for s in ("train", "val"):
        path = root / "annotations" / f"instances_{s}2017.json"
        d = json.loads(path.read_text())
        assert d["pytorch_ssd_fixed"] == {"version": 1}
        assert [c["id"] for c in d["categories"]] == [1, 2, 3, 4]
        assert [c["original_id"] for c in d["categories"]] == [1, 3, 18, 90]
        assert [c["name"] for c in d["categories"]] == ["person", "car", "dog", "toothbrush"]
        assert d["categories"][0]["supercategory"] == "thing"
        orig = json.loads(path.with_name(path.name + ".orig").read_text())
        by_orig = {c["original_id"]: c["id"] for c in d["categories"]}
        assert [by_orig[a["category_id"]] for a in orig["annotations"]] == \
               [a["category_id"] for a in d["annotations"]]
        assert len(d["images"]) == 4, "images without annotations stay unless --drop-empty"
        assert d["info"] == {"year": 2017}
    assert (root / "annotations/instances_train2017.json.orig").read_bytes() == original
    assert sorted(p.relative_to(root) for p in root.rglob("*.jpg")) == files_before, "images untouched"

    fixed = (root / "annotations/instances_train2017.json").read_bytes()
    r = run_script("--path", str(root))
    assert r.returncode == 0, r.stderr
    assert "already fixed" in r.stderr
    assert (root / "annotations/instances_train2017.json").read_bytes() == fixed
    assert (root / "annotations/instances_train2017.json.orig").read_bytes() == original, "backup never overwritten"
    assert not list((root / "annotations").glob(".*.tmp"))


def test_drop_empty_only_touches_json(tmp_path):
    root = make_root(tmp_path, splits=("val",))
    r = run_script("--path", str(root), "--splits", "val", "--drop-empty")
    assert r.returncode == 0, r.stderr
    d = json.loads((root / "annotations/instances_val2017.json").read_text())
    assert [im["id"] for im in d["images"]] == [100, 101, 102]
    assert (root / "val2017/000000000103.jpg").exists()


def _break(d: dict) -> None:
    d["annotations"][0]["image_id"] = 999                     # unknown image
    d["annotations"][1]["category_id"] = 2                    # unknown category (gap)
    d["annotations"][2]["bbox"] = [0, 0, 0, 5]                # zero width
    d["annotations"][3]["bbox"] = [0, 0, float("nan"), 5]     # non-finite
    d["annotations"][4]["id"] = d["annotations"][5]["id"]     # duplicate annotation id
    d["images"].append(dict(d["images"][0]))                  # duplicate image id


def test_invalid_reported_with_ids_and_nothing_written(tmp_path):
    root = make_root(tmp_path, splits=("val",), mutate=_break)
    path = root / "annotations/instances_val2017.json"
    before = path.read_bytes()
    r = run_script("--path", str(root), "--splits", "val")
    assert r.returncode == 1
    err = r.stderr
    assert "image id 999" in err and "category id 2" in err and "--drop-invalid" in err
    assert "width 0" in err and "nan" in err.lower() and "duplicate annotation ids" in err
    assert "image id 100" in err  # the duplicated image
    assert path.read_bytes() == before and not path.with_name(path.name + ".orig").exists()


def test_drop_invalid(tmp_path):
    root = make_root(tmp_path, splits=("val",), mutate=_break)
    n_before = len(json.loads((root / "annotations/instances_val2017.json").read_text())["annotations"])
    r = run_script("--path", str(root), "--splits", "val", "--drop-invalid")
    assert r.returncode == 0, r.stderr
    d = json.loads((root / "annotations/instances_val2017.json").read_text())
    assert len(d["annotations"]) == n_before - 5
    assert len(d["images"]) == 4
    assert {a["category_id"] for a in d["annotations"]} <= {1, 2, 3, 4}
    assert len({a["id"] for a in d["annotations"]}) == len(d["annotations"])


@pytest.mark.parametrize("content, what", [
    ("not json {", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"images": [], "annotations": []}', "missing key 'categories'"),
    ('{"images": [], "annotations": [], "categories": [{"id": "1", "name": "x"}]}', "categories[0]"),
    ('{"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}],'
     ' "categories": [{"id": 1, "name": "x"}]}', "'bbox' must be 4 numbers"),
])
def test_malformed_file_exit_2_one_line(tmp_path, content, what):
    root = tmp_path / "c"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_val2017.json").write_text(content)
    r = run_script("--path", str(root), "--splits", "val")
    assert r.returncode == 2
    assert what in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_file_exit_2(tmp_path):
    r = run_script("--path", str(tmp_path), "--splits", "val")
    assert r.returncode == 2 and "instances_val2017.json" in r.stderr


def test_mapping_unit():
    d = coco_dict()
    mapping = fca.remap_categories(d)
    assert mapping == {1: 1, 3: 2, 18: 3, 90: 4}
    assert fca.is_fixed(d)
    assert {a["category_id"] for a in d["annotations"]} == {1, 2, 3}  # originals 1, 3, 18


def test_kill_during_write_leaves_every_file_old(tmp_path, monkeypatch):
    """A kill while writing the SECOND file's new version: no file has changed, nothing left over."""
    root = make_root(tmp_path)
    before = {s: (root / f"annotations/instances_{s}2017.json").read_bytes() for s in ("train", "val")}
    real_dump = json.dump
    calls = []

    def dying_dump(obj, f, **kw):
        calls.append(1)
        if len(calls) == 2:
            f.write('{"images": [')
            raise KeyboardInterrupt  # stands in for a kill mid-write
        real_dump(obj, f, **kw)

    monkeypatch.setattr(fca.json, "dump", dying_dump)
    with pytest.raises(KeyboardInterrupt):
        fca.main(["--path", str(root)])
    for s, data in before.items():
        assert (root / f"annotations/instances_{s}2017.json").read_bytes() == data
    assert not [p.name for p in (root / "annotations").iterdir() if p.name.startswith(".")]


def test_kill_between_renames_is_finished_by_the_next_run(tmp_path, monkeypatch):
    """Killed after the commit point with train replaced and val not: the next run completes val
    (and says so) instead of leaving a half-fixed set."""
    root = make_root(tmp_path)
    from vision.utils import file_set
    real_replace = os.replace
    seen = []

    def dying_replace(src, dst):
        if str(src).endswith(file_set.PENDING_SUFFIX):
            seen.append(dst)
            if len(seen) == 2:
                raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(file_set.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        fca.main(["--path", str(root)])
    monkeypatch.setattr(file_set.os, "replace", real_replace)
    r = run_script("--path", str(root))
    assert r.returncode == 0, r.stderr
    assert "finished an interrupted write" in r.stderr
    for s in ("train", "val"):
        d = json.loads((root / f"annotations/instances_{s}2017.json").read_text())
        assert d["pytorch_ssd_fixed"] == {"version": 1} and [c["id"] for c in d["categories"]] == [1, 2, 3, 4]
    assert not [p.name for p in (root / "annotations").iterdir() if p.name.startswith(".")]


def _zero_height(d: dict) -> None:
    """Real COCO 2017 train: two zero-height boxes (image ids 200365 and 550395)."""
    d["images"][0]["id"], d["images"][1]["id"] = 200365, 550395
    for a in d["annotations"]:
        a["image_id"] = {100: 200365, 101: 550395}.get(a["image_id"], a["image_id"])
    d["annotations"][0]["bbox"] = [296.65, 388.33, 1.03, 0.0]
    d["annotations"][1]["bbox"] = [9.98, 188.56, 15.52, 0.0]


def test_real_coco_zero_height_boxes_fixed_without_flags(tmp_path):
    """Issue 12 case 6: the README's step failed on real COCO (exit 1, and val fixed but not train)."""
    root = make_root(tmp_path, mutate=_zero_height)
    n = len(json.loads((root / "annotations/instances_train2017.json").read_text())["annotations"])
    r = run_script("--path", str(root))
    assert r.returncode == 0, r.stderr
    assert "image id 200365" in r.stderr and "image id 550395" in r.stderr and "height 0.0" in r.stderr
    for s in ("train", "val"):
        d = json.loads((root / f"annotations/instances_{s}2017.json").read_text())
        assert d["pytorch_ssd_fixed"] == {"version": 1}
        assert len(d["annotations"]) == n, "degenerate boxes are kept: the loader drops them"
    r = run_script("--path", str(root))
    assert r.returncode == 0 and "already fixed" in r.stderr


def test_blocking_problem_in_one_file_writes_no_file(tmp_path):
    """All or none: val refused -> train is not fixed either (today train was rewritten, val not)."""
    def unknown_image(d):
        d["annotations"][0]["image_id"] = 999
    root = make_root(tmp_path, splits=("train",))
    (root / "annotations/instances_val2017.json").write_text(json.dumps(_mutated(unknown_image)))
    before = {s: (root / f"annotations/instances_{s}2017.json").read_bytes() for s in ("train", "val")}
    r = run_script("--path", str(root))
    assert r.returncode == 1 and "nothing written to any file" in r.stderr
    for s, data in before.items():
        path = root / f"annotations/instances_{s}2017.json"
        assert path.read_bytes() == data and not path.with_name(path.name + ".orig").exists()


def _mutated(mutate) -> dict:
    d = coco_dict()
    mutate(d)
    return d


def test_different_category_lists_get_one_mapping(tmp_path):
    """val lacks category 3 ('car'): 'dog' (18) must be id 3 in both files, not 3 in train and 2 in val."""
    def drop_car(d):
        d["categories"] = [c for c in d["categories"] if c["id"] != 3]
        d["annotations"] = [a for a in d["annotations"] if a["category_id"] != 3]
    root = make_root(tmp_path, splits=("train",))
    (root / "annotations/instances_val2017.json").write_text(json.dumps(_mutated(drop_car)))
    r = run_script("--path", str(root))
    assert r.returncode == 0, r.stderr
    fixed = {s: json.loads((root / f"annotations/instances_{s}2017.json").read_text()) for s in ("train", "val")}
    for s, d in fixed.items():
        assert {c["original_id"]: c["id"] for c in d["categories"]} == {1: 1, 3: 2, 18: 3, 90: 4}, s
    orig_val = json.loads((root / "annotations/instances_val2017.json.orig").read_text())
    new_of = {1: 1, 3: 2, 18: 3, 90: 4}
    assert [a["category_id"] for a in fixed["val"]["annotations"]] == \
           [new_of[a["category_id"]] for a in orig_val["annotations"]]
    assert "added 1 categories" in r.stderr


def test_conflicting_category_names_refused(tmp_path):
    def rename(d):
        d["categories"][0]["name"] = "bus"  # id 90 is 'toothbrush' in train
    root = make_root(tmp_path, splits=("train",))
    (root / "annotations/instances_val2017.json").write_text(json.dumps(_mutated(rename)))
    r = run_script("--path", str(root))
    assert r.returncode == 2 and "category id 90" in r.stderr and "Traceback" not in r.stderr


def test_images_missing_on_disk_reported_kept_or_dropped(tmp_path):
    root = make_root(tmp_path, splits=("val",))
    (root / "val2017/000000000101.jpg").unlink()
    (root / "val2017/000000000103.jpg").unlink()
    rep = tmp_path / "rep.json"
    r = run_script("--path", str(root), "--splits", "val", "--report", str(rep))
    assert r.returncode == 0, r.stderr
    assert "2 image(s) listed but missing on disk (first ids: 101, 103)" in r.stderr
    d = json.loads((root / "annotations/instances_val2017.json").read_text())
    assert len(d["images"]) == 4
    summary = json.loads(rep.read_text())["files"]["instances_val2017.json"]
    assert summary["images_missing_on_disk"] == 2 and summary["first_missing_image_ids"] == [101, 103]

    root2 = make_root(tmp_path / "b", splits=("val",))
    (root2 / "val2017/000000000101.jpg").unlink()
    r = run_script("--path", str(root2), "--splits", "val", "--drop-invalid")
    assert r.returncode == 0, r.stderr
    d = json.loads((root2 / "annotations/instances_val2017.json").read_text())
    assert [im["id"] for im in d["images"]] == [100, 102, 103]
    assert all(a["image_id"] != 101 for a in d["annotations"])


def test_bool_id_says_got_true_in_one_short_line(tmp_path):
    def bool_id(d):
        d["images"][1]["id"] = True
        d["images"][1]["long"] = "x" * 500
    root = make_root(tmp_path, splits=("val",), mutate=bool_id)
    r = run_script("--path", str(root), "--splits", "val")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "images[1]" in lines[0] and "got True" in lines[0]
    assert "file_name" not in lines[0] and len(lines[0]) < 250


def test_wrong_kind_of_path(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_script("--path", str(f))
    assert r.returncode == 2 and "is a file" in r.stderr
    (tmp_path / "c/annotations/instances_val2017.json").mkdir(parents=True)
    r = run_script("--path", str(tmp_path / "c"), "--splits", "val")
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    root = make_root(tmp_path / "d", splits=("val",))
    r = run_script("--path", str(root), "--splits", "val", "--report", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr


def test_same_format_as_the_dataset_module():
    """The loader's own in-memory fixer (data owner) and this script must agree exactly."""
    import copy
    import importlib.util
    if importlib.util.find_spec("vision.datasets.coco_dataset") is None:
        pytest.skip("vision.datasets.coco_dataset not written yet")
    from vision.datasets.coco_dataset import fix_coco_dict
    d = coco_dict()
    theirs = fix_coco_dict(copy.deepcopy(d))
    fca.remap_categories(d)
    assert d == theirs


@pytest.mark.parametrize("target", ["annotations/instances_train2017.json", "annotations/instances_val2017.json.orig",
                                    "train2017/000000000100.jpg"])
def test_report_never_overwrites_an_input_or_the_backup(tmp_path, target):
    """--report at an annotation file replaced the freshly fixed file with the report, and at the
    .orig backup destroyed the only copy of the original (a second hostile trial)."""
    root = make_root(tmp_path)
    assert run_script("--path", str(root), "--splits", "val").returncode == 0  # makes the val .orig
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    r = run_script("--path", str(root), "--report", str(root / target))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before, "nothing may change"
    rep = tmp_path / "rep.json"
    rep.write_text("")  # an empty file (setup_coco's mktemp) may be written
    for _ in range(2):  # an earlier report of this script may be replaced
        assert run_script("--path", str(root), "--report", str(rep)).returncode == 0
    r = run_script("--path", str(root), "--report", "/proc/nope/rep.json")
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr and "rep.json" in r.stderr


def test_splits_fixed_one_run_at_a_time_agree(tmp_path):
    """--splits val, then --splits train, when val lacks a category: both runs must give 'dog' (18)
    the same id (before, val got 18 -> 2 and train 18 -> 3, silently)."""
    def drop_car(d):
        d["categories"] = [c for c in d["categories"] if c["id"] != 3]
        d["annotations"] = [a for a in d["annotations"] if a["category_id"] != 3]
    root = make_root(tmp_path, splits=("train",))
    (root / "annotations/instances_val2017.json").write_text(json.dumps(_mutated(drop_car)))
    assert run_script("--path", str(root), "--splits", "val").returncode == 0
    assert run_script("--path", str(root), "--splits", "train").returncode == 0
    for s in ("train", "val"):
        d = json.loads((root / f"annotations/instances_{s}2017.json").read_text())
        assert {c["original_id"]: c["id"] for c in d["categories"]} == {1: 1, 3: 2, 18: 3, 90: 4}, s
    r = run_script("--path", str(root))
    assert r.returncode == 0 and "already fixed" in r.stderr, r.stderr


@pytest.mark.parametrize("journal", ["garbage", "forged"])
def test_foreign_journal_moves_nothing(tmp_path, journal):
    """A commit journal the tool did not write (an archive can put one in annotations/) made the
    next run rename any file anywhere: the annotation file moved out, another file clobbered.
    Now it is refused in one line (exit 1) and nothing moves."""
    root = make_root(tmp_path)
    ann = root / "annotations"
    victim = tmp_path / "precious.txt"
    victim.write_text("precious")
    (ann / "evil").write_text("attacker")
    text = "garbage" if journal == "garbage" else json.dumps(
        {"files": [[str(ann / "evil"), str(victim)], [str(ann / "instances_val2017.json"), str(tmp_path / "x.json")]]})
    (ann / fca.JOURNAL).write_text(text)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    r = run_script("--path", str(root))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "journal" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_image_folder_or_missing_folder_as_path(tmp_path):
    """--path coco-data/val2017 (the image folder) or a typo: say which folder to give."""
    root = make_root(tmp_path)
    r = run_script("--path", str(root / "val2017"))
    assert r.returncode == 2 and f"--path {root}" in r.stderr and "image folder" in r.stderr, r.stderr
    r = run_script("--path", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such folder" in r.stderr, r.stderr


def test_a_replaced_original_gets_its_own_backup(tmp_path):
    """A new version of the file (another download, the user's new export) with an older .orig
    beside it: the old code kept the stale .orig and the new original was lost once fixed."""
    root = make_root(tmp_path, splits=("val",))
    path = root / "annotations/instances_val2017.json"
    first = path.read_bytes()
    assert run_script("--path", str(root), "--splits", "val").returncode == 0
    d = coco_dict(6)
    (root / "val2017/000000000104.jpg").write_bytes(b"jpeg")
    (root / "val2017/000000000105.jpg").write_bytes(b"jpeg")
    path.write_text(json.dumps(d))
    second = path.read_bytes()
    r = run_script("--path", str(root), "--splits", "val")
    assert r.returncode == 0 and "differs from its earlier backup" in r.stderr, r.stderr
    assert path.with_name(path.name + ".orig").read_bytes() == first
    assert path.with_name(path.name + ".orig.1").read_bytes() == second
    # the same original again: no new copy
    path.write_bytes(second)
    r = run_script("--path", str(root), "--splits", "val")
    assert r.returncode == 0 and not path.with_name(path.name + ".orig.2").exists(), r.stderr


def test_empty_path_is_not_the_current_folder(tmp_path):
    root = make_root(tmp_path)
    r = subprocess.run([sys.executable, str(REPO / "fix_coco_annotations.py"), "--path", ""], cwd=root,
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "--path is empty" in r.stderr, r.stderr
    assert not (root / "annotations/instances_val2017.json.orig").exists()
