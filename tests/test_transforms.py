"""Tests for the SSD data transforms (vision/ssd/data_preprocessing.py, vision/transforms/)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vision.ssd.data_preprocessing import PredictionTransform, TrainAugmentation
from vision.ssd.data_preprocessing import TestTransform as SSDTestTransform  # not a pytest class
from vision.transforms.baseline import BaselineTrainAugmentation
from vision.transforms.rng import ProcessLocalRNG
from vision.transforms.transforms import (Normalize, PhotometricParams, RandomPhotometricDistort,
                                          RandomSSDGeometry, Window, distort_uint8)

MB1_MEAN, MB1_STD = [127, 127, 127], 128.0
VGG_MEAN, VGG_STD = [123, 117, 104], 1.0
RED = (230, 20, 20)


def _no_photometric(aug):
    aug.photometric = RandomPhotometricDistort(p=0.0)
    return aug


def _scene(rng, h=120, w=160, k=None):
    """Textured background + up to 4 solid red rectangles; returns image, boxes (pixels), labels."""
    img = rng.integers(40, 200, (h, w, 3), dtype=np.uint8)
    img[..., 0] = np.minimum(img[..., 0], 150)  # background never looks red
    k = int(rng.integers(1, 4)) if k is None else k
    boxes = []
    for _ in range(k):
        bw, bh = rng.integers(w // 6, w // 2), rng.integers(h // 6, h // 2)
        x0, y0 = rng.integers(0, w - bw), rng.integers(0, h - bh)
        img[y0:y0 + bh, x0:x0 + bw] = RED
        boxes.append([x0, y0, x0 + bw, y0 + bh])
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.arange(1, k + 1, dtype=np.int64)


def _random_boxes(rng, w, h):
    """Random boxes including ones partly/wholly outside, sub-pixel, zero-size, flipped and NaN."""
    k = int(rng.integers(0, 6))
    if k == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    c = rng.uniform(-0.3, 1.3, (k, 2)) * [w, h]
    s = rng.choice([0.0, 0.3, 2.0, 0.2 * w, 0.8 * w], size=(k, 2))
    boxes = np.concatenate([c - s / 2, c + s / 2], 1).astype(np.float32)
    if rng.random() < 0.2:
        boxes[0, [0, 2]] = boxes[0, [2, 0]]  # flipped
    if rng.random() < 0.1:
        boxes[-1, 1] = np.nan
    return boxes, rng.integers(1, 10, k).astype(np.int64)


def _check_output(out, size, max_k):
    image, boxes, labels = out
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert image.shape == (3, size, size) and image.is_contiguous()
    assert isinstance(boxes, torch.Tensor) and boxes.dtype == torch.float32 and boxes.shape[1:] == (4,)
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
    assert boxes.shape[0] == labels.shape[0] <= max_k
    assert torch.isfinite(boxes).all() and torch.isfinite(image).all()
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


# ----------------------------------------------------------------------------- contract

@pytest.mark.parametrize("cls", [TrainAugmentation, BaselineTrainAugmentation, SSDTestTransform])
@pytest.mark.parametrize("mean,std", [(MB1_MEAN, MB1_STD), (VGG_MEAN, VGG_STD), (0, 1.0)])
def test_output_contract(cls, mean, std):
    rng = np.random.default_rng(0)
    img, boxes, labels = _scene(rng)
    aug = cls(300, mean, std) if cls is SSDTestTransform else cls(300, mean, std, seed=1)
    out = aug(img, boxes, labels)
    _check_output(out, 300, len(boxes))
    lo = (0 - np.max(mean)) / std
    hi = (255 - np.min(mean)) / std
    assert lo - 1e-5 <= out[0].min() and out[0].max() <= hi + 1e-5


def test_prediction_transform_matches_test_transform():
    img, boxes, labels = _scene(np.random.default_rng(1))
    x = PredictionTransform(200, MB1_MEAN, MB1_STD)(img)
    y = SSDTestTransform(200, MB1_MEAN, MB1_STD)(img, boxes, labels)[0]
    assert x.shape == (3, 200, 200) and x.dtype == torch.float32 and torch.equal(x, y)


def test_test_transform_exact_values():
    # 2x2 -> 4x4 bilinear is exact in integers: each row 0,200 -> 0,50,150,200
    img = np.zeros((2, 2, 3), np.uint8)
    img[:, 1] = [200, 100, 40]
    boxes = np.array([[0.5, 0.0, 2.0, 1.0], [-1.0, 1.0, 1.0, 3.0], [1.0, 1.0, 1.0, 2.0]], np.float32)
    mean, std = np.float32([10, 20, 30]), np.float32(4.0)
    x, b, lab = SSDTestTransform(4, mean, float(std))(img, boxes, np.array([1, 2, 3]))
    ramp = np.array([0, 0.25, 0.75, 1.0], np.float32)
    expected = np.stack([np.tile(ramp * v, (4, 1)) for v in (200, 100, 40)]).astype(np.float32)
    expected = (expected - mean[:, None, None]) / std
    assert torch.equal(x, torch.from_numpy(expected))
    # normalized by w=h=2, clipped to [0,1]; the zero-width box is dropped with its label
    assert torch.equal(b, torch.tensor([[0.25, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0]]))
    assert lab.tolist() == [1, 2]


def test_normalize_exact_and_channel_order():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    norm = Normalize(VGG_MEAN, 58.0)
    ref = (img.astype(np.float32) - np.float32(VGG_MEAN)) / np.float32(58.0)
    assert torch.equal(norm(img), torch.from_numpy(ref.transpose(2, 0, 1).copy()))
    swapped = (img[..., [2, 0, 1]].astype(np.float32) - np.float32(VGG_MEAN)) / np.float32(58.0)
    assert torch.equal(norm(img, (2, 0, 1)), torch.from_numpy(swapped.transpose(2, 0, 1).copy()))


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((8, 8, 4), np.uint8), np.zeros((0, 8, 3), np.uint8)])
def test_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match="RGB uint8"):
        TrainAugmentation(32)(bad, np.zeros((0, 4)), np.zeros(0))
    with pytest.raises(ValueError, match="RGB uint8"):
        PredictionTransform(32)(bad)


def test_rejects_bad_boxes_and_args():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        TrainAugmentation(32)(img, np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        SSDTestTransform(32)(img, np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="mean"):
        TrainAugmentation(32, mean=[1, 2])
    with pytest.raises(ValueError, match="std"):
        SSDTestTransform(32, std=0)
    with pytest.raises(ValueError, match="size"):
        PredictionTransform(0)


# ----------------------------------------------------------------------------- robustness

@pytest.mark.parametrize("cls,trials", [(TrainAugmentation, 300), (BaselineTrainAugmentation, 100)])
def test_random_inputs_never_give_degenerate_boxes(cls, trials):
    rng = np.random.default_rng(3)
    aug = cls(64, MB1_MEAN, MB1_STD, seed=4)
    empty_in = empty_out = 0
    for _ in range(trials):
        h, w = int(rng.integers(1, 90)), int(rng.integers(1, 90))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        boxes, labels = _random_boxes(rng, w, h)
        out = aug(img, boxes, labels)
        _check_output(out, 64, len(boxes))
        assert set(out[2].tolist()) <= set(labels.tolist())
        empty_in += len(boxes) == 0
        empty_out += len(out[1]) == 0
    assert empty_in > 10 and empty_out >= empty_in  # K=0 inputs were exercised


def test_crop_keeps_an_object_when_there_is_one():
    # objects of reasonable size: the crop may cut them but never drops them all
    rng = np.random.default_rng(5)
    aug = _no_photometric(TrainAugmentation(64, seed=6, min_box_size=0.0))
    for _ in range(200):
        img, boxes, labels = _scene(rng, 60, 80)
        assert len(aug(img, boxes, labels)[1]) >= 1


def test_empty_image_still_augmented():
    img, _, _ = _scene(np.random.default_rng(7), k=0)
    aug = TrainAugmentation(48, seed=8)
    outs = [aug(img, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)) for _ in range(30)]
    for out in outs:
        _check_output(out, 48, 0)
    assert len({o[0].sum().item() for o in outs}) > 20  # crops/colours vary


# ----------------------------------------------------------------------------- geometry

def _fixed_geometry(aug, **kw):
    params = dict(expand_p=0.0, crop_options=(None,), flip_p=0.0)
    params.update(kw)
    aug.geometry = RandomSSDGeometry(**params)
    return _no_photometric(aug)


def test_mirror_flips_pixels_and_boxes():
    img, boxes, labels = _scene(np.random.default_rng(9), 60, 100, k=1)
    aug = _fixed_geometry(TrainAugmentation(50, seed=0, min_box_size=0.0), flip_p=1.0)
    x, b, _ = aug(img, boxes, labels)
    plain = cv2.resize(img, (50, 50), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(x, Normalize()(cv2.flip(plain, 1)))
    x1, y1, x2, y2 = boxes[0]
    expected = [1 - x2 / 100, y1 / 60, 1 - x1 / 100, y2 / 60]
    assert np.allclose(b[0].numpy(), expected, atol=1e-6)


def test_crop_meets_min_iou_and_keeps_centre():
    geo = RandomSSDGeometry(expand_p=0.0, crop_options=(0.7,), flip_p=0.0)
    rng = np.random.default_rng(10)
    box = np.array([[10.0, 20.0, 90.0, 70.0]], np.float32)  # IoU with the whole 100x100 image: 0.4
    sizes = set()
    for _ in range(50):
        w = geo(rng, 100, 100, box)
        ix = min(w.x1, 90) - max(w.x0, 10)
        iy = min(w.y1, 70) - max(w.y0, 20)
        iou = ix * iy / ((w.x1 - w.x0) * (w.y1 - w.y0) + 80 * 50 - ix * iy)
        assert iou >= 0.7 and w.x0 < 50 < w.x1 and w.y0 < 45 < w.y1
        assert 0 <= w.x0 < w.x1 <= 100 and 0 <= w.y0 < w.y1 <= 100 and w.x0 == int(w.x0)
        sizes.add((w.x1 - w.x0, w.y1 - w.y0))
    assert len(sizes) > 20


def test_window_maps_boxes_like_pixels():
    w = Window(-20, 10, 80, 60, flip=True).place(width=60, height=40, size=100)
    # source x in [0, 60] -> output [20, 80] before mirroring; y in [10, 40] -> [0, 60]
    assert w.src == (0, 10, 60, 40) and w.dst == (20, 0, 80, 60) and w.out_block() == (20, 0, 80, 60)
    b, lab = w.map_boxes(np.array([[0, 10, 30, 40], [0, 0, 10, 5]], np.float32), np.array([1, 2]))
    assert lab.tolist() == [1]  # centre of the second box is above the window
    assert np.allclose(b, [[1 - 0.5, 0.0, 1 - 0.2, 0.6]])


def _colour_alignment(aug, trials, seed):
    """Per kept box: fraction of its interior that is red, and of a thin band just outside it."""
    rng = np.random.default_rng(seed)
    inside, outside = [], []
    for _ in range(trials):
        img, boxes, labels = _scene(rng, 90, 120, k=1)
        x, b, _ = aug(img, boxes, labels)
        rgb = x.numpy().transpose(1, 2, 0)  # mean 0, std 1: raw values
        red = (rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
        yy, xx = np.mgrid[0:x.shape[1], 0:x.shape[2]] + 0.5  # pixel centres
        for x0, y0, x1, y1 in b.numpy() * x.shape[-1]:
            if min(x1 - x0, y1 - y0) < 6:
                continue
            # distance of each pixel centre outside the box (negative inside)
            d = np.maximum(np.maximum(x0 - xx, xx - x1), np.maximum(y0 - yy, yy - y1))
            inside.append(red[d <= -1.5].mean())
            band = red[(d >= 1.5) & (d <= 4)]
            if band.size:
                outside.append(band.mean())
    return np.array(inside), np.array(outside)


@pytest.mark.parametrize("cls", [TrainAugmentation, BaselineTrainAugmentation])
def test_crop_keeps_object_pixels_aligned_with_boxes(cls):
    aug = _no_photometric(cls(96, seed=11, min_box_size=0.0))
    inside, outside = _colour_alignment(aug, 120, 12)
    assert len(inside) > 60
    assert inside.mean() > 0.97 and inside.min() > 0.8  # box interior is the object
    assert outside.mean() < 0.05  # just outside the box it is not (one object per image)


@pytest.mark.parametrize("cls", [TrainAugmentation, BaselineTrainAugmentation])
def test_zoom_out_padding_is_the_mean_even_after_channel_swap(cls):
    img = np.full((40, 50, 3), 250, np.uint8)
    aug = cls(80, VGG_MEAN, VGG_STD, seed=13)
    if cls is TrainAugmentation:
        aug.geometry = RandomSSDGeometry(expand_p=1.0, max_expand=3.0, crop_options=(None,))
    else:
        aug.max_crop_options = 0  # no crop; baseline zooms out half of the time
    aug.photometric = RandomPhotometricDistort(p=1.0, channel_swap=True)
    padded = 0
    for _ in range(20):
        x = aug(img, np.zeros((0, 4)), np.zeros(0))[0]
        corner = x[:, 0, 0] if abs(x[:, 0, 0]).max() < 1 else x[:, -1, -1]
        if abs(corner).max() < 1:  # a padded corner: exactly the mean
            padded += 1
            assert torch.equal(corner, torch.zeros(3))
    assert padded >= 5


# ----------------------------------------------------------------------------- photometric

def test_distort_uint8_matches_float_reference():
    from vision.transforms.baseline import distort_float32
    rng = np.random.default_rng(14)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    for params in [PhotometricParams(brightness=20.0, contrast=1.3),
                   PhotometricParams(brightness=-30.0, contrast=0.6, contrast_first=False),
                   PhotometricParams(saturation=1.4), PhotometricParams(saturation=0.5, hue=15.0),
                   PhotometricParams(hue=-17.0)]:
        fast = distort_uint8(img.copy(), params).astype(np.float32)
        ref = distort_float32(img.astype(np.float32), params)
        err = np.abs(fast - ref)
        assert np.median(err) <= 1.0 and np.percentile(err, 99) <= 8.0 and err.max() <= 12.0, params


def test_fast_and_baseline_outputs_are_statistically_similar():
    rng = np.random.default_rng(15)
    scenes = [_scene(rng, 90, 120) for _ in range(12)]
    stats = {}
    for cls in (TrainAugmentation, BaselineTrainAugmentation):
        aug = cls(64, MB1_MEAN, MB1_STD, seed=16)
        means, stds, mins, maxs, counts, areas = [], [], [], [], [], []
        for rep in range(10):
            for img, boxes, labels in scenes:
                x, b, _ = aug(img, boxes, labels)
                means.append(x.mean().item())
                stds.append(x.std().item())
                mins.append(x.min().item())
                maxs.append(x.max().item())
                counts.append(len(b) / len(boxes))
                areas.extend(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).tolist())
        stats[cls.__name__] = np.array([np.mean(means), np.mean(stds), np.min(mins), np.max(maxs),
                                        np.mean(counts), np.mean(areas)])
    fast, base = stats["TrainAugmentation"], stats["BaselineTrainAugmentation"]
    assert abs(fast[0] - base[0]) < 0.05, (fast, base)  # mean pixel value
    assert abs(fast[1] - base[1]) < 0.05, (fast, base)  # pixel spread
    assert abs(fast[2] - base[2]) < 0.02 and abs(fast[3] - base[3]) < 0.02  # same value range
    assert abs(fast[4] - base[4]) < 0.12, (fast, base)  # fraction of boxes kept
    assert abs(fast[5] - base[5]) / base[5] < 0.25, (fast, base)  # mean box area


# ----------------------------------------------------------------------------- randomness

def test_seed_reproducible_and_streams_differ():
    img, boxes, labels = _scene(np.random.default_rng(17))
    a = [TrainAugmentation(40, seed=3)(img, boxes, labels) for _ in range(2)]
    assert all(torch.equal(x, y) for x, y in zip(a[0], a[1]))
    aug = TrainAugmentation(40, seed=3)
    first, second = aug(img, boxes, labels), aug(img, boxes, labels)
    assert not torch.equal(first[0], second[0])
    torch.manual_seed(5)
    r1 = ProcessLocalRNG().get().random()
    torch.manual_seed(5)
    assert ProcessLocalRNG().get().random() == r1


class _SameImage(torch.utils.data.Dataset):
    def __init__(self, aug):
        self.aug = aug
        self.img, self.boxes, self.labels = _scene(np.random.default_rng(18))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.aug(self.img, self.boxes, self.labels)[0].sum()


@pytest.mark.parametrize("seed", [None, 7])
def test_dataloader_workers_draw_different_augmentations(seed):
    aug = TrainAugmentation(32, seed=seed)
    aug(np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4)), np.zeros(0))  # generator exists in the parent
    loader = torch.utils.data.DataLoader(_SameImage(aug), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    sums = [float(s) for s in loader]  # samples 0,2 from worker 0; 1,3 from worker 1
    assert sums[0] != sums[1]
