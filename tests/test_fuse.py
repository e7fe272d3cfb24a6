"""vision.ssd.fuse.fold_batch_norm: same outputs (1e-4), no BatchNorm left where one can fold,
the SSD's taps and the original net untouched."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vision.ssd import registry
from vision.ssd.fuse import count_batch_norms, fold_batch_norm


def _randomize_bn(net: nn.Module, seed: int = 0) -> None:
    """Non-trivial statistics, or folding would be close to a no-op and prove nothing."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


# (net, resolution, is_test, BatchNorms left after folding); small inputs keep the test fast.
# vgg16-ssd's only BN normalizes conv4_3 after a ReLU: nothing to fold it into.
# mb3-large-ssd-lite's blocks call bn1(conv1(x)) in forward: the fx path.
CASES = [("mb1-ssd", 160, True, 0), ("mb2-ssd-lite", 160, True, 0), ("mb2-ssd-lite", 160, False, 0),
         ("mb3-large-ssd-lite", 160, True, 0), ("mb3-small-ssd-lite-tv", 160, True, 0),
         ("vgg16-ssd", 300, True, 1)]


@pytest.mark.parametrize("name,size,is_test,left", CASES)
def test_folded_net_matches(name: str, size: int, is_test: bool, left: int) -> None:
    torch.manual_seed(0)
    net = registry.create_net(name, 5, resolution=size, is_test=is_test).eval()
    _randomize_bn(net)
    before = count_batch_norms(net)
    folded = fold_batch_norm(net)
    assert count_batch_norms(folded) == left
    assert count_batch_norms(net) == before, "the input net must not be modified"
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        a, b = net(x), folded(x)
    for u, v in zip(a, b):
        assert u.shape == v.shape
        assert torch.allclose(u, v, atol=1e-4, rtol=0), float((u - v).abs().max())


def test_folded_copy_is_independent() -> None:
    net = registry.create_net("mb1-ssd", 3, resolution=160, is_test=True).train()
    folded = fold_batch_norm(net)
    assert net.training and not folded.training
    with torch.no_grad():
        next(folded.parameters()).add_(1.0)
    assert not torch.equal(next(net.parameters()), next(folded.parameters()))


class _Tapped(nn.Module):
    """SSD-like: a tap (source index 1) reads the conv output before its BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.base_net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1),
                                      nn.BatchNorm2d(4))
        self.source_layer_indexes = [1]


def test_tap_between_conv_and_bn_is_not_folded() -> None:
    net = _Tapped().eval()
    folded = fold_batch_norm(net)
    assert isinstance(folded.base_net[1], nn.BatchNorm2d)  # the tapped conv output must survive
    assert isinstance(folded.base_net[4], nn.Identity)  # the untapped pair folds


class _Reused(nn.Module):
    """The conv output feeds the BN and a second branch: folding would change the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent: fx cannot trace this
            return self.bn(self.conv(x))
        return self.bn(self.conv(-x))


@pytest.mark.parametrize("cls", [_Reused, _Untraceable])
def test_unsafe_pairs_are_left_alone(cls) -> None:
    net = cls().eval()
    _randomize_bn(net)
    folded = fold_batch_norm(net)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(x), folded(x), atol=1e-6)


