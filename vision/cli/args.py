"""argparse building blocks every script shares: the same flag means the same thing everywhere.

``add_resolution_arg`` / ``add_width_mult_arg`` (input size and mb2 width, bounded as a model
file's self-description is), ``add_device_args`` + ``choose_device`` (``--device`` wins over
``--use-cuda``), ``add_dataset_type_arg`` (the dataset formats ``vision.training.dataset_folders``
opens).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from vision.training.dataset_folders import DATASET_TYPES
from vision.utils.misc import UserError, float_range, int_range, str2bool

log = logging.getLogger(__name__)

# What --resolution / --mb2-width-mult (and a model file's own description) may be
MIN_RESOLUTION, MAX_RESOLUTION = 64, 2048
MAX_WIDTH_MULT = 4.0
resolution_type = int_range(MIN_RESOLUTION, MAX_RESOLUTION)
width_mult_type = float_range(0, MAX_WIDTH_MULT)

ArgTarget = Any  # an ArgumentParser or one of its argument groups


def add_resolution_arg(parser: ArgTarget, default: int | None = None,
                       help: str = "input size in pixels, square (default: the checkpoint's, else 300)") -> None:
    parser.add_argument("--resolution", type=resolution_type, default=default, help=help)


def add_width_mult_arg(parser: ArgTarget, default: float | None = None,
                       help: str = "width multiplier of mb2-ssd-lite (default: the checkpoint's, else 1.0)") -> None:
    parser.add_argument("--mb2-width-mult", "--mb2_width_mult", dest="mb2_width_mult", type=width_mult_type,
                        default=default, help=help)


def add_dataset_type_arg(parser: ArgTarget, default: str | None = "coco", help: str = "dataset format") -> None:
    parser.add_argument("--dataset-type", "--dataset_type", dest="dataset_type", default=default, type=str.lower,
                        choices=DATASET_TYPES, help=help)


def add_device_args(parser: ArgTarget) -> None:
    """``--use-cuda`` (upstream's switch) and ``--device`` (which wins when given)."""
    parser.add_argument("--use-cuda", "--use_cuda", dest="use_cuda", type=str2bool, default=True,
                        help="use the GPU when there is one")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (overrides --use-cuda)")


def parse_device(spec: str, flag: str = "--device") -> torch.device:
    """A ``--device`` value (``cpu``, ``cuda``, ``cuda:N``) as a device this machine has; UserError otherwise."""
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"{flag} {spec!r}: expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"{flag} {spec}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{flag} {spec}: CUDA is not available on this machine")
    return device


def choose_device(device: str | None, use_cuda: bool = True) -> torch.device:
    """The device for ``--device`` / ``--use-cuda``: ``--device`` when given (checked), else ``cuda:0``
    when CUDA is wanted and available, else the CPU (a debug note when CUDA was wanted)."""
    if device:
        return parse_device(device)
    if use_cuda and torch.cuda.is_available():
        return torch.device("cuda:0")
    if use_cuda:
        log.debug("CUDA not available; running on CPU")
    return torch.device("cpu")
