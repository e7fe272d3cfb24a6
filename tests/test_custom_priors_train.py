"""Custom priors (train_ssd.py --priors) through the whole life of a model, and --viz-inputs.

A priors spec with other aspect ratios than the net's default changes the number of boxes per
cell, so the heads change shape: a run must train, resume, evaluate, export (the ONNX output has
the spec's number of priors) and run with no --priors flag anywhere after the first command.
"""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_script, run_script_inprocess

NET = "mb1-ssd-lite"
RES = 128


def _spec():
    from vision.ssd.custom_priors import spec_from_ssd_specs
    from vision.ssd.registry import get_config
    spec = spec_from_ssd_specs(get_config(NET, RES).specs, RES, NET)
    spec["feature_maps"][0]["aspect_ratios"] = [2]  # 4 boxes per cell instead of 6
    spec["feature_maps"][0]["min_size"] = 12
    spec["feature_maps"][1]["aspect_ratios"] = [1.5, 2, 3]  # 8
    spec["feature_maps"][5]["aspect_ratios"] = []  # 2
    return spec


def _out_channels(head: torch.nn.Module) -> int:
    return [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)][-1].out_channels


def test_head_channels_follow_the_spec():
    from vision.ssd.custom_priors import priors_from_spec, priors_per_cell
    from vision.ssd.registry import create_net, feature_map_sizes
    spec = _spec()
    boxes = priors_per_cell(spec)
    assert boxes == [4, 8, 6, 6, 6, 2]
    net = create_net(NET, 5, resolution=RES, priors=spec)
    assert [_out_channels(h) for h in net.classification_headers] == [b * 5 for b in boxes]
    assert [_out_channels(h) for h in net.regression_headers] == [b * 4 for b in boxes]
    expected = priors_from_spec(spec, RES, feature_map_sizes(NET, RES))
    assert torch.equal(net.priors, expected)
    net.eval()
    scores, _ = net(torch.zeros(1, 3, RES, RES))
    assert scores.shape == (1, len(expected), 5)
    default = create_net(NET, 5, resolution=RES)
    assert default.config.num_priors != len(expected)  # the spec really changed the net


def test_spec_with_another_feature_map_count_is_one_line():
    from vision.ssd.registry import create_net
    from vision.utils.misc import UserError
    spec = _spec()
    spec["feature_maps"] = spec["feature_maps"][:4]
    with pytest.raises(UserError) as e:
        create_net(NET, 3, resolution=RES, priors=spec)
    assert "4 feature maps" in str(e.value) and "6" in str(e.value) and "\n" not in str(e.value)


