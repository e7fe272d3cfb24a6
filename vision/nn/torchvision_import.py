"""Load torchvision ImageNet classifier weights into an SSD's ``base_net``.

torchvision's ``features`` and our backbones hold the same layers in the same
order, only grouped differently (torchvision nests conv+BN in
``Conv2dNormActivation``; upstream's layout is flat). So the key mapping is made
structurally: both state_dicts are split into per-module groups in module order
and paired one to one; every pair must have the same parameter names and shapes,
otherwise nothing is loaded. VGG16's fc6/fc7 are subsampled into conv6/conv7 the
way the SSD paper does (``vgg16_reducedfc.pth`` was made that way).

Supported (net arch <- torchvision model): mobilenet_v2 (mb2-ssd-lite), vgg16
(vgg16-ssd), squeezenet1_1 (sq-ssd-lite), mobilenet_v3_large / mobilenet_v3_small
(mb3-*-ssd-lite-tv). Upstream's mb3 layout and MobileNetV1 have no torchvision twin.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from vision.nn.init import xavier_init_
from vision.utils.misc import UserError

log = logging.getLogger(__name__)

# The torchvision classifiers whose ``features`` fit a backbone here. An SSD's ``arch`` (set where the
# net is defined, in its vision.ssd variant module) names one of them when torchvision's ImageNet
# weights fit its base_net; ``detect_torchvision_arch`` recognises the same names in a file.
TORCHVISION_ARCHS: tuple[str, ...] = ("mobilenet_v2", "vgg16", "squeezenet1_1", "mobilenet_v3_large",
                                      "mobilenet_v3_small")


def detect_torchvision_arch(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Name of the torchvision classifier a state_dict comes from, by key/shape signature."""
    def shape(k: str) -> tuple | None:
        v = state_dict.get(k)
        return tuple(v.shape) if isinstance(v, torch.Tensor) else None

    if shape("features.18.0.weight") == (1280, 320, 1, 1) and "features.1.conv.0.0.weight" in state_dict:
        return "mobilenet_v2"
    if shape("features.16.0.weight") == (960, 160, 1, 1) and "features.1.block.0.0.weight" in state_dict:
        return "mobilenet_v3_large"
    if shape("features.12.0.weight") == (576, 96, 1, 1) and "features.1.block.0.0.weight" in state_dict:
        return "mobilenet_v3_small"
    if (shape("features.28.weight") == (512, 512, 3, 3) and "features.30.weight" not in state_dict
            and "features.1.weight" not in state_dict):
        return "vgg16"
    if shape("features.0.weight") == (64, 3, 3, 3) and "features.12.expand3x3.weight" in state_dict:
        return "squeezenet1_1"
    return None


def _groups(state_dict: Mapping[str, torch.Tensor], prefix: str) -> "OrderedDict[str, dict[str, torch.Tensor]]":
    """{module path: {param name: tensor}} for keys under ``prefix``, in state_dict order."""
    groups: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        module, _, param = key[len(prefix):].rpartition(".")
        groups.setdefault(module, {})[param] = value
    return groups


