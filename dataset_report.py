#!/usr/bin/env python3
"""What is in a detection dataset, and can the net's priors catch its boxes?

    python3 dataset_report.py --dataset data/fruit                     # type recognised, train split
    python3 dataset_report.py --dataset data/fruit --split train val --net mb2-ssd-lite --resolution 512
    python3 dataset_report.py --dataset data/parts --suggest-priors parts-priors.json

Counts images, boxes, images without boxes and boxes per class; gives percentiles
of box width, height (as fractions of the image) and aspect ratio; and measures
**prior coverage**: the share of boxes whose best prior has IoU >= the matching
threshold (0.5, what training uses; the comparison is >=, as in the matcher),
overall, per class and per size (side = sqrt(area) in pixels of the net input,
which is the picture stretched to RESOLUTION x RESOLUTION as training does).
Boxes below the threshold still get one forced prior in training, but start far
off and are learnt poorly: they are listed by image.

The same coverage is computed at 1.5x and 2x the resolution and with priors
fitted to the data (k-means on aspect, a search on sizes per feature map); when
coverage is below --min-coverage the output says which of these helps and by how
much. --suggest-priors writes those fitted priors as a JSON priors file (format
in README, "Your own data").

Writes report.json and report.png (class histogram, box sizes over the priors'
sizes, coverage per size) into --output; only those two files are replaced. No
output may replace an input or go into a folder of the dataset's images.

Exit codes: 0 report written; 1 unexpected failure; 2 bad usage or unreadable dataset.
"""
from __future__ import annotations

import argparse
import io
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vision.utils.misc import (ArgumentParser, UserError, add_log_level_arg, atomic_write, atomic_write_json, int_range,
                               non_negative_int, positive_int, run_main, setup_logging, unit_float)

log = logging.getLogger("dataset_report")

SIZE_BUCKETS = ((0, 16, "<16 px"), (16, 32, "16-32 px"), (32, 96, "32-96 px"), (96, math.inf, ">=96 px"))
RESOLUTION_FACTORS = (1.5, 2.0)
PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
REPORT_FILES = ("report.json", "report.png")


def build_parser() -> argparse.ArgumentParser:
    from vision.ssd.registry import NET_NAMES
    from vision.training.dataset_folders import DATASET_TYPES

    p = ArgumentParser(description=__doc__.split("\n", 2)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--dataset", "--datasets", "--data", dest="datasets", nargs="+", required=True, metavar="DIR",
                   help="dataset folder(s) (YOLO: also the data.yaml); several are pooled (same classes needed)")
    p.add_argument("--dataset-type", "--dataset_type", default="auto", choices=DATASET_TYPES,
                   help="dataset format (default auto: recognised from the folder)")
    p.add_argument("--split", nargs="+", default=["train"], choices=("train", "val", "test"),
                   help="split(s) to pool (default train). val: COCO val2017, VOC's test list, Open Images "
                        "test, YOLO val; test: YOLO only")
    p.add_argument("--net", default="mb1-ssd", choices=NET_NAMES, help="net whose priors to check (default mb1-ssd)")
    p.add_argument("--resolution", type=int_range(64, 2048), default=300,
                   help="net input size in pixels, square (default 300)")
    p.add_argument("--priors", default=None, metavar="FILE.json",
                   help="check this priors file instead of the net's default priors")
    p.add_argument("--iou-threshold", "--iou_threshold", dest="iou_threshold", type=unit_float, default=None,
                   help="IoU a prior needs with a box to match it (default 0.5, what train_ssd.py uses)")
    p.add_argument("--min-coverage", type=unit_float, default=0.9,
                   help="below this coverage the report says what would help (default 0.9)")
    p.add_argument("--suggest-priors", default=None, metavar="FILE.json",
                   help="write priors fitted to the boxes (same feature maps and number of aspect ratios as "
                        "the net, so its heads keep their shapes) to this JSON file")
    p.add_argument("--max-images", type=positive_int, default=None,
                   help="look at only the first N images of each split (default all)")
    p.add_argument("--list", dest="list_n", type=non_negative_int, default=10,
                   help="boxes no prior catches to print (all go to report.json; default 10)")
    p.add_argument("--output", "-o", default="dataset_report",
                   help="folder for report.json and report.png (default dataset_report)")
    add_log_level_arg(p)
    return p


