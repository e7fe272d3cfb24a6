"""Anti-aliased shape masks for the synthetic datasets' looks.

Why a module of its own: both looks of ``vision.datasets.synthetic`` (``shapes`` and
``scenes``) draw the same six class shapes; the scenes look adds shapes that are no
class (distractors). The geometry is written once here and each look picks its own
rotation and aspect ranges. The defaults are the ``shapes`` look's: its output must not
change, so the order of the random draws in ``shape_mask`` is part of its contract.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

_SUBPIXEL_BITS = 4  # sub-pixel bits for cv2 drawing
CLASS_SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
DISTRACTOR_SHAPES = ("hexagon", "crescent", "blob", "chevron")


def star_points(cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """[10, 2] outline of a five-pointed star of outer radius ``r``."""
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.45
        t = angle + k * np.pi / 5 - np.pi / 2
        pts.append((cx + rad * math.cos(t), cy + rad * math.sin(t)))
    return np.array(pts)


def rotate_points(pts: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """``pts`` [N, 2] rotated by ``angle`` radians about (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    d = pts - (cx, cy)
    return np.stack([cx + d[:, 0] * c - d[:, 1] * s, cy + d[:, 0] * s + d[:, 1] * c], axis=1)


def fill_polygon(mask: np.ndarray, pts: np.ndarray, value: int = 255) -> None:
    """Fill the float polygon ``pts`` [N, 2] into the uint8 ``mask`` with sub-pixel anti-aliasing."""
    sh = _SUBPIXEL_BITS
    cv2.fillPoly(mask, [np.round(pts * (1 << sh)).astype(np.int32)], value, cv2.LINE_AA, sh)


def shape_mask(shape: str, cx: float, cy: float, size: float, rng: np.random.Generator,
               width: int, height: int, max_angle: float = 0.4, aspect: tuple[float, float] = (0.85, 1.18),
               star_angle: float = 0.3) -> np.ndarray:
    """uint8 [H,W] anti-aliased mask (0..255) of one class shape of about ``size`` px across.

    Rotation is uniform in +-``max_angle`` (the star: +-``star_angle``), the aspect ratio
    uniform in ``aspect``; the square and cross are rotated, the star keeps its aspect."""
    mask = np.zeros((height, width), dtype=np.uint8)
    r = size / 2.0
    angle = rng.uniform(-max_angle, max_angle)
    asp = rng.uniform(*aspect)
    sh = _SUBPIXEL_BITS

    if shape in ("circle", "ring"):
        axes = (max(1, int(round(r * asp * (1 << sh)))), max(1, int(round(r / asp * (1 << sh)))))
        center = (int(round(cx * (1 << sh))), int(round(cy * (1 << sh))))
        cv2.ellipse(mask, center, axes, math.degrees(angle), 0, 360, 255, -1, cv2.LINE_AA, sh)
        if shape == "ring":
            inner = (max(1, int(axes[0] * 0.55)), max(1, int(axes[1] * 0.55)))
            cv2.ellipse(mask, center, inner, math.degrees(angle), 0, 360, 0, -1, cv2.LINE_AA, sh)
    elif shape == "square":
        hw, hh = r * asp * 0.9, r / asp * 0.9
        pts = np.array([(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)])
        fill_polygon(mask, rotate_points(pts, cx, cy, angle))
    elif shape == "triangle":
        pts = np.array([(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)])
        fill_polygon(mask, rotate_points(pts, cx, cy, angle))
    elif shape == "star":
        fill_polygon(mask, star_points(cx, cy, r, rng.uniform(-star_angle, star_angle)))
    elif shape == "cross":
        a, b = r, r * 0.34
        pts = np.array([(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b), (cx + a, cy + b),
                        (cx + b, cy + b), (cx + b, cy + a), (cx - b, cy + a), (cx - b, cy + b), (cx - a, cy + b),
                        (cx - a, cy - b), (cx - b, cy - b)])
        fill_polygon(mask, rotate_points(pts, cx, cy, angle))
    else:
        raise ValueError(f"unknown class shape {shape!r} (known: {', '.join(CLASS_SHAPES)})")
    return mask


def distractor_mask(shape: str, cx: float, cy: float, size: float, rng: np.random.Generator,
                    width: int, height: int) -> np.ndarray:
    """uint8 [H,W] anti-aliased mask of a shape that is no class (any rotation).

    Chosen to be told apart from the classes by outline alone: a hexagon (6 corners, no
    circle), a crescent (a disc with an off-centre bite, never a closed ring), a lumpy
    random blob and a chevron (a bent bar, neither cross nor triangle)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    r = size / 2.0
    angle = rng.uniform(-math.pi, math.pi)
    if shape == "hexagon":
        t = angle + np.arange(6) * math.pi / 3
        pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
        fill_polygon(mask, pts)
    elif shape == "crescent":
        sh = _SUBPIXEL_BITS
        rr = max(1, int(round(r * (1 << sh))))
        cv2.circle(mask, (int(round(cx * (1 << sh))), int(round(cy * (1 << sh)))), rr, 255, -1, cv2.LINE_AA, sh)
        off = r * rng.uniform(0.35, 0.6)
        bx, by = cx + off * math.cos(angle), cy + off * math.sin(angle)
        cv2.circle(mask, (int(round(bx * (1 << sh))), int(round(by * (1 << sh)))), int(rr * rng.uniform(0.8, 0.95)),
                   0, -1, cv2.LINE_AA, sh)
    elif shape == "blob":
        n = 36
        t = angle + np.arange(n) * 2 * math.pi / n
        # low harmonics of clear amplitude: a lumpy potato, neither ellipse nor star
        rad = np.ones(n)
        for k, (lo, hi) in ((2, (0.08, 0.18)), (3, (0.1, 0.2)), (4, (0.06, 0.14))):
            rad += rng.uniform(lo, hi) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
        rad = r * np.clip(rad, 0.3, None) / rad.max()
        fill_polygon(mask, np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], axis=1))
    elif shape == "chevron":
        b = r * rng.uniform(0.22, 0.35)
        pts = np.array([(cx - r, cy - r * 0.6), (cx, cy + r * 0.2), (cx + r, cy - r * 0.6),
                        (cx + r, cy - r * 0.6 + 2 * b), (cx, cy + r * 0.2 + 2 * b), (cx - r, cy - r * 0.6 + 2 * b)])
        fill_polygon(mask, rotate_points(pts, cx, cy, angle))
    else:
        raise ValueError(f"unknown distractor shape {shape!r} (known: {', '.join(DISTRACTOR_SHAPES)})")
    return mask
