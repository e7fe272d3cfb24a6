"""Users of the upstream forks can come over: the names their scripts import, the seed fork's
checkpoints (scheduler pickled as an object), and the seed's ``--profile`` library piece."""
from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vision.utils import box_utils  # noqa: E402
from vision.utils.misc import UserError  # noqa: E402


# ------------------------------------------------------------------ vision.utils.misc
def test_misc_names(tmp_path):
    from vision.utils.misc import Timer, freeze_net_layers, store_labels, str2bool

    assert str2bool("True") is True and str2bool("0") is False
    timer = Timer()
    timer.start("load")
    timer.start()
    assert timer.end("load") >= 0.0 and timer.end() >= 0.0
    with pytest.raises(KeyError, match="load"):
        timer.end("load")  # each start is ended once, as upstream
    path = tmp_path / "models" / "labels.txt"
    store_labels(path, ["BACKGROUND", "cat", " ", "dog"])
    assert path.read_text() == "BACKGROUND\ncat\ndog\n"  # no blank line: detectNet would count it
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    freeze_net_layers(net[0])
    assert [p.requires_grad for p in net.parameters()] == [False, False, True, True]


def test_object_detection_collate():
    from vision.datasets import object_detection_collate
    from vision.datasets.collation import object_detection_collate as direct

    assert object_detection_collate is direct
    batch = [(np.zeros((3, 4, 4), np.float32), np.array([[0, 0, 1, 1]], np.float32), np.array([2])),
             (torch.ones(3, 4, 4), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))]
    images, boxes, labels = object_detection_collate(batch)
    assert images.shape == (2, 3, 4, 4) and [len(b) for b in boxes] == [1, 0] and labels[0].tolist() == [2]
    with pytest.raises(ValueError, match="sample 0 has 1 boxes but 2 labels"):
        object_detection_collate([(np.zeros((3, 2, 2)), np.zeros((1, 4)), np.array([1, 2]))])


# ------------------------------------------------------------------ box_utils_numpy
def test_box_utils_numpy_matches_torch():
    from vision.utils import box_utils_numpy as bn
    from vision.ssd.config import mobilenetv1_ssd_config as cfg

    rng = np.random.default_rng(0)
    priors = bn.generate_ssd_priors(cfg.specs, cfg.image_size)
    assert isinstance(priors, np.ndarray) and priors.shape == (3000, 4)
    assert np.array_equal(priors, cfg.priors.numpy())
    loc = rng.normal(size=(2, 3000, 4)).astype(np.float32)
    boxes = bn.convert_locations_to_boxes(loc, priors, 0.1, 0.2)
    assert isinstance(boxes, np.ndarray) and boxes.shape == (2, 3000, 4)
    assert np.allclose(boxes, box_utils.convert_locations_to_boxes(torch.from_numpy(loc), cfg.priors, 0.1, 0.2))
    assert np.allclose(bn.convert_boxes_to_locations(boxes, priors, 0.1, 0.2), loc, atol=1e-4)
    corners = bn.center_form_to_corner_form(priors)
    assert np.allclose(bn.corner_form_to_center_form(corners), priors, atol=1e-6)
    a = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float64)  # dtype kept
    assert bn.area_of(a[:, :2], a[:, 2:]).dtype == np.float64
    assert np.allclose(bn.iou_of(a[:1], a[1:], eps=0), 1 / 7)
    rows = np.array([[0, 0, 1, 1, 0.9], [0, 0, 1, 0.95, 0.8], [2, 2, 3, 3, 0.7]], np.float32)
    kept = bn.hard_nms(rows, 0.5)
    assert isinstance(kept, np.ndarray) and kept[:, 4].tolist() == pytest.approx([0.9, 0.7])
    assert bn.hard_nms(rows, 0.5, top_k=1).shape == (1, 5)


# ------------------------------------------------------------------ transforms
def _upstream_pipeline(mean, std, size=300):
    from vision.transforms.transforms import (Compose, ConvertFromInts, Expand, PhotometricDistort, RandomMirror,
                                              RandomSampleCrop, Resize, SubtractMeans, ToPercentCoords, ToTensor)

    return Compose([ConvertFromInts(), PhotometricDistort(seed=1), Expand(mean, seed=2), RandomSampleCrop(seed=3),
                    RandomMirror(seed=4), ToPercentCoords(), Resize(size), SubtractMeans(mean),
                    lambda img, boxes=None, labels=None: (img / std, boxes, labels), ToTensor()])