# ----------------------------------------------------------------------------- numbers
def _percentiles(x: np.ndarray) -> dict[str, float | None]:
    if len(x) == 0:
        return {f"p{q}": None for q in PERCENTILES}
    return {f"p{q}": round(float(v), 4) for q, v in zip(PERCENTILES, np.percentile(x, PERCENTILES))}


def _bucket_of(side: np.ndarray) -> np.ndarray:
    out = np.zeros(len(side), np.int64)
    for k, (lo, hi, _) in enumerate(SIZE_BUCKETS):
        out[(side >= lo) & (side < hi)] = k
    return out


def _share(mask: np.ndarray) -> float | None:
    return round(float(mask.mean()), 4) if len(mask) else None


def coverage_summary(best_iou: np.ndarray, labels: np.ndarray, bucket: np.ndarray, class_names: list[str],
                     threshold: float) -> dict[str, Any]:
    """Overall / per-class / per-size coverage of boxes whose best prior IoU is ``best_iou``."""
    hit = best_iou >= threshold
    return {
        "overall": _share(hit), "covered": int(hit.sum()), "boxes": int(len(hit)),
        "mean_best_iou": round(float(best_iou.mean()), 4) if len(hit) else None,
        "per_class": {class_names[c]: _share(hit[labels == c]) for c in range(1, len(class_names))},
        "per_size": [{"bucket": name, "boxes": int((bucket == k).sum()), "coverage": _share(hit[bucket == k])}
                     for k, (_, _, name) in enumerate(SIZE_BUCKETS)],
    }


def _best_iou(norm_boxes: np.ndarray, priors) -> np.ndarray:
    from vision.ssd.prior_coverage import best_prior_iou

    return best_prior_iou(norm_boxes, priors)[0].numpy()


class PriorSource:
    """The priors being checked (a net's default or a priors file) at any resolution."""

    def __init__(self, net: str, priors_file: str | None) -> None:
        from vision.ssd.custom_priors import load_priors_spec

        self.net = net
        self.file = priors_file
        self.spec = load_priors_spec(priors_file) if priors_file else None
        made_for = (self.spec or {}).get("net")
        if made_for and made_for != net:
            log.warning("priors file %s was made for %s, checked here with %s's feature maps", priors_file,
                        made_for, net)

    def describe(self) -> str:
        return f"priors file {self.file}" if self.file else f"{self.net} default priors"

    def specs(self, resolution: int) -> list:
        from vision.ssd.config.base import scaled_specs
        from vision.ssd.custom_priors import ssd_specs_from_spec
        from vision.ssd.registry import feature_map_sizes, get_config

        if self.spec is None:
            return list(get_config(self.net, resolution).specs)
        own = ssd_specs_from_spec(self.spec)
        if resolution == self.spec["image_size"]:
            return own
        return scaled_specs(own, self.spec["image_size"], resolution, feature_map_sizes(self.net, resolution))

    def priors(self, resolution: int):
        from vision.ssd.custom_priors import priors_from_spec
        from vision.ssd.registry import feature_map_sizes, get_config

        if self.spec is None:
            return get_config(self.net, resolution).priors
        return priors_from_spec(self.spec, resolution, feature_map_sizes(self.net, resolution))