def test_train_refuses_mismatched_priors_file(tmp_path, tiny_coco, capsys):
    import train_ssd
    from vision.utils.misc import run_main
    spec = _spec()
    spec["feature_maps"] = spec["feature_maps"][:3]
    (tmp_path / "p.json").write_text(json.dumps(spec))
    rc = run_main(train_ssd.main, ["--datasets", str(tiny_coco), "--net", NET, "--resolution", str(RES),
                                   "--priors", str(tmp_path / "p.json"), "--checkpoint-folder", str(tmp_path / "run"),
                                   "--workers", "0", "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "3 feature maps" in err


def test_a_priors_file_fitted_for_another_net_is_used_with_a_warning(tmp_path, tiny_coco, capsys):
    import train_ssd
    from vision.utils.misc import run_main
    spec = _spec()
    spec["net"] = "vgg16-ssd"
    (tmp_path / "p.json").write_text(json.dumps(spec))
    rc = run_main(train_ssd.main, ["--datasets", str(tiny_coco), "--net", NET, "--resolution", "64",
                                   "--priors", str(tmp_path / "p.json"), "--checkpoint-folder",
                                   str(tmp_path / "run"), "--workers", "0", "--epochs", "1", "--batch-size", "4"])
    err = capsys.readouterr().err
    assert rc == 0, err[-3000:]
    warned = [line for line in err.splitlines() if "fitted for vgg16-ssd" in line]
    assert len(warned) == 1 and f"dataset_report.py --net {NET} --resolution 64" in warned[0], warned


def test_viz_inputs_renders_side_by_side(tiny_coco, tmp_path):
    from functools import partial

    from PIL import Image

    from vision.datasets.coco_dataset import COCODataset
    from vision.ssd.data_preprocessing import TrainAugmentation
    from vision.ssd.registry import get_config
    from vision.training.viz_inputs import denormalize, write_input_samples
    cfg = get_config(NET, RES)
    ds = COCODataset(tiny_coco, transform=TrainAugmentation(RES, cfg.image_mean, cfg.image_std, seed=1))
    paths = write_input_samples(ds, 2, tmp_path / "inputs", cfg, ds.class_names)
    assert [p.name for p in paths] == ["input-00000.png", "input-00001.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.size == (2 * RES, RES)
            px = np.asarray(im.convert("RGB"))
        assert px[:, :RES].std() > 5 and px[:, RES:].std() > 5  # both halves hold a picture
    x = torch.full((3, 4, 4), 0.5)
    assert denormalize(x, cfg.image_mean, cfg.image_std)[0, 0, 0] == round(0.5 * cfg.image_std + cfg.image_mean[0])


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from vision.datasets.synthetic import generate_coco_dataset
    root = tmp_path_factory.mktemp("custom_priors")
    generate_coco_dataset(root / "data", 8, 4, seed=5, image_size=(160, 120))
    (root / "priors.json").write_text(json.dumps(_spec()))
    run = root / "run"
    r = run_script("train_ssd.py", "--datasets", root / "data", "--net", NET, "--resolution", RES,
                   "--priors", root / "priors.json", "--viz-inputs", 3, "--batch-size", 4, "--workers", 0,
                   "--seed", 1, "--epochs", 1, "--checkpoint-folder", run, timeout=600,
                   env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    (root / "priors.json").unlink()  # the file may move: nothing after training may need it
    return root


@pytest.mark.slow
def test_spec_is_stored_in_args_and_checkpoints(trained):
    from vision.utils.model_io import load_state_dict_file
    saved = json.loads((trained / "run" / "args.json").read_text())
    args = saved.get("args", saved)
    assert args["priors"] == _spec()
    ckpts = sorted((trained / "run").glob(f"{NET}-Epoch-*.pth"))
    assert ckpts
    for p in ckpts:
        _, ckpt = load_state_dict_file(p)
        assert ckpt["args"]["priors"] == _spec()


@pytest.mark.slow
def test_viz_inputs_writes_the_samples(trained):
    from PIL import Image
    files = sorted((trained / "run" / "inputs").glob("*.png"))
    assert len(files) == 3
    for f in files:
        with Image.open(f) as im:
            im.load()
            assert im.size == (2 * RES, RES)


@pytest.mark.slow
def test_resume_eval_export_and_example_need_no_flag(trained, tmp_path):
    from vision.ssd.custom_priors import priors_from_spec
    from vision.ssd.onnx_metadata import read_metadata
    from vision.ssd.registry import feature_map_sizes
    run = trained / "run"
    # each command's main() in this process: the files carry the priors, not the process
    r = run_script_inprocess("train_ssd.py", "--resume", run, "--epochs", 2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert list(run.glob(f"{NET}-Epoch-1-*.pth"))
    assert "custom priors" in r.stderr

    r = run_script_inprocess("eval_ssd.py", "--trained-model", run, "--dataset", trained / "data", "--dataset-type",
                             "coco", "--eval-dir", tmp_path / "eval", "--workers", 0, "--use-cuda", "false")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()

    onnx = tmp_path / "m.onnx"
    r = run_script_inprocess("onnx_export.py", "--input", run / "best.pth", "--output", onnx)
    assert r.returncode == 0, r.stderr[-3000:]
    n = len(priors_from_spec(_spec(), RES, feature_map_sizes(NET, RES)))
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    assert [o.shape[1] for o in sess.get_outputs()] == [n, n]
    meta = read_metadata(onnx)
    assert meta.num_priors == n and meta.priors == _spec()

    image = sorted((trained / "data" / "val2017").glob("*.jpg"))[0]
    for model in ([NET, run, run / "labels.txt"], [onnx]):  # no --priors: the files say it
        r = run_script_inprocess("run_ssd_example.py", *model, image, "--threshold", "0.01", "--output-dir",
                                 tmp_path / "ex", cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.strip()  # a detection line (threshold 0.01 on a barely trained net)


# ------------------------------------------------------------------------------ hostile inputs (r14b)
def test_viz_inputs_never_replaces_a_users_file(tiny_coco, tmp_path):
    from vision.datasets.coco_dataset import COCODataset
    from vision.ssd.data_preprocessing import TrainAugmentation
    from vision.ssd.registry import get_config
    from vision.training.viz_inputs import write_input_samples
    from vision.utils.misc import UserError
    cfg = get_config(NET, RES)
    ds = COCODataset(tiny_coco, transform=TrainAugmentation(RES, cfg.image_mean, cfg.image_std, seed=1))
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "input-00001.png").write_bytes(b"mine")
    with pytest.raises(UserError, match="input-00001.png exists and was not written"):
        write_input_samples(ds, 2, folder, cfg, ds.class_names)
    assert (folder / "input-00001.png").read_bytes() == b"mine"
    assert not (folder / "input-00000.png").exists()  # refused before anything is written
    (folder / "input-00001.png").unlink()
    write_input_samples(ds, 2, folder, cfg, ds.class_names)
    write_input_samples(ds, 2, folder, cfg, ds.class_names)  # its own files (a --resume) are replaced


@pytest.mark.parametrize("field, value, message", [
    ("shrinkage", 3, "does not span"),          # priors bunched in a corner, silently
    ("min_size", 5000, "larger than the"),      # every prior clamped to the whole image, silently
])
def test_spec_that_makes_useless_priors_is_refused(field, value, message):
    from vision.ssd.custom_priors import validate_spec
    from vision.utils.misc import UserError
    spec = _spec()
    spec["feature_maps"][0][field] = value
    if field == "min_size":
        spec["feature_maps"][0]["max_size"] = value * 2
    with pytest.raises(UserError, match=message):
        validate_spec(spec)


def test_resume_priors_same_file_is_accepted_another_is_refused_in_one_line(tmp_path):
    from vision.ssd.custom_priors import resume_priors_arg
    from vision.utils.misc import UserError
    saved = _spec()
    same = dict(copy.deepcopy(saved), coverage={"overall": 0.5})  # informational keys do not count
    (tmp_path / "same.json").write_text(json.dumps(same))
    assert resume_priors_arg(saved, str(tmp_path / "same.json")) is saved
    other = copy.deepcopy(saved)
    other["feature_maps"][0]["min_size"] += 1
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(UserError) as e:
        resume_priors_arg(saved, str(tmp_path / "other.json"))
    assert "other.json" in str(e.value) and "feature_maps" not in str(e.value)  # no dump of the spec
    assert resume_priors_arg(saved, str(tmp_path / "other.json"), force=True)["feature_maps"][0]["min_size"] == \
        other["feature_maps"][0]["min_size"]
    other["feature_maps"][0]["aspect_ratios"] = other["feature_maps"][0]["aspect_ratios"][:-1]
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(UserError, match="boxes per cell"):
        resume_priors_arg(saved, str(tmp_path / "other.json"), force=True)


@pytest.mark.parametrize("ratios, warned", [([2, 2], True), ([2, 0.5], True), ([1, 3], True), ([2, 3], False)])
def test_priors_file_with_duplicate_ratios_warns(tmp_path, caplog, ratios, warned):
    from vision.ssd.custom_priors import load_priors_spec
    spec = _spec()
    spec["feature_maps"][2]["aspect_ratios"] = ratios
    (tmp_path / "p.json").write_text(json.dumps(spec))
    with caplog.at_level("WARNING"):
        load_priors_spec(tmp_path / "p.json")
    assert ("feature_maps[2]" in caplog.text and "duplicates" in caplog.text) == warned


def _load_bench(name: str):
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Scored(Exception):
    pass


@pytest.mark.slow
def test_benchmarks_score_a_run_with_its_own_priors(trained, monkeypatch):
    """bench/time_to_accuracy.py and bench/background_mining.py score a --priors run with the
    run's priors (they rebuilt the net with the default priors: AP 0.18 instead of 0.61 on the demo set)."""
    import vision.evaluation
    from vision.ssd.custom_priors import priors_from_spec
    from vision.ssd.registry import feature_map_sizes
    expected = priors_from_spec(_spec(), RES, feature_map_sizes(NET, RES))
    seen = []

    def capture(net, *args, **kwargs):
        seen.append(net.priors.clone())
        raise _Scored()

    monkeypatch.setattr(vision.evaluation, "evaluate", capture)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))  # their `import common`
    with pytest.raises(_Scored):
        _load_bench("time_to_accuracy").evaluate_run(trained / "run", trained / "data", workers=0)
    mining = _load_bench("background_mining")
    monkeypatch.setattr(mining, "make_predictor", capture)
    with pytest.raises(_Scored):
        mining.measure(trained / "run", trained / "data")
    assert len(seen) == 2 and all(torch.equal(p, expected) for p in seen)
