"""COCO metrics at COCO-val scale: pycocotools' COCOeval vs faster-coco-eval, same problem, same numbers.

Why: ``eval_ssd.py`` on COCO val and ``train_ssd.py --validation-mean-ap`` end with COCOeval
on 5,000 images x 100 detections; in pycocotools that alone takes most of a minute on a
2-core machine, every validation. ``vision.evaluation.coco`` therefore uses faster-coco-eval
when it is installed; this measures what that buys and checks that the numbers agree.

The problem (seeded, synthetic, shaped like COCO val2017; nothing is downloaded):

- ``--images`` images of COCO's sizes (640 px on the long side, a few 480-640 px);
- ground truth: on average ``--gt-per-image`` boxes per image (geometric counts, so most
  images have a few and some have dozens; ~1 % of the images have none), 80 categories with
  COCO's gapped ids (1..90) and a long-tailed frequency, box sizes log-normal so that about
  41 / 34 / 25 % are small / medium / large (COCO's split), ``area`` below the box area as a
  segmentation's is, ~1 % ``iscrowd`` regions;
- ``--dets-per-image`` detections per image (eval_ssd.py's COCO top-k): most ground-truth boxes
  found with some localization error (sometimes the wrong class, sometimes twice), the rest
  false positives of all sizes at lower scores; boxes rounded to 0.01 px and scores to 1e-5
  as ``coco_results`` writes them.

Timed per backend (alternating the order over ``--repeats`` rounds, median reported):
``loadRes`` (results -> COCO object), and ``evaluate`` + ``accumulate`` + ``summarize`` (the
``eval_s`` column and the speed-up). Exit status 1 when AP or AP50 differ by more than 1e-4.

Output: one JSON line per backend, then a table.

Example: python3 bench/coco_eval.py            # COCO-val size, about a minute on 2 cores
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import io
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision.evaluation.coco import STAT_NAMES, resolve_coco_backend  # noqa: E402
from vision.utils.misc import (Failure, add_log_level_arg, float_range, non_negative_int,  # noqa: E402
                               positive_int, run_main, setup_logging)

log = logging.getLogger("bench.coco_eval")

BACKENDS = ("pycocotools", "faster")
PACKAGES = {"pycocotools": "pycocotools", "faster": "faster-coco-eval"}
# COCO 2017's 80 category ids (gaps at 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
IMAGE_SIZES = [(640, 480), (640, 427), (480, 640), (640, 425), (427, 640), (640, 512), (500, 375), (640, 640)]
# log(sqrt(box area)) ~ N(MU, SIGMA): P(< 32 px) = 0.41, P(< 96 px) = 0.75, as COCO's small/medium/large
LOG_SIZE_MU, LOG_SIZE_SIGMA = 3.743, 1.217
AGREE = 1e-4


# ------------------------------------------------------------------ the problem
def _boxes(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    """n boxes [x, y, bw, bh] inside a w x h image, COCO-like sizes and aspect ratios."""
    side = np.exp(rng.normal(LOG_SIZE_MU, LOG_SIZE_SIGMA, n))
    aspect = np.exp(rng.normal(0.0, 0.5, n))
    bw = np.clip(side * np.sqrt(aspect), 2.0, w)
    bh = np.clip(side / np.sqrt(aspect), 2.0, h)
    x = rng.uniform(0, 1, n) * (w - bw)
    y = rng.uniform(0, 1, n) * (h - bh)
    return np.stack([x, y, bw, bh], 1)


def make_problem(num_images: int, gt_per_image: float, dets_per_image: int, seed: int) -> tuple[dict, list[dict]]:
    """(ground truth as a COCO annotation dict, detections as a COCO results list); same seed, same problem."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, len(COCO_IDS) + 1)
    freq /= freq.sum()
    cat_ids = np.array(COCO_IDS)[rng.permutation(len(COCO_IDS))]  # which id is frequent: arbitrary
    images, annotations, results = [], [], []
    ann_id = 1
    for k in range(num_images):
        image_id = 2 * k + 139  # gapped, like COCO's
        w, h = IMAGE_SIZES[int(rng.choice(len(IMAGE_SIZES), p=[.5, .15, .12, .08, .05, .04, .03, .03]))]
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"{image_id:012d}.jpg"})
        n_gt = 0 if rng.random() < 0.01 else int(rng.geometric(1.0 / gt_per_image))
        gt = _boxes(rng, n_gt, w, h)
        gt_cat = rng.choice(cat_ids, n_gt, p=freq)
        crowd = rng.random(n_gt) < 0.01
        for box, cat, c in zip(gt.round(2).tolist(), gt_cat.tolist(), crowd.tolist()):
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": int(cat), "bbox": box,
                                "area": round(box[2] * box[3] * float(rng.uniform(0.55, 0.9)), 2),
                                "iscrowd": int(c), "segmentation": []})
            ann_id += 1
        # detections: found ground truth (jittered, some relabelled, some twice), then false positives
        found = np.flatnonzero(rng.random(n_gt) < 0.85)
        found = np.concatenate([found, found[rng.random(len(found)) < 0.3]])
        tp = gt[found].copy()
        jitter = rng.normal(0, 0.12, (len(found), 4))
        tp[:, :2] += jitter[:, :2] * tp[:, 2:]
        tp[:, 2:] *= np.exp(jitter[:, 2:])
        tp_cat = np.where(rng.random(len(found)) < 0.9, gt_cat[found], rng.choice(cat_ids, len(found), p=freq))
        tp_score = rng.beta(4, 2, len(found))
        n_fp = max(0, dets_per_image - len(found))
        fp = _boxes(rng, n_fp, w, h)
        fp_cat = rng.choice(cat_ids, n_fp, p=freq)
        fp_score = rng.beta(1, 5, n_fp)
        boxes = np.concatenate([tp, fp])
        cats = np.concatenate([tp_cat, fp_cat]).astype(np.int64)
        scores = np.concatenate([tp_score, fp_score])
        keep = np.argsort(-scores, kind="stable")[:dets_per_image]
        for box, cat, score in zip(boxes[keep].round(2).tolist(), cats[keep].tolist(),
                                   scores[keep].round(5).tolist()):
            results.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score})
    categories = [{"id": int(i), "name": f"class{i}", "supercategory": "thing"} for i in COCO_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}, results


