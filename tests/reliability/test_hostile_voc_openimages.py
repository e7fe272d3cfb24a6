"""Hostile VOC XML and Open Images CSV files through the dataset readers and train_ssd.py / eval_ssd.py:
one error line naming the file (and object / line), or a counted skip naming the image id."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from hostile import NET, RES, assert_clean_error, make_checkpoint, run_inproc

CLASSES = ["BACKGROUND", "cat", "dog"]


def _xml(image_id: str, objects, size=(64, 48), raw: str | None = None) -> str:
    if raw is not None:
        return raw
    size_xml = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    return f"<annotation><filename>{image_id}.jpg</filename>{size_xml}{objs}</annotation>"


def make_voc(root: Path, overrides: dict[str, str] | None = None, n: int = 4) -> Path:
    """A VOC root with ``n`` 64x48 images, two boxes each; ``overrides`` replaces XML texts by id."""
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"img{k}" for k in range(n)]
    for image_id in ids:
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), rng.integers(0, 255, (48, 64, 3), np.uint8))
        text = _xml(image_id, [("cat", (5, 5, 30, 30)), ("dog", (20, 10, 60, 45))])
        (root / "Annotations" / f"{image_id}.xml").write_text((overrides or {}).get(image_id, text))
    for name in ("trainval.txt", "test.txt"):
        (root / "ImageSets" / "Main" / name).write_text("\n".join(ids) + "\n")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return root


# ----------------------------------------------------------------------------- VOC
VOC_ERRORS = {
    "malformed_xml": ("<annotation><object><name>cat</name>", ("malformed XML",)),
    "not_xml_at_all": ("just some text", ("malformed XML",)),
    "non_numeric_coordinates": (_xml("img1", [("cat", ("a", 1, 20, 20))]), ("object 1", "cat")),
    "missing_bndbox": ("<annotation><object><name>cat</name></object></annotation>", ("object 1",)),
    "object_without_name": ("<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
                            "<ymax>9</ymax></bndbox></object></annotation>", ("object 1", "name")),
    "nan_coordinate": (_xml("img1", [("cat", ("nan", 1, 20, 20))]), ("object 1",)),
    # entity expansion ("billion laughs") and an external entity must not be expanded / fetched
    "billion_laughs": ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "ha">'
                       + "".join(f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10}">' for i in range(1, 10))
                       + ']><annotation><object><name>&l9;</name></object></annotation>', ("malformed XML",)),
    "external_entity": ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        '<annotation><object><name>&x;</name></object></annotation>', ("malformed XML",)),
    "size_not_numeric": ("<annotation><size><width>wide</width><height>48</height></size></annotation>",
                         ("size",)),
}


@pytest.mark.parametrize("name", VOC_ERRORS)
def test_voc_broken_xml_is_one_line_error(name, tmp_path):
    from vision.datasets.voc_dataset import VOCDataset
    from vision.utils.misc import UserError

    text, needles = VOC_ERRORS[name]
    root = make_voc(tmp_path / "voc", {"img1": text})
    with pytest.raises(UserError) as info:
        VOCDataset(root)
    msg = str(info.value)
    assert "\n" not in msg and str(root / "Annotations" / "img1.xml") in msg, msg
    for n in needles:
        assert n in msg, msg


def test_voc_missing_size_and_inverted_boxes_are_counted(tmp_path, caplog):
    from vision.datasets.voc_dataset import VOCDataset

    overrides = {
        "img0": _xml("img0", [("cat", (5, 5, 30, 30)), ("dog", (20, 10, 60, 45))], size=None),  # no <size>
        "img1": _xml("img1", [("cat", (30, 5, 5, 30)), ("dog", (20, 10, 60, 45))]),          # xmin > xmax
        "img2": _xml("img2", [("cat", (5, 30, 30, 5))]),                                    # only box inverted
        "img3": _xml("img3", [("cat", (5, 5, 500, 400))]),                                  # past the border
    }
    root = make_voc(tmp_path / "voc", overrides)
    with caplog.at_level(logging.WARNING):
        ds = VOCDataset(root)
    assert ds.stats["bad_boxes"] == 2
    line = next(r.getMessage() for r in caplog.records if "min > max" in r.getMessage())
    assert "img1" in line and "img2" in line, line
    # img2 lost its only box: an image without objects is skipped and counted, not trained as background
    assert "img2" not in ds.image_ids
    for i in range(len(ds)):
        image, boxes, labels = ds[i]
        h, w = image.shape[:2]
        assert len(boxes) == len(labels) > 0
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all()  # clipped even without <size>


def test_voc_through_train_and_eval_scripts(tmp_path, capsys):
    root = make_voc(tmp_path / "voc", {"img2": "<annotation><object>"})
    xml = root / "Annotations" / "img2.xml"
    rc, _, err = run_inproc("train_ssd", ["--dataset-type", "voc", "--datasets", root, "--net", NET,
                                          "--resolution", RES, "--epochs", "1", "--workers", "0", "--use-cuda",
                                          "false", "--checkpoint-folder", tmp_path / "run"], capsys)
    assert_clean_error(rc, err, [str(xml), "malformed XML"], 2, "train_ssd.py voc")
    model = make_checkpoint(tmp_path / "m" / "best.pth", CLASSES)
    rc, _, err = run_inproc("eval_ssd", ["--trained-model", model, "--dataset-type", "voc", "--dataset", root,
                                         "--use-cuda", "false", "--workers", "0",
                                         "--eval-dir", tmp_path / "eval"], capsys)
    assert_clean_error(rc, err, [str(xml), "malformed XML"], 2, "eval_ssd.py voc")


# ----------------------------------------------------------------------------- Open Images
OI_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction," \
            "IsInside,id,ClassName"


def make_open_images(root: Path, csv_text: str | None = None, split: str = "train") -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for k in range(3):
        cv2.imwrite(str(root / split / f"im{k}.jpg"), rng.integers(0, 255, (48, 64, 3), np.uint8))
        rows.append(f"im{k},xclick,/m/01,1,0.1,0.6,0.2,0.7,0,0,0,0,0,/m/01,Cat")
    text = csv_text if csv_text is not None else OI_HEADER + "\n" + "\n".join(rows) + "\n"
    (root / f"sub-{split}-annotations-bbox.csv").write_text(text)
    return root


OI_ERRORS = {
    "missing_columns": ("ImageID,XMin,XMax\nim0,0.1,0.5\n", ("missing column", "YMin", "ClassName")),
    "empty_file": ("", ("empty file",)),
    "short_row": (OI_HEADER + "\nim0,xclick\n", (":2:", "fields")),
    "non_numeric_box": (OI_HEADER + "\nim0,xclick,/m/01,1,left,0.6,0.2,0.7,0,0,0,0,0,/m/01,Cat\n",
                        (":2:", "non-numeric")),
    "no_usable_boxes": (OI_HEADER + "\nim0,xclick,/m/01,1,0.6,0.1,0.2,0.7,0,0,0,0,0,/m/01,Cat\n",
                        ("no usable boxes",)),
}


@pytest.mark.parametrize("name", OI_ERRORS)
def test_open_images_broken_csv_is_one_line_error(name, tmp_path):
    from vision.datasets.open_images import OpenImagesDataset
    from vision.utils.misc import UserError

    text, needles = OI_ERRORS[name]
    root = make_open_images(tmp_path / "oi", text)
    with pytest.raises(UserError) as info:
        OpenImagesDataset(root)
    msg = str(info.value)
    assert "\n" not in msg and str(root / "sub-train-annotations-bbox.csv") in msg, msg
    for n in needles:
        assert n in msg, msg


def test_open_images_bad_rows_are_counted(tmp_path, caplog):
    from vision.datasets.open_images import OpenImagesDataset

    rows = [OI_HEADER,
            "im0,xclick,/m/01,1,0.1,0.6,0.2,0.7,0,0,0,0,0,/m/01,Cat",
            "im1,xclick,/m/01,1,0.6,0.1,0.2,0.7,0,0,0,0,0,/m/01,Cat",    # XMin > XMax
            "im2,xclick,/m/01,1,nan,0.5,0.2,0.7,0,0,0,0,0,/m/01,Cat",    # NaN
            "im2,xclick,/m/01,1,0.1,0.5,0.2,0.7,0,0,0,0,0,/m/01,Cat",
            "gone,xclick,/m/01,1,0.1,0.5,0.2,0.7,0,0,0,0,0,/m/01,Cat"]   # picture not on disk
    root = make_open_images(tmp_path / "oi", "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        ds = OpenImagesDataset(root)
    assert ds.image_ids == ["im0", "im2"]
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "2 boxes with no area or bad values dropped" in text and "gone" in text, text


def test_open_images_missing_columns_through_train_script(tmp_path, capsys):
    root = make_open_images(tmp_path / "oi", "ImageID,XMin\nim0,0.1\n")
    rc, _, err = run_inproc("train_ssd", ["--dataset-type", "open_images", "--datasets", root, "--net", NET,
                                          "--resolution", RES, "--epochs", "1", "--workers", "0", "--use-cuda",
                                          "false", "--checkpoint-folder", tmp_path / "run"], capsys)
    assert_clean_error(rc, err, [str(root / "sub-train-annotations-bbox.csv"), "missing column"], 2,
                       "train_ssd.py open_images")


@pytest.mark.parametrize("text,needles,rc", [
    ("BACKGROUND\ncat\ndog\ncat\n", ("duplicate", "'cat'"), 2),
    ("\ncat  \n\ndog\n\n", (), 0),  # no BACKGROUND, blank lines, spaces: read as BACKGROUND, cat, dog
], ids=["duplicate", "blank_lines_no_background"])
def test_voc_labels_file_through_train_script(text, needles, rc, tmp_path, capsys):
    root = make_voc(tmp_path / "voc")
    (root / "labels.txt").write_text(text)
    args = ["--dataset-type", "voc", "--datasets", root, "--net", NET, "--resolution", RES, "--epochs", "1",
            "--workers", "0", "--batch-size", "2", "--use-cuda", "false", "--checkpoint-folder", tmp_path / "run"]
    got, _, err = run_inproc("train_ssd", args, capsys)
    if rc:
        assert_clean_error(got, err, [str(root / "labels.txt"), *needles], rc, "train_ssd.py voc labels")
    else:
        assert got == 0 and "Traceback" not in err, err
        assert (tmp_path / "run" / "labels.txt").read_text() == "BACKGROUND\ncat\ndog\n"
