"""From an image to detections: preprocess, run the net, decode, NMS, scale to pixels.

``create_predictor(net)`` is the one factory (scripts, evaluation and upstream's
``create_*_predictor`` helpers all use it).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vision.ssd.data_preprocessing import PredictionTransform
from vision.ssd.fuse import optimize_for_inference
from vision.utils import box_utils

log = logging.getLogger(__name__)

Detections = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def test_outputs(net: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores [B,N,C] softmaxed, boxes [B,N,4] corner normalized)`` from a net in either mode.

    A net built with ``is_test=True`` already returns these; a training-mode net (as the
    training script validates with) returns logits and offsets, decoded here with its config.
    """
    out = net(images)
    if getattr(net, "is_test", False):
        return out
    confidences, locations = out
    cfg = net.config
    boxes = box_utils.convert_locations_to_boxes(locations, cfg.priors, cfg.center_variance, cfg.size_variance)
    return F.softmax(confidences, dim=2), box_utils.center_form_to_corner_form(boxes)


class Predictor:
    """Runs an SSD on images and returns detections in pixel coordinates.

    ``nms_method="soft"`` selects soft-NMS (with ``sigma``), anything else hard NMS.
    ``filter_threshold`` is the default score threshold; ``candidate_size`` caps the boxes
    per class that enter NMS.
    """

    def __init__(self, net: torch.nn.Module | InferenceCopy | None, size: int, mean=0.0, std: float = 1.0,
                 nms_method: str | None = None, iou_threshold: float = 0.45, filter_threshold: float = 0.01,
                 candidate_size: int = 200, sigma: float = 0.5, device: torch.device | str | None = None) -> None:
        self._net = net
        self.size = size
        self.transform = PredictionTransform(size, mean, std)
        self.nms_method = nms_method
        self.iou_threshold = iou_threshold
        self.filter_threshold = filter_threshold
        self.candidate_size = candidate_size
        self.sigma = sigma
        if isinstance(net, InferenceCopy):
            self.device = net.device
        else:
            self.device = torch.device(device) if device is not None else _module_device(net)
        if isinstance(net, torch.nn.Module):
            net.to(self.device)
            net.eval()

    @property
    def net(self) -> Any:
        """The module that runs: the caller's net, or the inference copy of its current weights."""
        return self._net.current() if isinstance(self._net, InferenceCopy) else self._net

    @net.setter
    def net(self, value: Any) -> None:
        self._net = value

    def run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw test outputs for a preprocessed batch ``[B,3,S,S]`` (overridden by the ONNX predictor)."""
        if isinstance(self._net, InferenceCopy):
            return self._net.run(images.to(self.device))
        with torch.no_grad():
            return test_outputs(self.net, images.to(self.device))

    def predict(self, image: np.ndarray, top_k: int = -1, prob_threshold: float | None = None) -> Detections:
        """Detect objects in one RGB uint8 ``HxWx3`` image (grayscale ``HxW``/``HxWx1`` and RGBA
        ``HxWx4``, e.g. ``np.asarray(PIL.Image.open(png))``, are taken as RGB; alpha is dropped).

        ``prob_threshold`` (default: the predictor's ``filter_threshold``) drops (box, class) pairs
        scoring at or below it; each class keeps its ``candidate_size`` best, NMS runs per class.
        ``top_k`` counts per image: after NMS, the ``top_k`` best detections of all classes together
        (``top_k <= 0``: all). Upstream's ``Predictor.predict`` applied it per class: each class's
        ``top_k`` best after NMS, so up to ``top_k`` x (classes) detections in all. The two agree
        when ``top_k <= 0`` (the default) or the net has one object class; else ours returns at most
        ``top_k`` boxes, the image's best, where upstream could return more.

        Returns:
            boxes [K, 4] corner form in pixels, labels [K] int64 (1..C-1), probs [K], best first.
        """
        image = _as_rgb(image)
        height, width = image.shape[:2]
        x = self.transform(image).unsqueeze(0)
        return self.predict_batch(x, [(height, width)], top_k=top_k, prob_threshold=prob_threshold)[0]

    def predict_batch(self, images: torch.Tensor, sizes: Sequence[tuple[int, int]], top_k: int = -1,
                      prob_threshold: float | None = None) -> list[Detections]:
        """Detect objects in a preprocessed batch; ``sizes`` are the original ``(height, width)``."""
        scores, boxes = self.run(images)
        threshold = self.filter_threshold if prob_threshold is None else prob_threshold
        dets = box_utils.batched_postprocess(
            scores.float().cpu(), boxes.float().cpu(), prob_threshold=threshold,
            iou_threshold=self.iou_threshold, top_k=top_k, candidate_size=self.candidate_size,
            nms_method=self.nms_method, sigma=self.sigma)
        out = []
        for (b, l, s), (h, w) in zip(dets, sizes):
            scale = torch.tensor([w, h, w, h], dtype=b.dtype)
            out.append((b * scale, l, s))
        return out


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Grayscale and RGBA arrays as RGB; anything else unchanged (the transform names what is wrong)."""
    if isinstance(image, np.ndarray) and image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (1, 4):
        return np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3])
    return image


