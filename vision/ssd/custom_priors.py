"""Custom priors: the JSON file that describes them, the priors it makes, and a suggestion from data.

Why: the default priors of every net here are made for VOC/COCO objects (60 px
and up at 300 px). Datasets of small or elongated objects need other sizes and
aspect ratios; ``dataset_report.py --suggest-priors`` proposes them, and the
training script reads the same file.

File format (``pytorch-ssd-priors``, version 1)::

    {
      "format": "pytorch-ssd-priors", "version": 1,
      "image_size": 300,                # the net input (px) that the pixel sizes below refer to
      "net": "mb1-ssd",                 # informational: the net the feature maps were taken from
      "feature_maps": [                 # one entry per source feature map, finest first
        {"feature_map_size": 19, "shrinkage": 16, "min_size": 60, "max_size": 105,
         "aspect_ratios": [2, 3]},
        ...
      ]
    }

Per cell of a map the priors are (``generate_ssd_priors``): a ``min_size`` square,
a ``sqrt(min_size * max_size)`` square, then for each ratio ``r`` a box of
``min_size*sqrt(r)`` x ``min_size/sqrt(r)`` and its transpose: ``2 + 2 * len(aspect_ratios)``
priors per cell, which is the number of outputs per cell of that map's heads.
``feature_map_size`` must equal the net's map at ``image_size``; at another
resolution the sizes scale with the image and the grid follows the net's maps
(as the default priors do).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vision.ssd.config.base import SSDConfig, scaled_specs
from vision.utils.box_utils import SSDBoxSizes, SSDSpec, generate_ssd_priors
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

FORMAT = "pytorch-ssd-priors"
VERSION = 1


# ----------------------------------------------------------------------------- the file
def _num(v: Any, what: str, src: str, positive: bool = True) -> float:
    if type(v) not in (int, float) or not math.isfinite(v) or (positive and v <= 0):
        raise UserError(f"{src}: {what} must be a {'positive ' if positive else ''}number, got {v!r}")
    return float(v)


def validate_spec(data: Any, source: str = "priors spec") -> dict:
    """Check a priors spec (parsed JSON); returns it. One-line ``UserError`` naming the bad field."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise UserError(f"{source}: not a priors file ('format' must be {FORMAT!r}, got {data.get('format')!r})")
    if data.get("version") != VERSION:
        raise UserError(f"{source}: unsupported version {data.get('version')!r} (this code reads {VERSION})")
    size = data.get("image_size")
    if type(size) is not int or size < 1:
        raise UserError(f"{source}: 'image_size' must be a positive integer, got {size!r}")
    maps = data.get("feature_maps")
    if not isinstance(maps, list) or not maps:
        raise UserError(f"{source}: 'feature_maps' must be a non-empty list")
    for k, m in enumerate(maps):
        where = f"{source}: feature_maps[{k}]"
        if not isinstance(m, dict):
            raise UserError(f"{where} is not an object")
        fm = m.get("feature_map_size")
        if type(fm) is not int or fm < 1:
            raise UserError(f"{where}: 'feature_map_size' must be a positive integer, got {fm!r}")
        step = _num(m.get("shrinkage"), "'shrinkage'", where)
        if abs(fm * step - size) > step:  # generate_ssd_priors puts cell centers at (i + 0.5) * shrinkage
            raise UserError(f"{where}: shrinkage {step:g} x feature_map_size {fm} does not span the {size} px "
                            f"image (the grid's cells must cover it: shrinkage about {size / fm:g})")
        lo = _num(m.get("min_size"), "'min_size'", where)
        hi = _num(m.get("max_size"), "'max_size'", where)
        if hi < lo:
            raise UserError(f"{where}: max_size {hi:g} is smaller than min_size {lo:g}")
        if lo > size:
            raise UserError(f"{where}: min_size {lo:g} is larger than the {size} px image: every prior of this "
                            f"map would be clamped to the whole image")
        ratios = m.get("aspect_ratios")
        if not isinstance(ratios, list):
            raise UserError(f"{where}: 'aspect_ratios' must be a list (may be empty)")
        for r in ratios:
            _num(r, "every aspect ratio", where)
    return data


