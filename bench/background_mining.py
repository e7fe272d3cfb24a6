#!/usr/bin/env python3
"""Which hard-negative mining rule gives fewer false positives on background images at equal AP?

Why: upstream mines negatives per image (3 per positive), so an image without objects adds
nothing to the loss and the net never learns from it. ``MultiboxLoss(mining=...)`` offers
``per-image`` (upstream), ``per-image-min`` (a minimum per image) and ``batch`` (the batch's
budget spent on its hardest negatives, wherever they are). This trains the same small net on
the same synthetic set (``--empty-share`` of the images without objects) once per rule, same
seed and everything else equal, evaluates each final checkpoint on the validation split and
prints one JSON line per rule (then a table): COCO AP and AP50 and the false positives per background image
(detections on validation images without any object) at score >= 0.5, 0.3, 0.2 and 0.1, and the
highest score on a background image.

Run from the repository root:
  python3 bench/background_mining.py --work /tmp/bgmine            # ~3 x a few minutes on a CPU
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from vision.datasets.synthetic import generate_coco_dataset  # noqa: E402
from vision.evaluation.detection import detect_dataset  # noqa: E402
from vision.evaluation.evaluate import compute_metrics, make_predictor  # noqa: E402
from vision.evaluation.voc import collect_ground_truth  # noqa: E402
from vision.cli.models import load_model  # noqa: E402
from vision.training.dataset_folders import open_dataset  # noqa: E402
from vision.utils.box_utils import MINING_RULES  # noqa: E402
from vision.training.checkpoint import list_checkpoints  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.5, 0.3, 0.2, 0.1)  # a briefly trained net scores lower than a converged one
log = logging.getLogger("background_mining")


def train(rule: str, data: Path, folder: Path, args: argparse.Namespace) -> float:
    """Train one run with ``rule`` (train_ssd.py in a subprocess); returns its wall seconds."""
    cmd = [sys.executable, str(ROOT / "train_ssd.py"), "--dataset-type", "coco", "--datasets", str(data),
           "--net", args.net, "--resolution", str(args.resolution), "--batch-size", str(args.batch_size),
           "--epochs", str(args.epochs), "--lr", str(args.lr), "--optimizer", "adamw", "--seed", str(args.seed),
           "--workers", str(args.workers), "--device", "cpu", "--checkpoint-folder", str(folder),
           "--validation-epochs", str(args.epochs), "--hard-negative-mining", rule, "--log-level", args.log_level,
           "--force-override"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def measure(folder: Path, data: Path) -> dict:
    """AP, AP50 and false positives per background image of the run's last checkpoint."""
    last = list_checkpoints(folder)[-1]
    net = load_model(last).net  # the shared loader: also keeps a run's custom --priors
    dataset = open_dataset("coco", str(data), split="val")
    predictor = make_predictor(net, device="cpu")
    detections, _ = detect_dataset(predictor, dataset, batch_size=16, top_k=100, prob_threshold=0.01)
    metrics = compute_metrics(dataset, detections)
    ground_truth, _ = collect_ground_truth(dataset)
    background = [i for i, g in enumerate(ground_truth) if len(g.boxes) == 0]
    out = {"checkpoint": last.name, "AP": round(float(metrics["mAP"]), 4), "AP50": round(float(metrics["AP50"]), 4),
           "background_images": len(background), "val_images": len(dataset)}
    for t in THRESHOLDS:
        fp = sum(int((detections[i].scores >= t).sum()) for i in background)
        out[f"fp_per_background_image@{t}"] = round(fp / max(1, len(background)), 3)
    out["max_score_on_background"] = round(max((float(detections[i].scores.max()) for i in background
                                                 if len(detections[i])), default=0.0), 3)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/background_mining", help="folder for the data and the runs")
    p.add_argument("--rules", nargs="+", choices=MINING_RULES, default=list(MINING_RULES))
    p.add_argument("--train", type=int, default=400, help="training images")
    p.add_argument("--val", type=int, default=200, help="validation images")
    p.add_argument("--empty-share", type=float, default=0.1, help="share of images without objects")
    p.add_argument("--net", default="mb1-ssd-lite")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--measure-only", action="store_true", help="evaluate the runs already in --work again")
    p.add_argument("--log-level", default="warning", help="log level of this script and of train_ssd.py")
    args = p.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = Path(args.work)
    data = work / "data"
    if not (data / "annotations" / "instances_val2017.json").exists():
        generate_coco_dataset(data, args.train, args.val, seed=args.seed, image_size=(160, 120),
                              empty_share=args.empty_share)
    settings = {k: v for k, v in vars(args).items() if k not in ("rules", "work", "measure_only", "log_level")}
    rows = []
    for rule in args.rules:
        seconds = None if args.measure_only else round(train(rule, data, work / rule, args), 1)
        row = {"bench": "background_mining", "rule": rule, **measure(work / rule, data), "train_seconds": seconds,
               "load_avg_1min": round(os.getloadavg()[0], 2), **settings}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'rule':<14} {'AP':>7} {'AP50':>7}  " + "  ".join(f"FP/bg@{t:<4}" for t in THRESHOLDS))
    for r in rows:
        print(f"{r['rule']:<14} {r['AP']:>7.4f} {r['AP50']:>7.4f}  "
              + "  ".join(f"{r[f'fp_per_background_image@{t}']:>9.3f}" for t in THRESHOLDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
