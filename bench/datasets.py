#!/usr/bin/env python3
"""Dataset preparation speed: indexing a COCO-train-size annotation file, and generating synthetic
COCO pictures. These were timing asserts in tests once; timings belong here (tests check only that
the results are right).

    python3 bench/datasets.py                        # COCO train size: 118,287 images, 860,001 boxes
    python3 bench/datasets.py --index-images 5000 --index-boxes 36781 --generate 20
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (repository on sys.path)

from vision.utils.misc import add_log_level_arg, positive_int, setup_logging


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index-images", type=positive_int, default=118_287, help="images in the annotation file")
    p.add_argument("--index-boxes", type=positive_int, default=860_001, help="boxes in the annotation file")
    p.add_argument("--generate", type=positive_int, default=50, help="synthetic pictures to generate (320x240)")
    add_log_level_arg(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    from vision.datasets.coco_dataset import COCODataset
    from vision.datasets.synthetic import generate_coco_dataset, write_large_coco_json

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ann = Path(tmp) / "big.json"
        write_large_coco_json(ann, args.index_images, args.index_boxes)
        t = time.perf_counter()
        ds = COCODataset(tmp, ann_file=ann, check_images=False)
        rows.append({"bench": "coco_index", "images": len(ds), "boxes": args.index_boxes,
                     "seconds": round(time.perf_counter() - t, 3), "load_avg_1min": common.load_average()})
        t = time.perf_counter()
        generate_coco_dataset(Path(tmp) / "synthetic", args.generate, 0, seed=1)
        rows.append({"bench": "synthetic_generation", "images": args.generate,
                     "ms_per_image": round((time.perf_counter() - t) / args.generate * 1000, 2),
                     "load_avg_1min": common.load_average()})
    for r in rows:
        print(json.dumps(r))
    print(f"COCO index, {rows[0]['images']} images / {rows[0]['boxes']} boxes: {rows[0]['seconds']:.2f} s")
    print(f"synthetic COCO generation, 320x240: {rows[1]['ms_per_image']:.1f} ms per picture")
    return 0


if __name__ == "__main__":
    sys.exit(main())
