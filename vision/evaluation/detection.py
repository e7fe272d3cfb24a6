"""Run a detector over a whole dataset, batched, and keep the detections per image.

The dataset is never modified: a small view reads ``dataset.get_image(i)`` (raw RGB)
and applies the predictor's own test preprocessing, so evaluation sees exactly what
``Predictor.predict`` would, whatever training transform the caller's dataset carries.

With the standard ``PredictionTransform`` the work is split: loading (in DataLoader
workers) decodes and resizes to ``uint8`` and the main process normalizes the whole
batch at once, with the same float32 arithmetic, so the net gets bit-identical input.
Why: a worker hands each batch to the main process through shared memory, and every
page of it is faulted in twice (written there, read here); uint8 is a quarter of the
float32 bytes. On a 2-core machine that was ~2-3 ms of CPU per image, as much as
decoding the JPEG (bench/eval.py).
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from vision.datasets.image_io import ImageDecodeError
from vision.utils.misc import UserError, ignore_stop_signals

log = logging.getLogger(__name__)


class DatasetItemError(UserError):
    """Bad input met while reading one image (e.g. an undecodable file).

    A DataLoader worker re-raises it in the main process with the worker's whole traceback as
    the message; only its last line, the reason, is kept, so scripts still print one line.
    """

    def __init__(self, message: str) -> None:
        lines = [line.strip() for line in str(message).splitlines() if line.strip()]
        reason = lines[-1] if lines else str(message)
        super().__init__(re.sub(r"^[\w.]*DatasetItemError: ", "", reason))


@dataclass
class ImageDetections:
    """Detections of one image: boxes [K,4] float32 corner form in PIXELS (clipped to the
    image), labels [K] int64 (1..C-1), scores [K] float32, best first."""
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    unreadable: bool = False  # the image could not be read: no detections, counted as skipped

    @classmethod
    def empty(cls, unreadable: bool = False) -> "ImageDetections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), unreadable)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class TestImageView(Dataset):
    """``(transform(image), index, (height, width))`` for each image of ``dataset``; the
    transform is the predictor's (image -> [3,S,S] float) or its loader half (``split_transform``).

    Reads through ``dataset.get_image(i)`` so the dataset's own (training) transform is
    bypassed and left untouched.
    """

    def __init__(self, dataset: Any, transform: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, tuple[int, int]]:
        """An unreadable image (truncated, not an image, gone) gives ``(None, index, (0, 0))``:
        it is skipped with a warning and scored as an image without detections."""
        try:
            image = self.dataset.get_image(index)
        except ImageDecodeError as e:
            log.warning("evaluation: skipping unreadable image %d (scored as an image without detections): %s",
                        index, e)
            return None, index, (0, 0)
        except UserError as e:
            raise DatasetItemError(str(e)) from None
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError(f"dataset.get_image({index}) must return an RGB HxWx3 array, got "
                            f"{type(image).__name__} {getattr(image, 'shape', '')}")
        height, width = image.shape[:2]
        return self.transform(image), index, (int(height), int(width))


class ResizeToUint8:
    """The resize half of ``PredictionTransform``: RGB uint8 ``[H, W, 3]`` -> uint8 tensor
    ``[S, S, 3]`` (HWC, as OpenCV returns it; ``normalize_batch`` makes it CHW float)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        import cv2

        from vision.transforms.transforms import check_image

        check_image(image)
        resized = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(np.ascontiguousarray(resized))


class BatchNormalizer:
    """The normalize half of ``PredictionTransform`` for a whole batch: uint8 ``[B, S, S, 3]``
    -> float32 ``[B, 3, S, S]`` = ``(x - mean) / std``, the same float32 operations as
    ``vision.transforms.transforms.Normalize`` (so the same bits)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = torch.as_tensor(np.asarray(mean, np.float32)).view(1, 3, 1, 1)
        self.std = torch.as_tensor(np.asarray(std, np.float32).reshape(-1)).view(1, 3, 1, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = batch.shape
        out = torch.empty((b, 3, h, w), dtype=torch.float32)
        out.copy_(batch.permute(0, 3, 1, 2))
        return out.sub_(self.mean).div_(self.std)


def split_transform(transform: Any) -> tuple[Callable[[np.ndarray], torch.Tensor],
                                              Callable[[torch.Tensor], torch.Tensor]]:
    """``(per-image part for the loader, per-batch part for the main process)`` of a predictor's
    transform: resize / normalize for exactly ``PredictionTransform``, else the whole
    transform and nothing (a custom transform is run as it is)."""
    from vision.ssd.data_preprocessing import PredictionTransform

    if type(transform) is PredictionTransform:
        return ResizeToUint8(transform.size), BatchNormalizer(transform.mean, transform.std)
    return transform, _identity


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def collate_test_images(batch: Sequence[tuple[torch.Tensor, int, tuple[int, int]]]
                        ) -> tuple[torch.Tensor, list[int], list[tuple[int, int]]]:
    """Stack images; keep indices and sizes as plain lists (the default collate would
    turn the size tuples into two tensors). Unreadable images (``None``) are left out."""
    batch = [b for b in batch if b[0] is not None]
    images = torch.stack([b[0] for b in batch]) if batch else torch.zeros(0)
    return images, [b[1] for b in batch], [b[2] for b in batch]


def default_workers(device: torch.device | str) -> int:
    """Image-loading workers for an evaluation when the user gives none.

    On a CPU-only machine with 2 cores, worker processes take those cores from the forward's
    compute threads: eval end to end measured 0.90 x the pure forward with 0 workers, 0.80-0.83
    with 1 or 2 (bench/README.md, "Evaluation"). Elsewhere 2 workers keep a GPU fed.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 0 if torch.device(device).type == "cpu" and cores <= 2 else 2


