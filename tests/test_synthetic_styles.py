"""The synthetic generator's two looks: ``shapes`` never changes, ``scenes`` is another look
with the same classes, files and COCO quirks."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.datasets.synthetic import CLASSES, STYLES, generate_coco_dataset, generate_yolo_dataset, main
from vision.datasets.synthetic_geometry import CLASS_SHAPES, DISTRACTOR_SHAPES, distractor_mask, shape_mask
from vision.utils.misc import UserError, run_main

ORIGINAL_IDS = [1, 3, 7, 18, 44, 90]
# SHA-256 over (relative path, bytes) of every file the default look writes. Recorded benchmark
# numbers were measured on these bytes: a change here (from this module, or from an OpenCV /
# NumPy upgrade that draws or encodes differently) means old and new numbers do not compare.
SHAPES_COCO_SHA = "4fb51ce2603ca03cd47b783d9c65314bca58eae8e3d777a098584b2407e711ee"  # 6 / 3 images, seed 11
SHAPES_YOLO_SHA = "f2cb616d9d45f94138cd68910871315384e96f63a2052f5d4f2111a8184adaa7"  # 5 / 2 images, seed 4


def _tree_sha(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"instances_{split}2017.json").read_text())


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    return out, generate_coco_dataset(out, 40, 12, seed=3, style="scenes")


def test_shapes_output_is_pinned(tmp_path):
    generate_coco_dataset(tmp_path / "c", 6, 3, seed=11)
    generate_coco_dataset(tmp_path / "s", 6, 3, seed=11, style="shapes")
    generate_yolo_dataset(tmp_path / "y", 5, 2, seed=4)
    assert _tree_sha(tmp_path / "c") == SHAPES_COCO_SHA
    assert _tree_sha(tmp_path / "s") == SHAPES_COCO_SHA
    assert _tree_sha(tmp_path / "y") == SHAPES_YOLO_SHA


def test_scenes_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = tmp_path / "a"
    generate_coco_dataset(a, 5, 3, seed=8, style="scenes")
    generate_coco_dataset(tmp_path / "b", 5, 3, seed=8, style="scenes")
    generate_coco_dataset(tmp_path / "c", 5, 3, seed=9, style="scenes")
    fa, fb, fc = _files(a), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert fa == fb
    for name in fa:  # same file names, other contents
        if name.endswith(".jpg") or name.endswith(".json"):
            assert fa[name] != fc[name], name


def test_scenes_content_does_not_depend_on_split_size(tmp_path):
    generate_coco_dataset(tmp_path / "small", 4, 0, seed=2, style="scenes")
    generate_coco_dataset(tmp_path / "large", 7, 0, seed=2, style="scenes")
    for f in (tmp_path / "small" / "train2017").iterdir():
        assert f.read_bytes() == (tmp_path / "large" / "train2017" / f.name).read_bytes()


def test_scenes_look_differs_from_shapes(tmp_path, scenes):
    out, _ = scenes
    shapes = tmp_path / "shapes"
    generate_coco_dataset(shapes, 40, 12, seed=3)
    sc, sh = _load(out, "train"), _load(shapes, "train")
    assert sc["info"]["description"] != sh["info"]["description"] and "scenes" in sc["info"]["description"]
    assert [a["bbox"] for a in sc["annotations"]] != [a["bbox"] for a in sh["annotations"]]
    for f in (out / "train2017").iterdir():  # same file names, every picture other
        assert f.read_bytes() != (shapes / "train2017" / f.name).read_bytes()

    def busy(root: Path) -> float:  # mean gradient magnitude: clutter, textures and noise
        vals = []
        for f in sorted((root / "train2017").iterdir()):
            g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32)
            vals.append(np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)).mean() + np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean())
        return float(np.mean(vals))

    def saturation(root: Path) -> float:
        vals = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2HSV)[..., 1].mean()
                for f in sorted((root / "train2017").iterdir())]
        return float(np.mean(vals))

    assert busy(out) > 1.3 * busy(shapes)
    assert saturation(out) > 1.3 * saturation(shapes)  # shapes' backgrounds are muted


def test_scenes_quirks_present(scenes):
    out, summary = scenes
    assert summary["style"] == "scenes"
    data = _load(out, "train")
    assert set(data) >= {"info", "licenses", "images", "annotations", "categories"}
    assert [c["id"] for c in data["categories"]] == ORIGINAL_IDS
    assert [c["name"] for c in data["categories"]] == [c[1] for c in CLASSES]
    anns = data["annotations"]
    crowd = [a for a in anns if a["iscrowd"]]
    normal = [a for a in anns if not a["iscrowd"]]
    assert crowd and normal
    assert all(set(a["segmentation"]) == {"counts", "size"} for a in crowd)
    assert all(isinstance(a["segmentation"], list) and all(len(p) >= 6 for p in a["segmentation"]) for a in normal)
    assert all(a["area"] > 0 for a in anns)
    annotated = {a["image_id"] for a in anns}
    assert any(im["id"] not in annotated for im in data["images"])  # empty images
    ids = [im["id"] for im in data["images"]]
    assert ids != sorted(ids) and sorted(ids) != list(range(min(ids), min(ids) + len(ids)))
    assert len({(im["width"], im["height"]) for im in data["images"]}) > 5
    assert len({c for c in (a["category_id"] for a in normal)}) == len(CLASSES)
    gray = [f for split in ("train", "val") for f in sorted((out / f"{split}2017").iterdir())
            if cv2.imread(str(f), cv2.IMREAD_UNCHANGED).ndim == 2]
    assert [f.name for f in gray] == summary["splits"]["train"]["grayscale_images"]


def test_scenes_boxes_inside_images_and_sizes(scenes):
    out, _ = scenes
    fracs = []
    for split in ("train", "val"):
        data = _load(out, split)
        dims = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
        for a in data["annotations"]:
            x, y, w, h = a["bbox"]
            W, H = dims[a["image_id"]]
            assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and w >= 1 and h >= 1, a
            if not a["iscrowd"]:
                fracs.append(max(w, h) / min(W, H))
    assert min(fracs) < 0.08 and 0.3 < max(fracs) < 0.8  # 6-50 % of the side (shapes: 10-60 %), rotated


def test_scenes_load_through_coco_loader_and_pycocotools(scenes):
    from vision.datasets.coco_dataset import COCODataset
    out, summary = scenes
    for split in ("train", "val"):
        ds = COCODataset(out, dataset_type=split)
        assert len(ds) == summary["splits"][split]["images"]
        boxes = 0
        for i in range(len(ds)):
            img, b, labels = ds[i]
            assert img.ndim == 3 and img.shape[2] == 3
            assert b.shape[0] == labels.shape[0]
            boxes += int(b.shape[0])
        assert boxes >= summary["splits"][split]["boxes"]  # crowd regions may be kept as boxes too
    coco_mod = pytest.importorskip("pycocotools.coco")
    assert sorted(coco_mod.COCO(str(out / "annotations" / "instances_train2017.json")).getCatIds()) == ORIGINAL_IDS


def test_scenes_yolo_layout_matches_coco(tmp_path):
    from vision.datasets.yolo import YOLODataset
    s = generate_yolo_dataset(tmp_path / "y", 8, 3, seed=4, style="scenes")
    generate_coco_dataset(tmp_path / "c", 8, 3, seed=4, style="scenes")
    assert s["style"] == "scenes" and "synthetic scenes" in (tmp_path / "y" / "data.yaml").read_text()
    y = YOLODataset(tmp_path / "y")
    assert y.stats["boxes"] == s["splits"]["train"]["boxes"]
    assert y.stats["background"] == s["splits"]["train"]["background_images"]
    for f in (tmp_path / "c" / "train2017").iterdir():  # the same pictures
        assert f.read_bytes() == (tmp_path / "y" / "images" / "train" / f.name).read_bytes()


def test_unknown_style_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="unknown style 'photo'"):
        generate_coco_dataset(tmp_path, 2, 0, style="photo")
    with pytest.raises(UserError, match="unknown style"):
        generate_yolo_dataset(tmp_path, 2, 0, style="photo")
    with pytest.raises(SystemExit) as exc:  # argparse: usage line and exit code 2
        main([str(tmp_path / "x"), "--style", "photo"])
    assert exc.value.code == 2
    assert "invalid choice: 'photo'" in capsys.readouterr().err


def test_cli_style(tmp_path, capsys):
    assert STYLES == ("shapes", "scenes")
    assert run_main(main, [str(tmp_path / "a"), "--train", "3", "--val", "1", "--style", "scenes"]) == 0
    generate_coco_dataset(tmp_path / "b", 3, 1, style="scenes")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert run_main(main, [str(tmp_path / "y"), "--format", "yolo", "--train", "2", "--val", "1",
                           "--style", "scenes"]) == 0
    assert "synthetic scenes" in (tmp_path / "y" / "data.yaml").read_text()


@pytest.mark.parametrize("shape", DISTRACTOR_SHAPES + CLASS_SHAPES)
def test_shape_masks_are_drawn_inside_the_frame(shape):
    rng = np.random.default_rng(0)
    draw = distractor_mask if shape in DISTRACTOR_SHAPES else shape_mask
    m = draw(shape, 40, 30, 40, rng, 80, 60)
    assert m.dtype == np.uint8 and m.shape == (60, 80)
    x, y, w, h = cv2.boundingRect(m)
    assert 20 <= w <= 60 and 20 <= h <= 60 and np.count_nonzero(m >= 128) > 200
    with pytest.raises(ValueError, match="unknown"):
        draw("octagon", 40, 30, 40, rng, 80, 60)


def test_scenes_with_fixed_ids_and_empty_share(tmp_path):
    s = generate_coco_dataset(tmp_path, 5, 0, seed=1, style="scenes", fixed=True, empty_share=1.0)
    data = _load(tmp_path, "train")
    assert [c["original_id"] for c in data["categories"]] == ORIGINAL_IDS
    assert data["annotations"] == [] and s["splits"]["train"]["empty_images"] == 5