# ------------------------------------------------------------------ one timed run
def _api(backend: str) -> tuple[type, type, dict]:
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster, {"print_function": lambda *a: print(*a)}
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval, {}


def run_once(backend: str, gt_dict: dict, results: list[dict]) -> dict:
    """Times of loadRes and of evaluate/accumulate/summarize, and the 12 stats (fresh objects each call:
    both libraries write into the annotation dicts)."""
    coco_class, eval_class, kwargs = _api(backend)
    out: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_class()
        gt.dataset = {k: [dict(a) for a in v] for k, v in gt_dict.items()}
        gt.createIndex()
        t0 = time.perf_counter()
        dt = gt.loadRes([dict(r) for r in results])
        out["load_res_s"] = time.perf_counter() - t0
        ev = eval_class(gt, dt, "bbox", **kwargs)
        for phase in ("evaluate", "accumulate", "summarize"):
            t0 = time.perf_counter()
            getattr(ev, phase)()
            out[f"{phase}_s"] = time.perf_counter() - t0
    out["eval_s"] = out["evaluate_s"] + out["accumulate_s"] + out["summarize_s"]
    out["stats"] = [float(s) for s in ev.stats[:len(STAT_NAMES)]]
    del ev, dt, gt
    gc.collect()
    return out


# ------------------------------------------------------------------ report
def format_table(records: list[dict]) -> str:
    cols = [("backend", "backend", "{}"), ("eval s", "eval_s", "{:.2f}"), ("evaluate s", "evaluate_s", "{:.2f}"),
            ("accumulate s", "accumulate_s", "{:.2f}"), ("summarize s", "summarize_s", "{:.3f}"),
            ("loadRes s", "load_res_s", "{:.2f}"), ("speed-up", "speedup", "{:.2f}x"),
            ("AP", "AP", "{:.4f}"), ("AP50", "AP50", "{:.4f}"), ("max|stat diff|", "max_abs_stat_diff", "{:.1e}")]
    rows = [["-" if r.get(key) is None else fmt.format(r[key]) for _, key, fmt in cols] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _, _) in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line([h for h, _, _ in cols]), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time pycocotools' COCOeval against faster-coco-eval on a seeded synthetic problem of COCO "
                    "val2017's size (bbox), and check that both give the same AP / AP50.")
    parser.add_argument("--images", type=positive_int, default=5000, help="images (default: 5000, COCO val2017)")
    parser.add_argument("--gt-per-image", type=float_range(1, 1000, lo_open=False), default=7.4,
                        help="mean ground-truth boxes per image (default: 7.4, ~37k in 5000 images as COCO val)")
    parser.add_argument("--dets-per-image", type=positive_int, default=100,
                        help="detections per image (default: 100, eval_ssd.py's COCO top-k)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="problem seed (default: 0)")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="timed rounds per backend, order alternating; the median is reported (default: 1)")
    add_log_level_arg(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    for backend in BACKENDS:
        resolve_coco_backend(backend)  # a one-line UserError naming the package when one is missing

    t0 = time.perf_counter()
    gt_dict, results = make_problem(args.images, args.gt_per_image, args.dets_per_image, args.seed)
    num_crowd = sum(a["iscrowd"] for a in gt_dict["annotations"])
    log.info("problem: %d images, %d ground-truth boxes (%d crowd), %d detections (built in %.1f s)",
             args.images, len(gt_dict["annotations"]), num_crowd, len(results), time.perf_counter() - t0)
    runs: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for r in range(args.repeats):
        for backend in (BACKENDS if r % 2 == 0 else BACKENDS[::-1]):
            runs[backend].append(run_once(backend, gt_dict, results))
            log.info("round %d: %s %.2f s", r + 1, backend, runs[backend][-1]["eval_s"])

    ref_stats = runs["pycocotools"][0]["stats"]
    ref_eval = statistics.median(x["eval_s"] for x in runs["pycocotools"])
    records = []
    for backend in BACKENDS:
        med = {k: statistics.median(x[k] for x in runs[backend])
               for k in ("eval_s", "evaluate_s", "accumulate_s", "summarize_s", "load_res_s")}
        stats = runs[backend][0]["stats"]
        records.append({
            "bench": "coco_eval", "backend": backend,
            "version": importlib.metadata.version(PACKAGES[backend]),
            "images": args.images, "gt_boxes": len(gt_dict["annotations"]), "crowd": num_crowd,
            "detections": len(results), "seed": args.seed, "repeats": args.repeats,
            **{k: round(v, 3) for k, v in med.items()},
            "speedup": round(ref_eval / med["eval_s"], 2),
            "AP": stats[0], "AP50": stats[1], "stats": dict(zip(STAT_NAMES, stats)),
            "max_abs_stat_diff": max(abs(a - b) for a, b in zip(stats, ref_stats)),
            "load_avg_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine(),
        })
    for rec in records:
        print(json.dumps(rec), flush=True)
    print()
    print(format_table(records))
    fast = records[1]
    if abs(fast["AP"] - records[0]["AP"]) > AGREE or abs(fast["AP50"] - records[0]["AP50"]) > AGREE:
        raise Failure(f"faster-coco-eval disagrees with pycocotools: AP {fast['AP']:.6f} vs {records[0]['AP']:.6f}, "
                      f"AP50 {fast['AP50']:.6f} vs {records[0]['AP50']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
