"""dataset_report.py: counts against the generator's own, coverage against a brute-force loop,
the priors file (suggestion, priors_from_spec) and the output rules."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

import dataset_report
from vision.ssd.custom_priors import (load_priors_spec, priors_from_spec, priors_per_cell, spec_from_ssd_specs,
                                      validate_spec)
from vision.ssd.registry import feature_map_sizes, get_config
from vision.utils.misc import UserError, run_main


@pytest.fixture(scope="module")
def yolo_data(tmp_path_factory):
    from vision.datasets.synthetic import generate_yolo_dataset
    root = tmp_path_factory.mktemp("rep") / "y"
    summary = generate_yolo_dataset(root, 14, 5, seed=2, image_size=(200, 120))
    return root, summary


def report(args, tmp_path, capsys=None):
    out = tmp_path / "out"
    rc = run_main(dataset_report.main, [*map(str, args), "--output", str(out)])
    assert rc == 0
    return json.loads((out / "report.json").read_text()), out


def test_per_class_counts_equal_the_generators_counts(yolo_data, tmp_path, capsys):
    root, summary = yolo_data
    rep, out = report(["--dataset", root, "--split", "train", "val"], tmp_path)
    tr, va = summary["splits"]["train"], summary["splits"]["val"]
    assert rep["dataset_type"] == "yolo"
    assert rep["images"] == tr["images"] + va["images"]
    assert rep["boxes"] == tr["boxes"] + va["boxes"]
    assert rep["images_without_boxes"] == tr["background_images"] + va["background_images"]
    got = {c["name"]: c["boxes"] for c in rep["classes"]}
    want = {n: tr["boxes_per_class"][n] + va["boxes_per_class"][n] for n in summary["names"]}
    assert got == want and sum(want.values()) > 0
    printed = capsys.readouterr().out
    for name, n in want.items():
        assert any(line.startswith(name) and f" {n} " in line for line in printed.splitlines())
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_coco_counts_equal_the_generators_counts(tmp_path):
    from vision.datasets.synthetic import generate_coco_dataset
    s = generate_coco_dataset(tmp_path / "c", 12, 2, seed=7)
    rep, _ = report(["--dataset", tmp_path / "c", "--dataset-type", "coco"], tmp_path)
    assert {c["name"]: c["boxes"] for c in rep["classes"]} == s["splits"]["train"]["boxes_per_class"]
    assert rep["boxes"] == s["splits"]["train"]["boxes"]  # crowd regions are not training boxes


def _brute_force(root: Path, split_names, priors: torch.Tensor, threshold: float):
    """Every box of every image against every prior, one pair at a time, with torchvision's box_iou."""
    from vision.datasets.yolo import YOLODataset
    corner = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)
    hits, per_class = [], {}
    for split in split_names:
        ds = YOLODataset(root, split=split)
        for i in range(len(ds)):
            with Image.open(ds.image_path(i)) as im:
                w, h = im.size
            boxes, labels = ds.normalized_target(i)
            for box, label in zip(boxes, labels):
                if (box[2] - box[0]) * w < 1 or (box[3] - box[1]) * h < 1:
                    continue  # training drops boxes under a pixel
                best = 0.0
                for p in corner:
                    best = max(best, float(box_iou(torch.tensor(box)[None].double(), p[None].double())[0, 0]))
                hits.append(best >= threshold)
                per_class.setdefault(ds.class_names[label], []).append(best >= threshold)
    return np.mean(hits), {k: np.mean(v) for k, v in per_class.items()}, len(hits)


def test_coverage_equals_a_brute_force_computation(yolo_data, tmp_path):
    root, _ = yolo_data
    rep, _ = report(["--dataset", root, "--split", "val", "--net", "mb1-ssd-lite", "--resolution", "160"], tmp_path)
    priors = get_config("mb1-ssd-lite", 160).priors
    overall, per_class, n = _brute_force(root, ["val"], priors, 0.5)
    cov = rep["prior_coverage"]
    assert cov["boxes"] == n and n > 0
    assert cov["overall"] == pytest.approx(overall, abs=1e-4)
    assert 0 < cov["overall"] < 1  # the set is chosen so that both kinds of box exist
    for name, share in per_class.items():
        assert cov["per_class"][name] == pytest.approx(share, abs=1e-4)
    assert sum(s["boxes"] for s in cov["per_size"]) == n
    assert len(rep["uncaught_boxes"]) == n - cov["covered"]
    assert "IoU >= 0.5" in cov["rule"]