def test_upstream_train_pipeline_keeps_boxes_valid():
    """Upstream's TrainAugmentation, written with its own classes, runs and keeps boxes valid."""
    mean = np.array([127, 127, 127])
    augment = _upstream_pipeline(mean, 128.0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 60, 80], [100, 10, 150, 100], [30, 30, 40, 45]], np.float32)
    labels = np.array([1, 2, 3])
    for _ in range(30):
        img, b, lab = augment(image, boxes, labels)
        assert img.shape == (3, 300, 300) and img.dtype == torch.float32
        assert img.min() >= -127 / 128 - 1e-5 and img.max() <= 128 / 128 + 1e-5  # colours stayed in range
        assert len(b) == len(lab) >= 1 and set(lab.tolist()) <= {1, 2, 3}
        assert (b >= 0).all() and (b <= 1).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert np.array_equal(boxes[0], [10, 20, 60, 80]) and image.dtype == np.uint8  # inputs untouched


def test_geometric_steps_follow_the_pixels():
    from vision.transforms.transforms import Expand, RandomMirror, RandomSampleCrop, ToAbsoluteCoords

    image = np.zeros((50, 80, 3), np.float32)
    image[10:20, 5:25] = 255.0  # one white box, off centre (a mirror moves it)
    box = np.array([[5, 10, 25, 20]], np.float32)
    seen = set()
    for seed in range(12):
        for step in (Expand([0, 0, 0], seed=seed), RandomMirror(seed=seed), RandomSampleCrop(seed=seed)):
            img, b, lab = step(image, box, np.array([1]))
            x0, y0, x1, y1 = np.round(b[0]).astype(int)
            assert img[y0:y1, x0:x1].min() == 255.0 and img.sum() == 255.0 * 3 * (x1 - x0) * (y1 - y0)
            seen.add((type(step).__name__, img.shape != image.shape or not np.array_equal(img, image)))
    assert len(seen) == 6  # each step both acted and left the image alone for some seed
    img, b, _ = ToAbsoluteCoords()(image, np.array([[0.5, 0.5, 1.0, 1.0]]), None)
    assert b.tolist() == [[40, 25, 80, 50]]


def test_photometric_steps():
    from vision.transforms.transforms import (ConvertColor, RandomBrightness, RandomContrast, RandomHue,
                                              RandomLightingNoise, RandomSaturation, SwapChannels, ToCV2Image)

    image = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    hsv, _, _ = ConvertColor("RGB", "HSV")(image)
    assert np.allclose(ConvertColor("HSV", "RGB")(hsv)[0], image, atol=1e-2)
    with pytest.raises(ValueError, match="HSV -> HSV"):
        ConvertColor("HSV", "HSV")
    for step in (RandomBrightness(seed=0), RandomContrast(seed=0), RandomLightingNoise(seed=0)):
        outs = [step(image)[0] for _ in range(8)]
        assert any(not np.array_equal(o, image) for o in outs) and any(np.array_equal(o, image) for o in outs)
    for step in (RandomSaturation(seed=0), RandomHue(seed=0)):
        out = [step(hsv)[0] for _ in range(8)]
        assert all(0 <= o[..., 0].min() and o[..., 0].max() < 360 and o[..., 1].max() <= 1 for o in out)
    assert np.array_equal(SwapChannels((2, 1, 0))(image), image[:, :, ::-1])
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    assert np.array_equal(ToCV2Image()(tensor)[0], image)


# ------------------------------------------------------------------ seed-fork checkpoints
def _seed_checkpoint(path, scheduler: str = "cosine", with_optimizer: bool = True):
    """A checkpoint exactly as kaboom-labs' train_ssd.py saves one (the scheduler object pickled)."""
    from vision.ssd import registry

    torch.manual_seed(0)
    net = registry.create_net("mb1-ssd-lite", 3, resolution=96)
    params = [{"params": net.base_net.parameters(), "lr": 0.001}, {"params": net.extras.parameters()},
              {"params": list(net.regression_headers.parameters()) + list(net.classification_headers.parameters())}]
    optimizer = torch.optim.Adam(params, lr=0.01)
    conf, loc = net(torch.randn(2, 3, 96, 96))
    (conf.sum() + loc.sum()).backward()
    optimizer.step()
    if scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 100, last_epoch=-1)
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[80, 100], gamma=0.1)
    with warnings.catch_warnings():  # the seed stepped the scheduler this way; torch warns about it
        warnings.simplefilter("ignore", UserWarning)
        sched.step()
    ckpt = {"epoch": 4, "weights": net.state_dict(), "scheduler": sched}
    if with_optimizer:
        ckpt["optimizer"] = optimizer.state_dict()
    torch.save(ckpt, path)
    return net, optimizer, sched


