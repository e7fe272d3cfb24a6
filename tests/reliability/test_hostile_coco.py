"""Hostile COCO annotation files, generated from one valid synthetic file, through COCODataset and
every script that reads COCO json (fix_coco_annotations.py, eval_ssd.py, train_ssd.py).

Each broken file must end as one error line naming the file and the offending item (exit 2, or 1
where the fixer reports invalid entries), or as a counted, logged skip -- never a traceback and
never a silently wrong result.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from hostile import (RES, NET, assert_clean_error, class_names_of, clone_coco, make_checkpoint, make_coco,
                     run_inproc, run_subprocess)


# ----------------------------------------------------------------------------- the cases
def _first_ann(d: dict) -> dict:
    return d["annotations"][0]


def _set(path: Callable[[dict], dict], key: str, value: Any) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        path(d)[key] = value
    return mutate


def _del(key: str) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        del d[key]
    return mutate


def _dup_image_id(d: dict) -> None:
    d["images"][1]["id"] = d["images"][0]["id"]


def _zero_images(d: dict) -> None:
    d["images"] = []
    d["annotations"] = []


def _huge_image_id(d: dict) -> None:
    old = d["images"][0]["id"]
    d["images"][0]["id"] = 2 ** 70
    for a in d["annotations"]:
        if a["image_id"] == old:
            a["image_id"] = 2 ** 70


def _huge_category_id(d: dict) -> None:
    old = d["categories"][0]["id"]
    d["categories"][0]["id"] = 2 ** 70
    for a in d["annotations"]:
        if a["category_id"] == old:
            a["category_id"] = 2 ** 70


def _bool_category_id(d: dict) -> None:
    _first_ann(d)["category_id"] = True  # JSON true: not a category id, even though True == 1 in Python


def _ann_not_object(d: dict) -> None:
    d["annotations"][0] = 5


def _category_without_name(d: dict) -> None:
    del d["categories"][0]["name"]


@dataclass
class Case:
    name: str
    mutate: Callable[[dict], Any] | None = None
    raw: bytes | None = None
    # "error": refused with a one-line UserError (exit 2); "skip": loads, the item counted and named
    kind: str = "error"
    needles: tuple = ()             # what the error/warning line must name besides the file
    fixer_rc: int | None = 2        # fix_coco_annotations.py exit code (0: not the fixer's business)
    stat: str | None = None         # COCODataset.stats key that counts a skipped item
    extra: dict = field(default_factory=dict)


ANN0 = "annotation id 100"  # the synthetic generator's first annotation id (checked in a test below)

CASES = [
    Case("not_json", raw=b"this is not JSON {", needles=("not valid JSON",)),
    Case("truncated", raw=b"TRUNCATED", needles=("not valid JSON",)),  # replaced by real bytes below
    Case("zero_bytes", raw=b"", needles=("not valid JSON",)),
    Case("deeply_nested", raw=b"[" * 100_000 + b"]" * 100_000, needles=("not valid JSON", "nested")),
    Case("utf16_garbage", raw="{\"images\": \u00e9}".encode("latin-1"), needles=("not valid JSON",)),
    Case("top_level_list", raw=b"[]", needles=("list",)),
    Case("missing_images", _del("images"), needles=("images",)),
    Case("missing_annotations", _del("annotations"), needles=("annotations",)),
    Case("missing_categories", _del("categories"), needles=("categories",)),
    Case("images_not_list", _set(lambda d: d, "images", {"id": 1}), needles=("images", "list")),
    Case("image_id_string", _set(lambda d: d["images"][0], "id", "abc"), needles=("images[0]",)),
    Case("bbox_string", _set(_first_ann, "bbox", "1,2,3,4"), needles=("bbox",)),
    Case("bbox_three_numbers", _set(_first_ann, "bbox", [1, 2, 3]), needles=("bbox",)),
    Case("bbox_null", _set(_first_ann, "bbox", None), needles=("bbox",)),
    Case("category_id_string", _set(_first_ann, "category_id", "dog"), needles=("category_id",)),
    Case("category_id_bool", _bool_category_id, needles=("category_id",)),
    Case("annotation_not_object", _ann_not_object, needles=("annotations[0]",)),
    Case("category_without_name", _category_without_name, needles=("categor",)),
    Case("duplicate_image_ids", _dup_image_id, needles=("duplicate image id",), fixer_rc=1),
    Case("annotation_of_missing_image", _set(_first_ann, "image_id", 987654), needles=("987654",),
         fixer_rc=1),
    Case("annotation_of_missing_category", _set(_first_ann, "category_id", 4242), needles=("4242",),
         fixer_rc=1),
    Case("empty_categories", _set(lambda d: d, "categories", []), needles=("categories", "empty")),
    Case("zero_images", _zero_images, needles=("no usable images",), fixer_rc=None),
    Case("huge_image_id", _huge_image_id, needles=(str(2 ** 70),), fixer_rc=0),
    Case("huge_category_id", _huge_category_id, needles=(str(2 ** 70),), fixer_rc=0),
    # boxes no loss can train on: dropped by the dataset, counted, and named by annotation id; the
    # fixer reports them by id and keeps them (exit 0: real COCO has two, issue 12)
    Case("bbox_nan", _set(_first_ann, "bbox", [math.nan, 1.0, 5.0, 5.0]), kind="skip", needles=("100",),
         fixer_rc=0, stat="invalid_boxes"),
    Case("bbox_inf", _set(_first_ann, "bbox", [1.0, 1.0, math.inf, 5.0]), kind="skip", needles=("100",),
         fixer_rc=0, stat="invalid_boxes"),
    Case("bbox_negative_size", _set(_first_ann, "bbox", [10.0, 10.0, -5.0, 5.0]), kind="skip",
         needles=("100",), fixer_rc=0, stat="invalid_boxes"),
    Case("bbox_zero_size", _set(_first_ann, "bbox", [10.0, 10.0, 0.0, 0.0]), kind="skip", needles=("100",),
         fixer_rc=0, stat="degenerate_boxes"),
    Case("bbox_outside_image", _set(_first_ann, "bbox", [5000.0, 5000.0, 10.0, 10.0]), kind="skip",
         needles=("100",), fixer_rc=0, stat="degenerate_boxes"),
]
ERROR_CASES = [c for c in CASES if c.kind == "error"]
SKIP_CASES = [c for c in CASES if c.kind == "skip"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = make_coco(tmp_path_factory.mktemp("coco") / "base", num_train=6, num_val=4)
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    assert data["annotations"][0]["id"] == 100  # ANN0 / the needles above depend on it
    return root


def _root(case: Case, base: Path, tmp_path: Path) -> Path:
    raw = case.raw
    if case.name == "truncated":
        raw = (base / "annotations" / "instances_train2017.json").read_bytes()
        raw = raw[: len(raw) * 3 // 5]
    return clone_coco(base, tmp_path / case.name, mutate=case.mutate, raw=raw)


@pytest.fixture(scope="module")
def model(base, tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "best.pth", class_names_of(base))


# ----------------------------------------------------------------------------- COCODataset
@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_dataset_refuses_broken_file_with_one_line(case, base, tmp_path):
    from vision.datasets.coco_dataset import COCODataset
    from vision.utils.misc import UserError

    root = _root(case, base, tmp_path)
    ann = root / "annotations" / "instances_train2017.json"
    with pytest.raises(UserError) as info:
        COCODataset(root, dataset_type="train")
    msg = str(info.value)
    assert "\n" not in msg
    assert str(ann) in msg, msg
    for n in case.needles:
        assert n in msg, f"{case.name}: {n!r} not in {msg!r}"


@pytest.mark.parametrize("case", SKIP_CASES, ids=lambda c: c.name)
def test_dataset_counts_and_names_dropped_boxes(case, base, tmp_path, caplog):
    from vision.datasets.coco_dataset import COCODataset

    root = _root(case, base, tmp_path)
    good = COCODataset(base, dataset_type="train")
    with caplog.at_level(logging.WARNING):
        ds = COCODataset(root, dataset_type="train")
    assert ds.stats[case.stat] == good.stats[case.stat] + 1
    assert ds.stats["boxes"] == good.stats["boxes"] - 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    line = next((w for w in warnings if str(root / "annotations") in w), None)
    assert line is not None, warnings
    for n in case.needles:
        assert f"ids {n}" in line, line
    for i in range(len(ds)):  # no NaN/inf/empty box reaches a sample
        _, boxes, _ = ds[i]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert math.isfinite(float(boxes.sum()))


# ----------------------------------------------------------------------------- fix_coco_annotations.py
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fixer_on_broken_file(case, base, tmp_path, capsys):
    root = _root(case, base, tmp_path)
    ann = root / "annotations" / "instances_train2017.json"
    before = ann.read_bytes()
    rc, _, err = run_inproc("fix_coco_annotations", ["--path", root, "--splits", "train"], capsys)
    if case.fixer_rc == 0:
        assert rc == 0 and "Traceback" not in err, err
        return
    if case.fixer_rc is None:  # an empty file: nothing to fix is fine, but it must be said
        assert "Traceback" not in err
        assert rc != 0 or "0 images" in err or "no images" in err, err
        return
    assert_clean_error(rc, err, [ann.name] if case.fixer_rc == 1 else [str(ann)], case.fixer_rc, case.name)
    if case.fixer_rc == 1:  # the offending item is named on its own line
        assert any(all(n in line for n in case.needles) for line in err.splitlines()), err
    assert ann.read_bytes() == before, "nothing may be written when the file is refused"
    assert not ann.with_name(ann.name + ".orig").exists()


def test_fixer_subprocess_not_json(base, tmp_path):
    root = clone_coco(base, tmp_path / "r", raw=b"{ not json")
    res = run_subprocess("fix_coco_annotations", ["--path", root])
    assert_clean_error(res.returncode, res.stderr, [str(root / "annotations" / "instances_train2017.json")],
                       2, "fix_coco_annotations.py")


# ----------------------------------------------------------------------------- eval_ssd.py
def _eval_args(model: Path, root: Path, tmp_path: Path) -> list:
    return ["--trained-model", model, "--dataset-type", "coco", "--dataset", root, "--use-cuda", "false",
            "--workers", "0", "--batch-size", "4", "--eval-dir", tmp_path / "eval"]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_eval_refuses_broken_file(case, base, model, tmp_path, capsys):
    root = _root(case, base, tmp_path)
    rc, _, err = run_inproc("eval_ssd", _eval_args(model, root, tmp_path), capsys)
    assert_clean_error(rc, err, [str(root / "annotations" / "instances_val2017.json"), *case.needles], 2,
                       case.name)


def test_eval_with_nan_box_runs_and_names_it(base, model, tmp_path, capsys):
    case = next(c for c in SKIP_CASES if c.name == "bbox_nan")
    root = _root(case, base, tmp_path)
    val_ann0 = json.loads((base / "annotations" / "instances_val2017.json").read_text())["annotations"][0]["id"]
    rc, out, err = run_inproc("eval_ssd", _eval_args(model, root, tmp_path), capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert "1 invalid boxes dropped" in err and f"ids {val_ann0})" in err, err
    assert "mAP" in out


@pytest.mark.slow
def test_eval_subprocess_missing_image(base, model, tmp_path):
    case = next(c for c in CASES if c.name == "annotation_of_missing_image")
    root = _root(case, base, tmp_path)
    res = run_subprocess("eval_ssd", _eval_args(model, root, tmp_path))
    assert_clean_error(res.returncode, res.stderr,
                       [str(root / "annotations" / "instances_val2017.json"), "987654"], 2, "eval_ssd.py")


# ----------------------------------------------------------------------------- train_ssd.py
def _train_args(root: Path, tmp_path: Path) -> list:
    return ["--dataset-type", "coco", "--datasets", root, "--net", NET, "--resolution", RES, "--epochs", "1",
            "--workers", "0", "--batch-size", "2", "--use-cuda", "false", "--seed", "0",
            "--checkpoint-folder", tmp_path / "run"]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_train_refuses_broken_file(case, base, tmp_path, capsys):
    root = _root(case, base, tmp_path)
    rc, _, err = run_inproc("train_ssd", _train_args(root, tmp_path), capsys)
    assert_clean_error(rc, err, [str(root / "annotations" / "instances_train2017.json"), *case.needles], 2,
                       case.name)
    assert not list((tmp_path / "run").glob("*.pth")) if (tmp_path / "run").exists() else True


@pytest.mark.slow
def test_train_subprocess_truncated_json(base, tmp_path):
    case = next(c for c in CASES if c.name == "truncated")
    root = _root(case, base, tmp_path)
    res = run_subprocess("train_ssd", _train_args(root, tmp_path))
    assert_clean_error(res.returncode, res.stderr, [str(root / "annotations" / "instances_train2017.json")], 2,
                       "train_ssd.py")