@pytest.mark.parametrize("factory", ["create_predictor", "create_mobilenetv1_ssd_predictor"])
def test_default_predictor_runs_a_folded_copy_with_the_same_detections(factory: str) -> None:
    """Every predictor factory (ours and upstream's create_*_predictor) folds by default: the same
    detections as the unfused net within 1e-4, and the caller's net is left exactly as it was."""
    import numpy as np

    from vision.ssd import mobilenetv1_ssd
    from vision.ssd.predictor import create_predictor

    torch.manual_seed(0)
    net = registry.create_net("mb1-ssd", 5, resolution=160, is_test=True)
    _randomize_bn(net)
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    make = create_predictor if factory == "create_predictor" else mobilenetv1_ssd.create_mobilenetv1_ssd_predictor
    folded = make(net)
    assert folded.net is not net and count_batch_norms(folded.net) == 0
    assert net.training and count_batch_norms(net) > 0  # not put in eval mode, not folded in place
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    plain = create_predictor(net, optimize=False)
    assert plain.net is net
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        for a, b in zip(folded.run(x), plain.run(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    image = (np.random.default_rng(0).random((120, 90, 3)) * 255).astype(np.uint8)
    for a, b in zip(folded.predict(image, prob_threshold=0.0), plain.predict(image, prob_threshold=0.0)):
        torch.testing.assert_close(a.float(), b.float(), atol=1e-3, rtol=1e-4)


# one net per family (mb1, mb1-lite, mb2-lite, SqueezeNet, mb3, torchvision mb3, VGG) at small inputs
FAMILIES = [("mb1-ssd", 160), ("mb1-ssd-lite", 160), ("mb2-ssd-lite", 160), ("sq-ssd-lite", 160),
            ("mb3-large-ssd-lite", 160), ("mb3-small-ssd-lite-tv", 160), ("vgg16-ssd", 300)]


@pytest.mark.parametrize("name,size", FAMILIES)
def test_default_predictor_is_folded_channels_last_on_cpu_and_matches(name: str, size: int) -> None:
    """What every user-facing path runs (create_predictor's default): on the CPU the net is folded
    and its convolution weights are channels_last, and its outputs equal the unfused net's (1e-4)."""
    from vision.ssd.predictor import create_predictor

    torch.manual_seed(0)
    net = registry.create_net(name, 5, resolution=size, is_test=True).eval()
    _randomize_bn(net)
    fast, plain = create_predictor(net, device="cpu"), create_predictor(net, optimize=False, device="cpu")
    assert count_batch_norms(fast.net) == (1 if name == "vgg16-ssd" else 0)
    weights = [m.weight for m in fast.net.modules() if isinstance(m, nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert any(not w.is_contiguous() for w in weights)  # really NHWC, not only 1x1 shapes that are both
    x = torch.randn(1, 3, size, size)
    expected = plain.run(x)
    for call in range(3):  # 1st: the folded copy; 2nd: traced (and checked); 3rd: the traced module alone
        for a, b in zip(fast.run(x), expected):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        assert len(fast._net._traced) == (0 if call == 0 else 1), (name, call)


def test_traced_predictor_follows_weights_shapes_and_falls_back(monkeypatch) -> None:
    """The TorchScript path (CPU, from an input shape's second call): one traced module per input
    shape; remade when the net's weights change; a trace that fails leaves the folded copy running."""
    from vision.ssd import predictor as predictor_module

    torch.manual_seed(0)
    net = registry.create_net("mb1-ssd-lite", 5, resolution=128, is_test=True).eval()
    fast = predictor_module.create_predictor(net, device="cpu")
    plain = predictor_module.create_predictor(net, optimize=False, device="cpu")
    x1, x2 = torch.randn(1, 3, 128, 128), torch.randn(2, 3, 128, 128)
    for x in (x1, x1, x2, x2, x1, x2):
        for a, b in zip(fast.run(x), plain.run(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert len(fast._net._traced) == 2
    with torch.no_grad():  # an optimizer-like in-place step: the traced modules hold the old weights
        for p in net.parameters():
            p.mul_(1.1)
    for x in (x1, x1, x1):
        for a, b in zip(fast.run(x), plain.run(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert len(fast._net._traced) == 1

    def broken_trace(*args, **kwargs):
        raise RuntimeError("tracer unavailable")

    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    other = predictor_module.create_predictor(net, device="cpu")
    for _ in range(3):
        for a, b in zip(other.run(x1), plain.run(x1)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert other._net._traced == {} and other._net.script is False


def test_traced_predictor_that_disagrees_is_not_used(monkeypatch) -> None:
    """A traced module whose outputs differ from the folded copy is never used (checked once)."""
    from vision.ssd import predictor as predictor_module

    net = registry.create_net("mb1-ssd-lite", 5, resolution=128, is_test=True).eval()
    real_freeze = torch.jit.freeze

    def wrong_freeze(module, *args, **kwargs):  # a frozen module whose scores are off by 0.01
        frozen = real_freeze(module, *args, **kwargs)

        class Off(torch.nn.Module):
            def forward(self, x):
                s, b = frozen(x)
                return s + 0.01, b
        return torch.jit.script(Off())

    monkeypatch.setattr(torch.jit, "freeze", wrong_freeze)
    monkeypatch.setattr(torch.jit, "optimize_for_inference", lambda m: m)
    fast = predictor_module.create_predictor(net, device="cpu")
    plain = predictor_module.create_predictor(net, optimize=False, device="cpu")
    x = torch.randn(1, 3, 128, 128)
    for _ in range(3):
        for a, b in zip(fast.run(x), plain.run(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert fast._net._traced == {} and fast._net.script is False


def test_default_predictor_on_cuda_folds_without_channels_last() -> None:
    """On CUDA the factory folds but keeps NCHW weights (channels_last is measured faster only on
    the CPU); checked without a GPU: the inference copy is made lazily, so what it will be is known."""
    from vision.ssd import predictor as predictor_module

    net = registry.create_net("mb1-ssd", 5, resolution=160, is_test=True)
    out = predictor_module.create_predictor(net, device="cuda")
    copy = out._net
    assert isinstance(copy, predictor_module.InferenceCopy), type(copy)
    assert copy.channels_last is False and copy.device == torch.device("cuda")
    cpu = predictor_module.create_predictor(net, device="cpu")
    copy = cpu._net
    assert copy.channels_last is True and count_batch_norms(cpu.net) == 0


def test_predictor_follows_weights_loaded_after_it_was_made(tmp_path) -> None:
    """Upstream code may make the predictor first and ``net.load()`` afterwards (or keep one
    predictor across training steps): the folded copy must follow the net's current weights,
    not the ones it had when the predictor was made."""
    from vision.ssd.predictor import create_predictor

    torch.manual_seed(0)
    trained = registry.create_net("mb1-ssd", 5, resolution=160, is_test=True)
    _randomize_bn(trained, seed=1)
    trained.save(tmp_path / "trained.pth")
    net = registry.create_net("mb1-ssd", 5, resolution=160, is_test=True)
    predictor = create_predictor(net)
    x = torch.randn(1, 3, 160, 160)
    before = predictor.run(x)[0]
    net.load(tmp_path / "trained.pth")
    expected = create_predictor(trained, optimize=False).run(x)[0]
    after = predictor.run(x)[0]
    assert not torch.allclose(before, expected, atol=1e-3)
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-4)
    copy = predictor.net
    assert predictor.net is copy  # unchanged weights: the copy is reused, not remade per call
    with torch.no_grad():
        next(net.parameters()).add_(1.0)  # an in-place update, as an optimizer step does
    assert predictor.net is not copy


def test_predict_takes_grayscale_and_rgba_as_rgb() -> None:
    """PIL-loaded PNGs come as HxW or HxWx4: the same detections as the RGB image they show."""
    import numpy as np

    from vision.ssd.predictor import create_predictor

    torch.manual_seed(0)
    predictor = create_predictor(registry.create_net("mb1-ssd", 3, resolution=160, is_test=True))
    gray = (np.random.default_rng(0).random((90, 120)) * 255).astype(np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = predictor.predict(rgb, 5, 0.0)
    rgba = np.dstack([rgb, np.full_like(gray, 7)])
    for image in (gray, gray[:, :, None], rgba):  # calls from the 2nd on run the traced copy: float rounding
        boxes, labels, probs = predictor.predict(image, 5, 0.0)
        assert torch.equal(labels, expected[1])
        torch.testing.assert_close(probs, expected[2], atol=1e-5, rtol=0)
        torch.testing.assert_close(boxes, expected[0], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="RGB uint8"):
        predictor.predict(np.zeros((9, 9, 2), np.uint8))


def test_upstream_predictor_factories_default_to_the_gpu(monkeypatch) -> None:
    """Upstream's Predictor runs on cuda:0 when there is one, whatever device the net is on;
    ours (create_predictor) stays on the net's device. The copy is made lazily, so no GPU is
    needed to check which device each chose."""
    from vision.ssd import mobilenetv1_ssd
    from vision.ssd.predictor import create_predictor

    net = registry.create_net("mb1-ssd", 3, resolution=160, is_test=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mobilenetv1_ssd.create_mobilenetv1_ssd_predictor(net).device == torch.device("cuda:0")
    assert mobilenetv1_ssd.create_mobilenetv1_ssd_predictor(net, device="cpu").device == torch.device("cpu")
    assert create_predictor(net).device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mobilenetv1_ssd.create_mobilenetv1_ssd_predictor(net).device == torch.device("cpu")


def test_predictor_supported_weight_updates_and_data_edits(tmp_path) -> None:
    """The update paths the inference copy follows: ``load_state_dict``, an optimizer step, an
    in-place op under ``no_grad``. An edit through ``.data`` bumps no version counter and is not
    seen (documented in ``InferenceCopy``): a new predictor (or ``optimize=False``) sees it."""
    from vision.ssd.predictor import create_predictor

    torch.manual_seed(0)
    net = registry.create_net("mb1-ssd-lite", 5, resolution=128, is_test=True)
    x = torch.randn(1, 3, 128, 128)
    predictor = create_predictor(net, device="cpu")

    def check_follows() -> None:
        expected = create_predictor(net, optimize=False, device="cpu").run(x)[0]
        torch.testing.assert_close(predictor.run(x)[0], expected, atol=1e-4, rtol=1e-4)

    check_follows()
    other = registry.create_net("mb1-ssd-lite", 5, resolution=128, is_test=True)
    _randomize_bn(other, seed=3)
    net.load_state_dict(other.state_dict())
    check_follows()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    scores, _ = net(x)
    scores.sum().backward()
    opt.step()
    net.eval()
    check_follows()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.9)
    check_follows()
    stale = predictor.run(x)[0]
    for p in net.parameters():
        p.data.mul_(0.7)  # not seen by the stamp: the copy keeps the previous weights
    torch.testing.assert_close(predictor.run(x)[0], stale, atol=1e-5, rtol=0)
    fresh = create_predictor(net, device="cpu").run(x)[0]
    torch.testing.assert_close(fresh, create_predictor(net, optimize=False, device="cpu").run(x)[0],
                               atol=1e-4, rtol=1e-4)
    assert not torch.allclose(fresh, stale, atol=1e-3)


@pytest.mark.parametrize("where", ["built", "loaded"])
def test_predictor_of_a_net_made_under_inference_mode(tmp_path, where) -> None:
    """Inference tensors have no version counter (``t._version`` raises): the predictor of a net
    built or loaded under ``torch.inference_mode()`` still predicts, and follows a later load."""
    import numpy as np

    from vision.ssd.predictor import create_predictor

    torch.manual_seed(0)
    trained = registry.create_net("mb1-ssd-lite", 5, resolution=128, is_test=True)
    _randomize_bn(trained, seed=2)
    trained.save(tmp_path / "t.pth")
    with torch.inference_mode():
        net = registry.create_net("mb1-ssd-lite", 5, resolution=128, is_test=True)
        if where == "loaded":
            net.load(tmp_path / "t.pth")
    if where == "built":
        trained = net
    assert all(p.is_inference() for p in net.parameters())
    predictor = create_predictor(net, device="cpu")
    image = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    boxes, labels, probs = predictor.predict(image, 5, 0.0)
    expected = create_predictor(trained, device="cpu").predict(image, 5, 0.0)
    torch.testing.assert_close(probs, expected[2], atol=1e-4, rtol=0)
    x = torch.randn(1, 3, 128, 128)
    for _ in range(3):  # the traced path too
        torch.testing.assert_close(predictor.run(x)[0], create_predictor(trained, optimize=False).run(x)[0],
                                   atol=1e-4, rtol=1e-4)
