"""Weight files: safe reading, strict fitting with one-line errors, pretrained backbones."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from vision.nn.torchvision_import import _decimate_fc
from vision.ssd import model_io, registry
from vision.utils.misc import UserError

RES = 160  # weights do not depend on the resolution; small inputs keep the tests fast


def net(name: str, num_classes: int = 3, **kw):
    return registry.create_net(name, num_classes, resolution=RES, **kw)


def meta_net(name: str, num_classes: int = 3):
    with torch.device("meta"):
        return registry.create_net(name, num_classes)


def randomize_bn(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return module.eval()


def one_line_user_error(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


@pytest.fixture(scope="module")
def mb2_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "mb2-ssd-lite-21.pth"
    torch.save(net("mb2-ssd-lite", 21).state_dict(), path)
    return path


# ------------------------------------------------------------------ reading
def test_plain_state_dict_and_checkpoint(tmp_path, mb2_file):
    sd, ckpt = model_io.load_state_dict_file(mb2_file)
    assert ckpt is None and "base_net.0.0.weight" in sd
    path = tmp_path / "ckpt.pth"
    torch.save({"model": sd, "epoch": 3, "args": {"net": "mb2-ssd-lite", "resolution": 300,
                                                  "class_names": ["BACKGROUND", "a"]}}, path)
    sd2, ckpt2 = model_io.load_state_dict_file(path)
    assert ckpt2["epoch"] == 3 and ckpt2["args"]["net"] == "mb2-ssd-lite"
    assert list(sd2) == list(sd)


def test_ddp_prefix_is_stripped(tmp_path, mb2_file):
    sd, _ = model_io.load_state_dict_file(mb2_file)
    path = tmp_path / "ddp.pth"
    torch.save(OrderedDict(("module." + k, v) for k, v in sd.items()), path)
    sd2, _ = model_io.load_state_dict_file(path)
    assert list(sd2) == list(sd)
    target = net("mb2-ssd-lite", 21)
    model_io.load_net_weights(target, sd2, "mb2-ssd-lite", str(path))
    assert torch.equal(target.state_dict()["base_net.0.0.weight"], sd["base_net.0.0.weight"])


def test_missing_folder_truncated_and_garbage_files(tmp_path, mb2_file):
    with pytest.raises(UserError) as e:
        model_io.load_state_dict_file(tmp_path / "nope.pth")
    one_line_user_error(e, "nope.pth", "not found")
    with pytest.raises(UserError) as e:
        model_io.load_state_dict_file(tmp_path)
    one_line_user_error(e, str(tmp_path))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(mb2_file.read_bytes()[:5000])
    with pytest.raises(UserError) as e:
        model_io.load_state_dict_file(truncated)
    one_line_user_error(e, "truncated.pth", "truncated")
    for name, data in [("empty.pth", b""), ("text.pth", b"not a model\n" * 20)]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as e:
            model_io.load_state_dict_file(tmp_path / name)
        one_line_user_error(e, name)


class _Payload:
    """Pickles as a call that would create a file if the loader ran it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_unsafe_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": _Payload(marker)}, bad)
    with pytest.raises(UserError) as e:
        model_io.load_state_dict_file(bad)
    one_line_user_error(e, "bad.pth", "refusing")
    assert not marker.exists()
    whole = tmp_path / "whole_model.pth"
    torch.save(nn.Conv2d(1, 1, 1), whole)
    with pytest.raises(UserError) as e:
        model_io.load_state_dict_file(whole)
    one_line_user_error(e, "whole_model.pth", "refusing")


def test_non_weight_contents(tmp_path):
    path = tmp_path / "args.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(UserError) as e:
        model_io.load_state_dict_file(path)
    one_line_user_error(e, "args.pth", "not model weights")


# ------------------------------------------------------------ fitting
def test_other_net_is_a_one_line_error_naming_both(mb2_file):
    sd, ckpt = model_io.load_state_dict_file(mb2_file)
    with pytest.raises(UserError) as e:
        model_io.load_net_weights(net("mb1-ssd", 3), sd, "mb1-ssd", str(mb2_file), checkpoint=ckpt)
    one_line_user_error(e, str(mb2_file), "mb2-ssd-lite", "21 classes", "--net mb1-ssd", "3 classes")


def test_other_class_count_is_a_one_line_error(mb2_file):
    sd, _ = model_io.load_state_dict_file(mb2_file)
    with pytest.raises(UserError) as e:
        model_io.load_net_weights(net("mb2-ssd-lite", 5), sd, "mb2-ssd-lite", str(mb2_file))
    one_line_user_error(e, "mb2-ssd-lite checkpoint with 21 classes", "--net mb2-ssd-lite with 5 classes")


