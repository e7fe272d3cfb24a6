"""The one SSD module every net variant is assembled into.

A variant supplies a backbone (``base_net``), where on it to tap feature maps
(``source_layer_indexes``), extra downsampling layers and one classification and
one regression head per feature map. Attribute names and module order equal
upstream qfgaohao/pytorch-ssd's, so its ``.pth`` files load with ``strict=True``.

``source_layer_indexes`` entries (upstream semantics):

- ``int i``: run ``base_net[start:i]``, tap the result.
- ``(i, module)``: as ``i`` but tap ``module(x)`` (vgg16-ssd's BatchNorm on conv4_3);
  these modules are registered in ``source_layer_add_ons``.
- ``GraphPath(s0, name, s1)``: run ``base_net[start:s0]``, then walk the sub-sequence
  ``getattr(base_net[s0], name)``: tap after its first ``s1`` layers, finish the rest
  (mb2-ssd-lite taps the expanded 576 channels inside block 14). The block's own
  ``forward`` (and residual) is bypassed, as upstream; only use it on blocks
  without a residual connection.

After the last source, the rest of ``base_net`` runs, and each extra layer's output
is one more source. Head outputs are concatenated in that source order, each map
row-major over (y, x) and anchor-minor, which is the order
``box_utils.generate_ssd_priors`` emits the priors in.
"""
from __future__ import annotations

import contextlib
import os
from collections import namedtuple
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vision.nn.init import xavier_init_
from vision.ssd.matching import MatchPrior  # noqa: F401  (upstream's ``from vision.ssd.ssd import MatchPrior``)
from vision.ssd.model_io import load_base_net_weights, load_net_weights, load_pretrained_ssd
from vision.utils import box_utils
from vision.utils.misc import UserError, atomic_write
from vision.utils.model_io import load_state_dict_file

GraphPath = namedtuple("GraphPath", ["s0", "name", "s1"])