def test_seed_checkpoint_loads_weights_optimizer_and_scheduler(tmp_path, caplog):
    from vision.utils.model_io import load_state_dict_file
    from vision.utils.safe_load import load_optimizer_state_if_it_fits

    path = tmp_path / "COMBO_CHECKPOINT_mb1-ssd-lite-Epoch-4-Loss-3.2.pth"
    net, optimizer, sched = _seed_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):  # what torch alone says: why this is needed
        torch.load(path, weights_only=True)
    with caplog.at_level(logging.INFO):
        state_dict, ckpt = load_state_dict_file(path)
    assert state_dict.keys() == net.state_dict().keys()
    assert all(torch.equal(state_dict[k], v) for k, v in net.state_dict().items())
    assert ckpt["epoch"] == 4 and ckpt["scheduler_class"] == "CosineAnnealingLR"
    assert ckpt["scheduler"] == sched.state_dict()  # the scheduler's state, as data
    assert ckpt["optimizer"]["param_groups"] == optimizer.state_dict()["param_groups"]
    log = caplog.text
    assert "seed-fork checkpoint of epoch 4" in log and "weights (230 tensors)" in log
    assert "CosineAnnealingLR" in log and "ignored the Adam object" in log and "code was not run" in log

    from vision.ssd import registry

    fresh = registry.create_net("mb1-ssd-lite", 3, resolution=96)
    fresh.load(path)  # the nets' own loader takes it too
    assert torch.equal(fresh.extras[0][0].weight, net.extras[0][0].weight)
    groups = [{"params": fresh.base_net.parameters(), "lr": 0.001}, {"params": fresh.extras.parameters()},
              {"params": list(fresh.regression_headers.parameters())
               + list(fresh.classification_headers.parameters())}]
    again = torch.optim.Adam(groups, lr=0.01)
    assert load_optimizer_state_if_it_fits(again, ckpt["optimizer"], str(path))
    first = next(iter(optimizer.state.values()))["exp_avg"]
    assert torch.equal(next(iter(again.state.values()))["exp_avg"], first)
    resumed = torch.optim.lr_scheduler.CosineAnnealingLR(again, 100)
    resumed.load_state_dict(ckpt["scheduler"])
    assert resumed.last_epoch == sched.last_epoch and resumed.get_last_lr() == sched.get_last_lr()
    other = torch.optim.SGD(fresh.parameters(), lr=0.1)  # one group, another optimizer: left alone
    with caplog.at_level(logging.WARNING):
        assert not load_optimizer_state_if_it_fits(other, ckpt["optimizer"], str(path))
    assert "ignored the optimizer state" in caplog.text and other.state_dict()["state"] == {}


def test_seed_checkpoint_without_optimizer_entry(tmp_path):
    """Only the scheduler's own optimizer copy holds the optimizer state: it is read as a state_dict."""
    from vision.utils.model_io import safe_torch_load

    path = tmp_path / "seed.pth"
    _, optimizer, sched = _seed_checkpoint(path, scheduler="multistep", with_optimizer=False)
    ckpt = safe_torch_load(path)
    assert ckpt["scheduler_class"] == "MultiStepLR" and dict(ckpt["scheduler"]["milestones"]) == {80: 1, 100: 1}
    expected = optimizer.state_dict()
    assert ckpt["optimizer"]["param_groups"] == expected["param_groups"]
    assert ckpt["optimizer"]["state"].keys() == expected["state"].keys()
    assert torch.equal(ckpt["optimizer"]["state"][0]["exp_avg"], expected["state"][0]["exp_avg"])


def test_seed_checkpoint_is_not_a_resumable_checkpoint_of_ours(tmp_path):
    from vision.training.checkpoint import load_checkpoint

    path = tmp_path / "seed.pth"
    _seed_checkpoint(path)
    with pytest.raises(UserError, match="--pretrained-ssd"):
        load_checkpoint(path)


