"""Building blocks of the SSD data transforms; the data hot path of training.

The fast training path never materialises the intermediate images upstream
made (a float32 copy, the zoom-out canvas of up to 4x4 the image, the crop):

1. ``RandomSSDGeometry`` draws zoom-out, IoU-constrained crop and mirror from
   the box coordinates alone and returns one ``Window``: the rectangle of the
   source (it may stick out of the image: that is the zoom-out) that becomes
   the output square. ``Window.place`` rounds it to whole pixels (``Placement``).
2. ``Placement.render`` makes the image part of the output with ONE
   ``cv2.resize`` of the visible source block (+ ``cv2.flip``), on uint8.
3. ``distort_uint8`` applies the photometric distortion to that small uint8
   patch with lookup tables (HSV through OpenCV's uint8 conversion); the
   zoom-out padding is added afterwards by ``Placement.compose``, so it stays
   exactly the mean, as upstream (which expanded after distorting).
4. ``Normalize`` turns uint8 HWC into float32 CHW ``(x - mean) / std`` and
   applies the random channel order on the way (free: it copies per plane).

Why these choices (measured on the 2-core CPU machine, one thread): one
``cv2.resize`` of the block is 3-5x faster than ``cv2.warpAffine`` to the same
output; per-plane normalization is 1.5x faster than a strided permute-copy
and 5x faster than ``permute().float()``; splitting HSV planes beats a
3-channel LUT. ``python3 bench/data.py --baseline`` shows the whole pipeline.

Box formats: corner form ``(x1, y1, x2, y2)``. "Pixels" are source-image units
with the image spanning ``[0, W] x [0, H]`` (continuous coordinates: pixel
``i`` covers ``[i, i + 1]``); "normalized" means relative to the output,
``[0, 1]``.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from vision.transforms.rng import ProcessLocalRNG

MeanLike = float | Sequence[float] | np.ndarray

# The SSD paper's sampler: keep the whole image (None), a free patch (0.0), or a
# patch whose IoU with some kept object is at least 0.1 .. 0.9.
SSD_CROP_OPTIONS: tuple[float | None, ...] = (None, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9)


# ----------------------------------------------------------------------------- inputs

def mean_std_arrays(mean: MeanLike, std: MeanLike) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``std`` as float32 ``[3]`` RGB arrays; a scalar applies to all channels.

    Cheap (a few microseconds): train_ssd.py builds a transform per sample.
    """
    out = []
    for name, value in (("mean", mean), ("std", std)):
        try:
            vals = [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a scalar or 3 RGB values, got {value!r}") from None
        if len(vals) == 1:
            vals = vals * 3
        if len(vals) != 3:
            raise ValueError(f"{name} must be a scalar or 3 RGB values, got {value!r}")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"{name} must be finite, got {value!r}")
        out.append(vals)
    if min(out[1]) <= 0:
        raise ValueError(f"std must be > 0, got {std!r}")
    return np.array(out[0], np.float32), np.array(out[1], np.float32)


def fill_value(mean: np.ndarray) -> tuple[int, int, int]:
    """The uint8 colour of zoom-out padding: the mean rounded, so it normalizes to ~0."""
    r, g, b = (min(255, max(0, round(float(m)))) for m in mean)
    return r, g, b


def check_sample(image: np.ndarray, boxes, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one sample; returns ``(image, boxes float32 [K,4], labels int64 [K])``.

    Raises ``ValueError`` naming what is wrong (not an RGB uint8 image, boxes not
    ``[K, 4]``, label count different from box count).
    """
    check_image(image)
    b = np.asarray(boxes, dtype=np.float32)
    if b.size == 0:
        b = np.zeros((0, 4), np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {list(b.shape)}")
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if lab.shape[0] != b.shape[0]:
        raise ValueError(f"{b.shape[0]} boxes but {lab.shape[0]} labels")
    return image, b, lab


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        desc = (f"{image.dtype} array of shape {list(image.shape)}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise ValueError(f"expected an RGB uint8 image of shape [H, W, 3], got {desc}")


def clip_boxes(boxes: np.ndarray, labels: np.ndarray, width: float, height: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Clip pixel boxes ``[K,4]`` to the image and drop the ones with no area or NaN/inf.

    A box that is (partly) outside the image keeps its inside part; one wholly
    outside, zero-width, flipped (x2 < x1) or non-finite is dropped with its label.
    """
    if boxes.shape[0] == 0:
        return boxes, labels
    b = np.empty_like(boxes)
    np.clip(boxes[:, 0::2], 0.0, width, out=b[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, height, out=b[:, 1::2])
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])  # False for NaN too
    if keep.all():
        return b, labels
    return b[keep], labels[keep]


