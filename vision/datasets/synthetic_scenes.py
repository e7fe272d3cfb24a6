"""The ``scenes`` look of the synthetic dataset: the same six classes in a busier, photo-like picture.

Why: a training recipe tuned on the ``shapes`` look (muted gradients, one flat colour per
class) may only have learnt that look. ``scenes`` keeps the classes, ids and every COCO
quirk (the placement, ids and files come from ``vision.datasets.synthetic``) and changes
what the pixels look like:

* background: a base colour under smooth colour noise at three scales, 8-21 overlapping
  blurred long rectangles / long ellipses / irregular polygons in saturated and dull
  colours, a few sharp lines, and 0-4 *distractors* (hexagons, crescents, blobs, chevrons) painted like
  objects, half of them in a class colour, so colour alone does not name a class;
* objects: class = shape. Colour around the class hue with a wide jitter, fills that are
  solid, striped, checkered, noisy or two-tone, outlines, drop shadows, some translucent
  and some defocused, any rotation, aspect 0.7-1.45, sizes 6-50 % of the image side;
* the whole frame: a lighting gradient, vignetting, a colour cast and sensor noise.

Everything is drawn from the image's own random generator, so a seed gives the same bytes.
The class of an object is an index into the ``class_colors`` the look is built with.
"""
from __future__ import annotations

import colorsys
import math
from typing import Sequence

import cv2
import numpy as np

from vision.datasets.synthetic_geometry import DISTRACTOR_SHAPES, distractor_mask, fill_polygon, rotate_points, \
    shape_mask

