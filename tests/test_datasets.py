"""COCO / VOC / Open Images loaders and the padded collate, on data the tests write."""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vision.datasets.coco_dataset import FIXED_MARKER, COCODataset, fix_coco_dict
from vision.datasets.collation import collate_padded
from vision.datasets.open_images import OpenImagesDataset
from vision.datasets.synthetic import generate_coco_dataset
from vision.datasets.voc_dataset import VOC_CLASSES, VOCDataset
from vision.utils.misc import UserError

ORIGINAL_IDS = {1: 1, 2: 3, 3: 7, 4: 18, 5: 44, 6: 90}


# ============================================================================ COCO
@pytest.fixture(scope="module")
def coco_dirs(tmp_path_factory):
    plain = tmp_path_factory.mktemp("coco_plain")
    fixed = tmp_path_factory.mktemp("coco_fixed")
    generate_coco_dataset(plain, 30, 8, seed=4)
    generate_coco_dataset(fixed, 30, 8, seed=4, fixed=True)
    return plain, fixed


def _json(root: Path, split: str = "train") -> dict:
    return json.loads((root / "annotations" / f"instances_{split}2017.json").read_text())


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_coco_basic_sample(coco_dirs):
    plain, _ = coco_dirs
    ds = COCODataset(plain)
    assert len(ds) == 30 and ds.class_names[0] == "BACKGROUND" and len(ds.class_names) == 7
    assert ds.ann_file == plain / "annotations" / "instances_train2017.json"
    for i in range(len(ds)):
        image, boxes, labels = ds[i]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
        assert labels.dtype == np.int64 and ((labels >= 1) & (labels <= 6)).all()
        h, w = image.shape[:2]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] - boxes[:, 0] >= 1).all() and (boxes[:, 3] - boxes[:, 1] >= 1).all()
    val = COCODataset(plain, dataset_type="val")
    assert len(val) == 8


def test_coco_boxes_match_json(coco_dirs):
    plain, _ = coco_dirs
    ds = COCODataset(plain)
    data = _json(plain)
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for i in range(len(ds)):
        image_id, (boxes, labels, crowd) = ds.get_annotation(i)
        assert image_id == ds.coco_image_id(i) == ds.image_ids[i]
        anns = by_image.get(image_id, [])
        expect = sorted((a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3],
                         a["category_id"], a["iscrowd"]) for a in anns)
        got = sorted((*map(float, b), ds.label_to_category_id[int(l)], int(c))
                     for b, l, c in zip(boxes, labels, crowd))
        assert got == expect


def test_coco_fixed_and_unfixed_agree(coco_dirs):
    plain, fixed = coco_dirs
    a, b = COCODataset(plain), COCODataset(fixed)
    assert not a.is_fixed and b.is_fixed
    assert a.class_names == b.class_names
    assert a.label_to_category_id == b.label_to_category_id == ORIGINAL_IDS
    assert b.label_to_file_category_id == {i: i for i in range(1, 7)}
    assert a.image_ids == b.image_ids
    for i in range(len(a)):
        ia, (ba, la, da) = a.get_annotation(i)
        ib, (bb, lb, db) = b.get_annotation(i)
        assert ia == ib and np.array_equal(ba, bb) and np.array_equal(la, lb) and np.array_equal(da, db)


def test_fix_coco_dict_idempotent_and_maps(coco_dirs):
    plain, _ = coco_dirs
    data = _json(plain)
    once = fix_coco_dict(data)
    assert once[FIXED_MARKER] == {"version": 1}
    assert fix_coco_dict(once) == once
    assert data["categories"][0].get("original_id") is None  # input untouched
    assert {c["id"]: c["original_id"] for c in once["categories"]} == ORIGINAL_IDS