def finalize_boxes(boxes: np.ndarray, labels: np.ndarray, min_size: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized boxes ``[K,4]`` -> clipped to ``[0, 1]``, degenerate ones dropped, as tensors.

    ``min_size`` is the smallest kept width and height, normalized (0 keeps any
    box with positive size). The result never holds NaN or a box with
    ``x2 <= x1`` or ``y2 <= y1``, so box encoding can never take ``log(0)``.
    """
    b = np.clip(boxes.astype(np.float32, copy=False), 0.0, 1.0)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    keep = (w > 0) & (h > 0) & (w >= min_size) & (h >= min_size)
    if not keep.all():
        b, labels = b[keep], labels[keep]
    return torch.from_numpy(np.ascontiguousarray(b)), torch.from_numpy(np.ascontiguousarray(labels))


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Window:
    """The source rectangle (pixels, may extend past the image) that becomes the output square.

    ``flip`` mirrors the output horizontally. What the sampler draws; ``place``
    turns it into the integer ``Placement`` that pixels and boxes both follow.
    """
    x0: float
    y0: float
    x1: float
    y1: float
    flip: bool = False

    @classmethod
    def whole(cls, width: float, height: float, flip: bool = False) -> "Window":
        return cls(0.0, 0.0, float(width), float(height), flip)

    def place(self, width: int, height: int, size: int) -> "Placement":
        """Round to whole source pixels (as upstream's integer crops) and whole output pixels."""
        x0, x1 = _round_span(self.x0, self.x1)
        y0, y1 = _round_span(self.y0, self.y1)
        sx0, sx1 = max(0, x0), min(width, x1)
        sy0, sy1 = max(0, y0), min(height, y1)
        dx0, dx1 = round((sx0 - x0) * size / (x1 - x0)), round((sx1 - x0) * size / (x1 - x0))
        dy0, dy1 = round((sy0 - y0) * size / (y1 - y0)), round((sy1 - y0) * size / (y1 - y0))
        return Placement((x0, y0, x1, y1), (sx0, sy0, sx1, sy1), (dx0, dy0, dx1, dy1), self.flip, size)


def _round_span(a: float, b: float) -> tuple[int, int]:
    ia, ib = round(a), round(b)
    return ia, max(ib, ia + 1)


@dataclass(frozen=True)
class Placement:
    """Integer plan of one output: source block ``src`` (x0, y0, x1, y1; the part of
    ``window`` inside the image) is resized onto output block ``dst`` (before
    mirroring), then mirrored if ``flip``; the rest of the output is mean fill.

    Boxes follow the very same per-axis affine map, so they stay aligned with
    the pixels to a fraction of a pixel.
    """
    window: tuple[int, int, int, int]
    src: tuple[int, int, int, int]
    dst: tuple[int, int, int, int]
    flip: bool
    size: int

    @property
    def empty(self) -> bool:
        """True when no image pixel reaches the output (a crop of zoom-out padding only)."""
        (sx0, sy0, sx1, sy1), (dx0, dy0, dx1, dy1) = self.src, self.dst
        return sx1 <= sx0 or sy1 <= sy0 or dx1 <= dx0 or dy1 <= dy0

    @property
    def covers_output(self) -> bool:
        return self.dst == (0, 0, self.size, self.size)

    def out_block(self) -> tuple[int, int, int, int]:
        """Where the image patch lands in the output, after mirroring: (x0, y0, x1, y1)."""
        dx0, dy0, dx1, dy1 = self.dst
        if self.flip:
            dx0, dx1 = self.size - dx1, self.size - dx0
        return dx0, dy0, dx1, dy1

    def map_boxes(self, boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel boxes ``[K,4]`` (inside the image) -> normalized output boxes ``[K',4]``.

        Keeps the boxes whose centre lies inside the window (upstream's crop
        rule) and clips them to it; degenerate results are left for
        ``finalize_boxes`` to drop.
        """
        if boxes.shape[0] == 0:
            return boxes, labels
        if self.empty:
            return boxes[:0], labels[:0]
        wx0, wy0, wx1, wy1 = self.window
        cx2 = boxes[:, 0] + boxes[:, 2]  # 2 * centre
        cy2 = boxes[:, 1] + boxes[:, 3]
        keep = (cx2 > 2 * wx0) & (cx2 < 2 * wx1) & (cy2 > 2 * wy0) & (cy2 < 2 * wy1)
        if not keep.all():
            boxes, labels = boxes[keep], labels[keep]
        (sx0, sy0, sx1, sy1), (dx0, dy0, dx1, dy1) = self.src, self.dst
        kx = (dx1 - dx0) / ((sx1 - sx0) * self.size)
        ky = (dy1 - dy0) / ((sy1 - sy0) * self.size)
        out = np.empty_like(boxes)
        out[:, 0::2] = (np.clip(boxes[:, 0::2], sx0, sx1) - sx0) * kx + dx0 / self.size
        out[:, 1::2] = (np.clip(boxes[:, 1::2], sy0, sy1) - sy0) * ky + dy0 / self.size
        if self.flip:
            out[:, [0, 2]] = 1.0 - out[:, [2, 0]]
        return out, labels

    def render(self, image: np.ndarray) -> np.ndarray:
        """The image patch, resized (bilinear, uint8) and mirrored: ``[dy1-dy0, dx1-dx0, 3]``.

        One ``cv2.resize`` of the visible source block; the zoom-out canvas is never built.
        """
        (sx0, sy0, sx1, sy1), (dx0, dy0, dx1, dy1) = self.src, self.dst
        patch = cv2.resize(image[sy0:sy1, sx0:sx1], (dx1 - dx0, dy1 - dy0), interpolation=cv2.INTER_LINEAR)
        return cv2.flip(patch, 1) if self.flip else patch

    def compose(self, patch: np.ndarray | None, fill: Sequence[int]) -> np.ndarray:
        """Put the (distorted) patch into a ``size x size x 3`` output filled with ``fill``."""
        if patch is not None and self.covers_output:
            return patch
        out = np.empty((self.size, self.size, 3), np.uint8)
        out[:] = fill
        if patch is not None:
            x0, y0, x1, y1 = self.out_block()
            out[y0:y1, x0:x1] = patch
        return out


class RandomSSDGeometry:
    """Draw the SSD geometric augmentation as one ``Window``; touches no pixels.

    Same recipe and order as the SSD paper / upstream pytorch-ssd:
    - zoom-out (expand) with probability ``expand_p``: the image is placed at a
      random spot of a mean-filled canvas ``r`` times as large, ``r ~ U(1, max_expand)``;
    - crop of that canvas: an option from ``crop_options`` is drawn (None = keep
      the whole canvas, 0.0 = any patch, t = IoU with some kept object >= t);
      a patch has sides ``U(min_scale, 1)`` of the canvas, aspect h/w within
      ``aspect``, and must contain the centre of at least one box (boxes whose
      centre falls outside are dropped later). ``trials`` patches are drawn at
      once and the first that qualifies wins; if none does, another option is
      drawn, up to ``max_options`` times, then the whole canvas is kept. So a
      crop never removes every object of an image that had some. An image with
      no boxes gets the same zoom-out and crops (its IoU condition is empty).
      The IoU condition follows Caffe SSD and torchvision (some kept object
      meets it); upstream pytorch-ssd meant "every object" but its test was a
      no-op, so it effectively only required a kept centre;
    - horizontal mirror with probability ``flip_p``.
    """

    def __init__(self, expand_p: float = 0.5, max_expand: float = 4.0,
                 crop_options: Sequence[float | None] = SSD_CROP_OPTIONS, trials: int = 50,
                 max_options: int = 50, min_scale: float = 0.3, aspect: tuple[float, float] = (0.5, 2.0),
                 flip_p: float = 0.5) -> None:
        if max_expand < 1:
            raise ValueError(f"max_expand must be >= 1, got {max_expand}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        if not crop_options:
            raise ValueError("crop_options must not be empty")
        self.expand_p = expand_p
        self.max_expand = max_expand
        self.crop_options = tuple(crop_options)
        self.trials = trials
        self.max_options = max_options
        self.min_scale = min_scale
        self.aspect = aspect
        self.flip_p = flip_p

    def __call__(self, rng: np.random.Generator, width: int, height: int, boxes: np.ndarray) -> Window:
        """``boxes``: pixel corner boxes ``[K,4]`` already clipped to the image (``clip_boxes``).

        The window has whole-pixel corners (zoom-out offsets and crops are
        truncated to integers, as upstream).
        """
        if self.max_expand > 1 and rng.random() < self.expand_p:
            ratio = rng.uniform(1.0, self.max_expand)
            cw, ch = max(int(width * ratio), width), max(int(height * ratio), height)
            left, top = int(rng.uniform(0.0, cw - width)), int(rng.uniform(0.0, ch - height))
        else:
            cw, ch, left, top = width, height, 0, 0
        rect = (0, 0, cw, ch)
        shifted = boxes + np.array([left, top, left, top], dtype=np.float32) if boxes.shape[0] else boxes
        for _ in range(self.max_options):
            option = self.crop_options[rng.integers(len(self.crop_options))]
            if option is None:
                break
            found = self._sample_crop(rng, cw, ch, shifted, option)
            if found is not None:
                rect = found
                break
        flip = rng.random() < self.flip_p
        return Window(rect[0] - left, rect[1] - top, rect[2] - left, rect[3] - top, bool(flip))

    def _sample_crop(self, rng: np.random.Generator, cw: int, ch: int, boxes: np.ndarray,
                     min_iou: float) -> tuple[int, int, int, int] | None:
        """Draw ``trials`` whole-pixel patches of the ``cw x ch`` canvas at once; the first valid one or None.

        Whole pixels (as upstream) so the centre test here is the one ``Placement.map_boxes`` applies.
        """
        n = self.trials
        w = rng.uniform(self.min_scale * cw, cw, n)
        h = rng.uniform(self.min_scale * ch, ch, n)
        ar = h / w
        x0 = np.floor(rng.random(n) * (cw - w))
        y0 = np.floor(rng.random(n) * (ch - h))
        x1, y1 = np.floor(x0 + w), np.floor(y0 + h)
        ok = (ar >= self.aspect[0]) & (ar <= self.aspect[1]) & (x1 > x0) & (y1 > y0)
        if boxes.shape[0]:
            x0c, y0c, x1c, y1c = x0[:, None], y0[:, None], x1[:, None], y1[:, None]
            cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
            cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
            inside = (cx > x0c) & (cx < x1c) & (cy > y0c) & (cy < y1c)  # [n, K]
            iw = np.clip(np.minimum(x1c, boxes[:, 2]) - np.maximum(x0c, boxes[:, 0]), 0, None)
            ih = np.clip(np.minimum(y1c, boxes[:, 3]) - np.maximum(y0c, boxes[:, 1]), 0, None)
            inter = iw * ih
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            iou = inter / (area + ((x1 - x0) * (y1 - y0))[:, None] - inter)
            best = np.where(inside, iou, -1.0).max(axis=1)
            ok &= best >= min_iou  # also requires a kept centre: best is -1 otherwise
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        i = idx[0]
        return int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])


@dataclass(frozen=True)
class PhotometricParams:
    """One draw of the photometric distortion; ``None`` = that step is skipped.

    Order (upstream): brightness, then contrast before *or* after the HSV steps
    (saturation, hue), then channel permutation.
    """
    brightness: float | None = None  # added, 0..255 scale
    contrast: float | None = None  # multiplier
    contrast_first: bool = True
    saturation: float | None = None  # multiplier of HSV S
    hue: float | None = None  # degrees added to HSV H
    channel_order: tuple[int, int, int] | None = None  # output channel c = input channel order[c]


_PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


class RandomPhotometricDistort:
    """Draws ``PhotometricParams`` with upstream's ranges, each step with probability ``p``.

    brightness ``U(-32, 32)``, contrast and saturation ``U(0.5, 1.5)``, hue
    ``U(-18, 18)`` degrees, and (if ``channel_swap``) a random channel order.
    """

    def __init__(self, brightness_delta: float = 32.0, contrast: tuple[float, float] = (0.5, 1.5),
                 saturation: tuple[float, float] = (0.5, 1.5), hue_delta: float = 18.0,
                 channel_swap: bool = True, p: float = 0.5) -> None:
        self.brightness_delta = brightness_delta
        self.contrast = contrast
        self.saturation = saturation
        self.hue_delta = hue_delta
        self.channel_swap = channel_swap
        self.p = p

    def sample(self, rng: np.random.Generator) -> PhotometricParams:
        u = rng.random(7)
        p = self.p
        return PhotometricParams(
            brightness=rng.uniform(-self.brightness_delta, self.brightness_delta) if u[0] < p else None,
            contrast=rng.uniform(*self.contrast) if u[1] < p else None,
            contrast_first=bool(u[2] < 0.5),
            saturation=rng.uniform(*self.saturation) if u[3] < p else None,
            hue=rng.uniform(-self.hue_delta, self.hue_delta) if u[4] < p else None,
            channel_order=(_PERMUTATIONS[int(u[6] * 6)] if self.channel_swap and u[5] < p else None),
        )


_IDENTITY_LUT = np.arange(256, dtype=np.float32)


def _lut(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def distort_uint8(image: np.ndarray, params: PhotometricParams) -> np.ndarray:
    """Apply ``params`` (all but ``channel_order``, which ``Normalize`` applies) to a
    uint8 RGB image with lookup tables; may modify ``image`` in place.

    Brightness and contrast are one 256-entry table; saturation and hue work on
    single planes of OpenCV's uint8 HSV (the ``_FULL`` variant: hue in 256
    steps, so a uint8 add is exactly a hue rotation).
    """
    pre = None
    if params.brightness is not None:
        pre = _IDENTITY_LUT + params.brightness
    if params.contrast is not None and params.contrast_first:
        pre = (_IDENTITY_LUT if pre is None else pre) * params.contrast
    if pre is not None:
        cv2.LUT(image, _lut(pre), dst=image)
    if params.saturation is not None or params.hue is not None:
        h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL))
        if params.hue is not None:  # uint8 addition wraps around: exactly a hue rotation
            h += np.uint8(round(params.hue * 256.0 / 360.0) % 256)
        if params.saturation is not None:  # saturate(round(f * s)), f > 0
            s = cv2.convertScaleAbs(s, alpha=params.saturation)
        image = cv2.cvtColor(cv2.merge((h, s, v)), cv2.COLOR_HSV2RGB_FULL)
    if params.contrast is not None and not params.contrast_first:
        cv2.LUT(image, _lut(_IDENTITY_LUT * params.contrast), dst=image)
    return image


def permuted_fill(fill: Sequence[int], channel_order: Sequence[int] | None) -> tuple[int, int, int]:
    """The padding colour to store so that, after ``channel_order``, channel c is ``fill[c]``.

    Upstream padded after swapping channels, so the padding is always the mean.
    """
    if channel_order is None:
        return int(fill[0]), int(fill[1]), int(fill[2])
    stored = [0, 0, 0]
    for c, src in enumerate(channel_order):
        stored[src] = int(fill[c])
    return stored[0], stored[1], stored[2]


def distort_float32(image: np.ndarray, params: PhotometricParams) -> np.ndarray:
    """Apply ``params`` to a float32 RGB image (0..255), in float; result clipped to 0..255.

    The slow path (``BaselineTrainAugmentation``, ``PhotometricDistort``), built from
    upstream's steps below; may modify ``image`` in place.
    """
    if params.brightness is not None:
        image = RandomBrightness.apply(image, params.brightness)
    if params.contrast is not None and params.contrast_first:
        image = RandomContrast.apply(image, params.contrast)
    if params.saturation is not None or params.hue is not None:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float: H in degrees, S in 0..1
        if params.saturation is not None:
            hsv = RandomSaturation.apply(hsv, params.saturation)
        if params.hue is not None:
            hsv = RandomHue.apply(hsv, params.hue)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if params.contrast is not None and not params.contrast_first:
        image = RandomContrast.apply(image, params.contrast)
    if params.channel_order is not None:
        image = image[:, :, params.channel_order]
    return np.clip(image, 0.0, 255.0)


# ----------------------------------------------------------------------------- to tensor

class Normalize:
    """uint8 ``HxWx3`` RGB -> float32 tensor ``[3, H, W]`` = ``(x - mean) / std``.

    ``channel_order`` (optional) picks which input channel becomes output
    channel c before the mean of channel c is subtracted. Splits the planes
    with OpenCV and converts each straight into the contiguous CHW result.
    numpy, not torch ops: torch's intra-op threads made this 10x slower in a
    process with 2 torch threads on a busy 2-core machine; numpy never spawns any.
    """

    def __init__(self, mean: MeanLike = 0.0, std: MeanLike = 1.0) -> None:
        m, s = mean_std_arrays(mean, std)
        self.mean = m
        self.std = s.reshape(3, 1, 1)

    def __call__(self, image: np.ndarray, channel_order: Sequence[int] | None = None) -> torch.Tensor:
        h, w = image.shape[:2]
        planes = cv2.split(image)
        out = np.empty((3, h, w), np.float32)
        order = (0, 1, 2) if channel_order is None else channel_order
        for c, src in enumerate(order):
            np.subtract(planes[src], self.mean[c], out=out[c], dtype=np.float32)
        np.divide(out, self.std, out=out)
        return torch.from_numpy(out)


# ----------------------------------------------------------------------------- profiling

class StageTimer:
    """Seconds per named stage, summed over calls; ``bench/data.py`` passes one to ``run``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._t = time.perf_counter()

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        t = time.perf_counter()
        self.totals[name] += t - self._t
        self._t = t


class NullTimer:
    """Does nothing; the default so the hot path pays two no-op calls per stage."""

    def start(self) -> None:
        pass

    def lap(self, name: str) -> None:
        pass


NULL_TIMER = NullTimer()


# ----------------------------------------------------------------------------- upstream's steps

# The step-by-step classes of upstream's ``vision/transforms/transforms.py`` (amdegroot's
# ssd.pytorch augmentations), for scripts written against upstream. Same names, arguments and
# call convention: ``t(image, boxes=None, labels=None) -> (image, boxes, labels)`` on an HxWx3
# numpy image (float32 after ``ConvertFromInts``) and PIXEL corner boxes until ``ToPercentCoords``.
# The random draws come from the samplers above (``RandomSSDGeometry``, ``RandomPhotometricDistort``),
# each instance with its own ``ProcessLocalRNG`` (``seed``). Unlike upstream, inputs are never
# modified in place, the photometric steps keep colours in range, and crops of images without
# boxes work. Training here uses ``TrainAugmentation``, which fuses all of this.

class Compose:
    """Run transforms in order, threading ``(image, boxes, labels)`` through."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, image, boxes=None, labels=None):
        for t in self.transforms:
            image, boxes, labels = t(image, boxes, labels)
        return image, boxes, labels


class Lambda:
    """A function ``f(image, boxes, labels) -> (image, boxes, labels)`` as a transform."""

    def __init__(self, lambd) -> None:
        self.lambd = lambd

    def __call__(self, image, boxes=None, labels=None):
        return self.lambd(image, boxes, labels)


class ConvertFromInts:
    """uint8 image -> float32."""

    def __call__(self, image, boxes=None, labels=None):
        return image.astype(np.float32), boxes, labels


class SubtractMeans:
    """float32 ``image - mean`` (a scalar or 3 values)."""

    def __init__(self, mean: MeanLike) -> None:
        self.mean = np.array(mean, dtype=np.float32)

    def __call__(self, image, boxes=None, labels=None):
        return image.astype(np.float32) - self.mean, boxes, labels


def _scaled_boxes(image: np.ndarray, boxes, factor: float):
    h, w = image.shape[:2]
    scale = np.array([w, h, w, h], dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32) * (scale if factor > 0 else 1.0 / scale)


class ToAbsoluteCoords:
    """Normalized boxes -> pixels of this image."""

    def __call__(self, image, boxes=None, labels=None):
        return image, _scaled_boxes(image, boxes, 1), labels


class ToPercentCoords:
    """Pixel boxes -> normalized to this image (0..1)."""

    def __call__(self, image, boxes=None, labels=None):
        return image, _scaled_boxes(image, boxes, -1), labels


class Resize:
    """Stretch to ``size x size`` (bilinear); normalized boxes are unchanged by it."""

    def __init__(self, size: int = 300) -> None:
        self.size = int(size)

    def __call__(self, image, boxes=None, labels=None):
        return cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR), boxes, labels


class _RandomStep:
    """A step applied with probability ``p`` (upstream: 0.5) with a value drawn by ``draw``."""

    p = 0.5

    def __init__(self, seed: int | None = None) -> None:
        self.rng = ProcessLocalRNG(seed)

    def draw(self, rng: np.random.Generator):
        raise NotImplementedError

    @staticmethod
    def apply(image: np.ndarray, value) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, image, boxes=None, labels=None):
        rng = self.rng.get()
        if rng.random() < self.p:
            image = self.apply(np.array(image, dtype=np.float32), self.draw(rng))
        return image, boxes, labels


class RandomBrightness(_RandomStep):
    """Add ``U(-delta, delta)`` to every channel (0..255 scale)."""

    def __init__(self, delta: float = 32.0, seed: int | None = None) -> None:
        if not 0.0 <= delta <= 255.0:
            raise ValueError(f"delta must be in [0, 255], got {delta}")
        super().__init__(seed)
        self.delta = delta

    def draw(self, rng):
        return rng.uniform(-self.delta, self.delta)

    @staticmethod
    def apply(image, value):
        image += value
        return image


class RandomContrast(_RandomStep):
    """Multiply by ``U(lower, upper)``."""

    def __init__(self, lower: float = 0.5, upper: float = 1.5, seed: int | None = None) -> None:
        if not 0 <= lower <= upper:
            raise ValueError(f"need 0 <= lower <= upper, got {lower}, {upper}")
        super().__init__(seed)
        self.lower, self.upper = lower, upper

    def draw(self, rng):
        return rng.uniform(self.lower, self.upper)

    @staticmethod
    def apply(image, value):
        image *= value
        return image


class RandomSaturation(RandomContrast):
    """On an HSV float image: multiply S by ``U(lower, upper)`` (kept <= 1, a valid saturation)."""

    @staticmethod
    def apply(image, value):
        image[:, :, 1] = np.minimum(image[:, :, 1] * value, 1.0)
        return image


class RandomHue(RandomBrightness):
    """On an HSV float image: rotate H (degrees) by ``U(-delta, delta)``."""

    def __init__(self, delta: float = 18.0, seed: int | None = None) -> None:
        if not 0.0 <= delta <= 360.0:
            raise ValueError(f"delta must be in [0, 360], got {delta}")
        super().__init__(min(delta, 255.0), seed)
        self.delta = delta

    @staticmethod
    def apply(image, value):
        image[:, :, 0] = np.mod(image[:, :, 0] + value, 360.0)
        return image


class SwapChannels:
    """Reorder channels: output channel c is input channel ``swaps[c]``. As upstream, called on
    the image alone: ``SwapChannels((2, 1, 0))(image) -> image``."""

    def __init__(self, swaps: Sequence[int]) -> None:
        self.swaps = tuple(swaps)

    def __call__(self, image):
        return image[:, :, self.swaps]


class RandomLightingNoise(_RandomStep):
    """A random channel order (one of the 6 permutations)."""

    def draw(self, rng):
        return _PERMUTATIONS[int(rng.integers(len(_PERMUTATIONS)))]

    @staticmethod
    def apply(image, value):
        return SwapChannels(value)(image)


_COLOR_CODES = {("BGR", "HSV"): cv2.COLOR_BGR2HSV, ("RGB", "HSV"): cv2.COLOR_RGB2HSV,
                ("BGR", "RGB"): cv2.COLOR_BGR2RGB, ("RGB", "BGR"): cv2.COLOR_RGB2BGR,
                ("HSV", "BGR"): cv2.COLOR_HSV2BGR, ("HSV", "RGB"): cv2.COLOR_HSV2RGB}


class ConvertColor:
    """Colour space conversion with OpenCV, e.g. ``ConvertColor(current="RGB", transform="HSV")``
    (float32: H in degrees, S and V as the input's scale)."""

    def __init__(self, current: str = "BGR", transform: str = "HSV") -> None:
        if (current, transform) not in _COLOR_CODES:
            raise ValueError(f"unsupported colour conversion {current} -> {transform}; supported: "
                             f"{', '.join(f'{a}->{b}' for a, b in _COLOR_CODES)}")
        self.current, self.transform = current, transform

    def __call__(self, image, boxes=None, labels=None):
        return cv2.cvtColor(np.asarray(image), _COLOR_CODES[(self.current, self.transform)]), boxes, labels


class ToCV2Image:
    """Tensor ``[3, H, W]`` -> float32 numpy ``[H, W, 3]``."""

    def __call__(self, tensor, boxes=None, labels=None):
        return tensor.detach().cpu().numpy().astype(np.float32).transpose((1, 2, 0)), boxes, labels


class ToTensor:
    """numpy ``[H, W, 3]`` -> float32 tensor ``[3, H, W]``."""

    def __call__(self, cvimage, boxes=None, labels=None):
        return torch.from_numpy(np.ascontiguousarray(cvimage, dtype=np.float32)).permute(2, 0, 1), boxes, labels


def _pixel_sample(image, boxes, labels) -> tuple[np.ndarray, np.ndarray]:
    b = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    lab = np.zeros((len(b),), np.int64) if labels is None else np.asarray(labels)
    return b, lab


class RandomSampleCrop:
    """The SSD crop (``RandomSSDGeometry`` without zoom-out or mirror): keep the whole image, or cut a
    patch that keeps the boxes whose centre it contains, clipped to it (and their labels)."""

    def __init__(self, seed: int | None = None) -> None:
        self.geometry = RandomSSDGeometry(expand_p=0.0, flip_p=0.0)
        self.rng = ProcessLocalRNG(seed)

    def __call__(self, image, boxes=None, labels=None):
        h, w = image.shape[:2]
        b, lab = _pixel_sample(image, boxes, labels)
        b, lab = clip_boxes(b, lab, w, h)
        win = self.geometry(self.rng.get(), w, h, b)
        x0, y0, x1, y1 = int(win.x0), int(win.y0), int(win.x1), int(win.y1)
        if (x0, y0, x1, y1) == (0, 0, w, h):
            return image, b, lab
        cx2, cy2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]  # 2 * centre
        keep = (cx2 > 2 * x0) & (cx2 < 2 * x1) & (cy2 > 2 * y0) & (cy2 < 2 * y1)
        kept = b[keep].copy()
        kept[:, 0::2] = np.clip(kept[:, 0::2], x0, x1) - x0
        kept[:, 1::2] = np.clip(kept[:, 1::2], y0, y1) - y0
        return image[y0:y1, x0:x1], kept, lab[keep]


class Expand:
    """Zoom out with probability 0.5 (``RandomSSDGeometry``'s draw): the image at a random spot of a
    ``mean``-filled canvas up to 4x as large; boxes shifted with it."""

    def __init__(self, mean: MeanLike, seed: int | None = None) -> None:
        self.mean = mean
        self.geometry = RandomSSDGeometry(crop_options=(None,), flip_p=0.0)
        self.rng = ProcessLocalRNG(seed)

    def __call__(self, image, boxes=None, labels=None):
        h, w = image.shape[:2]
        b, lab = _pixel_sample(image, boxes, labels)
        win = self.geometry(self.rng.get(), w, h, b)
        left, top = -int(win.x0), -int(win.y0)
        if (left, top, int(win.x1) - int(win.x0), int(win.y1) - int(win.y0)) == (0, 0, w, h):
            return image, b, lab
        canvas = np.empty((int(win.y1) + top, int(win.x1) + left, image.shape[2]), dtype=image.dtype)
        canvas[:] = self.mean
        canvas[top:top + h, left:left + w] = image
        return canvas, b + np.array([left, top, left, top], dtype=np.float32), lab


class RandomMirror:
    """Mirror horizontally with probability 0.5; pixel boxes follow."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = ProcessLocalRNG(seed)

    def __call__(self, image, boxes=None, labels=None):
        if self.rng.get().random() >= 0.5:
            return image, boxes, labels
        w = image.shape[1]
        b, _ = _pixel_sample(image, boxes, labels)
        b = b.copy()
        b[:, [0, 2]] = w - b[:, [2, 0]]
        return np.ascontiguousarray(image[:, ::-1]), b, labels


class PhotometricDistort:
    """Upstream's colour jitter in its order (brightness, contrast before or after saturation and
    hue, channel shuffle), drawn by ``RandomPhotometricDistort``, applied by ``distort_float32``."""

    def __init__(self, seed: int | None = None) -> None:
        self.sampler = RandomPhotometricDistort()
        self.rng = ProcessLocalRNG(seed)

    def __call__(self, image, boxes=None, labels=None):
        params = self.sampler.sample(self.rng.get())
        return distort_float32(np.array(image, dtype=np.float32), params), boxes, labels