def build_report(data, source: PriorSource, resolution: int, threshold: float,
                 min_coverage: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report dict for report.json, extras for the picture and the suggestion)."""
    from vision.ssd.custom_priors import priors_from_spec, spec_from_ssd_specs, suggest_specs
    from vision.ssd.prior_coverage import MATCH_IOU_THRESHOLD
    from vision.ssd.registry import feature_map_sizes

    names = data.class_names
    norm = data.normalized()
    k = len(norm)
    wh_img = data.boxes[:, 2:] - data.boxes[:, :2]
    side = np.sqrt(norm[:, 2] - norm[:, 0]) * np.sqrt(norm[:, 3] - norm[:, 1]) * resolution
    bucket = _bucket_of(side)
    boxes_per_image = np.bincount(data.box_image, minlength=len(data.image_ids)) if k else \
        np.zeros(len(data.image_ids), np.int64)

    priors = source.priors(resolution)
    best = _best_iou(norm, priors) if k else np.zeros(0, np.float32)
    cov = coverage_summary(best, data.labels, bucket, names, threshold)

    alternatives = []
    for f in RESOLUTION_FACTORS:
        r = int(round(resolution * f))
        b = _best_iou(norm, source.priors(r)) if k else best
        alternatives.append({"what": f"--resolution {r}", "resolution": r,
                             "priors": int(source.priors(r).size(0)),
                             **coverage_summary(b, data.labels, bucket, names, threshold)})
    suggested_spec = spec_from_ssd_specs(
        suggest_specs(norm * resolution, source.specs(resolution), resolution, threshold) if k
        else source.specs(resolution), resolution, source.net)
    suggested_priors = priors_from_spec(suggested_spec, resolution, feature_map_sizes(source.net, resolution))
    b = _best_iou(norm, suggested_priors) if k else best
    alternatives.append({"what": "suggested priors (--suggest-priors)", "resolution": resolution,
                         "priors": int(suggested_priors.size(0)),
                         **coverage_summary(b, data.labels, bucket, names, threshold)})

    advice = []
    if cov["overall"] is not None and cov["overall"] < min_coverage:
        for alt in alternatives:
            gain = alt["overall"] - cov["overall"]
            if gain > 0.005:
                advice.append(f"{alt['what']}: coverage {cov['overall']:.1%} -> {alt['overall']:.1%} "
                              f"(+{gain:.1%})")
        if not advice:
            advice.append("neither a higher resolution nor fitted priors raise the coverage noticeably")

    uncaught = []
    for j in np.flatnonzero(best < threshold):
        i = int(data.box_image[j])
        uncaught.append({"image": data.image_ids[i], "path": data.image_paths[i], "class": names[int(data.labels[j])],
                         "box": [round(float(v), 1) for v in data.boxes[j]],
                         "side_px_at_input": round(float(side[j]), 1), "best_iou": round(float(best[j]), 3)})
    uncaught.sort(key=lambda u: (u["image"], u["best_iou"]))

    report = {
        "images": len(data.image_ids),
        "images_without_boxes": int((boxes_per_image == 0).sum()),
        "unreadable_images": data.unreadable,
        "boxes": k,
        "classes": [{"id": c, "name": names[c], "boxes": int((data.labels == c).sum()),
                     "images": int(len(np.unique(data.box_image[data.labels == c]))),
                     "coverage": cov["per_class"][names[c]]} for c in range(1, len(names))],
        "box_distribution": {
            "width_fraction_of_image": _percentiles(norm[:, 2] - norm[:, 0]),
            "height_fraction_of_image": _percentiles(norm[:, 3] - norm[:, 1]),
            "aspect_w_over_h_in_image": _percentiles(wh_img[:, 0] / np.maximum(wh_img[:, 1], 1e-6)),
            "side_px_at_input": _percentiles(side),
        },
        "prior_coverage": {"priors": source.describe(), "num_priors": int(priors.size(0)),
                           "rule": f"best prior IoU >= {threshold:g}, " + (
                               "the training matcher's rule" if threshold == MATCH_IOU_THRESHOLD else
                               f"training matches at {MATCH_IOU_THRESHOLD:g}"),
                           "iou_threshold": threshold, **cov},
        "alternatives": alternatives,
        "advice": advice,
        "uncaught_boxes": uncaught,
    }
    extras = {"priors_px": priors[:, 2:].numpy() * resolution, "side": side, "norm": norm,
              "suggested_spec": suggested_spec}
    return report, extras


# ----------------------------------------------------------------------------- output
def format_table(report: dict[str, Any], head: dict[str, Any], list_n: int) -> str:
    cov = report["prior_coverage"]
    lines = [f"dataset {', '.join(head['datasets'])} ({head['dataset_type']}, {'+'.join(head['splits'])}), "
             f"net {head['net']} at {head['resolution']} px, {cov['priors']} ({cov['num_priors']})",
             f"images {report['images']}, boxes {report['boxes']}, images without boxes "
             f"{report['images_without_boxes']}, unreadable images {len(report['unreadable_images'])}", ""]

    def pct(v):
        return "   -  " if v is None else f"{v:6.1%}"

    width = max([5] + [len(c["name"]) for c in report["classes"]])
    lines.append(f"{'class':<{width}}  {'boxes':>7}  {'images':>7}  coverage")
    for c in report["classes"]:
        lines.append(f"{c['name']:<{width}}  {c['boxes']:>7}  {c['images']:>7}  {pct(c['coverage'])}")
    lines.append("")
    d = report["box_distribution"]
    lines.append(f"{'percentile':<26}" + "".join(f"{q:>8}" for q in ("p0", "p5", "p25", "p50", "p75", "p95", "p100")))
    for key, label in (("width_fraction_of_image", "width / image width"),
                       ("height_fraction_of_image", "height / image height"),
                       ("aspect_w_over_h_in_image", "aspect w/h"),
                       ("side_px_at_input", "sqrt(area) px at input")):
        lines.append(f"{label:<26}" + "".join("       -" if v is None else f"{v:8.3g}" for v in d[key].values()))
    lines.append("")
    lines.append(f"prior coverage ({cov['rule']}): {pct(cov['overall']).strip()} "
                 f"({cov['covered']} of {cov['boxes']} boxes), mean best IoU {cov['mean_best_iou']}")
    alts = report["alternatives"]
    lines.append(f"{'size (at input)':<16}  {'boxes':>7}  {'now':>7}" +
                 "".join(f"  {a['what'].split(' (')[0]:>22}" for a in alts))
    for k, s in enumerate(cov["per_size"]):
        lines.append(f"{s['bucket']:<16}  {s['boxes']:>7}  {pct(s['coverage']):>7}" +
                     "".join(f"  {pct(a['per_size'][k]['coverage']):>22}" for a in alts))
    lines.append(f"{'all':<16}  {cov['boxes']:>7}  {pct(cov['overall']):>7}" +
                 "".join(f"  {pct(a['overall']):>22}" for a in alts))
    if report["advice"]:
        lines.append("")
        lines.append("coverage is low; what would help (computed on these boxes):")
        lines += [f"  {a}" for a in report["advice"]]
    un = report["uncaught_boxes"]
    if un and list_n:
        lines.append("")
        lines.append(f"boxes no prior catches: {len(un)}" + (f" (first {list_n}; all in report.json)"
                                                              if len(un) > list_n else ""))
        for u in un[:list_n]:
            lines.append(f"  {u['image']}  {u['class']}  box {u['box']}  side {u['side_px_at_input']} px  "
                         f"best IoU {u['best_iou']}")
    return "\n".join(lines)


def render_png(report: dict[str, Any], extras: dict[str, Any], resolution: int) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    ax = axes[0]
    classes = report["classes"]
    ax.bar(range(len(classes)), [c["boxes"] for c in classes], color="tab:blue")
    ax.set_xticks(range(len(classes)), [c["name"] for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_title("boxes per class")
    ax = axes[1]
    norm = extras["norm"]
    if len(norm):
        ax.scatter((norm[:, 2] - norm[:, 0]) * resolution, (norm[:, 3] - norm[:, 1]) * resolution, s=4,
                   alpha=0.4, label="boxes")
    pr = np.unique(np.round(extras["priors_px"], 1), axis=0)
    ax.scatter(pr[:, 0], pr[:, 1], marker="x", color="tab:red", s=30, label="prior shapes")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"width (px at {resolution}x{resolution} input)")
    ax.set_ylabel("height (px)")
    ax.set_title("box sizes and prior sizes")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    cov = report["prior_coverage"]
    series = [("now", cov["per_size"])] + [(a["what"].split(" (")[0], a["per_size"]) for a in report["alternatives"]]
    n = len(SIZE_BUCKETS)
    bar_w = 0.8 / len(series)
    for j, (name, per_size) in enumerate(series):
        ax.bar(np.arange(n) + j * bar_w, [s["coverage"] or 0 for s in per_size], bar_w, label=name)
    ax.set_xticks(np.arange(n) + 0.4 - bar_w / 2,
                  [f"{s['bucket']}\n({s['boxes']} boxes)" for s in cov["per_size"]], fontsize=8)
    ax.set_ylim(0, 1)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_title(f"prior coverage per size (IoU >= {cov['iou_threshold']:g})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------- outputs
def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _check_writable_folder(folder: Path, what: str) -> None:
    """One-line ``UserError`` now, not a traceback after the long part, when ``folder`` cannot be made/written."""
    p = folder
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise UserError(f"{what}: cannot make folder {folder}: {p} is a file")
    if p.exists() and not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"{what}: {p} is not writable")


def check_outputs(out: Path, suggest: Path | None, priors_file: str | None) -> None:
    """Refuse outputs that would replace an input or each other, before any dataset is read."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file, not a folder")
    _check_writable_folder(out, "--output")
    if suggest is None:
        return
    if suggest.is_dir():
        raise UserError(f"--suggest-priors {suggest} is a folder; give a file name")
    for name in REPORT_FILES:
        if _same(suggest, out / name):
            raise UserError(f"--suggest-priors {suggest} is the report's own {name}; give another file name")
    if priors_file and _same(suggest, Path(priors_file)):
        raise UserError(f"--suggest-priors {suggest} is the --priors file being checked; refusing to replace "
                        f"an input (give a new file name)")
    if suggest.exists():
        from vision.ssd.custom_priors import load_priors_spec
        try:
            load_priors_spec(suggest)
        except UserError:
            raise UserError(f"--suggest-priors {suggest} exists and is not a priors file; refusing to replace it "
                            f"(give a new file name)") from None
    _check_writable_folder(suggest.parent, "--suggest-priors")