_HUE_JITTER = 0.055  # class hues are >= 0.13 apart: jittered hues never meet
_FILLS = ("solid", "stripes", "checker", "noise", "two-tone")
_FILL_P = (0.3, 0.22, 0.14, 0.2, 0.14)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    """Any colour: 40 % saturated, the rest dull, of any brightness (float32 RGB 0..255)."""
    sat = rng.uniform(0.5, 1.0) if rng.random() < 0.4 else rng.uniform(0.0, 0.35)
    r, g, b = colorsys.hsv_to_rgb(rng.random(), sat, rng.uniform(0.15, 0.95))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _blend(img: np.ndarray, mask: np.ndarray, color: np.ndarray, opacity: float) -> None:
    """Blend a flat ``color`` into ``img`` through the uint8 ``mask`` (in place, on its bounding box)."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    a = mask[y:y + h, x:x + w].astype(np.float32)[..., None] * (opacity / 255.0)
    roi = img[y:y + h, x:x + w]
    roi[...] = roi * (1 - a) + color * a


class ScenesLook:
    """Draws the ``scenes`` look; ``vision.datasets.synthetic`` places the objects and writes the files."""

    name = "scenes"
    object_size = (0.06, 0.5)  # log-uniform, fraction of the shorter image side
    crowd_size = (0.03, 0.055)

    def __init__(self, class_colors: Sequence[tuple[int, int, int]]) -> None:
        self.class_hsv = [colorsys.rgb_to_hsv(*(np.asarray(c, float) / 255.0)) for c in class_colors]

    # ------------------------------------------------------------------ colours and fills
    def _class_color(self, cls: int, rng: np.random.Generator) -> np.ndarray:
        h, s, v = self.class_hsv[cls]
        h = (h + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) % 1.0
        s = min(1.0, s * rng.uniform(0.55, 1.05))
        v = min(1.0, v * rng.uniform(0.6, 1.1))
        return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0

    @staticmethod
    def _fill(color: np.ndarray, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
        """float32 [h,w,3] texture around ``color``: solid, stripes, checker, noise or two-tone, shaded."""
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        kind = _FILLS[int(rng.choice(len(_FILLS), p=_FILL_P))]
        if rng.random() < 0.6:  # the second tone: darker or paler, same hue
            other = color * rng.uniform(0.35, 0.65)
        else:
            other = color + (255 - color) * rng.uniform(0.35, 0.6)
        a = rng.uniform(0, 2 * math.pi)
        u = xx * math.cos(a) + yy * math.sin(a)
        v = -xx * math.sin(a) + yy * math.cos(a)
        if kind == "stripes":
            period = rng.uniform(3, 12)
            t = (np.sin(2 * math.pi * u / period) > 0).astype(np.float32)
        elif kind == "checker":
            cell = rng.uniform(3, 9)
            t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
        elif kind == "noise":
            gx, gy = max(2, w // int(rng.integers(3, 8))), max(2, h // int(rng.integers(3, 8)))
            t = cv2.resize(rng.random((gy, gx)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            t = np.clip(t, 0, 1) * 0.8
        elif kind == "two-tone":
            t = (u > rng.uniform(-0.2, 0.2) * max(w, h) + u.mean()).astype(np.float32)
            t *= rng.uniform(0.5, 0.9)
        else:
            t = np.zeros((h, w), np.float32)
        layer = color * (1 - t[..., None]) + other * t[..., None]
        shade = 0.78 + 0.35 * (u - u.min()) / max(float(u.max() - u.min()), 1.0)  # light from one side
        return layer * shade[..., None]

    def _paint_styled(self, img: np.ndarray, mask: np.ndarray, color: np.ndarray, rng: np.random.Generator) -> None:
        """Paint one object (or distractor) through ``mask``: shadow, textured fill, outline,
        translucency and defocus, each by chance (in place)."""
        x, y, w, h = cv2.boundingRect(mask)
        if w == 0 or h == 0:
            return
        H, W = mask.shape
        shadow, outline = rng.random() < 0.35, rng.random() < 0.35 and min(w, h) >= 12
        opacity = rng.uniform(0.55, 0.85) if rng.random() < 0.2 else 1.0
        sigma = rng.uniform(0.8, 2.2) if rng.random() < 0.25 else 0.0
        if shadow:  # a soft, darker copy of the mask, offset away from the light
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(2, 3 + 0.08 * max(w, h))
            m = np.float32([[1, 0, dist * math.cos(ang)], [0, 1, dist * math.sin(ang)]])
            sm = cv2.warpAffine(mask, m, (W, H))
            sm = cv2.GaussianBlur(sm, (0, 0), rng.uniform(1.5, 4))
            _blend(img, sm, np.zeros(3, np.float32), rng.uniform(0.35, 0.6))
        pad = int(math.ceil(3 * sigma)) + 1 if sigma else 0
        x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
        a = mask[y0:y1, x0:x1].astype(np.float32) / 255.0
        layer = self._fill(color, x1 - x0, y1 - y0, rng)
        if outline:
            t = int(rng.integers(1, 4))
            inner = cv2.erode(mask[y0:y1, x0:x1], cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * t + 1, 2 * t + 1)))
            line = np.float32([rng.uniform(0, 40)] * 3) if rng.random() < 0.6 else _random_color(rng)
            ai = inner.astype(np.float32)[..., None] / 255.0
            layer = layer * ai + line * (1 - ai)
        if sigma:
            layer = cv2.GaussianBlur(layer, (0, 0), sigma)
            a = cv2.GaussianBlur(a, (0, 0), sigma)
        a = (a * opacity)[..., None]
        roi = img[y0:y1, x0:x1]
        roi[...] = roi * (1 - a) + layer * a

    # ------------------------------------------------------------------ the look's interface
    def background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        """float32 RGB [H,W,3]: colour noise at three scales, blurred clutter, lines and distractors.

        The blurred part is drawn at half resolution and scaled up (it is out of focus anyway:
        a quarter of the pixels to blend); lines and distractors are drawn sharp at full size."""
        side = min(width, height)
        bw, bh = (width + 1) // 2, (height + 1) // 2
        img = np.empty((bh, bw, 3), np.float32)
        img[...] = _random_color(rng)
        for cells, amp in ((rng.integers(2, 4), 0.7), (rng.integers(5, 10), 0.5), (rng.integers(14, 28), 0.3)):
            gx, gy = int(cells), max(2, int(round(int(cells) * height / width)))
            field = cv2.resize(rng.random((gy, gx)).astype(np.float32), (bw, bh), interpolation=cv2.INTER_CUBIC)
            field = (np.clip(field, 0, 1) * np.float32(rng.uniform(0.3, 1.0) * amp))[..., None]
            img += (_random_color(rng) - img) * field
        for _ in range(int(rng.integers(8, 22))):  # clutter: big, elongated or irregular, never class-like
            m = np.zeros((bh, bw), np.uint8)
            cx, cy = rng.uniform(-0.1, 1.1) * bw, rng.uniform(-0.1, 1.1) * bh
            long = rng.uniform(0.3, 1.0) * min(bw, bh)
            kind = int(rng.integers(3))
            if kind == 0:  # elongated rotated rectangle
                short = long / rng.uniform(2.8, 6.0)
                pts = np.array([(cx - long / 2, cy - short / 2), (cx + long / 2, cy - short / 2),
                                (cx + long / 2, cy + short / 2), (cx - long / 2, cy + short / 2)])
                fill_polygon(m, rotate_points(pts, cx, cy, rng.uniform(0, math.pi)))
            elif kind == 1:  # elongated ellipse
                axes = (max(1, int(long / 2)), max(1, int(long / 2 / rng.uniform(2.8, 5.0))))
                cv2.ellipse(m, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
            else:  # irregular polygon, many corners (not a triangle)
                n = int(rng.integers(6, 11))
                t = np.sort(rng.uniform(0, 2 * math.pi, n))
                rad = rng.uniform(0.25, 0.5, n) * long
                fill_polygon(m, np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], axis=1))
            _blend(img, m, _random_color(rng), rng.uniform(0.35, 0.95))
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 2.5))  # out of focus (2-5 px at full size)
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
        for _ in range(int(rng.integers(0, 5))):  # a few sharp edges (wires, seams)
            p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(img, p1, p2, _random_color(rng).tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
        for _ in range(int(rng.choice(5, p=[0.2, 0.3, 0.25, 0.15, 0.1]))):
            size = math.exp(rng.uniform(math.log(self.object_size[0]), math.log(self.object_size[1] * 0.8))) * side
            shape = DISTRACTOR_SHAPES[int(rng.integers(len(DISTRACTOR_SHAPES)))]
            m = distractor_mask(shape, rng.uniform(0, width), rng.uniform(0, height), size, rng, width, height)
            color = self._class_color(int(rng.integers(len(self.class_hsv))), rng) if rng.random() < 0.5 \
                else _random_color(rng)
            self._paint_styled(img, m, color, rng)
        return img

    def mask(self, shape: str, cx: float, cy: float, size: float, rng: np.random.Generator,
             width: int, height: int) -> np.ndarray:
        """A class shape at any rotation, with a stronger aspect variation than ``shapes``."""
        return shape_mask(shape, cx, cy, size, rng, width, height, max_angle=math.pi, aspect=(0.7, 1.45),
                          star_angle=math.pi)

    def paint(self, img: np.ndarray, mask: np.ndarray, cls: int, rng: np.random.Generator) -> None:
        self._paint_styled(img, mask, self._class_color(cls, rng), rng)

    def finish(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Lighting gradient, vignetting, colour cast and sensor noise over the whole frame."""
        h, w = img.shape[:2]
        xx = np.arange(w, dtype=np.float32)[None, :]
        yy = np.arange(h, dtype=np.float32)[:, None]
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        g0, g1 = rng.uniform(0.65, 1.0), rng.uniform(0.95, 1.25)
        r2 = ((xx - rng.uniform(0.35, 0.65) * w) / w) ** 2 + ((yy - rng.uniform(0.35, 0.65) * h) / h) ** 2
        gain = (g0 + (g1 - g0) * t) * (1 - rng.uniform(0.0, 0.9) * r2)
        img *= gain[..., None] * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(4, 13))
        chroma = rng.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32)  # blotchy, like a sensor's
        img += cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(rng.uniform(1.5, 6))
        return img