def load_priors_spec(path: str | os.PathLike) -> dict:
    """Read and check a priors file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"priors file not found: {p}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{p}: not a JSON priors file ({e})") from None
    spec = validate_spec(data, str(p))
    for k, m in enumerate(spec["feature_maps"]):  # legal, but heads that learn the same box twice
        folded = [round(max(r, 1 / r), 6) for r in m["aspect_ratios"]]  # r and 1/r make the same pair
        if len(set(folded)) < len(folded) or 1.0 in folded:
            log.warning("%s: feature_maps[%d]: aspect ratios %s repeat a box (r and 1/r make the same pair; 1 "
                        "is the min_size square): those priors are duplicates", p, k, m["aspect_ratios"])
    return spec


def priors_spec_arg(value: Any, source: str = "--priors") -> dict | None:
    """A ``--priors`` value as a checked spec: a path is read (a new run), a dict is the spec a run's
    args.json / checkpoint already holds (--resume), None means the net's default priors."""
    if value is None:
        return None
    if isinstance(value, dict):
        return validate_spec(value, source)
    if isinstance(value, (str, os.PathLike)):
        return load_priors_spec(os.path.expanduser(value))
    raise UserError(f"{source}: expected a priors file path or spec, got {type(value).__name__}")


def same_priors(a: dict | None, b: dict | None) -> bool:
    """Whether two specs make the same priors (``image_size`` and ``feature_maps``; the informational
    ``net`` and ``coverage`` do not count). None is the net's default priors."""
    if a is None or b is None:
        return a is None and b is None
    key = lambda s: json.dumps([s.get("image_size"), s.get("feature_maps")], sort_keys=True)  # noqa: E731
    return key(a) == key(b)


def resume_priors_arg(saved: dict | None, value: Any, force: bool = False) -> dict | None:
    """The ``--priors`` given again on ``--resume``, checked against the run's saved spec ``saved``.

    Why: a run's priors are part of its weights (the heads' outputs per cell, the box coding), so
    they cannot change; the same file again is fine. Returns the spec to merge (``saved`` itself
    when equal, so the merge sees no change); refuses another spec in one line unless ``force``,
    and even then when its boxes per cell differ (the checkpoint's heads could not load).
    """
    spec = priors_spec_arg(value)
    if same_priors(saved, spec):
        return saved
    name = value if isinstance(value, (str, os.PathLike)) else "the given spec"
    if not force:
        raise UserError(f"--priors {name}: not the priors this run was trained with (its own are saved in its "
                        f"args.json: resume without --priors); start a new run, or pass --force-override")
    if saved is not None and spec is not None and priors_per_cell(saved) != priors_per_cell(spec):
        raise UserError(f"--priors {name}: {priors_per_cell(spec)} boxes per cell per feature map, the run's heads "
                        f"have {priors_per_cell(saved)}: its checkpoint cannot continue with them, even with "
                        f"--force-override; start a new run (--pretrained-ssd loads all but the heads)")
    return spec


def spec_from_ssd_specs(specs: Sequence[SSDSpec], image_size: int, net: str | None = None) -> dict:
    """The JSON form of a list of ``SSDSpec`` (e.g. a net's default config)."""
    return {"format": FORMAT, "version": VERSION, "image_size": int(image_size),
            **({"net": net} if net else {}),
            "feature_maps": [{"feature_map_size": int(s.feature_map_size), "shrinkage": _round(s.shrinkage, 4),
                              "min_size": _round(s.box_sizes.min, 2), "max_size": _round(s.box_sizes.max, 2),
                              "aspect_ratios": [_round(r, 3) for r in s.aspect_ratios]} for s in specs]}


def _round(v: float, digits: int) -> int | float:
    r = round(float(v), digits)
    return int(r) if r == int(r) else r


def ssd_specs_from_spec(spec: dict) -> list[SSDSpec]:
    """The ``SSDSpec`` list a (validated) priors spec describes, at its own ``image_size``."""
    return [SSDSpec(m["feature_map_size"], float(m["shrinkage"]),
                    SSDBoxSizes(float(m["min_size"]), float(m["max_size"])), [float(r) for r in m["aspect_ratios"]])
            for m in spec["feature_maps"]]


def priors_per_cell(spec: dict) -> list[int]:
    """Outputs per feature-map cell of each head: 2 squares + 2 per aspect ratio."""
    return [2 + 2 * len(m["aspect_ratios"]) for m in spec["feature_maps"]]


