"""What kind of mistakes a detector makes: each false detection is given one cause, by score.

Why: an AP number says how much is missing, not why. Before choosing a lever (more epochs, other
priors, other augmentation) it helps to know whether the wrong detections sit on the background,
on an object of another class, off the object, or on an object already found. This found that
after 10 CPU-minutes on the demo set most high-scoring false detections were objects found but
given another class: upstream's random channel order had hidden the colour that tells the demo
classes apart (bench/README.md, "Time to accuracy").

Input: the COCO ground truth (``annotations/instances_val2017.json``) and the detections
``eval_ssd.py`` writes (``EVAL_DIR/detections_val2017_*_results.json``, COCO results format).
Per image, detections are matched greedily by score to unmatched ground-truth boxes of their class
at IoU >= 0.5 (as COCO's AP50 does); every other detection is, in this order:

- ``duplicate``: IoU >= 0.5 with a box of its class that an earlier detection already took;
- ``location``: IoU 0.1-0.5 with a box of its class (found, badly placed);
- ``class``: IoU >= 0.3 with a box of another class (found, wrong class);
- ``crowd``: overlaps a crowd region (COCO ignores these);
- ``background``: none of the above.

Ground-truth boxes no detection of their class reaches at IoU 0.5 are counted as ``missed``.
Detections on images or with category ids the ground truth lacks, or without area, are counted
and named in a warning; when no detection is on a ground-truth image it is an error (exit 2).

Example:
  python3 eval_ssd.py --dataset-type coco --dataset coco-data --trained_model models/demo-10min --eval_dir ev
  python3 bench/detection_errors.py --annotations coco-data/annotations/instances_val2017.json \\
      --detections ev/detections_val2017_mb1-ssd-lite_results.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import common  # noqa: E402,F401  (first: puts the repository on sys.path)

import torch  # noqa: E402
from torchvision.ops import box_convert, box_iou  # noqa: E402

from vision.utils.misc import (DefaultsHelpFormatter, UserError, add_log_level_arg, run_main,  # noqa: E402
                               setup_logging)

log = logging.getLogger("bench.detection_errors")

CAUSES = ("duplicate", "location", "class", "crowd", "background")
SCORE_CUTS = (0.1, 0.2, 0.5)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{what} {path} is not readable JSON: {e}") from None


def _boxes(xywh: list[list[float]]) -> torch.Tensor:
    if not xywh:
        return torch.zeros((0, 4))
    return box_convert(torch.tensor(xywh, dtype=torch.float64), "xywh", "xyxy")


def classify(ground_truth: dict, detections: list[dict]) -> dict[str, Any]:
    """``{"tp": [scores], cause: [scores] for cause in CAUSES, "missed": n, "ground_truth": n}``."""
    gt: dict[int, list[tuple[int, list[float]]]] = defaultdict(list)
    crowd: dict[int, list[list[float]]] = defaultdict(list)
    for a in ground_truth.get("annotations", []):
        (crowd[a["image_id"]].append(a["bbox"]) if a.get("iscrowd") else gt[a["image_id"]].append((a["category_id"], a["bbox"])))
    by_image: dict[int, list[dict]] = defaultdict(list)
    for d in detections:
        by_image[d["image_id"]].append(d)
    out: dict[str, Any] = {"tp": [], **{c: [] for c in CAUSES}}
    missed = 0
    for image_id in set(gt) | set(by_image):
        objects = gt.get(image_id, [])
        labels = torch.tensor([c for c, _ in objects], dtype=torch.int64)
        g = _boxes([b for _, b in objects])
        dets = sorted(by_image.get(image_id, []), key=lambda d: -d["score"])
        d_boxes = _boxes([d["bbox"] for d in dets])
        iou = box_iou(d_boxes, g) if len(dets) and len(objects) else torch.zeros((len(dets), len(objects)))
        crowd_iou = (box_iou(d_boxes, _boxes(crowd[image_id])).amax(1) if len(dets) and crowd.get(image_id)
                     else torch.zeros(len(dets)))
        taken = torch.zeros(len(objects), dtype=torch.bool)
        for k, d in enumerate(dets):
            same = labels == d["category_id"]
            free = iou[k].where(same & ~taken, torch.tensor(0.0, dtype=iou.dtype))
            if len(objects) and free.max() >= 0.5:
                taken[int(free.argmax())] = True
                out["tp"].append(d["score"])
                continue
            same_iou = float(iou[k][same].max()) if same.any() else 0.0
            other_iou = float(iou[k][~same].max()) if (~same).any() else 0.0
            if same_iou >= 0.5:
                cause = "duplicate"
            elif same_iou >= 0.1:
                cause = "location"
            elif other_iou >= 0.3:
                cause = "class"
            elif float(crowd_iou[k]) > 0:
                cause = "crowd"
            else:
                cause = "background"
            out[cause].append(d["score"])
        if len(objects):
            reached = torch.zeros(len(objects), dtype=torch.bool)
            for k, d in enumerate(dets):
                reached |= (iou[k] >= 0.5) & (labels == d["category_id"])
            missed += int((~reached).sum())
    out["missed"] = missed
    out["ground_truth"] = sum(len(v) for v in gt.values())
    return out


def check_inputs(ground_truth: dict, detections: list[dict]) -> list[str]:
    """Warnings for detections that cannot be judged fairly against this ground truth; a UserError
    when none of them is on one of its images (the files belong to different datasets)."""
    image_ids = {i.get("id") for i in ground_truth.get("images", []) if isinstance(i, dict)}
    image_ids |= {a.get("image_id") for a in ground_truth["annotations"]}
    category_ids = {c.get("id") for c in ground_truth.get("categories", []) if isinstance(c, dict)}
    foreign = [d["image_id"] for d in detections if d["image_id"] not in image_ids]
    if detections and len(foreign) == len(detections):
        raise UserError(f"none of the {len(detections)} detections is on an image of --annotations (e.g. image id "
                        f"{foreign[0]}): the two files are from different datasets")
    warnings = []
    if foreign:
        warnings.append(f"{len(foreign)} detections are on image ids not in --annotations (e.g. {foreign[0]}); "
                        f"they count as background")
    unknown = [d["category_id"] for d in detections if category_ids and d["category_id"] not in category_ids]
    if unknown:
        warnings.append(f"{len(unknown)} detections have category ids not in --annotations (e.g. {unknown[0]}); "
                        f"they can never be right")
    flat = [d for d in detections if not (len(d["bbox"]) == 4 and d["bbox"][2] > 0 and d["bbox"][3] > 0)]
    if flat:
        warnings.append(f"{len(flat)} detections have no area (width or height <= 0, e.g. {flat[0]['bbox']} on "
                        f"image {flat[0]['image_id']})")
    return warnings


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Counts per kind: all, and above each of ``SCORE_CUTS``."""
    rows = {}
    for kind in ("tp", *CAUSES):
        scores = result[kind]
        rows[kind] = {"all": len(scores), **{f">{c}": sum(s > c for s in scores) for c in SCORE_CUTS}}
    return {"ground_truth": result["ground_truth"], "missed": result["missed"], "detections": rows}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--annotations", type=Path, required=True, help="COCO ground truth (instances_*.json)")
    p.add_argument("--detections", type=Path, required=True,
                   help="COCO results JSON (eval_ssd.py writes EVAL_DIR/detections_val2017_*_results.json)")
    add_log_level_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    ground_truth = _read_json(args.annotations, "--annotations")
    detections = _read_json(args.detections, "--detections")
    if not isinstance(ground_truth, dict) or not isinstance(ground_truth.get("annotations"), list):
        raise UserError(f"--annotations {args.annotations}: not a COCO annotation file (no 'annotations' list)")
    if not isinstance(detections, list) or any(not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"}
                                               <= d.keys() for d in detections):
        raise UserError(f"--detections {args.detections}: not a COCO results list (image_id, category_id, bbox, score)")
    for warning in check_inputs(ground_truth, detections):
        log.warning("%s", warning)
    s = summary(classify(ground_truth, detections))
    print(json.dumps({"bench": "detection_errors", **s}))
    print(f"\n{s['ground_truth']} ground-truth boxes, {s['missed']} missed by every detection of their class")
    print(f"{'detections':<12} {'all':>6} " + " ".join(f"{'>' + str(c):>6}" for c in SCORE_CUTS))
    for kind, row in s["detections"].items():
        print(f"{kind:<12} {row['all']:>6} " + " ".join(f"{row['>' + str(c)]:>6}" for c in SCORE_CUTS))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
