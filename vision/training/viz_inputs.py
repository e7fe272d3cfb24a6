"""``train_ssd.py --viz-inputs N``: pictures of what the net is trained on.

Why: users cannot see what the augmentation (zoom-out, crop, mirror, colour) does to their
pictures, nor which priors a box is matched to. Each sample becomes one PNG: on the left the
image as read (its ground-truth boxes), on the right the augmented net input (normalization
undone with the config's mean/std) with the boxes that survived augmentation and, in a second
colour, the priors matched to them (the positives of the matcher, IoU >= ``config.match_iou``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from torch.utils.data import ConcatDataset

from vision.datasets.base import clip_boxes
from vision.datasets.image_io import ImageDecodeError
from vision.ssd.config.base import SSDConfig
from vision.utils import box_utils
from vision.utils.misc import UserError, atomic_write

log = logging.getLogger(__name__)

GT_COLOUR = (0, 255, 0)
PRIOR_COLOUR = (255, 160, 0)
MARK = ("Software", "pytorch-ssd --viz-inputs")  # PNG text chunk: the files this module may replace


def _ours(path: Path) -> bool:
    """Whether ``path`` is a PNG written by ``write_input_samples`` (so it may be replaced)."""
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get(MARK[0]) == MARK[1]
    except (OSError, ValueError):
        return False


def _locate(dataset: Any, index: int) -> tuple[Any, int]:
    """The reader (a ``DetectionDataset``) and its own index behind ``index`` of a (Concat)Dataset."""
    while isinstance(dataset, ConcatDataset):
        k = int(np.searchsorted(dataset.cumulative_sizes, index, side="right"))
        index -= dataset.cumulative_sizes[k - 1] if k else 0
        dataset = dataset.datasets[k]
    return dataset, index


def denormalize(image: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    """A normalized [3,H,W] net input back to RGB uint8 [H,W,3] (``x * std + mean``)."""
    x = image.detach().float().cpu().permute(1, 2, 0).numpy()
    x = x * np.asarray(std, dtype=np.float32).reshape(-1)[None, None, :] + \
        np.asarray(mean, dtype=np.float32).reshape(-1)[None, None, :]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def matched_priors(boxes: torch.Tensor, labels: torch.Tensor, config: SSDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Corner-form priors [P,4] (0..1) the matcher makes positive for ``boxes`` [K,4], and their labels."""
    corner = box_utils.center_form_to_corner_form(config.priors)
    if len(boxes) == 0:
        return corner[:0], labels[:0]
    _, prior_labels = box_utils.assign_priors(boxes.float().reshape(-1, 4), labels.long().reshape(-1), corner,
                                              config.match_iou)
    pos = prior_labels > 0
    return corner[pos], prior_labels[pos]


def _draw_boxes(draw: ImageDraw.ImageDraw, boxes: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
                colour: tuple[int, int, int], offset: tuple[float, float], scale: tuple[float, float],
                text: bool = True, width: int = 2) -> None:
    for box, label in zip(boxes, labels):
        x1, y1, x2, y2 = (float(box[0]) * scale[0] + offset[0], float(box[1]) * scale[1] + offset[1],
                          float(box[2]) * scale[0] + offset[0], float(box[3]) * scale[1] + offset[1])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        if text:
            name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(int(label))
            draw.text((x1 + 2, y1 + 1), name, fill=colour)


def render_sample(original: np.ndarray, boxes: np.ndarray, labels: np.ndarray, augmented: torch.Tensor,
                  aug_boxes: torch.Tensor, aug_labels: torch.Tensor, config: SSDConfig,
                  class_names: Sequence[str]) -> Image.Image:
    """The side-by-side picture of one sample: ``2 * S`` x ``S`` pixels for an ``S`` px net input.

    ``boxes`` are corner pixels of ``original``; ``aug_boxes`` corner form 0..1 of ``augmented``.
    """
    size = int(config.image_size)
    canvas = Image.new("RGB", (2 * size, size), (32, 32, 32))
    h, w = original.shape[:2]
    f = min(size / w, size / h)  # the original, whole, fitted into the left square
    ow, oh = max(1, round(w * f)), max(1, round(h * f))
    ox, oy = (size - ow) // 2, (size - oh) // 2
    canvas.paste(Image.fromarray(original).resize((ow, oh), Image.BILINEAR), (ox, oy))
    canvas.paste(Image.fromarray(denormalize(augmented, config.image_mean, config.image_std)), (size, 0))
    draw = ImageDraw.Draw(canvas)
    _draw_boxes(draw, np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1), class_names, GT_COLOUR,
                (ox, oy), (f, f))
    priors, prior_labels = matched_priors(aug_boxes, aug_labels, config)
    _draw_boxes(draw, priors.numpy(), prior_labels.tolist(), class_names, PRIOR_COLOUR, (size, 0), (size, size),
                text=False, width=1)
    _draw_boxes(draw, aug_boxes.numpy().reshape(-1, 4), aug_labels.tolist(), class_names, GT_COLOUR, (size, 0),
                (size, size))
    draw.text((4, 2), "original", fill=(255, 255, 255))
    draw.text((size + 4, 2), f"augmented: {len(aug_boxes)} boxes, {len(priors)} matched priors",
              fill=(255, 255, 255))
    return canvas


def write_input_samples(dataset: Any, count: int, folder: str | os.PathLike, config: SSDConfig,
                        class_names: Sequence[str]) -> list[Path]:
    """Write the first ``count`` samples of a training ``dataset`` as ``folder/input-NNNNN.png`` (atomically).

    The augmentation is the dataset's own ``transform``; its ``target_transform`` (per-sample
    matching) is not applied, the matching is drawn instead. Unreadable images are skipped.
    """
    folder = Path(folder)
    n = min(int(count), len(dataset))
    for i in range(n):  # never replace a file a user put there (checked before anything is written)
        path = folder / f"input-{i:05d}.png"
        if path.exists() or path.is_symlink():
            if path.is_symlink() or not path.is_file() or not _ours(path):
                raise UserError(f"--viz-inputs: {path} exists and was not written by --viz-inputs; move it away "
                                f"or choose another --checkpoint-folder")
    folder.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text(*MARK)
    written: list[Path] = []
    for i in range(n):
        reader, j = _locate(dataset, i)
        try:
            image = reader.get_image(j)
        except ImageDecodeError as e:
            log.warning("--viz-inputs: skipping unreadable image: %s", e)
            continue
        h, w = image.shape[:2]
        boxes, labels = reader._target(j, w, h)
        boxes, labels = clip_boxes(boxes, labels, w, h)
        if reader.transform is None:
            raise ValueError("write_input_samples needs a dataset with its training transform")
        aug, aug_boxes, aug_labels = reader.transform(image, boxes, labels)
        picture = render_sample(image, boxes, labels, aug, torch.as_tensor(aug_boxes), torch.as_tensor(aug_labels),
                                config, class_names)
        path = folder / f"input-{i:05d}.png"
        with atomic_write(path, "wb") as f:
            picture.save(f, format="PNG", pnginfo=info)
        written.append(path)
    return written