def test_coco_crowd_boxes_not_trained_on(coco_dirs):
    plain, _ = coco_dirs
    ds = COCODataset(plain)
    seen_crowd = 0
    for i in range(len(ds)):
        _, (boxes, labels, crowd) = ds.get_annotation(i)
        if crowd.any():
            seen_crowd += 1
            _, tboxes, tlabels = ds[i]
            assert len(tlabels) == int((crowd == 0).sum())
            for cb in boxes[crowd == 1]:
                assert not any(np.allclose(cb, tb) for tb in tboxes)
    assert seen_crowd >= 1
    assert ds.stats["crowd_boxes"] == seen_crowd or ds.stats["crowd_boxes"] >= seen_crowd


def test_coco_empty_images_kept_or_dropped(coco_dirs):
    plain, _ = coco_dirs
    keep = COCODataset(plain)
    drop = COCODataset(plain, keep_empty=False)
    empty = [i for i in range(len(keep)) if (keep.get_annotation(i)[1][2] == 0).sum() == 0]
    assert empty, "the generator makes images without boxes"
    image, boxes, labels = keep[empty[0]]
    assert boxes.shape == (0, 4) and labels.shape == (0,) and image.ndim == 3
    assert len(drop) == len(keep) - len(empty)
    assert not set(drop.image_ids) & {keep.image_ids[i] for i in empty}
    for i in range(len(drop)):
        assert len(drop[i][2]) > 0
    assert keep.stats["images_without_boxes"] == len(empty) == drop.stats["images_without_boxes_dropped"]


def test_coco_transforms_called_in_order(coco_dirs):
    plain, _ = coco_dirs
    calls = []

    def transform(image, boxes, labels):
        calls.append(("t", image.shape, boxes.shape, labels.shape))
        return "IMG", boxes / 2, labels

    def target_transform(boxes, labels):
        calls.append(("tt", boxes.shape))
        return "BOXES", "LABELS"

    ds = COCODataset(plain, transform=transform, target_transform=target_transform)
    assert ds[0] == ("IMG", "BOXES", "LABELS")
    assert [c[0] for c in calls] == ["t", "tt"]


def test_coco_missing_images_skipped_and_counted(coco_dirs, tmp_path, caplog):
    plain, _ = coco_dirs
    root = _copy(plain, tmp_path / "c")
    files = sorted((root / "train2017").iterdir())
    files[0].unlink()
    files[5].unlink()
    with caplog.at_level(logging.INFO):
        ds = COCODataset(root)
    assert len(ds) == 28 and ds.stats["images_missing"] == 2
    summary = [r for r in caplog.records if "COCO" in r.getMessage()]
    assert len(summary) == 1 and "2 images missing" in summary[0].getMessage()
    assert len(COCODataset(root, check_images=False)) == 30
    shutil.rmtree(root / "train2017")
    with pytest.raises(UserError, match="image folder not found"):
        COCODataset(root)


def test_coco_corrupt_image_skipped_and_counted(coco_dirs, tmp_path, caplog):
    plain, _ = coco_dirs
    root = _copy(plain, tmp_path / "c")
    ds = COCODataset(root)
    bad = ds.image_path(3)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated JPEG
    expected_next = ds[4]
    with caplog.at_level(logging.WARNING):
        image, boxes, labels = ds[3]
        assert np.array_equal(image, expected_next[0]) and np.array_equal(boxes, expected_next[1])
        assert ds.skipped_images == 1
        for _ in range(2):  # a second epoch neither re-logs nor re-counts
            ds[3]
    assert ds.skipped_images == 1
    assert sum("skipping unreadable image" in r.getMessage() for r in caplog.records) == 1
    last = ds.image_path(len(ds) - 1)
    last.write_bytes(b"")
    assert ds[len(ds) - 1][0].shape == ds[0][0].shape  # wraps around to index 0
    assert ds.skipped_images == 2
    from vision.datasets.image_io import ImageDecodeError
    with pytest.raises(ImageDecodeError):  # evaluation needs index == image: no skipping there
        ds.get_image(3)