def detect_dataset(predictor: Any, dataset: Any, *, batch_size: int = 8, num_workers: int = 0,
                   top_k: int = 100, prob_threshold: float = 0.01, progress: bool = False,
                   ) -> tuple[list[ImageDetections], float]:
    """Detect objects in every image of ``dataset``.

    ``predictor`` is a ``vision.ssd.predictor.Predictor`` (or ``OnnxPredictor``); its
    ``transform`` preprocesses and ``predict_batch`` runs net + NMS.

    Returns:
        detections indexed like the dataset, and the throughput in images/s (wall time of
        the whole loop: loading, preprocessing, net and NMS).
    """
    from tqdm import tqdm

    load_transform, finish_batch = split_transform(predictor.transform)
    view = TestImageView(dataset, load_transform)
    detections: list[ImageDetections | None] = [None] * len(view)
    start = time.perf_counter()
    with tqdm(total=len(view), desc="evaluate", unit="img", disable=not progress, leave=False) as bar:
        for images, indices, sizes in _batches(view, batch_size, num_workers):
            if not indices:  # every image of the batch was unreadable
                continue
            results = predictor.predict_batch(finish_batch(images), sizes, top_k=top_k,
                                              prob_threshold=prob_threshold)
            for index, (h, w), (boxes, labels, scores) in zip(indices, sizes, results):
                detections[index] = _to_numpy(boxes, labels, scores, h, w)
            bar.update(len(indices))
    elapsed = time.perf_counter() - start
    images_per_s = len(view) / elapsed if elapsed > 0 else float("inf")
    skipped = sum(d is None for d in detections)
    if skipped:
        log.warning("evaluation: %d of %d images were unreadable and skipped (scored as images without "
                    "detections; the warnings above name them)", skipped, len(view))
    return [d if d is not None else ImageDetections.empty(unreadable=True) for d in detections], images_per_s


def _batches(view: TestImageView, batch_size: int, num_workers: int
             ) -> Iterator[tuple[torch.Tensor, list[int], list[tuple[int, int]]]]:
    """The view's batches in order, loaded by a DataLoader with ``num_workers`` workers.

    With workers, the main process loads the first batch itself while the workers start
    (forking and warming up took ~0.1-0.2 s on a 2-core machine before the net saw any
    image); the workers begin at the second batch. A dataset of one batch is loaded in
    the main process: starting workers would cost more than loading it.
    """
    n = len(view)
    if num_workers == 0 or n <= batch_size:
        yield from DataLoader(view, batch_size=batch_size, shuffle=False, num_workers=0,
                              collate_fn=collate_test_images)
        return
    rest = DataLoader(Subset(view, range(batch_size, n)), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, collate_fn=collate_test_images, pin_memory=False,
                      worker_init_fn=ignore_stop_signals)
    workers = iter(rest)  # forks the workers now; they load while the main process does batch one
    yield collate_test_images([view[i] for i in range(batch_size)])
    yield from workers


def _to_numpy(boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
              height: int, width: int) -> ImageDetections:
    b = boxes.detach().float().cpu().numpy().astype(np.float32, copy=True).reshape(-1, 4)
    # decoded boxes may reach past the border; metrics are defined inside the image
    np.clip(b[:, 0::2], 0, width, out=b[:, 0::2])
    np.clip(b[:, 1::2], 0, height, out=b[:, 1::2])
    return ImageDetections(b, labels.detach().cpu().numpy().astype(np.int64).reshape(-1),
                           scores.detach().float().cpu().numpy().astype(np.float32).reshape(-1))
