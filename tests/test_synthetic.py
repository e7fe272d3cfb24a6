"""The synthetic COCO generator: deterministic, COCO-shaped, with COCO's quirks."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.datasets.image_io import load_image_rgb
from vision.datasets.synthetic import CLASSES, generate_coco_dataset, rle_encode

from tests.conftest import REPO, run_script
ORIGINAL_IDS = [1, 3, 7, 18, 44, 90]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate_coco_dataset(out, 40, 12, seed=3)
    return out, summary


def _load(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"instances_{split}2017.json").read_text())


def test_layout_and_summary(synth):
    out, summary = synth
    for split, n in (("train", 40), ("val", 12)):
        data = _load(out, split)
        assert len(data["images"]) == n == summary["splits"][split]["images"]
        assert len(list((out / f"{split}2017").glob("*.jpg"))) == n
        for im in data["images"]:
            assert (out / f"{split}2017" / im["file_name"]).is_file()
        assert summary["splits"][split]["annotations"] == len(data["annotations"])
    assert summary["splits"]["train"]["boxes"] > 40


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_coco_dataset(a, 6, 3, seed=11)
    generate_coco_dataset(b, 6, 3, seed=11)
    generate_coco_dataset(c, 6, 3, seed=12)
    for split in ("train", "val"):
        ja = (a / "annotations" / f"instances_{split}2017.json").read_bytes()
        assert ja == (b / "annotations" / f"instances_{split}2017.json").read_bytes()
        assert ja != (c / "annotations" / f"instances_{split}2017.json").read_bytes()
        for f in sorted((a / f"{split}2017").iterdir()):
            assert f.read_bytes() == (b / f"{split}2017" / f.name).read_bytes(), f.name


def test_image_content_does_not_depend_on_split_size(tmp_path):
    generate_coco_dataset(tmp_path / "small", 5, 0, seed=2)
    generate_coco_dataset(tmp_path / "large", 9, 0, seed=2)
    for f in (tmp_path / "small" / "train2017").iterdir():
        assert f.read_bytes() == (tmp_path / "large" / "train2017" / f.name).read_bytes()


def test_coco_quirks_present(synth):
    out, _ = synth
    data = _load(out, "train")
    assert set(data) >= {"info", "licenses", "images", "annotations", "categories"}
    assert data["licenses"] and data["info"]["year"] == 2017
    cats = data["categories"]
    assert [c["id"] for c in cats] == ORIGINAL_IDS  # gaps, like COCO
    assert all(c["supercategory"] and c["name"] for c in cats)
    anns = data["annotations"]
    crowd = [a for a in anns if a["iscrowd"]]
    normal = [a for a in anns if not a["iscrowd"]]
    assert crowd and normal
    for a in crowd:  # uncompressed RLE like COCO's crowd regions
        assert set(a["segmentation"]) == {"counts", "size"}
    for a in normal:  # polygons
        assert isinstance(a["segmentation"], list) and all(len(p) >= 6 for p in a["segmentation"])
    assert all(a["area"] > 0 for a in anns)
    annotated = {a["image_id"] for a in anns}
    assert any(im["id"] not in annotated for im in data["images"])  # images without any annotation
    ids = [im["id"] for im in data["images"]]
    assert ids != sorted(ids)  # list not in id order
    assert sorted(ids) != list(range(min(ids), min(ids) + len(ids)))  # gapped ids
    sizes = {(im["width"], im["height"]) for im in data["images"]}
    assert len(sizes) > 5
    val_ids = {im["id"] for im in _load(out, "val")["images"]}
    assert not val_ids & set(ids)
    ann_ids = [a["id"] for a in anns] + [a["id"] for a in _load(out, "val")["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))


def test_boxes_sizes_overlap_and_inside_images(synth):
    out, _ = synth
    data = _load(out, "train")
    dims = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    by_image: dict[int, list] = {}
    fracs = []
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        W, H = dims[a["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and w >= 1 and h >= 1
        if not a["iscrowd"]:
            fracs.append(max(w, h) / min(W, H))
            by_image.setdefault(a["image_id"], []).append((x, y, x + w, y + h))
    assert 0.05 < min(fracs) < 0.2 and 0.45 < max(fracs) < 0.8
    overlaps = 0
    for boxes in by_image.values():
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                    overlaps += 1
    assert overlaps > 0
    assert max(len(v) for v in by_image.values()) <= 4


def test_rle_and_polygons_match_area_with_pycocotools(synth):
    mask_utils = pytest.importorskip("pycocotools.mask")
    out, _ = synth
    data = _load(out, "train")
    dims = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    for a in data["annotations"]:
        W, H = dims[a["image_id"]]
        rles = mask_utils.frPyObjects(a["segmentation"], H, W)
        rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
        if a["iscrowd"]:
            assert mask_utils.area(rle) == a["area"]
            x, y, w, h = mask_utils.toBbox(rle)
            assert [x, y, w, h] == a["bbox"]
        else:  # polygons trace the mask outline: close to the pixel area
            assert abs(mask_utils.area(rle) - a["area"]) < 0.35 * a["area"] + 20


def test_rle_encode_roundtrip():
    mask_utils = pytest.importorskip("pycocotools.mask")
    m = np.zeros((7, 5), bool)
    m[0, 0] = m[2:5, 1:3] = m[6, 4] = True
    dec = mask_utils.decode(mask_utils.frPyObjects(rle_encode(m), 7, 5))
    assert np.array_equal(dec.astype(bool), m)


def test_pycocotools_reads_it(synth):
    coco_mod = pytest.importorskip("pycocotools.coco")
    out, _ = synth
    coco = coco_mod.COCO(str(out / "annotations" / "instances_val2017.json"))
    assert sorted(coco.getCatIds()) == ORIGINAL_IDS


def test_exactly_one_grayscale_jpeg_loads_as_rgb(synth):
    out, summary = synth
    gray = []
    for f in sorted((out / "train2017").iterdir()) + sorted((out / "val2017").iterdir()):
        if cv2.imread(str(f), cv2.IMREAD_UNCHANGED).ndim == 2:
            gray.append(f)
    assert len(gray) == 1 and gray[0].name in summary["splits"]["train"]["grayscale_images"]
    img = load_image_rgb(gray[0])
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


def test_classes_are_visually_distinct(synth):
    """Each class's mean colour inside its boxes is close to its nominal colour (learnable)."""
    out, _ = synth
    data = _load(out, "train")
    files = {im["id"]: im["file_name"] for im in data["images"]}
    colour = {c[0]: np.array(c[3], float) for c in CLASSES}
    checked = 0
    for a in data["annotations"]:
        if a["iscrowd"] or a["bbox"][2] < 30:
            continue
        img = load_image_rgb(out / "train2017" / files[a["image_id"]])
        if np.array_equal(img[..., 0], img[..., 1]):
            continue  # the grayscale image
        x, y, w, h = map(int, a["bbox"])
        patch = img[y + h // 2 - 2: y + h // 2 + 3, x + w // 2 - 2: x + w // 2 + 3].reshape(-1, 3).mean(0)
        if a["category_id"] == 90:  # ring: centre is a hole
            continue
        dists = {cid: np.linalg.norm(patch - col) for cid, col in colour.items()}
        if a["category_id"] in (3, 44):  # square and cross centres are solid
            assert min(dists, key=dists.get) == a["category_id"]
            checked += 1
    assert checked >= 3


def test_fixed_format(tmp_path):
    generate_coco_dataset(tmp_path / "plain", 8, 0, seed=5)
    generate_coco_dataset(tmp_path / "fixed", 8, 0, seed=5, fixed=True)
    plain = _load(tmp_path / "plain", "train")
    fixed = _load(tmp_path / "fixed", "train")
    assert fixed["pytorch_ssd_fixed"] == {"version": 1}
    assert [c["id"] for c in fixed["categories"]] == list(range(1, 7))
    assert [c["original_id"] for c in fixed["categories"]] == ORIGINAL_IDS
    assert [c["name"] for c in fixed["categories"]] == [c["name"] for c in plain["categories"]]
    remap = {c["original_id"]: c["id"] for c in fixed["categories"]}
    assert [remap[a["category_id"]] for a in plain["annotations"]] == [a["category_id"] for a in fixed["annotations"]]
    assert fixed["images"] == plain["images"]
    for f in (tmp_path / "plain" / "train2017").iterdir():  # same pictures
        assert f.read_bytes() == (tmp_path / "fixed" / "train2017" / f.name).read_bytes()




def test_overwrite_refused_when_asked(tmp_path):
    from vision.utils.misc import UserError
    generate_coco_dataset(tmp_path, 2, 0)
    with pytest.raises(UserError, match="already exists"):
        generate_coco_dataset(tmp_path, 2, 0, overwrite=False)


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_cli_refuses_a_folder_that_is_not_empty(tmp_path, capsys, fmt):
    """The generated names are real COCO names (000000000001.jpg, instances_train2017.json):
    the CLI writes into a non-empty OUT only with --overwrite (--no-overwrite is the default);
    an OUT that is a file is a one-line usage error. The Python functions keep overwriting."""
    from vision.datasets.synthetic import main
    from vision.utils.misc import run_main

    out = tmp_path / "data"
    args = ["--train", "2", "--val", "1", "--format", fmt]
    assert run_main(main, [str(out), *args]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    ann = next(p for p in before if p.suffix in (".json", ".yaml"))
    ann.write_bytes(b"the user's own annotations")
    before[ann] = ann.read_bytes()
    capsys.readouterr()
    for extra in ([], ["--no-overwrite"], ["--seed", "3"]):
        assert run_main(main, [str(out), *args, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out) in err and "--overwrite" in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written
    assert run_main(main, [str(out), *args, "--overwrite"]) == 0
    assert ann.read_bytes() != b"the user's own annotations"
    (tmp_path / "empty").mkdir()
    assert run_main(main, [str(tmp_path / "empty"), *args]) == 0
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    capsys.readouterr()
    assert run_main(main, [str(a_file), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file, not a folder" in err and str(a_file) in err, err
    assert a_file.read_text() == "x"
    with pytest.raises(SystemExit):
        main([str(out), "--overwrite", "--no-overwrite"])


def test_cli(tmp_path):
    """``python3 -m vision.datasets.synthetic`` from another folder (the repository on PYTHONPATH);
    a relative OUT is relative to that folder."""
    env = {"PYTHONPATH": str(REPO)}
    r = run_script("-m vision.datasets.synthetic", "cli", "--train", "4", "--val", "2", "--seed", "7", "--fixed",
                   "--image-size", "160", "120", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "train: 4 images" in r.stdout
    data = _load(tmp_path / "cli", "train")
    assert "pytorch_ssd_fixed" in data and len(data["images"]) == 4
    assert all(100 <= im["width"] <= 190 for im in data["images"])
    for bad in (["--train", "-1"], ["--image-size", "10", "10"], ["--train", "0", "--val", "0"]):
        r = run_script("-m vision.datasets.synthetic", tmp_path / "x", *bad, cwd=tmp_path, env=env)
        assert r.returncode == 2, (bad, r.stderr)
        assert "Traceback" not in r.stderr
    r = run_script("-m vision.datasets.synthetic", "--help", cwd=tmp_path, env=env)
    assert r.returncode == 0 and "--fixed" in r.stdout
