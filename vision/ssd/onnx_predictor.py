"""Predictor running an exported ONNX model through ONNX Runtime (CPU).

Everything but the net itself (preprocessing, NMS, scaling to pixels) is the PyTorch
Predictor's, so both give the same detections for the same model. The model must follow
the jetson-inference contract onnx_export.py writes: input ``input_0`` [B,3,H,W], outputs
``scores`` [B,N,C] (softmaxed) and ``boxes`` [B,N,4] (corner form, 0..1). A file onnx_export.py
wrote describes itself (``vision.ssd.onnx_metadata``): its input normalization and size are then
taken from it unless given.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vision.ssd.onnx_metadata import open_session, read_metadata  # noqa: F401  (open_session: API)
from vision.ssd.predictor import Predictor
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

INPUT_NAME = "input_0"
OUTPUT_NAMES = ("scores", "boxes")


class OnnxPredictor(Predictor):
    """``Predictor`` whose ``run`` is an ONNX Runtime session.

    ``size`` defaults to the model's input height (square inputs only, as the nets' priors).
    A model exported with a static batch of 1 is fed one image at a time.
    """

    def __init__(self, onnx_path: str | os.PathLike, size: int | None = None, mean=None, std=None,
                 nms_method: str | None = None, iou_threshold: float = 0.45, filter_threshold: float = 0.01,
                 candidate_size: int = 200, sigma: float = 0.5, providers: Sequence[str] | None = None) -> None:
        self.session = open_session(onnx_path, providers)
        self.onnx_path = Path(onnx_path)
        self.info = read_metadata(self.session)
        if mean is None:
            if self.info is None:
                raise UserError(f"{onnx_path} does not say how its input is normalized (exported by an older "
                                f"onnx_export.py): name the net (--net) or re-export it")
            mean, std = self.info.input_mean, self.info.input_std
        std = 1.0 if std is None else std
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if INPUT_NAME not in inputs or any(n not in outputs for n in OUTPUT_NAMES):
            raise UserError(f"{onnx_path}: expected input '{INPUT_NAME}' and outputs 'scores', 'boxes' "
                            f"(export with onnx_export.py); found inputs {list(inputs)}, outputs {outputs}")
        shape = list(inputs[INPUT_NAME].shape)
        if len(shape) != 4:
            raise UserError(f"{onnx_path}: input '{INPUT_NAME}' must be [B,3,H,W], got {shape}")
        batch, _, height, width = shape
        self.fixed_batch = batch if isinstance(batch, int) else None
        if isinstance(height, int) and isinstance(width, int) and height != width:
            raise UserError(f"{onnx_path}: input is {width}x{height}; only square inputs are supported")
        model_size = height if isinstance(height, int) else None
        if size is None:
            if model_size is None:
                raise UserError(f"{onnx_path}: input size is dynamic; pass the resolution")
            size = model_size
        elif model_size is not None and size != model_size:
            raise UserError(f"{onnx_path}: model input is {model_size} px but {size} px was asked for")
        super().__init__(None, size, mean, std, nms_method=nms_method, iou_threshold=iou_threshold,
                         filter_threshold=filter_threshold, candidate_size=candidate_size, sigma=sigma,
                         device="cpu")

    def run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores [B,N,C], boxes [B,N,4])`` for a preprocessed batch ``[B,3,S,S]``."""
        x = images.detach().cpu().float().numpy()
        step = self.fixed_batch or x.shape[0]
        scores, boxes = [], []
        for start in range(0, x.shape[0], step):
            chunk = x[start:start + step]
            n = chunk.shape[0]
            if n < step:  # a static batch larger than what is left: pad, then drop the padding
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
            s, b = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(chunk)})
            scores.append(s[:n])
            boxes.append(b[:n])
        return torch.from_numpy(np.concatenate(scores)), torch.from_numpy(np.concatenate(boxes))