class _Touch:
    """Pickles as a call of os.system: what a hostile checkpoint would hold."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


class _Whatever:
    pass


@pytest.mark.parametrize("payload", ["system-first", "system-after-scheduler", "class", "eval"])
def test_code_in_a_checkpoint_is_refused(tmp_path, payload):
    from vision.utils.model_io import load_state_dict_file

    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    sched = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 5)
    weights = OrderedDict(w=torch.zeros(2))
    if payload == "system-first":
        ckpt = {"x": _Touch(target), "weights": weights, "scheduler": sched}
    elif payload == "system-after-scheduler":  # passes the admitted scheduler first, then the call
        ckpt = {"weights": weights, "scheduler": sched, "x": _Touch(target)}
    elif payload == "class":
        ckpt = {"weights": weights, "scheduler": sched, "x": _Whatever()}
    else:
        ckpt = {"weights": weights, "scheduler": sched, "x": _Eval()}
    torch.save(ckpt, path)
    with pytest.raises(UserError) as e:
        load_state_dict_file(path)
    msg = str(e.value)
    assert "refusing to load" in msg and "\n" not in msg, msg
    assert {"system-first": "system", "system-after-scheduler": "system", "class": "_Whatever",
            "eval": "eval"}[payload] in msg
    assert not target.exists()


class _Eval:
    def __reduce__(self):
        return eval, ("1 + 1",)


def test_admitted_class_names_do_not_reach_real_code(tmp_path):
    """A file that names an admitted scheduler gets a data-only stand-in, whatever its state holds."""
    from vision.utils import safe_load

    path = tmp_path / "odd.pth"
    torch.save({"scheduler": torch.optim.lr_scheduler.ExponentialLR(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 0.9)}, path)
    out = safe_load.load_plain_state(path)
    assert out["scheduler"]["gamma"] == 0.9 and not isinstance(out["scheduler"], torch.optim.lr_scheduler.LRScheduler)
    with pytest.raises(pickle.UnpicklingError):
        safe_load._STAND_INS["torch.optim.lr_scheduler.StepLR"](1, 2)  # constructor arguments are refused


# ------------------------------------------------------------------ --profile
def test_step_profiler_writes_trace_and_summary(tmp_path):
    from vision.training.profiling import SUMMARY_NAME, TRACE_NAME, StepProfiler

    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(net.parameters(), 0.1)

    def run(folder, n):
        with StepProfiler(folder, first=2, steps=2) as prof:
            for _ in range(n):
                loss = net(torch.randn(4, 8)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                prof.step()
        return prof

    prof = run(tmp_path / "run", 6)
    trace = json.loads((tmp_path / "run" / TRACE_NAME).read_text())
    steps = sorted({e["name"] for e in trace["traceEvents"] if str(e.get("name", "")).startswith("ProfilerStep")})
    assert steps == ["ProfilerStep#2", "ProfilerStep#3"]
    summary = (tmp_path / "run" / SUMMARY_NAME).read_text()
    assert summary.startswith("torch.profiler: training steps 2-3") and "aten::addmm" in summary
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([TRACE_NAME, SUMMARY_NAME])
    assert prof.written == [tmp_path / "run" / TRACE_NAME, tmp_path / "run" / SUMMARY_NAME]
    short = run(tmp_path / "short", 3)  # stopped inside the window: what was recorded is written
    assert (tmp_path / "short" / SUMMARY_NAME).read_text().startswith("torch.profiler: training steps 2-2")
    assert short.written
    assert not run(tmp_path / "none", 1).written and not (tmp_path / "none").exists()
    with pytest.raises(ValueError):
        StepProfiler(tmp_path, first=0, steps=0)


def test_train_epoch_calls_after_step_for_profiling(tmp_path, monkeypatch):
    """The hook ``--profile`` uses: ``Trainer.train_epoch(after_step=profiler.step)``."""
    from vision.training.loop import EpochStats, Trainer
    from vision.training.profiling import SUMMARY_NAME, StepProfiler

    model = torch.nn.Linear(4, 2)
    trainer = Trainer(model=model, net=model, criterion=None, optimizer=torch.optim.SGD(model.parameters(), 0.1),
                      schedule=None, device=torch.device("cpu"))

    def fake_step(batch, epoch, step, steps_per_epoch):
        model(batch).sum().backward()
        return 0.1, 0.2, len(batch)

    monkeypatch.setattr(trainer, "train_step", fake_step)
    with StepProfiler(tmp_path, first=1, steps=2) as prof:
        for epoch in range(2):  # steps are counted across epochs
            reached = trainer.train_epoch([torch.randn(3, 4)] * 2, epoch=epoch, start_step=0, steps_per_epoch=2,
                                          stats=EpochStats(), debug_steps=0, after_step=prof.step)
            assert reached == 2
    assert prof._calls == 4
    assert (tmp_path / SUMMARY_NAME).read_text().startswith("torch.profiler: training steps 1-2")
