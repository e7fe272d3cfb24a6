"""YOLO (Ultralytics) layout reader, --dataset-type auto detection, and a YOLO run end to end."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.datasets.detect_type import detect_dataset_type
from vision.datasets.yolo import YOLODataset, label_path
from vision.utils.misc import UserError, run_main

REPO = Path(__file__).resolve().parents[1]


def _image(path: Path, w: int = 80, h: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), 120, np.uint8)
    assert cv2.imwrite(str(path), img)


def _layout(root: Path, names="[cat, dog]", labels: dict[str, str] | None = None, extra: str = "",
            val: bool = True) -> Path:
    """root/data.yaml + images/{train,val}/<stem>.jpg (80x60) + labels from ``labels`` (stem -> text)."""
    labels = labels or {}
    for stem, text in labels.items():
        _image(root / "images" / "train" / f"{stem}.jpg")
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    if val:
        _image(root / "images" / "val" / "v.jpg")
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n{extra}")
    return root


# ------------------------------------------------------------------------------- parsing
def test_boxes_classes_and_background_images(tmp_path):
    root = _layout(tmp_path / "d", labels={
        "a": "1 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.1 0.2\n",
        "b": "",            # empty file: background
        "c": None,          # no label file: background
    })
    ds = YOLODataset(root)
    assert ds.class_names == ["BACKGROUND", "cat", "dog"]
    assert len(ds) == 3 and ds.stats["background"] == 2 and ds.stats["no_label_file"] == 1
    i = ds.image_ids.index("images/train/a.jpg")
    image, boxes, labels = ds[i]
    assert image.shape == (60, 80, 3)
    np.testing.assert_allclose(boxes, [[20, 15, 60, 45], [16, 9, 24, 21]], atol=1e-4)
    assert labels.tolist() == [2, 1]
    _, (b2, l2, diff) = ds.get_annotation(i)
    np.testing.assert_allclose(b2, boxes, atol=1e-4)
    assert diff.tolist() == [0, 0]
    for stem in ("b", "c"):
        _, b, lab = ds[ds.image_ids.index(f"images/train/{stem}.jpg")]
        assert b.shape == (0, 4) and lab.shape == (0,)
    assert len(YOLODataset(root, keep_empty=False)) == 1


def test_names_as_map_yaml_path_and_nc(tmp_path):
    root = _layout(tmp_path / "d", names="{0: person, 1: bike, 2: car}", extra="nc: 3\n",
                   labels={"a": "2 0.5 0.5 0.2 0.2\n"})
    ds = YOLODataset(root / "data.yaml", split="val")
    assert ds.class_names == ["BACKGROUND", "person", "bike", "car"]
    assert len(ds) == 1
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {'1': b, '0': a}\n")
    assert YOLODataset(root, split="val").class_names == ["BACKGROUND", "a", "b"]  # train's class 2 is now bad
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnc: 4\nnames: [a, b]\n")
    with pytest.raises(UserError, match="nc is 4 but 'names' lists 2"):
        YOLODataset(root)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: a, 2: b}\n")
    with pytest.raises(UserError, match="keys 0..1"):
        YOLODataset(root)


def test_image_list_files_and_absolute_path_key(tmp_path):
    root = tmp_path / "d"
    for stem in ("x", "y", "z"):
        _image(root / "images" / "all" / f"{stem}.jpg")
    (root / "labels" / "all").mkdir(parents=True)
    (root / "labels" / "all" / "x.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (root / "train.txt").write_text("./images/all/x.jpg\n./images/all/y.jpg\n\n")
    (root / "val.txt").write_text(f"{root / 'images' / 'all' / 'z.jpg'}\n")
    cfg = tmp_path / "elsewhere" / "my.yaml"
    cfg.parent.mkdir()
    cfg.write_text(f"path: {root}\ntrain: train.txt\nval: [val.txt]\nnames: [thing]\n")
    train = YOLODataset(cfg)
    assert [Path(p).name for p in train.image_ids] == ["x.jpg", "y.jpg"]
    assert train[0][2].tolist() == [1]
    assert len(YOLODataset(cfg, split="val")) == 1
    with pytest.raises(UserError, match="no 'test' split"):
        YOLODataset(cfg, split="test")


def test_roboflow_layout_with_dotdot_paths(tmp_path):
    """Roboflow: data.yaml inside the dataset folder says train: ../train/images."""
    root = tmp_path / "rf"
    _image(root / "train" / "images" / "a.jpg")
    (root / "train" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    _image(root / "valid" / "images" / "b.jpg")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['box']\n")
    ds = YOLODataset(root)
    assert len(ds) == 1 and ds[0][2].tolist() == [1]


def test_label_path_rule():
    sep = os.sep
    p = label_path(f"{sep}data{sep}images{sep}set{sep}images{sep}train{sep}a.b.JPG")
    assert str(p) == f"{sep}data{sep}images{sep}set{sep}labels{sep}train{sep}a.b.txt"
    assert str(label_path(f"{sep}flat{sep}a.png")) == f"{sep}flat{sep}a.txt"


def test_every_bad_line_kind_is_reported_with_file_line_and_counted(tmp_path, caplog):
    text = "\n".join([
        "0 0.5 0.5 0.2 0.2",          # 1 ok
        "0 0.5 0.5 0.2",              # 2 four values
        "0 0.5 0.5 0.2 0.2 0.1",      # 3 six values
        "a 0.5 0.5 0.2 0.2",          # 4 not a number
        "2 0.5 0.5 0.2 0.2",          # 5 class out of range (2 classes)
        "-1 0.5 0.5 0.2 0.2",         # 6 negative class
        "1.5 0.5 0.5 0.2 0.2",        # 7 class not an integer
        "1 1.2 0.5 0.2 0.2",          # 8 outside 0..1
        "1 0.5 0.5 0 0.2",            # 9 zero width
        "1 0.5 0.5 0.2 -0.1",         # 10 negative height
        "1 0.5 0.5 nan 0.2",          # 11 not finite
        "1 0.5 0.5 1.0008 0.5",        # 12 within tolerance: clipped, kept
        "1.0 0.1 0.1 0.3 0.1 0.2 0.4",  # 13 polygon: its bounding box, kept
        "0 0.5 0.5 0.2 0.2",          # 14 duplicate of line 1: ignored, not bad
    ]) + "\n"
    root = _layout(tmp_path / "d", labels={"a": text})
    with caplog.at_level(logging.WARNING):
        ds = YOLODataset(root)
    f = str(root / "labels" / "train" / "a.txt")
    assert [(file, line) for file, line, _ in ds.bad_lines] == [(f, n) for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)]
    reasons = [r for _, _, r in ds.bad_lines]
    assert "got 4" in reasons[0] and "got 6" in reasons[1] and "not a number" in reasons[2]
    assert "out of range" in reasons[3] and "out of range" in reasons[4] and "not an integer" in reasons[5]
    assert "outside 0..1" in reasons[6] and "size" in reasons[7] and "outside 0..1" in reasons[8]
    assert ds.stats["bad_lines"] == 10 and ds.stats["duplicate_lines"] == 1
    assert f"{f}:2:" in caplog.text and f"{f}:6:" in caplog.text  # the first five are logged one by one
    assert f"{f}:7:" not in caplog.text and "10 bad label lines skipped" in caplog.text
    _, boxes, labels = ds[0]
    assert labels.tolist() == [1, 2, 2]
    np.testing.assert_allclose(boxes[1], [0, 15, 80, 45], atol=1e-3)  # clipped within tolerance
    np.testing.assert_allclose(boxes[2], [8, 6, 24, 24], atol=1e-3)     # polygon -> its bounding box


@pytest.mark.parametrize("content, match", [
    (None, "no data.yaml"),
    ("train: [unclosed\n", "malformed YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("train: images/train\nval: images/val\n", "no 'names'"),
    ("train: images/nope\nval: images/val\nnames: [a]\n", "path not found"),
])
def test_bad_yaml_is_one_line_user_error(tmp_path, content, match):
    root = _layout(tmp_path / "d", labels={"a": ""})
    (root / "data.yaml").unlink()
    if content is not None:
        (root / "data.yaml").write_text(content)
    with pytest.raises(UserError, match=match) as e:
        YOLODataset(root)
    assert "\n" not in str(e.value)


def test_bad_yaml_exits_2_with_one_line_from_a_script(tmp_path, capsys):
    import dataset_report
    root = _layout(tmp_path / "d", labels={"a": ""})
    (root / "data.yaml").write_text("names: [a\n")
    rc = run_main(dataset_report.main, ["--dataset", str(root), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "malformed YAML" in err and "Traceback" not in err


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n"})
    (root / "images" / "train" / "a.jpg").write_bytes(b"not a jpeg")
    ds = YOLODataset(root)
    _, _, labels = ds[ds.image_ids.index("images/train/a.jpg")]
    assert labels.tolist() == [2] and ds.skipped_images == 1


def test_synthetic_yolo_matches_synthetic_coco(tmp_path):
    """The generator's YOLO layout holds the same boxes as its COCO layout (crowd regions left out)."""
    from vision.datasets.coco_dataset import COCODataset
    from vision.datasets.synthetic import generate_coco_dataset, generate_yolo_dataset
    s_yolo = generate_yolo_dataset(tmp_path / "y", 10, 3, seed=4)
    generate_coco_dataset(tmp_path / "c", 10, 3, seed=4)
    y, c = YOLODataset(tmp_path / "y"), COCODataset(tmp_path / "c")
    assert y.class_names == c.class_names
    assert y.stats["boxes"] == s_yolo["splits"]["train"]["boxes"]
    assert y.stats["background"] == s_yolo["splits"]["train"]["background_images"]
    by_name = {Path(c.image_path(i)).name: i for i in range(len(c))}
    for i in range(len(y)):
        j = by_name[Path(y.image_path(i)).name]
        _, yb, yl = y[i]
        _, cb, cl = c[j]
        order_y, order_c = np.lexsort(yb.T[::-1]), np.lexsort(cb.T[::-1])
        np.testing.assert_allclose(yb[order_y], cb[order_c], atol=0.01)
        assert yl[order_y].tolist() == cl[order_c].tolist()


