"""fix_coco_annotations.py: contiguous ids with original ids kept, marker, backup,
idempotent second run, invalid annotations reported (or dropped), images untouched."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import fix_coco_annotations as fca
from tests.conftest import run_script as _run_script

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


def test_kill_during_write_leaves_old_file(tmp_path, monkeypatch):
    root = make_root(tmp_path, splits=("val",))
    path = root / "annotations/instances_val2017.json"
    before = path.read_bytes()

    def dying_dump(obj, f, **kw):
        f.write('{"images": [')
        raise KeyboardInterrupt  # stands in for a kill mid-write

    monkeypatch.setattr(fca.json, "dump", dying_dump)
    with pytest.raises(KeyboardInterrupt):
        fca.fix_file(path, drop_empty=False, drop_invalid=False)
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".*.tmp"))


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