def test_checkpoint_args_name_the_net(tmp_path):
    sd = meta_net("sq-ssd-lite", 4).state_dict()
    with pytest.raises(UserError) as e:
        model_io.load_net_weights(net("mb1-ssd-lite"), sd, "mb1-ssd-lite", "x.pth",
                                  checkpoint={"args": {"net": "sq-ssd-lite"}})
    one_line_user_error(e, "x.pth holds a sq-ssd-lite checkpoint with 4 classes", "mb1-ssd-lite")


def test_old_files_without_bn_counters_load(tmp_path):
    src = randomize_bn(net("mb1-ssd-lite"))
    old = OrderedDict((k, v) for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked"))
    dst = net("mb1-ssd-lite")
    model_io.load_net_weights(dst, old, "mb1-ssd-lite", "old.pth")
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        assert torch.equal(src(x)[0], dst.eval()(x)[0])


@pytest.mark.parametrize("name", registry.CANONICAL_NAMES)
def test_guess_net_name_and_classes(name):
    sd = meta_net(name, 7).state_dict()
    # the two SqueezeNet layouts differ only in pool rounding: weights alone say upstream's
    assert registry.guess_net_name(sd) == ("sq-ssd-lite" if name == "sq-ssd-lite-tv" else name)
    assert model_io.infer_num_classes(sd) == 7


def test_guess_unknown():
    sd = {"fc.weight": torch.zeros(2, 3)}
    assert registry.guess_net_name(sd) is None and model_io.infer_num_classes(sd) is None
    assert "unknown net" in model_io.describe_weights(sd)


def test_init_from_pretrained_ssd_other_class_count(tmp_path, mb2_file, caplog):
    sd, _ = model_io.load_state_dict_file(mb2_file)
    target = net("mb2-ssd-lite", 4)
    heads_before = target.classification_headers[0][0].weight.clone()
    with caplog.at_level("INFO"):
        target.init_from_pretrained_ssd(mb2_file)
    after = target.state_dict()
    for k, v in sd.items():
        if not k.startswith(("classification_headers", "regression_headers")):
            assert torch.equal(after[k], v), k
    assert after["classification_headers.0.3.weight"].shape[0] == 6 * 4
    assert not torch.equal(target.classification_headers[0][0].weight, heads_before)  # re-initialised
    assert "21 classes" in caplog.text and "re-initialised" in caplog.text
    with pytest.raises(UserError) as e:
        net("mb1-ssd").init_from_pretrained_ssd(mb2_file)
    one_line_user_error(e, "mb2-ssd-lite", "mb1-ssd")


# ------------------------------------------------------------ backbones
def test_upstream_backbone_files(tmp_path):
    from vision.nn.mobilenet import MobileNetV1

    classifier = MobileNetV1(1001)  # upstream's backbone file: the classifier's state_dict
    randomize_bn(classifier)
    path = tmp_path / "mobilenet_v1_with_relu_69_5.pth"
    torch.save(classifier.state_dict(), path)
    target = net("mb1-ssd")
    target.init_from_base_net(path)
    key = "13.4.running_var"
    assert torch.equal(target.base_net.state_dict()[key], classifier.model.state_dict()[key])
    bare = tmp_path / "base.pth"  # a base_net.state_dict() file works too
    torch.save(classifier.model.state_dict(), bare)
    net("mb1-ssd-lite").init_from_base_net(bare)
    with pytest.raises(UserError) as e:
        net("mb2-ssd-lite").init_from_base_net(path)
    one_line_user_error(e, "mobilenet_v1_with_relu_69_5.pth", "mb2-ssd-lite")


@pytest.mark.parametrize("name, tv_name, cut", [
    ("mb2-ssd-lite", "mobilenet_v2", None),
    ("sq-ssd-lite-tv", "squeezenet1_1", None),
    ("mb3-large-ssd-lite-tv", "mobilenet_v3_large", None),
    ("mb3-small-ssd-lite-tv", "mobilenet_v3_small", None),
])
def test_init_from_torchvision_gives_torchvision_features(tmp_path, name, tv_name, cut):
    torch.manual_seed(0)
    tv = randomize_bn(getattr(torchvision.models, tv_name)(weights=None))
    path = tmp_path / f"{tv_name}.pth"
    torch.save(tv.state_dict(), path)
    target = net(name).eval()
    target.init_from_base_net(path)  # detects the torchvision layout and maps it
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(target.base_net(x), tv.features(x))


def test_init_from_torchvision_vgg16_features(tmp_path):
    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features  # classifier skipped: 500 MB of fc weights
    sd = OrderedDict(("features." + k, v) for k, v in features.state_dict().items())
    target = registry.create_net("vgg16-ssd", 3).eval()  # VGG needs >= ~260 px for its last extras
    conv6 = target.base_net[31].weight.clone()
    model_io.init_from_torchvision(target, sd)
    assert torch.equal(target.base_net[31].weight, conv6)  # no classifier: conv6 left as it was
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = x
        for layer in target.base_net[:30]:
            ours = layer(ours)
        assert torch.equal(ours, features[:30].eval()(x))  # up to conv5_3 + ReLU


def test_vgg_fc_decimation():
    w6, w7 = torch.empty(4096, 25088), torch.empty(4096, 4096)
    w6.view(4096, 512, 7, 7)[8, 5, 3, 6] = 1.5  # output 8 -> 2, kernel (3, 6) -> (1, 2)
    w7[12, 20] = -2.0  # output 12 -> 3, input 20 -> 5
    out = _decimate_fc({"classifier.0.weight": w6, "classifier.0.bias": torch.arange(4096.0),
                        "classifier.3.weight": w7, "classifier.3.bias": torch.arange(4096.0)})
    assert out["31.weight"].shape == (1024, 512, 3, 3) and out["33.weight"].shape == (1024, 1024, 1, 1)
    assert out["31.weight"][2, 5, 1, 2] == 1.5 and out["33.weight"][3, 5, 0, 0] == -2.0
    assert torch.equal(out["31.bias"], torch.arange(0, 4096, 4).float())


def test_torchvision_weights_that_do_not_fit():
    tv_v3 = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    with pytest.raises(UserError) as e:
        model_io.init_from_torchvision(net("mb3-large-ssd-lite"), tv_v3)
    one_line_user_error(e, "mb3-large-ssd-lite", "mb3-large-ssd-lite-tv")
    with pytest.raises(UserError) as e:
        model_io.init_from_torchvision(net("mb2-ssd-lite"), tv_v3)
    one_line_user_error(e, "mobilenet_v3_large", "mobilenet_v2")
    with pytest.raises(UserError) as e:
        model_io.init_from_torchvision(net("mb2-ssd-lite", width_mult=0.75),
                                       torchvision.models.mobilenet_v2(weights=None).state_dict())
    one_line_user_error(e, "width")


def _old_sq_checkpoint(tmp_path: Path, version: str) -> Path:
    """A checkpoint as train_ssd.py wrote it for sq-ssd-lite before the layout split (same keys)."""
    from vision.training.checkpoint import TrainingCheckpoint

    names = ["BACKGROUND", "a", "b"]
    path = tmp_path / f"sq-{version}.pth"
    TrainingCheckpoint(epoch=1, model=net("sq-ssd-lite-tv").state_dict(), net="sq-ssd-lite", resolution=300,
                       version=version, class_names=names, args={"net": "sq-ssd-lite"}).save(path)
    return path


def test_old_sq_ssd_lite_checkpoint_can_run_as_tv_and_is_flagged(tmp_path, caplog):
    """A sq-ssd-lite trained here before the split has torchvision's layout: README says pass
    --net sq-ssd-lite-tv, which must be accepted (same weights); with no --net the file loads as
    sq-ssd-lite with a warning naming the fix, since its keys cannot tell the layouts apart."""
    from vision.cli.models import read_model_info, resolve_settings

    info = read_model_info(_old_sq_checkpoint(tmp_path, "1.0.0"))
    assert resolve_settings(info, net_name="sq-ssd-lite-tv", label_file=None, resolution=None,
                            width_mult=None)[0] == "sq-ssd-lite-tv"
    caplog.clear()
    assert resolve_settings(info, net_name=None, label_file=None, resolution=None, width_mult=None)[0] == "sq-ssd-lite"
    assert "--net sq-ssd-lite-tv" in caplog.text
    caplog.clear()
    new = read_model_info(_old_sq_checkpoint(tmp_path, "1.1.0"))
    resolve_settings(new, net_name=None, label_file=None, resolution=None, width_mult=None)
    assert "sq-ssd-lite-tv" not in caplog.text
    with pytest.raises(UserError, match="holds a sq-ssd-lite model, but --net is mb1-ssd"):
        resolve_settings(info, net_name="mb1-ssd", label_file=None, resolution=None, width_mult=None)