# ------------------------------------------------------------------------------- auto type
def _voc(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    return root


def test_auto_detects_every_type(tmp_path):
    from vision.datasets.synthetic import generate_coco_dataset, generate_yolo_dataset
    generate_coco_dataset(tmp_path / "coco", 2, 1)
    generate_yolo_dataset(tmp_path / "yolo", 2, 1)
    _voc(tmp_path / "voc")
    (tmp_path / "oi").mkdir()
    (tmp_path / "oi" / "sub-train-annotations-bbox.csv").write_text("ImageID\n")
    assert detect_dataset_type(tmp_path / "coco")[0] == "coco"
    assert detect_dataset_type(tmp_path / "voc") == ("voc", tmp_path / "voc" / "Annotations")
    assert detect_dataset_type(tmp_path / "oi")[0] == "open_images"
    assert detect_dataset_type(tmp_path / "yolo") == ("yolo", tmp_path / "yolo" / "data.yaml")
    assert detect_dataset_type(tmp_path / "yolo" / "data.yaml")[0] == "yolo"


def test_auto_refuses_ambiguous_and_unknown_folders(tmp_path):
    from vision.datasets.synthetic import generate_coco_dataset
    generate_coco_dataset(tmp_path / "both", 2, 1)
    _voc(tmp_path / "both")
    with pytest.raises(UserError, match=r"ambiguous: it looks like coco .* and voc"):
        detect_dataset_type(tmp_path / "both")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        detect_dataset_type(tmp_path / "empty")
    msg = str(e.value)
    assert "\n" not in msg
    for looked_for in ("annotations/instances_*.json", "Annotations/ + JPEGImages/", "sub-*-annotations-bbox.csv",
                       "data.yaml"):
        assert looked_for in msg
    with pytest.raises(UserError, match="not found"):
        detect_dataset_type(tmp_path / "missing")


def test_open_dataset_auto_logs_the_detected_type(tmp_path, caplog):
    from vision.datasets.synthetic import generate_yolo_dataset
    from vision.training.dataset_folders import open_dataset
    generate_yolo_dataset(tmp_path / "y", 3, 2)
    with caplog.at_level(logging.INFO):
        ds = open_dataset("auto", tmp_path / "y", split="val")
    assert isinstance(ds, YOLODataset) and len(ds) == 2
    assert f"dataset type: yolo (detected from {tmp_path / 'y' / 'data.yaml'})" in caplog.text
    ds = open_dataset("yolo", tmp_path / "y" / "data.yaml", split="train")  # the yaml itself is a dataset path
    assert len(ds) == 3


# ------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_yolo_dataset_trains_and_evaluates_without_a_type_flag(tmp_path):
    from vision.datasets.synthetic import generate_yolo_dataset
    generate_yolo_dataset(tmp_path / "y", 8, 4, seed=1, image_size=(128, 96))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "train_ssd.py"), "--datasets", str(tmp_path / "y"),
                        "--net", "mb1-ssd-lite", "--resolution", "128", "--batch-size", "4", "--workers", "0",
                        "--epochs", "1", "--checkpoint-folder", str(run)],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "dataset type: yolo (detected from" in r.stderr
    labels = (run / "labels.txt").read_text().split()
    assert labels[0] == "BACKGROUND" and len((run / "labels.txt").read_text().splitlines()) == 7
    e = subprocess.run([sys.executable, str(REPO / "eval_ssd.py"), "--trained-model", str(run), "--workers", "0",
                        "--eval-dir", str(tmp_path / "eval")], cwd=REPO, capture_output=True, text=True,
                       timeout=600, env=env)
    assert e.returncode == 0, e.stderr[-3000:]
    assert "dataset type: yolo (detected from" in e.stderr
    summaries = list((tmp_path / "eval").glob("*.json"))
    assert summaries, "eval_ssd.py wrote no summary"
    assert any(json.loads(p.read_text()).get("num_images") == 4 for p in summaries)