def check_not_over_inputs(outputs: list[Path], datasets: list, report_folder: Path) -> None:
    """Refuse an output that is one of the datasets' files, or a report folder in a folder of their
    images (report.png there would become a training image, or replace one)."""
    from vision.datasets.yolo import YOLODataset, label_path

    inputs: set[str] = set()
    image_dirs: set[str] = set()
    for ds in datasets:
        if isinstance(ds, YOLODataset):
            inputs.add(os.path.realpath(ds.yaml_file))
        for i in range(len(ds)):
            image = ds.image_path(i)
            inputs.add(os.path.realpath(image))
            image_dirs.add(os.path.realpath(Path(image).parent))
            if isinstance(ds, YOLODataset):
                inputs.add(os.path.realpath(label_path(image)))
    for o in outputs:
        if os.path.realpath(o) in inputs:
            raise UserError(f"output {o} is a file of the dataset; refusing to replace an input")
    folder = os.path.realpath(report_folder)
    for d in image_dirs:
        if folder == d or folder.startswith(d + os.sep):
            raise UserError(f"--output {report_folder} is in the dataset's image folder {d} (report.png would "
                            f"become one of its images); choose another folder")


# ----------------------------------------------------------------------------- main
def check_outputs_generic(args: argparse.Namespace) -> Path:
    """--output (a folder) and --suggest-priors (a file) can be written and land on no input: not in a
    dataset folder, not on --priors or a dataset's data.yaml."""
    from vision.utils.paths import check_output_dir, check_output_file, refuse_output_dir_over_inputs, \
        refuse_output_over_inputs

    out = check_output_dir(args.output, "--output")
    inputs = [("--dataset", d) for d in args.datasets] + [("--priors", args.priors)]
    refuse_output_dir_over_inputs("--output", out, [("--dataset", d) for d in args.datasets])
    refuse_output_over_inputs([("--output", out / name) for name in REPORT_FILES], inputs)
    if args.suggest_priors:
        check_output_file(args.suggest_priors, "--suggest-priors")
        refuse_output_over_inputs([("--suggest-priors", args.suggest_priors)], inputs)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vision.datasets.box_stats import collect_boxes
    from vision.ssd.prior_coverage import MATCH_IOU_THRESHOLD
    from vision.ssd.registry import canonical_name
    from vision.training.dataset_folders import open_dataset, resolve_dataset_type

    threshold = MATCH_IOU_THRESHOLD if args.iou_threshold is None else args.iou_threshold
    out = check_outputs_generic(args)  # the generic rules (vision.utils.paths), then this report's own
    suggest = Path(args.suggest_priors) if args.suggest_priors else None
    check_outputs(out, suggest, args.priors)
    net = canonical_name(args.net)
    source = PriorSource(net, args.priors)
    source.priors(args.resolution)  # a priors file that does not fit the net fails here, before the long part

    parts, types, seen = [], [], {}
    for d in args.datasets:
        kind = resolve_dataset_type(args.dataset_type, d)
        types.append(kind)
        for split in args.split:
            if split == "test" and kind != "yolo":
                raise UserError(f"--split test is for YOLO datasets only ({d} is {kind})")
            ds = open_dataset(kind, d, split=split)
            label = f"{Path(d).name}:{split}" if len(args.datasets) > 1 else split
            # the same split twice (--split train train, DIR and DIR/data.yaml, a yaml whose val is
            # its train) would count every box twice
            key = frozenset(os.path.realpath(ds.image_path(i)) for i in range(len(ds)))
            if key in seen:
                log.warning("%s %s holds the same images as %s; counted once", d, split, seen[key])
                continue
            seen[key] = f"{d} {split}"
            parts.append((label, ds))
    check_not_over_inputs([out / n for n in REPORT_FILES] + ([suggest] if suggest else []), [ds for _, ds in parts],
                          out)
    names = list(parts[0][1].class_names)
    for label, ds in parts[1:]:
        if list(ds.class_names) != names:
            raise UserError(f"{label} has other classes than {parts[0][0]}: {list(ds.class_names)} vs {names}")
    data = collect_boxes(parts, args.max_images)
    if not data.image_ids:
        raise UserError("no readable images in " + ", ".join(args.datasets))
    if suggest is not None and len(data.boxes) == 0:
        raise UserError(f"--suggest-priors: no boxes in {', '.join(args.datasets)} ({'+'.join(args.split)}"
                        + (f", first {args.max_images} images" if args.max_images else "") + ") to fit priors to")
    log.info("%d images, %d boxes; computing prior coverage", len(data.image_ids), len(data.boxes))
    report, extras = build_report(data, source, args.resolution, threshold, args.min_coverage)
    head = {"datasets": [str(d) for d in args.datasets], "dataset_type": "+".join(sorted(set(types))),
            "splits": list(args.split), "net": net, "resolution": args.resolution,
            "max_images": args.max_images}
    report = {**head, **report}
    print(format_table(report, head, args.list_n))
    png = render_png(report, extras, args.resolution)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "report.json", report)
        with atomic_write(out / "report.png", "wb") as f:
            f.write(png)
    except OSError as e:
        raise UserError(f"cannot write the report into {out}: {e.strerror or e}") from None
    log.info("wrote %s and %s", out / "report.json", out / "report.png")
    if args.suggest_priors:
        spec = extras["suggested_spec"]
        alt = report["alternatives"][-1]
        spec["coverage"] = {"boxes": alt["boxes"], "overall": alt["overall"], "iou_threshold": threshold,
                            "before": report["prior_coverage"]["overall"]}
        try:
            atomic_write_json(suggest, spec)
        except OSError as e:
            raise UserError(f"cannot write --suggest-priors {suggest}: {e.strerror or e}") from None
        log.info("suggested priors written to %s: coverage %s -> %s on these boxes", args.suggest_priors,
                 report["prior_coverage"]["overall"], alt["overall"])
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