def priors_from_spec(spec: dict, resolution: int, feature_map_sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Priors [N,4] (center form, 0..1, clamped) of ``spec`` for a ``resolution`` px net input.

    ``feature_map_sizes``: the net's source maps at ``resolution`` (``registry.feature_map_sizes``);
    needed when ``resolution`` is not the spec's ``image_size``, checked against the spec when it is.
    """
    return generate_ssd_priors(specs_at(spec, resolution, feature_map_sizes), resolution)


def specs_at(spec: dict, resolution: int, feature_map_sizes: Sequence[int] | None = None) -> list[SSDSpec]:
    """The ``SSDSpec`` list of ``spec`` for a ``resolution`` px net input (see ``priors_from_spec``)."""
    validate_spec(spec)
    specs = ssd_specs_from_spec(spec)
    own = [s.feature_map_size for s in specs]
    if feature_map_sizes is not None and len(feature_map_sizes) != len(specs):
        raise UserError(f"the priors file has {len(specs)} feature maps, the net has {len(feature_map_sizes)}")
    if resolution == spec["image_size"]:
        if feature_map_sizes is not None and list(feature_map_sizes) != own:
            raise UserError(f"the priors file's feature maps {own} are not the net's {list(feature_map_sizes)} "
                            f"at {resolution} px")
        return specs
    if feature_map_sizes is None:
        raise UserError(f"the priors file is for {spec['image_size']} px; priors at {resolution} px need the "
                        f"net's feature map sizes")
    return scaled_specs(specs, spec["image_size"], resolution, feature_map_sizes)


def config_with_priors(config: SSDConfig, spec: dict, feature_map_sizes: Sequence[int]) -> SSDConfig:
    """``config`` (a net's default, at its resolution) with the priors of ``spec`` instead of its own:
    mean/std, variances and thresholds stay the net's."""
    specs = specs_at(spec, config.image_size, feature_map_sizes)
    return dataclasses.replace(config, specs=specs, priors=generate_ssd_priors(specs, config.image_size))


# ----------------------------------------------------------------------------- suggestion
_SIZE_GROWTH = (1.1, 1.25, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0)  # sqrt(max/min) candidates
_RATIO_CANDIDATES = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def _grid_offsets(c: np.ndarray, stride: float, size: int) -> np.ndarray:
    """Distance of each center ``c`` (px) to the nearest cell center of a ``size``-cell grid."""
    i = np.clip(np.floor(c / stride), 0, size - 1)
    return np.abs(c - (i + 0.5) * stride)


def _iou_offset(w: np.ndarray, h: np.ndarray, dx: np.ndarray, dy: np.ndarray,
                pw: np.ndarray, ph: np.ndarray) -> np.ndarray:
    """IoU of boxes [B] (size w,h, center offset dx,dy from the cell center) with shapes [S] at the center."""
    w, h, dx, dy = (a[:, None] for a in (w, h, dx, dy))
    ix = np.clip(np.minimum(dx + w / 2, pw / 2) - np.maximum(dx - w / 2, -pw / 2), 0, None)
    iy = np.clip(np.minimum(dy + h / 2, ph / 2) - np.maximum(dy - h / 2, -ph / 2), 0, None)
    inter = ix * iy
    return inter / (w * h + pw * ph - inter)


def _shapes(m: float, big: float, ratios: Sequence[float], limit: float) -> tuple[np.ndarray, np.ndarray]:
    ws, hs = [m, big], [m, big]
    for r in ratios:
        s = math.sqrt(r)
        ws += [m * s, m / s]
        hs += [m / s, m * s]
    return np.minimum(np.array(ws), limit), np.minimum(np.array(hs), limit)  # priors are clamped to the image


def _score(box: tuple, m: float, big: float, ratios: Sequence[float], limit: float, thr: float) -> float:
    w, h, dx, dy = box
    pw, ph = _shapes(m, big, ratios, limit)
    best = _iou_offset(w, h, dx, dy, pw, ph).max(axis=1)
    return float((best >= thr).sum()) + float(best.mean())  # boxes caught; mean IoU breaks ties


def _kmeans_1d(x: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    centers = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        assign = np.abs(x[:, None] - centers[None]).argmin(axis=1)
        for j in range(k):
            if (assign == j).any():
                centers[j] = x[assign == j].mean()
    return np.sort(centers)


def _fit_map(box: tuple, default: SSDSpec, limit: float, thr: float) -> SSDSpec:
    """Best (min size, max size, aspect ratios) for the boxes given to one map; never worse than ``default``."""
    w, h = box[0], box[1]
    n_ratios = len(default.aspect_ratios)
    m0, big0 = default.box_sizes.min, math.sqrt(default.box_sizes.min * default.box_sizes.max)
    best = (_score(box, m0, big0, default.aspect_ratios, limit, thr), m0, big0, list(default.aspect_ratios))
    if n_ratios:
        folded = np.abs(np.log(w / h))  # a ratio r also makes its transpose 1/r
        ratios = [max(1.2, float(math.exp(c))) for c in _kmeans_1d(folded, n_ratios)]
    else:
        ratios = []
    scale = np.sqrt(w * h)
    sizes = np.unique(np.concatenate([np.geomspace(max(1.0, np.quantile(scale, 0.02) * 0.7),
                                                   np.quantile(scale, 0.98) * 1.2, 24), [m0]]))

    def search_sizes(ratios: list[float]) -> tuple:
        top = (-1.0, m0, big0, ratios)
        for m in sizes:
            for g in _SIZE_GROWTH:
                s = _score(box, float(m), float(m * g), ratios, limit, thr)
                if s > top[0]:
                    top = (s, float(m), float(m * g), ratios)
        return top

    cand = search_sizes(ratios)
    for _ in range(2):  # coordinate descent on the ratios, then the sizes again
        _, m, big, ratios = cand
        for j in range(len(ratios)):
            options = sorted(set(_RATIO_CANDIDATES) | {round(ratios[j], 2)})
            scores = [_score(box, m, big, ratios[:j] + [r] + ratios[j + 1:], limit, thr) for r in options]
            ratios = ratios[:j] + [options[int(np.argmax(scores))]] + ratios[j + 1:]
        cand = search_sizes(ratios)
    if cand[0] > best[0]:
        best = cand
    _, m, big, ratios = best
    return SSDSpec(default.feature_map_size, default.shrinkage,
                   SSDBoxSizes(round(m, 1), round(big * big / m, 1)), [round(float(r), 2) for r in ratios])


def suggest_specs(boxes_px: np.ndarray, default_specs: Sequence[SSDSpec], image_size: int,
                  threshold: float = 0.5, max_boxes_per_map: int = 4000, seed: int = 0) -> list[SSDSpec]:
    """Priors fitted to ground-truth boxes [K,4] (corner form, pixels of the ``image_size`` net input).

    Each box goes to the coarsest feature map whose grid can still place a prior of its exact
    shape close enough for IoU >= ``threshold`` + 0.1 (the finest map when none can: only a
    higher resolution helps those). Per map, min/max size and aspect ratios are chosen by a
    search that maximises the boxes caught (IoU >= ``threshold`` with a prior at the nearest
    cell), starting from k-means of the boxes' aspect ratios; a map keeps its default when
    the search finds nothing better, or when putting it back catches more boxes overall (so the
    result never catches fewer of these boxes than ``default_specs``). The number of aspect ratios per map stays the net's, so
    the heads keep their shapes (and pretrained SSD weights still fit).
    """
    b = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = (w > 0) & (h > 0)
    b, w, h = b[keep], w[keep], h[keep]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    specs = list(default_specs)
    if len(b) == 0:
        return specs
    order = np.argsort([s.shrinkage for s in specs])  # finest first
    ideal = np.zeros((len(b), len(specs)))
    offsets = []
    for k, s in enumerate(specs):
        dx = _grid_offsets(cx, s.shrinkage, s.feature_map_size)
        dy = _grid_offsets(cy, s.shrinkage, s.feature_map_size)
        offsets.append((dx, dy))
        ix, iy = np.clip(w - dx, 0, None), np.clip(h - dy, 0, None)
        ideal[:, k] = ix * iy / (2 * w * h - ix * iy)
    ok = ideal >= min(threshold + 0.1, 0.95)
    assign = np.full(len(b), order[0])
    for k in order:  # later (coarser) maps overwrite: the coarsest that can place the box wins
        assign[ok[:, k]] = k
    rng = np.random.default_rng(seed)
    out = []
    for k, s in enumerate(specs):
        idx = np.flatnonzero(assign == k)
        if len(idx) == 0:
            out.append(s)
            continue
        if len(idx) > max_boxes_per_map:
            idx = rng.choice(idx, max_boxes_per_map, replace=False)
        box = (w[idx], h[idx], offsets[k][0][idx], offsets[k][1][idx])
        out.append(_fit_map(box, s, float(image_size), threshold))
    sample = np.arange(len(b)) if len(b) <= 50_000 else rng.choice(len(b), 50_000, replace=False)
    return _keep_what_helps(out, specs, b[sample] / image_size, image_size, threshold)


def _keep_what_helps(fitted: list[SSDSpec], default: list[SSDSpec], norm_boxes: np.ndarray, image_size: int,
                     threshold: float) -> list[SSDSpec]:
    """Each map fitted on its own boxes can still lose boxes another map's default caught: measure the
    real coverage (all priors, the matcher's rule) and put a map's default back wherever that is not
    worse, so the suggestion never covers fewer of these boxes than the defaults."""
    from vision.ssd.prior_coverage import best_prior_iou

    def caught(specs: list[SSDSpec]) -> int:
        return int((best_prior_iou(norm_boxes, generate_ssd_priors(specs, image_size))[0] >= threshold).sum())

    best = list(fitted)
    score = caught(best)
    for k in range(len(best)):
        if best[k] is default[k]:
            continue
        trial = best[:k] + [default[k]] + best[k + 1:]
        s = caught(trial)
        if s > score:
            best, score = trial, s
    return best if score >= caught(list(default)) else list(default)