def test_header_size_follows_exif_rotation_like_the_decoder(tmp_path):
    """Normalised YOLO boxes are scaled by the upright size: the header probe must agree with decoding."""
    from PIL import Image
    from vision.datasets.image_io import load_image_rgb
    from vision.datasets.image_size import image_size
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    Image.new("RGB", (80, 40), (200, 10, 10)).save(path, exif=exif)
    h, w = load_image_rgb(path).shape[:2]
    assert image_size(path) == (w, h) == (40, 80)


def test_synthetic_cli_writes_the_yolo_layout(tmp_path, capsys):
    from vision.datasets import synthetic
    assert run_main(synthetic.main, [str(tmp_path / "y"), "--format", "yolo", "--train", "3", "--val", "2"]) == 0
    assert (tmp_path / "y" / "data.yaml").is_file() and len(YOLODataset(tmp_path / "y", split="val")) == 2
    assert run_main(synthetic.main, [str(tmp_path / "z"), "--format", "yolo", "--fixed"]) == 2
    assert "--fixed is for --format coco only" in capsys.readouterr().err


# ------------------------------------------------------------------------------- what real exports do
def test_labels_in_the_wrong_place_are_refused_not_trained_as_background(tmp_path):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n"})
    (root / "labels").rename(root / "label")  # a typo: every image would be a background image
    with pytest.raises(UserError, match=r"none of the 2 images has a label file .*labels[/\\]train[/\\]a\.txt"):
        YOLODataset(root)
    assert len(YOLODataset(root, split="val")) == 1  # val / test may be all negatives: a warning only