def _module_device(net) -> torch.device:
    try:
        return next(net.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _weights_stamp(net: torch.nn.Module) -> tuple:
    """Identity and in-place version of every parameter and buffer: changes whenever the weights
    do through autograd-visible ops (``load_state_dict``/``net.load`` copy in place and bump
    ``_version``; an optimizer step, an in-place op under ``no_grad``, ``.to(device)`` or a
    replaced tensor does too). Cheap: a few microseconds for a whole SSD.

    Not seen: an edit through ``.data`` (``p.data.mul_(0.7)``): ``.data`` is a new tensor with its
    own version counter, so the parameter's ``_version`` stays as it was, and no cheap check
    sees it (a checksum of mb1-ssd's 9.5M weights costs milliseconds per call, a sample of a few
    values misses partial edits). Such code needs a new predictor (or ``optimize=False``).

    Inference tensors (a net built or loaded under ``torch.inference_mode()``) have no version
    counter; they cannot be changed in place outside inference mode, so their ``data_ptr`` alone
    identifies them (an in-place load *inside* ``inference_mode`` into such a net after the
    predictor was made is not seen either: make a new predictor then).
    """
    tensors = (*net.parameters(), *net.buffers())
    try:
        return tuple((t.data_ptr(), t._version) for t in tensors)
    except RuntimeError:  # "Inference tensors do not track version counter"
        return tuple((t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors)


class InferenceCopy:
    """An inference copy of ``source`` (``optimize_for_inference``), rebuilt when its weights change.

    Why lazy and re-checked: upstream code may build the predictor first and load weights into
    the same net afterwards (or keep one predictor across training epochs); a copy frozen at
    construction would silently keep the old weights. The copy is made on first use and remade
    whenever ``_weights_stamp(source)`` differs from the one it was made from: after
    ``load_state_dict``/``net.load``, an optimizer step, an in-place op under ``torch.no_grad()``
    or replaced tensors. Not after an edit through ``.data`` (``p.data.mul_(0.7)``): that bumps
    no version counter and no cheap check sees it, so such code needs a new predictor (or
    ``create_predictor(net, optimize=False)``, which runs the net itself).

    On the CPU, ``script=True`` (the default there) goes one step further once an input shape is
    seen a second time: the folded copy is traced, frozen and passed through
    ``torch.jit.optimize_for_inference`` (oneDNN convolutions with pre-packed weights, fused
    activations): 1.2-1.3x faster than the folded channels_last copy at batch 1
    (bench/README.md, "Predictor latency"). Why only on the second call: tracing costs about as
    much as a few forwards, a loss for a one-image preview and a gain for every loop. The
    traced module is checked once against the folded copy on that input (within 1e-4) and
    dropped for good, in favour of the folded copy, if it differs or cannot be built.
    """

    MAX_TRACED_SHAPES = 4

    def __init__(self, source: torch.nn.Module, device: torch.device, channels_last: bool,
                 script: bool | None = None) -> None:
        self.source = source
        self.device = device
        self.channels_last = channels_last
        self.script = device.type == "cpu" if script is None else script
        self._copy: torch.nn.Module | None = None
        self._stamp: tuple | None = None
        self._seen: set[tuple] = set()
        self._traced: dict[tuple, Any] = {}

    def current(self) -> torch.nn.Module:
        """The copy for the source's current weights (made or remade here when needed)."""
        stamp = _weights_stamp(self.source)
        if self._copy is None or stamp != self._stamp:
            self._copy = optimize_for_inference(self.source, channels_last=self.channels_last).to(self.device)
            self._stamp = stamp
            self._seen.clear()
            self._traced.clear()
        return self._copy

    def run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``test_outputs`` of the current copy (traced once a shape repeats, see the class docstring)."""
        copy = self.current()
        key = (tuple(images.shape), images.dtype)
        with torch.no_grad():
            traced = self._traced.get(key)
            if traced is not None:
                return traced(images)
            if not self.script or key not in self._seen or len(self._traced) >= self.MAX_TRACED_SHAPES:
                self._seen.add(key)
                return test_outputs(copy, images)
            out = test_outputs(copy, images)
            traced = _trace_checked(copy, images, out)
            if traced is None:
                self.script = False
            else:
                self._traced[key] = traced
            return out


def _trace_checked(copy: torch.nn.Module, images: torch.Tensor, expected: tuple[torch.Tensor, torch.Tensor],
                   atol: float = 1e-4) -> Any:
    """``copy``'s test outputs as a frozen, inference-optimized TorchScript module for this input
    shape, or None (logged) when it cannot be built or its outputs differ from ``expected``."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
            traced = torch.jit.trace(_TestOutputs(copy), images, check_trace=False)
            traced = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            got = traced(images)
        diff = max(float((a - b).abs().max()) for a, b in zip(got, expected))
    except Exception as e:  # tracing/freezing is best effort: the folded copy stays correct
        log.debug("predictor: TorchScript path unavailable (%s); running the folded copy", e)
        return None
    if not diff <= atol:
        log.warning("predictor: the TorchScript copy differs from the folded net by %.3g; not used", diff)
        return None
    return traced


class _TestOutputs(torch.nn.Module):
    """``test_outputs(net, x)`` as a module, so it can be traced."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return test_outputs(self.net, images)


def create_predictor(net: Any, *, optimize: bool = True, **predictor_kwargs: Any) -> Predictor:
    """A ``Predictor`` using the net's own input size, mean, std and NMS IoU threshold (``net.config``).

    With ``optimize`` (default) the predictor runs an inference copy of the net
    (``vision.ssd.fuse.optimize_for_inference``: BatchNorm folded into the convolutions and, on
    the CPU, channels_last weights): the same detections up to float rounding (1e-4), 1.3-1.7x
    faster on a CPU. The caller's net is not touched (not moved, not put in eval mode), so
    evaluating during training leaves it as it was; the copy follows the net's weights (remade
    on the next predict after ``net.load(...)``, ``load_state_dict``, an optimizer step or an
    in-place op under ``no_grad``, see ``InferenceCopy``). Edits through ``.data``
    (``p.data.mul_(0.7)``) are not seen: make a new predictor after them, or use ``optimize=False``.
    ``optimize=False`` runs the net itself (upstream's
    behaviour: the predictor moves it to ``device`` and puts it in eval mode).
    ``predictor_kwargs`` go to Predictor (nms_method, iou_threshold, filter_threshold,
    candidate_size, sigma, device). A Predictor (e.g. an ``OnnxPredictor``) passed as ``net``
    is returned unchanged.
    """
    if isinstance(net, Predictor):
        return net
    cfg = getattr(net, "config", None)
    if cfg is None:
        raise ValueError("net has no config; build it with registry.create_net")
    predictor_kwargs.setdefault("iou_threshold", cfg.iou_threshold)
    if optimize and isinstance(net, torch.nn.Module):
        device = predictor_kwargs.get("device")
        device = torch.device(device) if device is not None else _module_device(net)
        net = InferenceCopy(net, device, channels_last=device.type == "cpu")
    return Predictor(net, cfg.image_size, cfg.image_mean, cfg.image_std, **predictor_kwargs)


def create_upstream_predictor(net: Any, candidate_size: int = 200, nms_method: str | None = None,
                              sigma: float = 0.5, device: torch.device | str | None = None) -> Predictor:
    """Upstream's ``create_*_predictor(net, candidate_size, nms_method, sigma, device)``.

    As upstream's Predictor, no ``device`` means the GPU when there is one (a CPU net is not
    moved: its inference copy runs there), otherwise the net's own device.
    """
    if device is None and torch.cuda.is_available() and _module_device(net).type != "cuda":
        device = torch.device("cuda:0")
    return create_predictor(net, candidate_size=candidate_size, nms_method=nms_method, sigma=sigma,
                            device=device)
