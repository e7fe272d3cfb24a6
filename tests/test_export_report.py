"""onnx_export.py's closing report on real images: the run's recorded validation dataset, --report-data
(a dataset or a plain image folder, unreadable images skipped and counted), --test-image first, the
generated picture when nothing else is known, and the bad-input exits."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch

CLASSES = ["BACKGROUND", "apple", "banana"]
ARGS = {"net": "mb1-ssd-lite", "resolution": 96, "mb2_width_mult": 1.0}


def _export(argv, capsys) -> tuple[int, list[str]]:
    """Run onnx_export.py in this process; (exit code, the closing report's lines, or every stderr line
    when there is no report)."""
    from onnx_export import main
    from vision.utils.misc import run_main

    try:
        rc = run_main(main, [str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    lines = capsys.readouterr().err.splitlines()
    start = [i for i, line in enumerate(lines) if "closing report on" in line]
    if not start:
        return rc, lines
    return rc, [re.sub(r"^[\d:]+ INFO ", "", line) for line in lines[start[0]:] if " INFO " in line]


def _rows(report: list[str]) -> list[str]:
    return [line.strip().split(":")[0] for line in report[2:] if line.startswith("  ") and "total:" not in line]


def _run_folder(folder, args: dict) -> None:
    from vision.ssd.registry import create_net
    from vision.training.run_folder import write_run_description

    torch.manual_seed(0)
    write_run_description(folder, args, CLASSES)
    net = create_net("mb1-ssd-lite", len(CLASSES), resolution=96)
    with torch.no_grad():  # every prior scores class 1 ~0.9: NMS keeps top-k 10 boxes on every image
        for head in net.classification_headers:
            last = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last.weight.mul_(0.05)
            last.bias.copy_(torch.tensor([0.0, 3.0, 0.0]).repeat(last.bias.numel() // 3))
    torch.save({"epoch": 0, "model": net.state_dict(), "class_names": CLASSES, "net": "mb1-ssd-lite",
                "resolution": 96, "args": args}, folder / "best.pth")


def test_report_runs_on_the_runs_validation_images(tmp_path, capsys):
    from vision.datasets.synthetic import generate_coco_dataset

    data = tmp_path / "data"
    generate_coco_dataset(data, 2, 5, seed=3, image_size=(96, 72))
    val = json.loads((data / "annotations" / "instances_val2017.json").read_text())
    in_file_order = [im["file_name"] for im in val["images"]]
    folder = tmp_path / "run"
    _run_folder(folder, {**ARGS, "dataset_type": "coco", "datasets": [str(data)], "validation_dataset": None})

    rc, report = _export(["--model-dir", folder, "--output", tmp_path / "a.onnx", "--report-images", 3], capsys)
    assert rc == 0, report
    assert report[0].startswith("closing report on 3 image(s): 3 from the validation split of coco dataset "
                                f"{data} (recorded in run/args.json, 5 images)"), report
    assert _rows(report) == in_file_order[:3], report
    counts = [re.search(r"PyTorch (\d+), ONNX (\d+)", line).groups() for line in report[2:5]]
    assert counts == [("10", "10")] * 3, report
    assert report[-1].startswith("  total: PyTorch 30, ONNX 30 boxes, max box diff 0.00 px, detectNet "), report
    assert len(report) <= 15

    # --test-image is reported first; 0 asks for no dataset rows
    test_image = data / "val2017" / in_file_order[4]
    rc, report = _export(["--model-dir", folder, "--output", tmp_path / "b.onnx", "--report-images", 2,
                          "--test-image", test_image], capsys)
    assert rc == 0 and _rows(report) == [in_file_order[4], *in_file_order[:2]], report
    assert "--test-image, then 2 from the validation split" in report[0]
    rc, report = _export(["--model-dir", folder, "--output", tmp_path / "c.onnx", "--report-images", 0], capsys)
    assert rc == 0 and _rows(report) == ["generated test image"] and "--report-images 0" in report[0], report

    # the recorded dataset is gone: the generated image, never an error
    data.rename(tmp_path / "moved")
    rc, report = _export(["--model-dir", folder, "--output", tmp_path / "d.onnx"], capsys)
    assert rc == 0 and _rows(report) == ["generated test image"], report
    assert "no validation images known" in report[0]


def test_report_data_image_folder_skips_and_counts_unreadable_images(tmp_path, capsys):
    from vision.ssd.registry import create_net

    images = tmp_path / "photos"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "c.png", "sub/d.jpg", "e.jpg"):
        cv2.imwrite(str(images / name), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    (images / "b.jpg").write_bytes(b"not a picture")
    (images / "notes.txt").write_text("not an image either")
    torch.manual_seed(0)  # a checkpoint outside any run folder: only --report-data knows images
    net = create_net("mb1-ssd-lite", len(CLASSES), resolution=96)
    torch.save({"model": net.state_dict(), "class_names": CLASSES, "net": "mb1-ssd-lite", "resolution": 96},
               tmp_path / "m.pth")

    rc, report = _export(["--input", tmp_path / "m.pth", "--output", tmp_path / "m.onnx", "--report-data", images,
                          "--report-images", 3], capsys)
    assert rc == 0, report
    assert report[0] == (f"closing report on 3 image(s): 3 from image folder {images} (--report-data); "
                         "1 unreadable image(s) skipped: b.jpg"), report
    assert _rows(report) == ["a.jpg", "c.png", "e.jpg"], report  # sorted paths; b.jpg replaced by the next


def test_report_flags_bad_input_is_exit_2(tmp_path, capsys):
    folder = tmp_path / "run"
    _run_folder(folder, {**ARGS, "datasets": [str(tmp_path / "gone")]})
    (tmp_path / "empty").mkdir()
    (tmp_path / "train_only" / "annotations").mkdir(parents=True)  # a COCO dataset without a validation split
    (tmp_path / "train_only" / "annotations" / "instances_train2017.json").write_text("{}")
    cases = [(["--report-data", tmp_path / "missing"], "--report-data not found"),
             (["--report-data", tmp_path / "missing", "--report-images", 0], "--report-data not found"),
             (["--report-data", tmp_path / "empty"], "no images"),
             (["--report-data", folder / "best.pth"], "only a YOLO .yaml"),
             (["--report-data", tmp_path / "train_only"], "--report-data: COCO annotation file not found"),
             (["--report-images", "-1"], "--report-images"),
             (["--report-images", "many"], "--report-images")]
    for extra, needle in cases:
        rc, lines = _export(["--model-dir", folder, "--output", tmp_path / "x.onnx", *extra], capsys)
        errors = [line for line in lines if "ERROR" in line or "error:" in line]
        assert rc == 2 and len(errors) == 1 and needle in errors[0], (extra, lines)
        assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(Exception, match="must be >= 0"):
        from vision.cli.report_images import choose_report_images

        choose_report_images(-1, None, folder / "best.pth")


def test_report_data_error_suggests_no_flag_onnx_export_lacks(tmp_path):
    """--report-data on a folder with no dataset and no images: onnx_export.py has no
    --dataset-type, so the message must not tell the user to pass it."""
    from vision.cli.report_images import choose_report_images
    from vision.datasets.detect_type import detect_dataset_type
    from vision.utils.misc import UserError

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        choose_report_images(3, tmp_path / "empty", tmp_path / "model.pth")
    assert "no images" in str(e.value) and "--dataset-type" not in str(e.value), e.value
    with pytest.raises(UserError, match=r"found none \(pass --dataset-type\)"):  # train/eval scripts have it
        detect_dataset_type(tmp_path / "empty")