def test_default_spec_round_trips_to_the_nets_priors():
    cfg = get_config("mb1-ssd", 300)
    spec = spec_from_ssd_specs(cfg.specs, 300, "mb1-ssd")
    validate_spec(json.loads(json.dumps(spec)))
    torch.testing.assert_close(priors_from_spec(spec, 300), cfg.priors)
    fms = feature_map_sizes("mb1-ssd", 512)
    torch.testing.assert_close(priors_from_spec(spec, 512, fms), get_config("mb1-ssd", 512).priors)
    assert priors_per_cell(spec) == [6] * 6
    with pytest.raises(UserError, match="feature maps"):
        priors_from_spec(spec, 300, [19, 10, 5, 3, 2])
    bad = json.loads(json.dumps(spec))
    bad["feature_maps"][2]["max_size"] = 10
    with pytest.raises(UserError, match=r"feature_maps\[2\]: max_size 10 is smaller than min_size 150"):
        validate_spec(bad)


def test_suggested_priors_file_keeps_head_shapes_and_reaches_its_reported_coverage(yolo_data, tmp_path):
    root, _ = yolo_data
    pfile = tmp_path / "priors.json"
    rep, _ = report(["--dataset", root, "--suggest-priors", pfile], tmp_path)
    spec = load_priors_spec(pfile)
    default = spec_from_ssd_specs(get_config("mb1-ssd", 300).specs, 300)
    assert priors_per_cell(spec) == priors_per_cell(default)
    assert [m["feature_map_size"] for m in spec["feature_maps"]] == feature_map_sizes("mb1-ssd", 300)
    suggested = rep["alternatives"][-1]
    assert suggested["what"].startswith("suggested priors")
    assert spec["coverage"]["overall"] == suggested["overall"] >= rep["prior_coverage"]["overall"]
    again, _ = report(["--dataset", root, "--priors", pfile], tmp_path / "again")
    assert again["prior_coverage"]["overall"] == suggested["overall"]
    assert again["prior_coverage"]["priors"] == f"priors file {pfile}"


def test_higher_resolution_alternatives_are_computed(yolo_data, tmp_path):
    root, _ = yolo_data
    rep, _ = report(["--dataset", root, "--min-coverage", "1.0"], tmp_path)
    res = [a for a in rep["alternatives"] if a["what"].startswith("--resolution")]
    assert [a["resolution"] for a in res] == [450, 600]
    assert res[1]["priors"] == get_config("mb1-ssd", 600).num_priors
    if rep["prior_coverage"]["overall"] < 1.0:
        assert rep["advice"]


def test_output_rules(yolo_data, tmp_path, capsys):
    root, _ = yolo_data
    f = tmp_path / "file"
    f.write_text("x")
    assert run_main(dataset_report.main, ["--dataset", str(root), "--output", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert run_main(dataset_report.main, ["--dataset", str(root), "--output", str(out)]) == 0
    assert (out / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", "report.json", "report.png"]
    assert run_main(dataset_report.main, ["--dataset", str(root), "--split", "test",
                                          "--output", str(out)]) == 2  # the synthetic yaml has no test split
    assert math.isfinite(json.loads((out / "report.json").read_text())["prior_coverage"]["overall"])


def test_voc_and_open_images_are_reported_too(tmp_path):
    """Boxes as training sees them: VOC difficult boxes out, Open Images' normalised boxes scaled."""
    import cv2
    voc = tmp_path / "voc"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / d).mkdir(parents=True)
    for i, objects in enumerate([[("cat", 0), ("dog", 1)], [("dog", 0)]]):
        cv2.imwrite(str(voc / "JPEGImages" / f"{i}.jpg"), np.full((100, 150, 3), 90, np.uint8))
        objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>11</xmin><ymin>11</ymin>"
                       f"<xmax>91</xmax><ymax>81</ymax></bndbox></object>" for n, d in objects)
        (voc / "Annotations" / f"{i}.xml").write_text(f"<annotation>{objs}</annotation>")
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("0\n1\n")
    (voc / "labels.txt").write_text("BACKGROUND\ncat\ndog\n")
    rep, _ = report(["--dataset", voc], tmp_path / "v")
    assert rep["dataset_type"] == "voc" and rep["images"] == 2 and rep["boxes"] == 2
    assert {c["name"]: c["boxes"] for c in rep["classes"]} == {"cat": 1, "dog": 1}

    oi = tmp_path / "oi"
    (oi / "train").mkdir(parents=True)
    cv2.imwrite(str(oi / "train" / "a.jpg"), np.full((100, 200, 3), 90, np.uint8))
    (oi / "sub-train-annotations-bbox.csv").write_text(
        "ImageID,XMin,XMax,YMin,YMax,ClassName\na,0.1,0.6,0.2,0.9,Apple\na,0.5,0.7,0.1,0.3,Pear\n")
    rep, _ = report(["--dataset", oi], tmp_path / "o")
    assert rep["dataset_type"] == "open_images" and rep["boxes"] == 2
    assert rep["box_distribution"]["width_fraction_of_image"]["p100"] == pytest.approx(0.5, abs=1e-4)


def test_max_images_and_the_printed_list_of_uncaught_boxes(yolo_data, tmp_path, capsys):
    root, _ = yolo_data
    rep, _ = report(["--dataset", root, "--split", "train", "val", "--max-images", "4", "--list", "1",
                     "--net", "mb1-ssd-lite", "--resolution", "160"], tmp_path)
    assert rep["images"] == 8  # 4 of each split
    uncaught = rep["uncaught_boxes"]
    assert uncaught and all(u["best_iou"] < 0.5 for u in uncaught)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and "best IoU" in line]
    assert len(printed) == 1 and uncaught[0]["image"] in printed[0]


