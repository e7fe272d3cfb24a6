"""Nets: shapes, prior counts and order, upstream state_dict compatibility, registry.

Snapshots (tests/snapshots/<net>.json) hold every state_dict key and shape at 21
classes. They were generated once with ``python tests/test_nets.py --write-snapshots``
after checking our nets against a transcription of upstream qfgaohao/pytorch-ssd
(same keys in the same order, same shapes, bit-identical outputs for the same
weights); regenerate only when a net is meant to change.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from vision.ssd import registry
from vision.ssd.ssd import SSD
from vision.utils.misc import UserError

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
SNAPSHOT_CLASSES = 21
FAST_NETS = [n for n in registry.CANONICAL_NAMES if n != "vgg16-ssd"]

# Key counts of upstream's nets at any class count (checked against upstream's code).
UPSTREAM_KEY_COUNTS = {"vgg16-ssd": 75, "mb1-ssd": 202, "mb1-ssd-lite": 230, "mb2-ssd-lite": 478,
                       "sq-ssd-lite": 124, "mb3-large-ssd-lite": 556, "mb3-small-ssd-lite": 490}


def skeleton(name: str, num_classes: int = SNAPSHOT_CLASSES, **kw) -> SSD:
    """The net on the meta device: real shapes and keys, no weights (instant, even for VGG)."""
    with torch.device("meta"):
        return registry.create_net(name, num_classes, **kw)


def key_shapes(net: nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in net.state_dict().items()]


def write_snapshots() -> None:
    SNAPSHOTS.mkdir(exist_ok=True)
    for name in registry.CANONICAL_NAMES:
        rows = ",\n".join(f"  {json.dumps(entry)}" for entry in key_shapes(skeleton(name)))
        text = (f'{{"net": {json.dumps(name)}, "num_classes": {SNAPSHOT_CLASSES}, "state_dict": [\n'
                f"{rows}\n]}}\n")
        json.loads(text)
        (SNAPSHOTS / f"{name}.json").write_text(text)


# ------------------------------------------------------------------ registry
def test_registry_names_and_alias():
    assert set(registry.CANONICAL_NAMES) >= set(UPSTREAM_KEY_COUNTS)
    assert "ssd-mobilenet" in registry.NET_NAMES
    assert registry.canonical_name("ssd-mobilenet") == "mb1-ssd"
    assert registry.canonical_name("MB2-SSD-LITE") == "mb2-ssd-lite"
    net = registry.create_net("ssd-mobilenet", 3)
    assert net.net_name == "mb1-ssd"


def test_unknown_net_lists_valid_names():
    with pytest.raises(UserError) as e:
        registry.create_net("mb9-ssd", 3)
    msg = str(e.value)
    assert "mb9-ssd" in msg and "mb1-ssd" in msg and "vgg16-ssd" in msg and "\n" not in msg


@pytest.mark.parametrize("kwargs, words", [
    ({"num_classes": 1}, "2 classes"),
    ({"num_classes": 3, "width_mult": 0.5, "name": "mb1-ssd"}, "mb2-ssd-lite"),
    ({"num_classes": 3, "resolution": 0}, "resolution"),
    ({"num_classes": 3, "resolution": 40, "name": "vgg16-ssd"}, "too small"),
])
def test_bad_arguments_are_user_errors(kwargs, words):
    name = kwargs.pop("name", "mb2-ssd-lite")
    with pytest.raises(UserError, match=words):
        registry.create_net(name, **kwargs)


# ------------------------------------------------------------------ shapes
EXPECTED_PRIORS_300 = {"mb1-ssd": 3000, "mb1-ssd-lite": 3000, "mb2-ssd-lite": 3000, "sq-ssd-lite": 2568,
                       "sq-ssd-lite-tv": 2778, "mb3-large-ssd-lite": 3000, "mb3-small-ssd-lite": 3000,
                       "vgg16-ssd": 8732}


@pytest.mark.parametrize("name", FAST_NETS)
def test_forward_shapes_at_300(name):
    net = registry.create_net(name, 5)
    assert net.priors.shape == (net.config.num_priors, 4)
    if name in EXPECTED_PRIORS_300:
        assert net.config.num_priors == EXPECTED_PRIORS_300[name]
    with torch.no_grad():
        conf, loc = net.eval()(torch.randn(1, 3, 300, 300))
    assert conf.shape == (1, net.config.num_priors, 5)
    assert loc.shape == (1, net.config.num_priors, 4)
    assert torch.isfinite(conf).all() and torch.isfinite(loc).all()


def test_vgg16_ssd_forward_is_test():
    net = registry.create_net("vgg16-ssd", 4, is_test=True).eval()
    assert registry.feature_map_sizes("vgg16-ssd") == [38, 19, 10, 5, 3, 1]
    with torch.no_grad():
        scores, boxes = net(torch.randn(1, 3, 300, 300) * 50)
    assert scores.shape == (1, 8732, 4) and boxes.shape == (1, 8732, 4)
    _check_test_outputs(scores, boxes)


def _check_test_outputs(scores, boxes):
    assert torch.allclose(scores.sum(-1), torch.ones(scores.shape[:2]), atol=1e-5)
    assert (scores >= 0).all()
    assert torch.isfinite(boxes).all()
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()


def test_training_mode_forward_batch():
    net = registry.create_net("mb2-ssd-lite", 4)  # BN uses batch statistics; extras see 1x1 maps
    conf, loc = net(torch.randn(2, 3, 300, 300))
    assert conf.shape == (2, 3000, 4) and loc.shape == (2, 3000, 4)
    (conf.sum() + loc.sum()).backward()
    assert net.base_net[0][0].weight.grad is not None


@pytest.mark.parametrize("name", ["mb2-ssd-lite", "mb3-small-ssd-lite"])
def test_is_test_outputs(name):
    net = registry.create_net(name, 3, is_test=True).eval()
    with torch.no_grad():
        scores, boxes = net(torch.randn(1, 3, 300, 300))
    _check_test_outputs(scores, boxes)


def test_zero_offsets_decode_to_the_priors():
    net = registry.create_net("mb1-ssd", 3, is_test=True).eval()
    for head in net.regression_headers:
        last = [m for m in head.modules() if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    with torch.no_grad():
        _, boxes = net(torch.randn(1, 3, 300, 300))
    p = net.priors
    corners = torch.cat([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], 1)
    assert torch.allclose(boxes[0], corners, atol=1e-6)


@pytest.mark.parametrize("name, sizes, priors", [
    ("mb1-ssd", [32, 16, 8, 4, 2, 1], 8190),
    ("mb2-ssd-lite", [32, 16, 8, 4, 2, 1], 8190),
    ("vgg16-ssd", [64, 32, 16, 8, 6, 4], None),
])
def test_512_px(name, sizes, priors):
    assert registry.feature_map_sizes(name, 512) == sizes
    cfg = registry.get_config(name, 512)
    assert cfg.image_size == 512
    if priors is not None:
        assert cfg.num_priors == priors
    net = skeleton(name, 4, resolution=512)  # shapes only for VGG
    assert net.num_outputs(512) == cfg.num_priors == net.priors.shape[0]
    if name != "vgg16-ssd":
        real = registry.create_net(name, 4, resolution=512, is_test=True).eval()
        with torch.no_grad():
            scores, boxes = real(torch.randn(1, 3, 512, 512))
        assert scores.shape == (1, cfg.num_priors, 4)
        _check_test_outputs(scores, boxes)


def test_other_resolution_and_wrong_input_size():
    net = registry.create_net("mb2-ssd-lite", 3, resolution=320, is_test=True).eval()
    assert registry.feature_map_sizes("mb2-ssd-lite", 320) == [20, 10, 5, 3, 2, 1]
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 320, 320))[0].shape == (1, net.config.num_priors, 3)
        with pytest.raises(UserError, match="320 px"):
            net(torch.zeros(1, 3, 300, 300))


class _CoordHead(nn.Module):
    """Regression head stand-in whose output at (anchor a, y, x) is (x, y, a, head)."""

    def __init__(self, boxes: int, head: int):
        super().__init__()
        self.boxes, self.head = boxes, head

    def forward(self, x):
        b, _, h, w = x.shape
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        out = []
        for a in range(self.boxes):
            out += [xs, ys, torch.full_like(xs, a), torch.full_like(xs, self.head)]
        return torch.stack(out).float().unsqueeze(0).expand(b, -1, -1, -1)


@pytest.mark.parametrize("name", ["mb1-ssd", "mb2-ssd-lite", "sq-ssd-lite", "sq-ssd-lite-tv", "vgg16-ssd"])
def test_output_order_matches_priors(name):
    """Row n of the output comes from the cell and anchor that prior n was generated for."""
    net = skeleton(name, 3)
    cfg = net.config
    boxes = [s.box_sizes for s in cfg.specs]
    ratios = [len(s.aspect_ratios) for s in cfg.specs]
    net.regression_headers = nn.ModuleList(_CoordHead(2 + 2 * r, i) for i, r in enumerate(ratios))
    net.classification_headers = nn.ModuleList(_ZeroHead(2 + 2 * r, 3) for r in ratios)
    net.to_empty(device="cpu").eval()  # real (uninitialised) weights: only the head stand-ins matter
    net.priors = cfg.priors
    with torch.no_grad():
        _, loc = net(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
    loc = loc[0]
    assert loc.shape[0] == cfg.priors.shape[0]
    heads = loc[:, 3].long()
    assert (heads[1:] >= heads[:-1]).all()  # heads in source order
    for i, spec in enumerate(cfg.specs):
        rows = loc[heads == i]
        pri = cfg.priors[heads == i]
        scale = cfg.image_size / spec.shrinkage
        # priors are clamped to [0, 1] (upstream), so the last centers may sit on 1.0
        assert torch.allclose(pri[:, 0], ((rows[:, 0] + 0.5) / scale).clamp(0, 1), atol=1e-5)
        assert torch.allclose(pri[:, 1], ((rows[:, 1] + 0.5) / scale).clamp(0, 1), atol=1e-5)
        # anchor order inside a cell: small square, big square, then the aspect-ratio boxes
        first = rows[:, 2] == 0
        second = rows[:, 2] == 1
        side = boxes[i].min / cfg.image_size
        assert torch.allclose(pri[first, 2], torch.full_like(pri[first, 2], min(side, 1.0)), atol=1e-5)
        big = math.sqrt(boxes[i].min * boxes[i].max) / cfg.image_size
        assert torch.allclose(pri[second, 2], torch.full_like(pri[second, 2], min(big, 1.0)), atol=1e-5)


class _ZeroHead(nn.Module):
    def __init__(self, boxes: int, num_classes: int):
        super().__init__()
        self.channels = boxes * num_classes

    def forward(self, x):
        return x.new_zeros(x.shape[0], self.channels, x.shape[2], x.shape[3])


# ------------------------------------------------------- state_dict compat
@pytest.mark.parametrize("name", registry.CANONICAL_NAMES)
def test_state_dict_snapshot(name):
    path = SNAPSHOTS / f"{name}.json"
    assert path.is_file(), f"missing {path}; run python tests/test_nets.py --write-snapshots"
    expected = json.loads(path.read_text())
    assert expected["num_classes"] == SNAPSHOT_CLASSES
    assert key_shapes(skeleton(name)) == expected["state_dict"]
    if name in UPSTREAM_KEY_COUNTS:
        assert len(expected["state_dict"]) == UPSTREAM_KEY_COUNTS[name]


# (net, key, shape at 21 classes) read off upstream's module definitions
UPSTREAM_KEYS = [
    ("mb1-ssd", "base_net.0.0.weight", [32, 3, 3, 3]),
    ("mb1-ssd", "base_net.13.3.weight", [1024, 1024, 1, 1]),
    ("mb1-ssd", "extras.0.0.weight", [256, 1024, 1, 1]),
    ("mb1-ssd", "extras.3.2.weight", [256, 128, 3, 3]),
    ("mb1-ssd", "classification_headers.0.weight", [126, 512, 3, 3]),
    ("mb1-ssd", "regression_headers.5.weight", [24, 256, 3, 3]),
    ("mb1-ssd-lite", "extras.0.2.0.weight", [256, 1, 3, 3]),
    ("mb1-ssd-lite", "classification_headers.0.2.weight", [126, 512, 1, 1]),
    ("mb1-ssd-lite", "regression_headers.5.weight", [24, 256, 1, 1]),
    ("mb2-ssd-lite", "base_net.14.conv.0.weight", [576, 96, 1, 1]),
    ("mb2-ssd-lite", "base_net.18.0.weight", [1280, 320, 1, 1]),
    ("mb2-ssd-lite", "extras.0.conv.0.weight", [256, 1280, 1, 1]),
    ("mb2-ssd-lite", "classification_headers.0.0.weight", [576, 1, 3, 3]),
    ("mb2-ssd-lite", "classification_headers.0.1.running_var", [576]),
    ("mb2-ssd-lite", "classification_headers.0.3.weight", [126, 576, 1, 1]),
    ("mb2-ssd-lite", "regression_headers.5.weight", [24, 64, 1, 1]),
    ("vgg16-ssd", "base_net.28.weight", [512, 512, 3, 3]),
    ("vgg16-ssd", "base_net.31.weight", [1024, 512, 3, 3]),
    ("vgg16-ssd", "base_net.33.weight", [1024, 1024, 1, 1]),
    ("vgg16-ssd", "source_layer_add_ons.0.weight", [512]),
    ("vgg16-ssd", "classification_headers.0.weight", [84, 512, 3, 3]),
    ("vgg16-ssd", "regression_headers.1.weight", [24, 1024, 3, 3]),
    ("sq-ssd-lite", "base_net.12.expand3x3.weight", [256, 64, 3, 3]),
    ("sq-ssd-lite", "extras.0.2.0.weight", [256, 1, 3, 3]),
    ("mb3-large-ssd-lite", "base_net.3.conv1.weight", [16, 16, 1, 1]),
    ("mb3-large-ssd-lite", "base_net.6.se.se.1.weight", [10, 40, 1, 1]),
    ("mb3-large-ssd-lite", "base_net.18.weight", [960, 160, 1, 1]),
    ("mb3-large-ssd-lite", "extras.0.conv1.weight", [256, 960, 1, 1]),
    ("mb3-large-ssd-lite", "classification_headers.0.0.weight", [112, 1, 3, 3]),
    ("mb3-small-ssd-lite", "base_net.3.se.se.1.weight", [4, 16, 1, 1]),
    ("mb3-small-ssd-lite", "classification_headers.0.0.weight", [48, 1, 3, 3]),
]


@pytest.mark.parametrize("name, key, shape", UPSTREAM_KEYS)
def test_upstream_key_names(name, key, shape):
    sd = skeleton(name).state_dict()
    assert key in sd, f"{key} missing from {name}"
    assert list(sd[key].shape) == shape


def test_no_add_on_or_prior_keys():
    assert not any(k.startswith("source_layer_add_ons") for k in skeleton("mb2-ssd-lite").state_dict())
    for name in ("mb1-ssd", "vgg16-ssd"):
        assert not any("priors" in k for k in skeleton(name).state_dict())


@pytest.mark.parametrize("name", ["mb1-ssd-lite", "mb2-ssd-lite"])
def test_save_load_round_trip(tmp_path, name):
    a = registry.create_net(name, 4, resolution=160, is_test=True).eval()  # weights do not depend on it
    with torch.no_grad():  # non-trivial BN statistics, so a missed buffer would show
        for m in a.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "net.pth"
    a.save(path)
    b = registry.create_net(name, 4, resolution=160, is_test=True).eval()
    b.load(path)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        sa, ba = a(x)
        sb, bb = b(x)
    assert torch.equal(sa, sb) and torch.equal(ba, bb)
    assert torch.load(path, weights_only=True).keys() == a.state_dict().keys()


def test_priors_buffer_follows_the_module():
    net = registry.create_net("mb1-ssd-lite", 3)
    assert "priors" not in net.state_dict()
    net = net.double()
    assert net.priors.dtype == torch.float64
    assert net.priors.shape == (3000, 4)


# ------------------------------------------------------------- variants
def test_squeezenet_layouts():
    """sq-ssd-lite is upstream's (floor pools: 17x17 first map at 300 px, 2568 rows out), sq-ssd-lite-tv
    torchvision's (ceil pools: 18x18, its backbone computes torchvision's features); same keys, same weights."""
    import torchvision

    assert registry.feature_map_sizes("sq-ssd-lite") == [17, 10, 5, 3, 2, 1]
    assert registry.feature_map_sizes("sq-ssd-lite-tv") == [18, 10, 5, 3, 2, 1]
    assert key_shapes(skeleton("sq-ssd-lite")) == key_shapes(skeleton("sq-ssd-lite-tv"))
    from vision.ssd.config import squeezenet_ssd_config, squeezenet_tv_ssd_config

    assert squeezenet_ssd_config.priors.shape == (2568, 4)  # upstream's import path: matches the net
    assert squeezenet_tv_ssd_config.priors.shape == (2778, 4)
    torch.manual_seed(0)
    up, tv = registry.create_net("sq-ssd-lite", 3).eval(), registry.create_net("sq-ssd-lite-tv", 3).eval()
    tv.load_state_dict(up.state_dict())
    reference = torchvision.models.squeezenet1_1(weights=None).eval()
    reference.features.load_state_dict(tv.base_net.state_dict())
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        assert torch.equal(tv.base_net(x), reference.features(x))
        assert up.base_net[:12](x).shape[-2:] == (17, 17)
        assert up(x)[0].shape == (1, 2568, 3) and tv(x)[0].shape == (1, 2778, 3)


def test_mb2_flags():
    relu = registry.create_net("mb2-ssd-lite", 3)
    onnx = __import__("vision.ssd.mobilenet_v2_ssd_lite", fromlist=["x"]).create_mobilenetv2_ssd_lite(
        3, onnx_compatible=True)
    assert key_shapes(relu) == key_shapes(onnx)
    assert not any(isinstance(m, nn.ReLU6) for m in onnx.base_net.modules())
    assert any(isinstance(m, nn.ReLU6) for m in relu.base_net.modules())
    # without BN the stride-16 tap still reads the 19x19 expanded tensor
    from vision.ssd.mobilenet_v2_ssd_lite import create_mobilenetv2_ssd_lite
    nobn = create_mobilenetv2_ssd_lite(3, use_batch_norm=False, image_size=None)
    assert nobn.feature_map_sizes(300) == [19, 10, 5, 3, 2, 1]
    half = skeleton("mb2-ssd-lite", 3, width_mult=0.5)
    assert half.state_dict()["classification_headers.0.0.weight"].shape[0] == 288


def test_upstream_factory_signatures():
    from vision.ssd import (mobilenet_v2_ssd_lite, mobilenetv1_ssd, mobilenetv1_ssd_lite,
                            mobilenetv3_ssd_lite, squeezenet_ssd_lite, vgg_ssd)

    with torch.device("meta"):
        nets = [vgg_ssd.create_vgg_ssd(3, is_test=True), mobilenetv1_ssd.create_mobilenetv1_ssd(3),
                mobilenetv1_ssd_lite.create_mobilenetv1_ssd_lite(3),
                mobilenet_v2_ssd_lite.create_mobilenetv2_ssd_lite(3, 1.0, True, False, True),
                squeezenet_ssd_lite.create_squeezenet_ssd_lite(3),
                squeezenet_ssd_lite.create_squeezenet_ssd_lite_tv(3),
                mobilenetv3_ssd_lite.create_mobilenetv3_large_ssd_lite(3),
                mobilenetv3_ssd_lite.create_mobilenetv3_small_ssd_lite(3)]
    for net in nets:
        assert isinstance(net, SSD) and net.config is not None and net.config.image_size == 300
    for mod, fn in [(vgg_ssd, "create_vgg_ssd_predictor"), (mobilenetv1_ssd, "create_mobilenetv1_ssd_predictor"),
                    (mobilenetv1_ssd_lite, "create_mobilenetv1_ssd_lite_predictor"),
                    (mobilenet_v2_ssd_lite, "create_mobilenetv2_ssd_lite_predictor"),
                    (squeezenet_ssd_lite, "create_squeezenet_ssd_lite_predictor"),
                    (mobilenetv3_ssd_lite, "create_mobilenetv3_ssd_lite_predictor")]:
        assert callable(getattr(mod, fn))


def test_create_predictor_uses_the_net_config():
    import numpy as np

    net = registry.create_net("mb1-ssd-lite", 3, resolution=320, is_test=True).eval()
    predictor = registry.create_predictor(net, candidate_size=50, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (240, 200, 3), dtype=np.uint8)
    boxes, labels, probs = predictor.predict(image, top_k=10, prob_threshold=0.0)
    assert boxes.shape[1:] == (4,) and len(labels) == len(probs) <= 10
    assert predictor.size == 320 and predictor.iou_threshold == net.config.iou_threshold


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-snapshots"]:
        write_snapshots()
        print(f"wrote {len(registry.CANONICAL_NAMES)} snapshots to {SNAPSHOTS}")
    else:
        print("usage: python tests/test_nets.py --write-snapshots")