def test_coco_all_images_corrupt_is_user_error(tmp_path):
    generate_coco_dataset(tmp_path, 3, 0, seed=1)
    for f in (tmp_path / "train2017").iterdir():
        f.write_bytes(b"not a jpeg")
    ds = COCODataset(tmp_path)
    with pytest.raises(UserError, match="none of the 3 images"):
        ds[0]


def test_coco_index_errors(coco_dirs):
    ds = COCODataset(coco_dirs[0])
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert ds.get_annotation(-1)[0] == ds.image_ids[-1]


def _mini(**over) -> dict:
    data = {
        "images": [{"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
                   {"id": 20, "file_name": "b.jpg", "width": 100, "height": 80}],
        "annotations": [{"id": 1, "image_id": 10, "category_id": 5, "bbox": [10, 10, 20, 20], "iscrowd": 0},
                        {"id": 2, "image_id": 20, "category_id": 9, "bbox": [0, 0, 50, 40], "iscrowd": 0}],
        "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}],
    }
    data.update(over)
    return data


def _write_ann(tmp_path: Path, data, raw: str | None = None) -> Path:
    p = tmp_path / "annotations" / "instances_train2017.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(raw if raw is not None else json.dumps(data))
    return p


def _ann(**kw):
    a = {"id": 7, "image_id": 10, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0}
    a.update(kw)
    return a


BAD_JSON = [
    ("not json", None, "{not json", "not valid JSON"),
    ("list", [1, 2], None, "top level must be a JSON object"),
    ("no images", {k: v for k, v in _mini().items() if k != "images"}, None, "missing 'images'"),
    ("no annotations", {k: v for k, v in _mini().items() if k != "annotations"}, None, "missing 'annotations'"),
    ("categories not list", _mini(categories={"id": 1}), None, "'categories' must be a list"),
    ("duplicate image id", _mini(images=[{"id": 10, "file_name": "a.jpg"}, {"id": 10, "file_name": "b.jpg"}]),
     None, "duplicate image ids: 10"),
    ("image without file_name", _mini(images=[{"id": 10}]), None, r"images\[0\] needs 'id' and 'file_name'"),
    ("string image id", _mini(images=[{"id": "10", "file_name": "a.jpg"}]), None, "non-integer id '10'"),
    ("unknown image", _mini(annotations=[_ann(image_id=99)]), None, "annotation id 7.*image 99"),
    ("unknown category", _mini(annotations=[_ann(category_id=4)]), None, "annotation id 7.*category 4"),
    ("bbox 3 numbers", _mini(annotations=[_ann(bbox=[1, 2, 3])]), None, "annotation id 7.*invalid bbox"),
    ("bbox strings", _mini(annotations=[_ann(bbox=["1", "2", "3", "4"])]), None, "annotation id 7.*invalid bbox"),
    ("bbox null", _mini(annotations=[_ann(bbox=None)]), None, "annotation id 7.*invalid bbox"),
    ("annotation missing bbox", _mini(annotations=[{"id": 7, "image_id": 10, "category_id": 5}]), None,
     "annotation id 7.*needs"),
    ("duplicate category", _mini(categories=[{"id": 5, "name": "a"}, {"id": 5, "name": "b"}]), None,
     "duplicate category id 5"),
    ("empty category name", _mini(categories=[{"id": 5, "name": " "}, {"id": 9, "name": "b"}]), None,
     "category id 5 has no name"),
    ("fixed without original_id", _mini(**{FIXED_MARKER: {"version": 1}}), None, "no integer 'original_id'"),
]


@pytest.mark.parametrize("name,data,raw,match", BAD_JSON, ids=[b[0] for b in BAD_JSON])
def test_coco_bad_json_is_one_line_user_error(tmp_path, name, data, raw, match):
    p = _write_ann(tmp_path, data, raw)
    with pytest.raises(UserError, match=match) as ei:
        COCODataset(tmp_path, check_images=False)
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg


def test_coco_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        COCODataset(tmp_path, dataset_type="val")


@pytest.mark.parametrize("bbox", [[math.nan, 1, 5, 5], [1, 1, math.inf, 5], [1, 1, -5, 5]])
def test_coco_invalid_boxes_dropped_or_strict(tmp_path, caplog, bbox):
    _write_ann(tmp_path, _mini(annotations=[_ann(bbox=bbox), _ann(id=8, bbox=[2, 2, 10, 10])]))
    with caplog.at_level(logging.INFO):
        ds = COCODataset(tmp_path, check_images=False)
    assert ds.stats["invalid_boxes"] == 1 and ds.stats["boxes"] == 1
    assert "1 invalid boxes dropped" in caplog.text and "ids 7" in caplog.text
    with pytest.raises(UserError, match="ids 7"):
        COCODataset(tmp_path, check_images=False, strict=True)


def test_coco_boxes_clipped_and_degenerate_dropped(tmp_path):
    anns = [_ann(id=1, bbox=[-10, -5, 30, 30]),      # clipped to [0,0,20,25]
            _ann(id=2, bbox=[90, 70, 50, 50]),       # clipped to [90,70,100,80]
            _ann(id=3, bbox=[10, 10, 0.5, 20]),      # too thin
            _ann(id=4, bbox=[150, 10, 20, 20])]      # outside the image
    _write_ann(tmp_path, _mini(annotations=anns))
    ds = COCODataset(tmp_path, check_images=False)
    _, (boxes, labels, _) = ds.get_annotation(0)
    assert boxes.tolist() == [[0, 0, 20, 25], [90, 70, 100, 80]]
    assert ds.stats["degenerate_boxes"] == 2


def test_coco_no_usable_images_is_user_error(tmp_path):
    _write_ann(tmp_path, _mini(annotations=[]))
    assert len(COCODataset(tmp_path, check_images=False)) == 2  # kept as background samples
    with pytest.raises(UserError, match="no usable images"):
        COCODataset(tmp_path, check_images=False, keep_empty=False)
    (tmp_path / "train2017").mkdir()
    with pytest.raises(UserError, match="2 missing from"):
        COCODataset(tmp_path)


def test_coco_unfixed_zero_based_ids_warn(tmp_path, caplog):
    _write_ann(tmp_path, _mini(categories=[{"id": 0, "name": "a"}, {"id": 5, "name": "cat"},
                                           {"id": 9, "name": "dog"}]))
    with caplog.at_level(logging.WARNING):
        ds = COCODataset(tmp_path, check_images=False)
    assert "start at 0" in caplog.text and ds.label_to_category_id == {1: 0, 2: 5, 3: 9}


@pytest.mark.slow
def test_coco_index_of_coco_train_size(tmp_path):
    """The index of a COCO-train-size file is right (its speed is measured by bench/datasets.py)."""
    from vision.datasets.synthetic import write_large_coco_json

    p = tmp_path / "big.json"
    write_large_coco_json(p)
    ds = COCODataset(tmp_path, ann_file=p, check_images=False)
    assert len(ds) == 118_287 and len(ds.class_names) == 81
    assert ds.stats["annotations_in_file"] == 860_001
    _, (boxes, labels, crowd) = ds.get_annotation(12345)
    assert boxes.dtype == np.float32 and labels.min() >= 1 and labels.max() <= 80


# ============================================================================ VOC
def _voc_xml(objects, size=(64, 48)) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    sz = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    return f"<annotation><filename>x</filename>{sz}{objs}</annotation>"


def _img(path: Path, w: int = 64, h: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "voc"
    ann = root / "Annotations"
    ann.mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (ann / "a.xml").write_text(_voc_xml([("dog", (11, 11, 31, 21), 0), (" Cat ", (1, 1, 64, 48), 1),
                                         ("unicorn", (5, 5, 9, 9), 0), ("dog", (30, 5, 20, 9), 0)]))
    (ann / "b.xml").write_text(_voc_xml([("cat", (5, 6, 40, 30), 0)], size=None))
    (ann / "c.xml").write_text(_voc_xml([]))                       # no objects
    (ann / "d.xml").write_text(_voc_xml([("dog", (2, 2, 9, 9), 0)]))  # no picture
    _img(root / "JPEGImages" / "a.jpg")
    _img(root / "JPEGImages" / "b.PNG")
    _img(root / "JPEGImages" / "c.jpg")
    (root / "labels.txt").write_text("dog\ncat\n\n")
    (root / "ImageSets" / "Main" / "default.txt").write_text("a\nb\n\nc\nd\ne\na\n")  # e: no xml
    return root


def test_voc_cvat_layout(voc_root, caplog):
    with caplog.at_level(logging.INFO):
        ds = VOCDataset(voc_root)
    assert ds.class_names == ["BACKGROUND", "dog", "cat"]
    assert ds.image_ids == ["a", "b"] and ds.ids == ds.image_ids
    assert ds.image_path(1).name == "b.PNG"
    assert ds.stats["no_objects"] == 1 and ds.stats["no_image"] == 1 and ds.stats["no_xml"] == 1
    assert ds.stats["bad_boxes"] == 1 and ds.stats["unknown_class_boxes"] == 1
    assert "unicorn" in caplog.text
    image_id, (boxes, labels, diff) = ds.get_annotation(0)
    assert image_id == "a"
    assert boxes.tolist() == [[10, 10, 30, 20], [0, 0, 63, 47]]  # VOC is 1-based: shifted by -1
    assert labels.tolist() == [1, 2] and diff.tolist() == [0, 1]
    image, tboxes, tlabels = ds[0]
    assert image.shape == (48, 64, 3) and tlabels.tolist() == [1]  # difficult dropped
    assert tboxes.dtype == np.float32 and tlabels.dtype == np.int64
    assert VOCDataset(voc_root, keep_difficult=True)[0][2].tolist() == [1, 2]


def test_voc_image_set_choice_and_default_classes(voc_root):
    main = voc_root / "ImageSets" / "Main"
    (main / "trainval.txt").write_text("b\n")
    (main / "test.txt").write_text("a\n")
    assert VOCDataset(voc_root).image_ids == ["b"]
    assert VOCDataset(voc_root, is_test=True).image_ids == ["a"]
    (voc_root / "labels.txt").unlink()
    (voc_root / "Annotations" / "b.xml").write_text(_voc_xml([("dog", (5, 6, 40, 30), 0)]))
    ds = VOCDataset(voc_root)
    assert tuple(ds.class_names) == VOC_CLASSES and ds.get_annotation(0)[1][1].tolist() == [12]
    lf = voc_root / "my_labels.txt"
    lf.write_text("BACKGROUND\ncat\ndog\n")
    assert VOCDataset(voc_root, label_file=lf).get_annotation(0)[1][1].tolist() == [2]
    (main / "trainval.txt").unlink()
    (main / "train.txt").write_text("a\n")
    assert VOCDataset(voc_root).image_ids == ["a"]


def test_voc_errors(voc_root):
    (voc_root / "Annotations" / "b.xml").write_text("<annotation><object>")
    with pytest.raises(UserError, match=r"malformed XML annotation .*b\.xml"):
        VOCDataset(voc_root)
    (voc_root / "Annotations" / "b.xml").write_text(_voc_xml([("cat", ("x", 6, 40, 30), 0)]))
    with pytest.raises(UserError, match=r"b\.xml: object 1 \(cat\) needs a <bndbox>"):
        VOCDataset(voc_root)
    for f in (voc_root / "ImageSets" / "Main").iterdir():
        f.unlink()
    with pytest.raises(UserError, match="no image set file"):
        VOCDataset(voc_root)
    with pytest.raises(UserError, match="not found"):
        VOCDataset(voc_root / "nope")


# ============================================================================ Open Images
OI_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf," \
            "IsDepiction,IsInside,id,ClassName"


def _oi_row(image_id, box, name):
    x1, x2, y1, y2 = box
    return f"{image_id},xclick,/m/0,1,{x1},{x2},{y1},{y2},0,0,0,0,0,/m/0,{name}"


@pytest.fixture
def oi_root(tmp_path):
    root = tmp_path / "oi"
    rows = [_oi_row("img1", (0.1, 0.5, 0.2, 0.6), "Zebra"),
            _oi_row("img1", (0.0, 1.0, 0.0, 1.0), "Apple"),
            _oi_row("img2", (0.25, 0.75, 0.25, 0.75), "Apple"),
            _oi_row("img2", (0.6, 0.2, 0.1, 0.3), "Apple"),       # min > max: dropped
            _oi_row("img3", (0.1, 0.2, 0.1, 0.2), "Zebra"),       # picture missing
            _oi_row("img4", (0.5, 0.9, 0.5, 0.9), "Zebra")]
    root.mkdir()
    (root / "sub-train-annotations-bbox.csv").write_text(OI_HEADER + "\n" + "\n".join(rows) + "\n")
    for name in ("img1", "img2", "img4"):
        _img(root / "train" / f"{name}.jpg", 100, 50)
    return root


def test_open_images_layout(oi_root, caplog):
    with caplog.at_level(logging.INFO):
        ds = OpenImagesDataset(oi_root)
    assert ds.class_names == ["BACKGROUND", "Apple", "Zebra"]
    assert ds.image_ids == ["img1", "img2", "img4"]
    assert "1 images missing" in caplog.text and "1 boxes" in caplog.text
    image, boxes, labels = ds[0]
    assert image.shape == (50, 100, 3)
    np.testing.assert_allclose(boxes, [[10, 10, 50, 30], [0, 0, 100, 50]], atol=1e-4)
    assert labels.tolist() == [2, 1] and labels.dtype == np.int64 and boxes.dtype == np.float32
    image_id, (b, l, d) = ds.get_annotation(1)
    assert image_id == "img2" and l.tolist() == [1] and d.tolist() == [0]
    np.testing.assert_allclose(b, [[25, 12.5, 75, 37.5]], atol=1e-4)


def test_open_images_balance(oi_root):
    ds = OpenImagesDataset(oi_root, balance_data=True, balance_seed=0)
    # Apple is in 2 images, Zebra in 2: each class keeps at most 2 images
    assert ds.min_image_num == 2 and set(ds.image_ids) <= {"img1", "img2", "img4"}
    csv = oi_root / "sub-train-annotations-bbox.csv"
    csv.write_text(csv.read_text() + _oi_row("img4", (0.1, 0.2, 0.1, 0.2), "Kiwi") + "\n")
    ds = OpenImagesDataset(oi_root, balance_data=True, balance_seed=0)
    assert ds.min_image_num == 1 and 2 <= len(ds) <= 3
    for i in range(len(ds)):
        assert len(ds[i][2]) > 0


def test_open_images_errors(oi_root):
    csv = oi_root / "sub-train-annotations-bbox.csv"
    csv.write_text("ImageID,XMin,YMin,XMax\nimg1,0,0,1\n")
    with pytest.raises(UserError, match=r"sub-train-annotations-bbox\.csv: missing column\(s\) YMax, ClassName"):
        OpenImagesDataset(oi_root)
    csv.write_text(OI_HEADER + "\n" + _oi_row("img1", ("a", 1, 0, 1), "Apple") + "\n")
    with pytest.raises(UserError, match=r"csv:2: non-numeric"):
        OpenImagesDataset(oi_root)
    with pytest.raises(UserError, match="not found"):
        OpenImagesDataset(oi_root, dataset_type="validation")


# ============================================================================ collate
def test_collate_padded_shapes_and_padding():
    batch = [(torch.zeros(3, 8, 8), np.array([[0.1, 0.1, 0.5, 0.5]], np.float32), np.array([3])),
             (torch.ones(3, 8, 8), torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)),
             (torch.ones(3, 8, 8), torch.tensor([[0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4]]), torch.tensor([1, 2]))]
    images, boxes, labels = collate_padded(batch)
    assert images.shape == (3, 3, 8, 8) and boxes.shape == (3, 2, 4) and labels.shape == (3, 2)
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.tolist() == [[3, 0], [0, 0], [1, 2]]
    assert boxes[0, 1].abs().sum() == 0 and torch.allclose(boxes[2, 1], torch.tensor([0.2, 0.2, 0.4, 0.4]))


def test_collate_padded_no_boxes_at_all():
    batch = [(torch.zeros(3, 4, 4), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))] * 2
    images, boxes, labels = collate_padded(batch)
    assert boxes.shape == (2, 0, 4) and labels.shape == (2, 0)


