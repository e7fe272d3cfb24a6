"""Data pipeline throughput in ONE process: decode -> augment -> resize/normalize -> prior matching.

Why: a training step waits for its batch; with few CPU cores the per-sample
data work (issue 6: >= 165 images/s at 300 px on the 2-core machine, upstream
~55) bounds the training speed as much as the network does.

For each pipeline it reports:
- images/s of the real path, ``COCODataset(transform, target_transform)[i]``
  (wall clock, and per CPU-second of this process: the latter hardly moves
  when other processes share the cores);
- the same work timed stage by stage (decode, each augmentation stage, match),
  with each stage's share of the time.

Pipelines: ``fast`` (TrainAugmentation), ``baseline`` (BaselineTrainAugmentation,
the straightforward float32 pipeline, ``--baseline``) and ``torchvision``
(torchvision.transforms.v2 SSD recipe, ``--torchvision``). They alternate for
``--repeats`` rounds and the median round is reported, so a busy machine
affects them alike. Output: one JSON line per pipeline, then a table.

Example: python3 bench/data.py --baseline --images 300
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

import common  # noqa: E402,F401  (first: the repository on sys.path)

from vision.datasets.coco_dataset import COCODataset  # noqa: E402
from vision.datasets.image_io import load_image_rgb  # noqa: E402
from vision.datasets.synthetic import generate_coco_dataset  # noqa: E402
from vision.ssd.config import mobilenetv1_ssd_config  # noqa: E402
from vision.ssd.data_preprocessing import TrainAugmentation  # noqa: E402
from vision.ssd.matching import MatchPrior  # noqa: E402
from vision.transforms.baseline import BaselineTrainAugmentation  # noqa: E402
from vision.transforms.transforms import StageTimer  # noqa: E402
from vision.utils.misc import (UserError, add_log_level_arg, int_range, non_negative_int,  # noqa: E402
                               positive_int, run_main, setup_logging)

log = logging.getLogger("bench.data")

MEAN = np.array([127.0, 127.0, 127.0], dtype=np.float32)  # mb1-ssd / mb2-ssd-lite config
STD = 128.0


class TorchvisionSSDAugmentation:
    """torchvision.transforms.v2 version of the same recipe, for comparison only.

    Same output contract as TrainAugmentation (image [3,S,S] float32, boxes
    normalized, labels). Images without boxes skip ``RandomIoUCrop`` (it needs boxes).
    """

    def __init__(self, size: int, mean: np.ndarray, std: float) -> None:
        from torchvision import tv_tensors
        from torchvision.transforms import v2
        self.tv_tensors = tv_tensors
        fill = {tv_tensors.Image: [int(round(m)) for m in mean], "others": 0}
        self.pre = v2.Compose([v2.RandomPhotometricDistort(p=0.5), v2.RandomZoomOut(fill=fill, p=0.5)])
        self.crop = v2.RandomIoUCrop()
        self.post = v2.Compose([v2.RandomHorizontalFlip(0.5), v2.Resize((size, size), antialias=False),
                                v2.SanitizeBoundingBoxes(min_size=1.0)])
        self.size = size
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = float(std)

    def run(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, timer: StageTimer):
        tvt = self.tv_tensors
        timer.start()
        img = tvt.Image(torch.from_numpy(image).permute(2, 0, 1))
        bb = tvt.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=image.shape[:2])
        sample = {"image": img, "boxes": bb, "labels": torch.from_numpy(labels)}
        sample = self.pre(sample)
        if len(sample["boxes"]):
            sample = self.crop(sample)
        sample = self.post(sample)
        timer.lap("augment")
        out = sample["image"].float().sub_(self.mean).div_(self.std).contiguous()
        b = sample["boxes"].as_subclass(torch.Tensor) / self.size
        timer.lap("normalize")
        return out, b, sample["labels"]

    def __call__(self, image, boxes, labels):
        return self.run(image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                        StageTimer())


def build_pipelines(names: Sequence[str], size: int, seed: int) -> dict[str, Any]:
    makers: dict[str, Callable[[], Any]] = {
        "fast": lambda: TrainAugmentation(size, MEAN, STD, seed=seed),
        "baseline": lambda: BaselineTrainAugmentation(size, MEAN, STD, seed=seed),
        "torchvision": lambda: TorchvisionSSDAugmentation(size, MEAN, STD),
    }
    return {n: makers[n]() for n in names}


def load_samples_source(data: Path | None, image_size: tuple[int, int], count: int, tmp: Path
                        ) -> COCODataset:
    if data is None:
        data = tmp / "synthetic"
        log.info("generating %d synthetic COCO images of about %dx%d in %s", count, *image_size, data)
        generate_coco_dataset(data, count, 0, seed=0, image_size=image_size)
    ds = COCODataset(data, dataset_type="train")
    if len(ds) == 0:
        raise UserError(f"{data}: the train split has no images")
    return ds


def run_staged(ds: COCODataset, aug: Any, matcher: MatchPrior, n: int) -> tuple[float, dict[str, float]]:
    """Decode, augment, match ``n`` samples, timing each stage. Returns (seconds, {stage: seconds})."""
    timer = StageTimer()
    stages: dict[str, float] = {"decode": 0.0}
    t_start = time.perf_counter()
    for i in range(n):
        j = i % len(ds)
        t0 = time.perf_counter()
        image = load_image_rgb(ds.image_path(j))
        _, (boxes, labels, crowd) = ds.get_annotation(j)
        keep = crowd == 0
        boxes, labels = boxes[keep], labels[keep]
        stages["decode"] += time.perf_counter() - t0
        _, b, lab = aug.run(image, boxes, labels, timer)
        t1 = time.perf_counter()
        matcher(b, lab)
        stages["match"] = stages.get("match", 0.0) + time.perf_counter() - t1
    total = time.perf_counter() - t_start
    stages.update(timer.totals)
    return total, stages


def run_dataset(ds: COCODataset, aug: Any, matcher: MatchPrior, n: int) -> tuple[float, float]:
    """The real path: ``dataset[i]`` with transform + target_transform. Returns (wall s, CPU s)."""
    ds.transform, ds.target_transform = aug, matcher
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            ds[i % len(ds)]
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        ds.transform = ds.target_transform = None


STAGE_ORDER = ["decode", "photometric", "expand", "crop", "mirror", "geometry", "resize", "augment",
               "normalize", "match"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Measure the training data pipeline (decode -> augmentation -> resize/normalize -> "
                    "prior matching) in one process, in images per second, with each stage's share. "
                    "Prints one JSON line per pipeline, then a table.")
    p.add_argument("--size", type=int_range(32, 2048), default=300, help="network input size (default 300)")
    p.add_argument("--images", type=positive_int, default=300,
                   help="samples timed per pipeline and round (default 300)")
    p.add_argument("--baseline", action="store_true",
                   help="also run the straightforward float32 baseline pipeline (BaselineTrainAugmentation)")
    p.add_argument("--torchvision", action="store_true",
                   help="also run the torchvision.transforms.v2 SSD recipe")
    p.add_argument("--data", type=Path, default=None,
                   help="COCO-layout dataset root to read (annotations/instances_train2017.json, train2017/); "
                        "default: generate a synthetic one in a temporary folder")
    p.add_argument("--dataset-images", type=positive_int, default=100,
                   help="images to generate when --data is not given (default 100); samples cycle over them")
    p.add_argument("--image-size", nargs=2, type=int_range(32, 4096), metavar=("W", "H"), default=[640, 480],
                   help="nominal size of generated images (default 640 480, typical of COCO)")
    p.add_argument("--threads", type=non_negative_int, default=1,
                   help="OpenCV and torch threads (default 1, as in a DataLoader worker; 0 = library default)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="alternating rounds per pipeline; the median round is reported (default 3)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="augmentation seed (default 0)")
    add_log_level_arg(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)

    if args.threads:
        cv2.setNumThreads(args.threads)
        torch.set_num_threads(args.threads)
    names = ["fast"] + (["baseline"] if args.baseline else []) + (["torchvision"] if args.torchvision else [])
    cfg = mobilenetv1_ssd_config.make_config(args.size)
    matcher = MatchPrior(cfg.priors, cfg.center_variance, cfg.size_variance, cfg.iou_threshold)

    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        ds = load_samples_source(args.data, (args.image_size[0], args.image_size[1]), args.dataset_images,
                                 Path(tmp))
        pipes = build_pipelines(names, args.size, args.seed)
        for aug in pipes.values():  # warm-up: caches, lazy imports, page cache
            run_staged(ds, aug, matcher, min(20, args.images))
        rounds: dict[str, list[tuple[float, float, float, dict[str, float]]]] = {n: [] for n in names}
        for r in range(args.repeats):
            for name, aug in pipes.items():
                staged_s, stages = run_staged(ds, aug, matcher, args.images)
                dataset_s, cpu_s = run_dataset(ds, aug, matcher, args.images)
                rounds[name].append((dataset_s, cpu_s, staged_s, stages))
                log.debug("round %d %s: %.1f images/s", r, name, args.images / dataset_s)

    results = []
    for name in names:
        runs = sorted(rounds[name], key=lambda x: x[0])
        dataset_s, _, staged_s, stages = runs[len(runs) // 2]
        cpu_s = statistics.median(x[1] for x in rounds[name])
        n = args.images
        staged_total = sum(stages.values())
        res = {
            "bench": "data", "pipeline": name, "size": args.size, "images": n, "repeats": args.repeats,
            "threads": args.threads, "source": str(args.data) if args.data else
            f"synthetic {args.dataset_images} images ~{args.image_size[0]}x{args.image_size[1]}",
            "images_per_s": round(n / dataset_s, 1),
            "images_per_s_rounds": [round(n / x[0], 1) for x in rounds[name]],
            "images_per_cpu_s": round(n / cpu_s, 1),
            "staged_images_per_s": round(n / staged_s, 1),
            "ms_per_image": round(1e3 * dataset_s / n, 3),
            "stage_ms": {k: round(1e3 * stages[k] / n, 3) for k in STAGE_ORDER if k in stages},
            "stage_share": {k: round(stages[k] / staged_total, 3) for k in STAGE_ORDER if k in stages},
            "matching": "vision.ssd.matching.MatchPrior, mobilenetv1 priors %d" % cfg.priors.shape[0],
        }
        results.append(res)
        print(json.dumps(res), flush=True)
    print_table(results)
    return 0


def print_table(results: list[dict]) -> None:
    base = next((r for r in results if r["pipeline"] == "baseline"), None)
    print()
    print(f"{'pipeline':<12} {'images/s':>9} {'img/cpu-s':>9} {'staged/s':>9} {'ms/img':>7} {'vs base':>8}  "
          "stages (ms/img, share)")
    for r in results:
        speed = f"{r['images_per_s'] / base['images_per_s']:.1f}x" if base else "-"
        stages = ", ".join(f"{k} {v:.2f} ({100 * r['stage_share'][k]:.0f}%)" for k, v in r["stage_ms"].items())
        print(f"{r['pipeline']:<12} {r['images_per_s']:>9.1f} {r['images_per_cpu_s']:>9.1f} "
              f"{r['staged_images_per_s']:>9.1f} "
              f"{r['ms_per_image']:>7.2f} {speed:>8}  {stages}")


if __name__ == "__main__":
    sys.exit(run_main(main))