def test_outputs_over_inputs_are_refused_before_any_work(yolo_data, tmp_path, capsys):
    root, _ = yolo_data
    yaml_text = (root / "data.yaml").read_text()
    image = sorted((root / "images" / "train").iterdir())[0]
    image_bytes = image.read_bytes()
    label = next(iter(sorted((root / "labels" / "train").iterdir())))
    label_text = label.read_text()
    out = tmp_path / "o"
    priors = tmp_path / "p.json"
    priors.write_text(json.dumps(spec_from_ssd_specs(get_config("mb1-ssd", 300).specs, 300, "mb1-ssd")))
    cases = [
        (["--suggest-priors", root / "data.yaml"], "not a priors file"),
        (["--suggest-priors", image], "not a priors file"),
        (["--suggest-priors", label], "not a priors file"),
        (["--suggest-priors", out / "report.json"], "the report's own report.json"),
        (["--priors", priors, "--suggest-priors", priors], "the --priors file"),
        (["--output", root / "images" / "train"], "image folder"),
        (["--output", root / "images" / "train" / "sub"], "image folder"),
    ]
    for extra, match in cases:
        argv = ["--dataset", str(root), "--output", str(out), *map(str, extra)]
        assert run_main(dataset_report.main, argv) == 2, extra
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err, (extra, err)
    assert (root / "data.yaml").read_text() == yaml_text and image.read_bytes() == image_bytes
    assert label.read_text() == label_text and not out.exists()
    assert not (root / "images" / "train" / "report.png").exists()


def test_unwritable_outputs_are_one_line_errors(yolo_data, tmp_path, capsys):
    root, _ = yolo_data
    f = tmp_path / "file"
    f.write_text("x")
    for extra in (["--output", f / "sub"], ["--output", tmp_path / "o", "--suggest-priors", f / "p.json"]):
        assert run_main(dataset_report.main, ["--dataset", str(root), *map(str, extra)]) == 2
        err = capsys.readouterr().err
        assert "is a file" in err and "Traceback" not in err


def test_suggest_priors_without_any_box_is_refused(tmp_path, capsys):
    root = tmp_path / "neg"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        Image.new("RGB", (64, 48)).save(root / "images" / split / "a.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    rep, _ = report(["--dataset", root], tmp_path)  # the report itself is fine: 1 image, 0 boxes
    assert rep["images"] == 1 and rep["boxes"] == 0 and rep["prior_coverage"]["overall"] is None
    argv = ["--dataset", str(root), "--output", str(tmp_path / "o2"), "--suggest-priors", str(tmp_path / "p.json")]
    assert run_main(dataset_report.main, argv) == 2
    assert "no boxes" in capsys.readouterr().err and not (tmp_path / "p.json").exists()


def test_the_same_split_given_twice_is_counted_once(yolo_data, tmp_path):
    root, summary = yolo_data
    rep, _ = report(["--dataset", root, root / "data.yaml", "--split", "train", "train"], tmp_path)
    tr = summary["splits"]["train"]
    assert rep["images"] == tr["images"] and rep["boxes"] == tr["boxes"]