def test_collate_padded_with_dataloader(coco_dirs):
    def to_tensor(image, boxes, labels):
        img = cv2.resize(image, (32, 32)).transpose(2, 0, 1).astype(np.float32) / 255.0
        h, w = image.shape[:2]
        return torch.from_numpy(img), boxes / np.array([w, h, w, h], np.float32), labels

    ds = COCODataset(coco_dirs[0], transform=to_tensor)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=collate_padded)
    total = 0
    for images, boxes, labels in loader:
        assert images.shape[1:] == (3, 32, 32) and boxes.shape[:2] == labels.shape
        total += int((labels > 0).sum())
    assert total == ds.stats["boxes"]


def test_open_images_labels_file_fixes_class_ids_across_splits(oi_root):
    # the download had a third class that this split lacks: ids must follow labels.txt, not the split
    (oi_root / "labels.txt").write_text("BACKGROUND\nApple\nBanana\nZebra\n")
    ds = OpenImagesDataset(oi_root)
    assert ds.class_names == ["BACKGROUND", "Apple", "Banana", "Zebra"]
    assert ds[0][2].tolist() == [3, 1]
    (oi_root / "labels.txt").write_text("BACKGROUND\nApple\n")
    with pytest.raises(UserError, match="Zebra are not in"):
        OpenImagesDataset(oi_root)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_loader_counts_skipped_images_every_epoch(coco_dirs, tmp_path, workers):
    """``EpochLoader`` (persistent workers) reports each epoch's unreadable images, although a
    worker logs an image only once; what train_ssd.py writes as ``skipped_images``."""
    from vision.training.data import EpochLoader

    plain, _ = coco_dirs
    root = _copy(plain, tmp_path / "c")
    ds = COCODataset(root)
    ds.image_path(2).write_bytes(b"")
    ds.image_path(5).write_bytes(b"not a jpeg")
    loader = EpochLoader(ds, batch_size=4, num_workers=workers, seed=0, collate_fn=list)
    for epoch in range(3):
        batches = loader.epoch(epoch)
        samples = [s for batch in batches for s in batch]
        assert len(samples) == len(ds)
        assert batches.skipped_images == 2
    partial = loader.epoch(3, skip_batches=1)  # a resumed epoch counts only the batches it runs
    n = sum(len(batch) for batch in partial)
    assert n == len(ds) - 4 and partial.skipped_images <= 2


def test_content_digest_tells_other_data_with_the_same_counts_apart(tmp_path):
    """What DDP processes compare: the same data anywhere on disk gives the same digest, another seed
    with the same numbers of images does not."""
    import shutil
    from vision.datasets.coco_dataset import COCODataset
    from vision.datasets.synthetic import generate_coco_dataset
    generate_coco_dataset(tmp_path / "a", 8, 2, seed=2)
    generate_coco_dataset(tmp_path / "b", 8, 2, seed=3)
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "a")
    a, b, moved = (COCODataset(str(p)) for p in (tmp_path / "a", tmp_path / "b", tmp_path / "elsewhere" / "a"))
    assert len(a) == len(b)
    assert a.content_digest() == moved.content_digest() != b.content_digest()
