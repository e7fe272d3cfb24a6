"""The numbers that define an SSD's input and its default boxes.

A config is plain data: the net builders take one, ``build_matcher`` / ``build_criterion``
turn it into the training targets and the loss (as torchvision's ``SSD`` owns its box coder
and matcher), the predictor takes its mean/std. Building
one for another resolution never touches a global (upstream rewrote module
globals by building a throwaway net).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from vision.nn.multibox_loss import DEFAULT_MINING, MultiboxLoss
from vision.ssd.matching import BatchedMatcher, MatchPrior
from vision.utils.box_utils import SSDBoxSizes, SSDSpec, generate_ssd_priors


MATCH_IOU = 0.5  # a prior is positive at IoU >= this with a ground-truth box (upstream's value)


@dataclass(frozen=True)
class SSDConfig:
    """Input size and normalization, matching thresholds, box-coding variances and priors.

    ``priors`` is ``[N, 4]`` center form, normalized to 0..1. ``iou_threshold`` is for NMS;
    ``match_iou`` (a prior is positive at this IoU with a ground-truth box) and
    ``neg_pos_ratio`` (hard negatives per positive) are for training (upstream's values).
    """
    image_size: int
    image_mean: np.ndarray
    image_std: float
    iou_threshold: float
    center_variance: float
    size_variance: float
    specs: list = field(default_factory=list)
    priors: torch.Tensor = None  # type: ignore[assignment]
    match_iou: float = MATCH_IOU
    neg_pos_ratio: int = 3

    @property
    def num_priors(self) -> int:
        return int(self.priors.size(0))


def scaled_specs(reference_specs: Sequence[SSDSpec], reference_size: int, image_size: int,
                 feature_map_sizes: Sequence[int]) -> list[SSDSpec]:
    """Specs for another input resolution.

    Box sizes scale with the image (the same fraction of the image as at the
    reference size); each prior grid is laid exactly over its feature map
    (shrinkage = image_size / feature_map_size), so centers fall on the cells.
    """
    if len(feature_map_sizes) != len(reference_specs):
        raise ValueError(f"expected {len(reference_specs)} feature maps, got {len(feature_map_sizes)}")
    factor = image_size / reference_size
    specs = []
    for spec, fm in zip(reference_specs, feature_map_sizes):
        specs.append(SSDSpec(int(fm), image_size / fm,
                             SSDBoxSizes(spec.box_sizes.min * factor, spec.box_sizes.max * factor),
                             list(spec.aspect_ratios)))
    return specs


def build_config(reference_specs: Sequence[SSDSpec], reference_size: int, image_size: int,
                 feature_map_sizes: Sequence[int] | None, *, image_mean, image_std: float,
                 iou_threshold: float = 0.45, center_variance: float = 0.1,
                 size_variance: float = 0.2) -> SSDConfig:
    """A config at ``image_size``; the reference (upstream) specs are kept exactly at their size."""
    if image_size == reference_size and (feature_map_sizes is None or
                                         list(feature_map_sizes) == [s.feature_map_size for s in reference_specs]):
        specs = list(reference_specs)
    else:
        if feature_map_sizes is None:
            raise ValueError(f"feature_map_sizes are needed to build priors at {image_size} px")
        specs = scaled_specs(reference_specs, reference_size, image_size, feature_map_sizes)
    return SSDConfig(
        image_size=int(image_size),
        image_mean=np.asarray(image_mean, dtype=np.float32),
        image_std=float(image_std),
        iou_threshold=iou_threshold,
        center_variance=center_variance,
        size_variance=size_variance,
        specs=specs,
        priors=generate_ssd_priors(specs, image_size),
    )


def build_matcher(config: SSDConfig, *, batched: bool = False,
                  device: torch.device | str | None = None) -> MatchPrior | BatchedMatcher:
    """The target encoder for ``config``: per-sample ``MatchPrior`` (a dataset's target_transform,
    run in the loader workers) or, with ``batched``, a ``BatchedMatcher`` on ``device``."""
    if not batched:
        return MatchPrior(config.priors, config.center_variance, config.size_variance, config.match_iou)
    matcher = BatchedMatcher(config.priors, config.center_variance, config.size_variance, config.match_iou)
    return matcher.to(device) if device is not None else matcher


def build_criterion(config: SSDConfig, device: torch.device | str | None = None,
                    mining: str = DEFAULT_MINING) -> MultiboxLoss:
    """The MultiBox loss for ``config`` (its priors, variances and hard-negative ratio); ``mining``:
    which negatives enter the loss (``vision.utils.box_utils.MINING_RULES``)."""
    return MultiboxLoss(config.priors, iou_threshold=config.match_iou, neg_pos_ratio=config.neg_pos_ratio,
                        center_variance=config.center_variance, size_variance=config.size_variance,
                        device=device, mining=mining)