class SSD(nn.Module):
    """Single-shot detector over ``num_classes`` classes (class 0 = BACKGROUND).

    forward(x [B,3,S,S], normalized as the config says) returns
    - training (``is_test=False``): (confidences [B,N,C] logits, locations [B,N,4]
      encoded offsets against the priors, variances from the config);
    - ``is_test=True``: (scores [B,N,C] softmax, boxes [B,N,4] corner form x1,y1,x2,y2
      normalized to the image, not clipped).

    N is the number of priors for the config's image size. The priors are a
    non-persistent buffer: ``.to(device)`` moves them, the state_dict does not hold them.
    """

    priors: torch.Tensor

    def __init__(self, num_classes: int, base_net: nn.Module, source_layer_indexes: Sequence[Any],
                 extras: nn.ModuleList, classification_headers: nn.ModuleList,
                 regression_headers: nn.ModuleList, is_test: bool = False, config: Any = None,
                 device: torch.device | str | None = None, *, net_name: str | None = None,
                 arch: str | None = None):
        super().__init__()
        n_sources = len(source_layer_indexes) + len(extras)
        if not (len(classification_headers) == len(regression_headers) == n_sources):
            raise ValueError(f"SSD needs one classification and one regression head per source map: "
                             f"{n_sources} sources, {len(classification_headers)} classification and "
                             f"{len(regression_headers)} regression heads")
        self.num_classes = num_classes
        self.base_net = base_net
        self.source_layer_indexes = list(source_layer_indexes)
        self.extras = extras
        self.classification_headers = classification_headers
        self.regression_headers = regression_headers
        self.is_test = is_test
        self.net_name = net_name  # registry name (for messages); None when built by hand
        self.arch = arch  # backbone family, used to map torchvision ImageNet weights
        self.source_layer_add_ons = nn.ModuleList(
            t[1] for t in self.source_layer_indexes if isinstance(t, tuple) and not isinstance(t, GraphPath))
        self.config = None
        self.config_factory: Callable[..., Any] | None = None  # set by configure()
        self.register_buffer("priors", torch.zeros(0, 4), persistent=False)
        if config is not None:
            self.set_config(config)
        if device is not None:
            self.to(device)

    # ----------------------------------------------------------------- forward
    def _source_maps(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield the feature maps the heads read, in head order (lazily, as upstream)."""
        start = 0
        for src in self.source_layer_indexes:
            add_on = path = None
            if isinstance(src, GraphPath):
                path, end = src, src.s0
            elif isinstance(src, tuple):
                end, add_on = src
            else:
                end = src
            for layer in self.base_net[start:end]:
                x = layer(x)
            if path is not None:
                sub = getattr(self.base_net[end], path.name)
                for layer in sub[:path.s1]:
                    x = layer(x)
                y = x
                for layer in sub[path.s1:]:
                    x = layer(x)
                end += 1
            else:
                y = add_on(x) if add_on is not None else x
            start = end
            yield y
        for layer in self.base_net[start:]:
            x = layer(x)
        for layer in self.extras:
            x = layer(x)
            yield x

    def compute_header(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head ``i`` on map x [B,Cin,H,W] -> ([B,H*W*A,num_classes], [B,H*W*A,4])."""
        confidence = self.classification_headers[i](x).permute(0, 2, 3, 1).contiguous()
        confidence = confidence.view(confidence.size(0), -1, self.num_classes)
        location = self.regression_headers[i](x).permute(0, 2, 3, 1).contiguous()
        location = location.view(location.size(0), -1, 4)
        return confidence, location

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        confidences, locations = [], []
        for i, y in enumerate(self._source_maps(x)):
            confidence, location = self.compute_header(i, y)
            confidences.append(confidence)
            locations.append(location)
        confidences = torch.cat(confidences, 1)
        locations = torch.cat(locations, 1)
        if not self.is_test:
            return confidences, locations
        return self._decode(confidences, locations, x)

    def _decode(self, confidences: torch.Tensor, locations: torch.Tensor,
                x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config is None:
            raise RuntimeError("SSD has no config (priors): call set_config() before using is_test=True")
        if not torch.jit.is_tracing() and locations.shape[1] != self.priors.shape[0]:
            raise UserError(f"{self.net_name or 'net'} built for {self.config.image_size} px "
                            f"({self.priors.shape[0]} priors) got a {tuple(x.shape[-2:])} input "
                            f"({locations.shape[1]} boxes); resize the input or rebuild the net "
                            f"for that resolution")
        scores = F.softmax(confidences, dim=2)
        boxes = box_utils.convert_locations_to_boxes(
            locations, self.priors, self.config.center_variance, self.config.size_variance)
        return scores, box_utils.center_form_to_corner_form(boxes)

    # ------------------------------------------------------- shapes and config
    def _shape_pass(self, image_size: int) -> tuple[list[tuple[int, int]], int]:
        """Source map sizes [(H, W), ...] and number of outputs N for a square input.

        Runs on the meta device (shapes only, no arithmetic), so it is instant for any net.
        """
        probe = _ShapeProbe(self)
        tensors = {f"ssd.{k}": torch.empty_like(v, device="meta")
                   for k, v in [*self.named_parameters(), *self.named_buffers()]}
        x = torch.zeros(1, 3, image_size, image_size, device="meta")
        with _eval_mode(self):
            try:
                return torch.func.functional_call(probe, tensors, (x,))
            except RuntimeError as e:
                raise UserError(f"{self.net_name or 'net'}: input size {image_size} px is too small "
                                f"for this net ({str(e).splitlines()[0]})") from None

    def feature_map_sizes(self, image_size: int) -> list[int]:
        """Side length of each source feature map for a ``image_size`` square input."""
        sizes, _ = self._shape_pass(image_size)
        for h, w in sizes:
            if h < 1 or w < 1:
                raise UserError(f"{self.net_name or 'net'}: input size {image_size} px is too small "
                                f"(a feature map would be {h}x{w})")
        return [h for h, _ in sizes]

    def num_outputs(self, image_size: int) -> int:
        """N, the number of boxes the heads predict for a ``image_size`` square input."""
        return self._shape_pass(image_size)[1]

    def set_config(self, config: Any) -> None:
        """Attach an SSDConfig and its priors (checked against the heads' output count)."""
        n = self.num_outputs(config.image_size)
        if config.priors.shape[0] != n:
            raise ValueError(f"{self.net_name or 'net'}: config for {config.image_size} px has "
                             f"{config.priors.shape[0]} priors but the heads predict {n} boxes "
                             f"(feature maps {self.feature_map_sizes(config.image_size)})")
        self.config = config
        self.priors = config.priors.detach().to(device=self.priors.device, dtype=torch.float32)

    # ------------------------------------------------------ weights (upstream)
    def init_from_base_net(self, model: str | os.PathLike) -> None:
        """Load an ImageNet backbone file into ``base_net``; Xavier-init everything else."""
        load_base_net_weights(self, model)
        for part in (self.source_layer_add_ons, self.extras, self.classification_headers,
                     self.regression_headers):
            part.apply(xavier_init_)

    def init_from_pretrained_ssd(self, model: str | os.PathLike) -> None:
        """Load a trained SSD (any class count) except its heads; Xavier-init the heads."""
        load_pretrained_ssd(self, model)
        self.classification_headers.apply(xavier_init_)
        self.regression_headers.apply(xavier_init_)

    def init(self) -> None:
        """Xavier-init every conv (training from scratch)."""
        self.apply(xavier_init_)

    def load(self, model: str | os.PathLike) -> None:
        """Load a state_dict / checkpoint file strictly (one-line UserError on mismatch)."""
        state_dict, checkpoint = load_state_dict_file(model)
        load_net_weights(self, state_dict, self.net_name or "this net", str(model), checkpoint=checkpoint)

    def save(self, model_path: str | os.PathLike) -> None:
        """Write ``state_dict()`` (upstream format) atomically."""
        with atomic_write(model_path, "wb") as f:
            torch.save(self.state_dict(), f)


class _ShapeProbe(nn.Module):
    """Wraps an SSD so ``functional_call`` can run its trunk and heads with meta tensors."""

    def __init__(self, ssd: SSD):
        super().__init__()
        self.ssd = ssd

    def forward(self, x: torch.Tensor) -> tuple[list[tuple[int, int]], int]:
        sizes, n = [], 0
        for i, y in enumerate(self.ssd._source_maps(x)):
            sizes.append((int(y.shape[-2]), int(y.shape[-1])))
            n += int(self.ssd.compute_header(i, y)[1].shape[1])
        return sizes, n


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Temporarily put every submodule in eval mode (BN on a 1x1 map needs it)."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def configure(net: SSD, make_config: Callable[..., Any], image_size: int | None) -> SSD:
    """Give ``net`` its config factory (``make_config(image_size, feature_map_sizes)``, from its
    ``vision.ssd.config`` module) and, unless ``image_size`` is None, the config for that size.

    The feature map sizes come from the net itself, so any resolution gets priors that
    match its outputs.
    """
    net.config_factory = make_config
    if image_size is not None:
        net.set_config(make_config(image_size, net.feature_map_sizes(image_size)))
    return net