def test_label_file_with_only_bad_lines_is_left_out_not_made_background(tmp_path, caplog):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2 0.91\n1 0.4 0.4 0.1 0.1 0.88\n",
                                           "b": "1 0.5 0.5 0.2 0.2\n", "c": ""})
    with caplog.at_level(logging.WARNING):
        ds = YOLODataset(root)
    assert sorted(ds.image_ids) == ["images/train/b.jpg", "images/train/c.jpg"]  # c: a real background image
    assert ds.stats["all_lines_bad"] == 1 and ds.stats["background"] == 1 and ds.stats["bad_lines"] == 2
    assert "1 images left out" in caplog.text and "confidence" in caplog.text


def test_symlinked_subfolders_of_a_split_are_followed(tmp_path):
    other = tmp_path / "store"
    _image(other / "images" / "batch1" / "a.jpg")
    (other / "labels" / "batch1").mkdir(parents=True)
    (other / "labels" / "batch1" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    root = _layout(tmp_path / "d", labels={"b": "1 0.5 0.5 0.2 0.2\n"})
    os.symlink(other / "images" / "batch1", root / "images" / "train" / "batch1")
    os.symlink(other / "labels" / "batch1", root / "labels" / "train" / "batch1")
    os.symlink(root / "images" / "train", root / "images" / "train" / "loop")  # visited once
    ds = YOLODataset(root)
    assert sorted(ds.image_ids) == ["images/train/b.jpg", "images/train/batch1/a.jpg"]


def test_cvat_and_label_studio_exports_are_named_with_the_yaml_to_write(tmp_path):
    cvat = tmp_path / "cvat"
    _image(cvat / "obj_train_data" / "a.jpg")
    (cvat / "obj_train_data" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (cvat / "obj.names").write_text("thing\n")
    (cvat / "obj.data").write_text("classes = 1\ntrain = data/train.txt\nnames = data/obj.names\n")
    ls = tmp_path / "ls"
    _image(ls / "images" / "a.jpg")
    (ls / "labels").mkdir()
    (ls / "classes.txt").write_text("thing\n")
    for folder, tool, train in ((cvat, "CVAT 'YOLO 1.1'", "train: obj_train_data"),
                                (ls, "Label Studio", "train: images")):
        for call in (lambda: detect_dataset_type(folder), lambda: YOLODataset(folder)):
            with pytest.raises(UserError, match="looks like a " + tool) as e:
                call()
            assert train in str(e.value) and "\n" not in str(e.value)


def test_yaml_folder_empty_yaml_and_trailing_tabs(tmp_path):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n"})
    text = (root / "data.yaml").read_text()
    (root / "data.yaml").unlink()
    (root / "data.yaml").mkdir()
    with pytest.raises(UserError, match="is a folder, not a yaml file"):
        YOLODataset(root)
    (root / "data.yaml").rmdir()
    (root / "data.yaml").write_text("# nothing yet\n")
    with pytest.raises(UserError, match="the file is empty"):
        YOLODataset(root)
    (root / "data.yaml").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", " \t\r\n").encode())  # BOM, CRLF, tabs
    assert len(YOLODataset(root)) == 1


def test_a_path_key_from_another_machine_falls_back_to_the_yamls_folder(tmp_path, caplog):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n"})
    (root / "data.yaml").write_text("path: /content/datasets/parts\ntrain: images/train\nval: images/val\n"
                                    "names: [a, b]\n")
    with caplog.at_level(logging.WARNING):
        assert len(YOLODataset(root)) == 1
    assert "/content/datasets/parts' is not a folder here" in caplog.text


def test_image_list_in_a_subfolder_may_name_paths_from_the_dataset_root(tmp_path):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n"})
    (root / "lists").mkdir()
    (root / "lists" / "train.txt").write_text("./images/train/a.jpg\nimages/train/b.jpg\n")
    (root / "data.yaml").write_text("train: lists/train.txt\nval: images/val\nnames: [a, b]\n")
    assert sorted(YOLODataset(root).image_ids) == ["images/train/a.jpg", "images/train/b.jpg"]


def test_class_names_keep_their_text_yes_no_on_off_and_leading_zeros(tmp_path):
    root = _layout(tmp_path / "d", names="[yes, no, On, off, 007, 1.50]", extra="nc: 6\n",
                   labels={"a": "1 0.5 0.5 0.2 0.2\n"})
    assert YOLODataset(root).class_names == ["BACKGROUND", "yes", "no", "On", "off", "007", "1.50"]
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: yes, 1: no}\n")
    assert YOLODataset(root).class_names == ["BACKGROUND", "yes", "no"]


def test_windows_written_paths_and_a_roboflow_coco_export(tmp_path):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n"})
    (root / "train.txt").write_text(".\\images\\train\\a.jpg\r\nimages\\train\\b.jpg\r\n")
    (root / "data.yaml").write_text("train: train.txt\nval: images\\val\nnames: [a, b]\n")
    assert sorted(YOLODataset(root).image_ids) == ["images/train/a.jpg", "images/train/b.jpg"]
    assert len(YOLODataset(root, split="val")) == 1
    rf = tmp_path / "rf"
    (rf / "train").mkdir(parents=True)
    (rf / "train" / "_annotations.coco.json").write_text("{}")
    with pytest.raises(UserError, match="Roboflow COCO export"):
        detect_dataset_type(rf)


def test_a_yaml_of_another_name_is_pointed_to(tmp_path):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n"})
    (root / "data.yaml").rename(root / "parts.yaml")
    for call in (lambda: detect_dataset_type(root), lambda: YOLODataset(root)):
        with pytest.raises(UserError, match=r"it has parts\.yaml: pass that file itself"):
            call()
    assert detect_dataset_type(root / "parts.yaml")[0] == "yolo" and len(YOLODataset(root / "parts.yaml")) == 1


def test_label_files_without_an_image_are_reported(tmp_path, caplog):
    root = _layout(tmp_path / "d", labels={"a": "0 0.5 0.5 0.2 0.2\n"})
    (root / "images" / "train" / "b.gif").write_bytes(b"GIF89a")  # a type not read here
    (root / "labels" / "train" / "b.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    with caplog.at_level(logging.WARNING):
        ds = YOLODataset(root)
    assert len(ds) == 1 and ds.stats["labels_without_image"] == 1
    assert "1 label files have no image" in caplog.text and "b.txt" in caplog.text
    flat = tmp_path / "flat"  # labels beside the images (CVAT): a list file there is no orphan label
    _image(flat / "a.jpg")
    (flat / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (flat / "train.txt").write_text("a.jpg\n")
    (flat / "data.yaml").write_text("train: train.txt\nval: train.txt\nnames: [a]\n")
    assert YOLODataset(flat).stats["labels_without_image"] == 0