def _decimate_fc(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """fc6 [4096, 512*7*7] / fc7 [4096, 4096] -> conv6 [1024,512,3,3] / conv7 [1024,1024,1,1] (SSD paper)."""
    try:
        w6, b6 = state_dict["classifier.0.weight"], state_dict["classifier.0.bias"]
        w7, b7 = state_dict["classifier.3.weight"], state_dict["classifier.3.bias"]
    except KeyError:
        return None
    if tuple(w6.shape) != (4096, 25088) or tuple(w7.shape) != (4096, 4096):
        return None
    return {
        "31.weight": w6.view(4096, 512, 7, 7)[::4, :, ::3, ::3].contiguous(),
        "31.bias": b6[::4].contiguous(),
        "33.weight": w7.view(4096, 4096, 1, 1)[::4, ::4].contiguous(),
        "33.bias": b7[::4].contiguous(),
    }


# nets whose backbone has no torchvision twin, and what to use instead
_HINTS = {
    "mobilenet_v3_large_upstream": "use --net mb3-large-ssd-lite-tv for torchvision's MobileNetV3-Large",
    "mobilenet_v3_small_upstream": "use --net mb3-small-ssd-lite-tv for torchvision's MobileNetV3-Small",
    "mobilenet_v1": "torchvision has no MobileNetV1; use upstream's mobilenet_v1_with_relu_69_5.pth",
}


def map_torchvision_backbone(base_net: nn.Module, arch: str | None, state_dict: Mapping[str, torch.Tensor],
                             source: str = "torchvision weights",
                             net_name: str | None = None) -> dict[str, torch.Tensor]:
    """A full ``base_net`` state_dict taken from torchvision ``state_dict`` (UserError if it does not fit)."""
    src_arch = detect_torchvision_arch(state_dict)
    want = arch if arch in TORCHVISION_ARCHS else None
    if want is None:
        hint = _HINTS.get(arch or "", f"supported backbones: {', '.join(sorted(TORCHVISION_ARCHS))}")
        raise UserError(f"{source}: torchvision ImageNet weights do not fit {net_name or arch}'s backbone; {hint}")
    if src_arch != want:
        raise UserError(f"{source} holds {'torchvision ' + src_arch if src_arch else 'no known torchvision classifier'}"
                        f" weights; this net's backbone needs torchvision {want}")
    target = base_net.state_dict()
    dst = _groups(target, "")
    src = _groups(state_dict, "features.")
    dst_items, src_items = list(dst.items()), list(src.items())
    extra: dict[str, torch.Tensor] = {}
    if arch == "vgg16":  # conv6/conv7 are not in torchvision's features
        dst_items = [(m, p) for m, p in dst_items if m not in ("31", "33")]
        extra = _decimate_fc(state_dict) or {}
    if len(dst_items) != len(src_items):
        raise UserError(f"{source}: torchvision {want} has {len(src_items)} weight groups, "
                        f"the backbone {len(dst_items)}; width multiplier or variant differs")
    mapped: dict[str, torch.Tensor] = {}
    for (dm, dp), (sm, sp) in zip(dst_items, src_items):
        d_shapes = {k: tuple(v.shape) for k, v in dp.items() if k != "num_batches_tracked"}
        s_shapes = {k: tuple(v.shape) for k, v in sp.items() if k != "num_batches_tracked"}
        if d_shapes != s_shapes:
            raise UserError(f"{source}: torchvision features.{sm} {s_shapes} does not fit base_net.{dm} "
                            f"{d_shapes}; width multiplier or variant differs")
        for k in dp:
            prefix = f"{dm}." if dm else ""
            mapped[prefix + k] = sp.get(k, dp[k])
    mapped.update(extra)
    for k, v in target.items():  # keep conv6/conv7 as they are when there is no classifier
        mapped.setdefault(k, v)
    return mapped


def init_from_torchvision(net: nn.Module, torchvision_state_dict: Mapping[str, torch.Tensor],
                          source: str = "torchvision weights") -> int:
    """Load a torchvision ImageNet classifier state_dict into ``net.base_net``.

    The rest of the net (extras, heads, add-ons) is Xavier-initialised, as upstream's
    ``init_from_base_net``. Returns the number of tensors taken from the file.
    """
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in torchvision_state_dict.items()}
    mapped = map_torchvision_backbone(net.base_net, getattr(net, "arch", None), sd, source,
                                      getattr(net, "net_name", None))
    net.base_net.load_state_dict(mapped, strict=True)
    for part in (net.source_layer_add_ons, net.extras, net.classification_headers, net.regression_headers):
        part.apply(xavier_init_)
    n = sum(1 for k in mapped if not k.endswith("num_batches_tracked"))
    log.info("loaded %d backbone tensors from %s (torchvision %s) into %s", n, source,
             net.arch, getattr(net, "net_name", None) or "net")
    return n
