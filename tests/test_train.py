"""train_ssd.py end to end on tiny synthetic COCO data, plus its library pieces (vision/training).

The runs share one setting: mb1-ssd-lite at 128 px, 16 training images, batch 2 (8 steps an
epoch), --workers 0, a fixed seed. One uninterrupted 4-epoch run is the reference that the
resumed runs (at an epoch boundary, and after a SIGINT inside an epoch) must reproduce.
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_script
SCRIPT = str(REPO / "train_ssd.py")
NET = "mb1-ssd-lite"


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from vision.datasets.synthetic import generate_coco_dataset
    root = tmp_path_factory.mktemp("train_data") / "syn"
    generate_coco_dataset(root, 16, 6, seed=5)
    return root


def common(data, folder, epochs, *extra):
    return ["--datasets", str(data), "--net", NET, "--resolution", "128", "--batch-size", "2",
            "--workers", "0", "--seed", "3", "--lr", "0.003", "--warmup-epochs", "0.5", "--t-max", "4",
            "--debug-steps", "1", "--epochs", str(epochs), "--checkpoint-folder", str(folder), *extra]


# One compute thread per run: on a busy 2-core machine, OpenMP threads spin-waiting on each
# other made a run 4x slower. Every run of a comparison uses the same setting.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(*args, check=True, timeout=300):
    r = run_script("train_ssd.py", *args, timeout=timeout, env=ENV)
    if check and r.returncode != 0:
        raise AssertionError(f"train_ssd.py exited {r.returncode}:\n{r.stderr[-4000:]}")
    return r


def run_inprocess(argv, capsys):
    """Error paths: call main() in this process (fast: nothing heavy starts before the check)."""
    import train_ssd
    from vision.utils.misc import run_main
    rc = run_main(train_ssd.main, [str(a) for a in argv])
    return rc, capsys.readouterr().err


def checkpoints(folder):
    from vision.training.checkpoint import list_checkpoints
    return list_checkpoints(folder)


def final_model(folder, epoch):
    path = next(p for p in checkpoints(folder) if p.name.startswith(f"{NET}-Epoch-{epoch}-Loss-"))
    return torch.load(path, weights_only=True)["model"]


def max_abs_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


def metrics(folder):
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted 4-epoch run."""
    folder = tmp_path_factory.mktemp("ref") / "run"
    train(*common(data, folder, 4))
    return folder


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() run in this process reconfigures the root logger; put it back after each test."""
    import logging
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_two_epoch_run_writes_a_complete_run_folder_and_resumes_exactly(data, reference, tmp_path):
    from vision.ssd.registry import create_net
    from vision.utils.labels import read_labels

    folder = tmp_path / "run"
    train(*common(data, folder, 2), "--keep-checkpoints", "1", "--tensorboard")
    assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    desc = json.loads((folder / "args.json").read_text())
    assert desc["args"]["net"] == NET and desc["args"]["num_epochs"] == 2 and desc["args"]["seed"] == 3
    assert desc["args"]["datasets"] == [str(data)] and desc["args"]["betas"] == [0.9, 0.999]
    assert desc["class_names"][0] == "BACKGROUND" and len(desc["class_names"]) == 7
    import vision
    assert desc["created"] and desc["updated"] and desc["version"] == vision.__version__ != "unknown"
    assert read_labels(folder / "labels.txt") == desc["class_names"]

    files = checkpoints(folder)  # --keep-checkpoints 1: the newest, plus best.pth
    assert [p.name.split("-Loss-")[0] for p in files] == [f"{NET}-Epoch-1"]
    ckpt = torch.load(files[0], weights_only=True)
    for key in ("epoch", "step_in_epoch", "model", "optimizer", "scheduler", "scaler", "rng", "best_metric",
                "args", "class_names", "net", "resolution", "version"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 1 and ckpt["step_in_epoch"] == 0 and ckpt["resolution"] == 128
    assert set(ckpt["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert isinstance(ckpt["scheduler"], dict)
    net = create_net(NET, 7, resolution=128)
    assert list(ckpt["model"]) == list(net.state_dict())  # upstream keys, no "module." prefix
    net.load_state_dict(ckpt["model"])
    val_loss = float(files[0].name.split("-Loss-")[1][:-4])
    assert math.isclose(val_loss, ckpt["val_loss"])
    best = torch.load(folder / "best.pth", weights_only=True)
    assert best["best_metric"]["name"] == "val_loss"
    assert best["best_metric"]["value"] == min(r["val_loss"] for r in metrics(folder))
    rows = metrics(folder)
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in ("train_loss", "train_regression_loss", "train_classification_loss", "val_loss", "lr",
                "images_per_s", "epoch_seconds"):
        assert all(math.isfinite(r[key]) for r in rows), key

    # resume for 2 more epochs: the same weights and learning rates as 4 epochs straight
    r = train("--resume", folder, "--epochs", 4)
    assert "continuing at epoch 2" in r.stderr
    assert max_abs_diff(final_model(reference, 3), final_model(folder, 3)) <= 1e-6
    ref, got = metrics(reference), metrics(folder)
    assert [m["lr"] for m in got] == [m["lr"] for m in ref]
    assert len({m["lr"] for m in ref}) == 4  # the schedule moves, so the comparison means something
    assert [m["train_loss"] for m in got] == [m["train_loss"] for m in ref]
    assert json.loads((folder / "args.json").read_text())["created"] == desc["created"]


@pytest.mark.slow
def test_sigint_mid_epoch_saves_and_resume_continues_exactly(data, reference, tmp_path):
    folder = tmp_path / "run"
    cmd = [sys.executable, SCRIPT, *common(data, folder, 4)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=ENV)
    log = []
    try:
        for line in proc.stderr:
            log.append(line)
            if "Epoch: 1, Step: 2/8" in line:
                proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, "".join(log[-30:])
    finally:
        proc.kill()
    text = "".join(log)
    assert "SIGINT received" in text
    interrupted = [p for p in checkpoints(folder) if "interrupted" in p.name]
    assert len(interrupted) == 1, text
    ckpt = torch.load(interrupted[0], weights_only=True)
    assert ckpt["epoch"] == 1 and 2 <= ckpt["step_in_epoch"] < 8

    r = train("--resume", folder)
    assert f"continuing at epoch 1, step {ckpt['step_in_epoch']}" in r.stderr
    # the skipped batches are not trained again: the first step logged is the next one
    assert f"Epoch: 1, Step: {ckpt['step_in_epoch'] + 1}/8" in r.stderr
    assert "Epoch: 1, Step: 1/8" not in r.stderr
    assert max_abs_diff(final_model(reference, 3), final_model(folder, 3)) <= 1e-6
    assert [m["train_loss"] for m in metrics(folder)] == pytest.approx([m["train_loss"] for m in metrics(reference)],
                                                                       rel=1e-9)
    assert not [p for p in checkpoints(folder) if "interrupted" in p.name]  # superseded and removed


@pytest.mark.slow
def test_resume_with_another_batch_size_mid_epoch_continues_at_the_next_image(data, tmp_path):
    """Stopped after 3 steps of 2 images (6 of 16), resumed with --batch-size 4: the epoch goes on at
    image 7 of its order: 2 more steps (images 7-14; 15-16 are the partial batch every epoch of batch
    4 drops), not at step 6 // 4 = 1 (images 5-16: two trained twice)."""
    folder = tmp_path / "run"
    cmd = [sys.executable, SCRIPT, *common(data, folder, 1)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=ENV)
    log = []
    try:
        for line in proc.stderr:
            log.append(line)
            if "Epoch: 0, Step: 3/8" in line:
                proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, "".join(log[-30:])
    finally:
        proc.kill()
    ckpt = torch.load(next(p for p in checkpoints(folder) if "interrupted" in p.name), weights_only=True)
    assert ckpt["samples_in_epoch_total"] == 2 * ckpt["step_in_epoch"]
    done = ckpt["samples_in_epoch_total"]
    r = train("--resume", folder, "--batch-size", "4")
    left = (16 - done) // 4
    assert f"continuing at epoch 0, step {4 - left}/4: {done} of its 16 images were trained" in r.stderr, r.stderr
    assert metrics(folder)[0]["train_images"] == done + 4 * left


def sigint_at(cmd, line_text):
    """Run ``cmd``, send SIGINT when a log line contains ``line_text``; the whole log."""
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=ENV)
    log = []
    try:
        for line in proc.stderr:
            log.append(line)
            if line_text in line:
                proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, "".join(log[-30:])
    finally:
        proc.kill()
    return "".join(log)


@pytest.mark.slow
def test_ema_run_stopped_mid_epoch_resumes_exactly(data, tmp_path):
    """--ema: the checkpoint's model is the EMA net, the trained weights and the update count ride
    along, and a run stopped inside an epoch and resumed ends where an uninterrupted one does.
    At 64 px (three runs: what is checked does not depend on the size)."""
    ema = ("--ema", "0.9", "--ema-warmup", "4", "--resolution", "64")
    reference = tmp_path / "ref"
    r = train(*common(data, reference, 2), *ema)
    assert "EMA of weights: decay 0.9 (ramp decay*(1-exp(-updates/4))), 0 updates so far" in r.stderr
    ref = torch.load(next(p for p in checkpoints(reference) if "Epoch-1-Loss-" in p.name), weights_only=True)
    assert ref["ema"]["updates"] == 16 and ref["ema"]["decay"] == 0.9
    assert max_abs_diff(ref["model"], ref["ema"]["raw_model"]) > 1e-3  # the EMA is not the trained net
    ramp = [0.9 * (1 - math.exp(-n / 4)) for n in (8, 16)]  # after 8 and 16 updates
    assert [m["ema_decay"] for m in metrics(reference)] == pytest.approx(ramp)

    folder = tmp_path / "run"
    text = sigint_at([sys.executable, SCRIPT, *common(data, folder, 2), *ema], "Epoch: 1, Step: 2/8")
    interrupted = [p for p in checkpoints(folder) if "interrupted" in p.name]
    assert len(interrupted) == 1, text
    stopped = torch.load(interrupted[0], weights_only=True)
    assert stopped["ema"]["updates"] == 8 + stopped["step_in_epoch"]
    r = train("--resume", folder)
    assert f"{8 + stopped['step_in_epoch']} updates so far" in r.stderr
    got = torch.load(next(p for p in checkpoints(folder) if "Epoch-1-Loss-" in p.name), weights_only=True)
    assert max_abs_diff(ref["model"], got["model"]) <= 1e-6
    assert max_abs_diff(ref["ema"]["raw_model"], got["ema"]["raw_model"]) <= 1e-6
    assert got["ema"]["updates"] == 16
    assert [m["val_loss"] for m in metrics(folder)] == pytest.approx([m["val_loss"] for m in metrics(reference)],
                                                                     rel=1e-6)
    # a plain model file for every other tool: best.pth's model loads into the net as it is
    from vision.ssd.registry import create_net
    create_net(NET, 7, resolution=64).load_state_dict(torch.load(folder / "best.pth", weights_only=True)["model"])


def _validation_loss(data, folder, state_dict=None, *extra):
    """The validation loss train_ssd.py computes for its initial net (or for ``state_dict``),
    built by train_ssd.py's own functions in this process."""
    import train_ssd
    from vision.training.data import build_loader
    run = train_ssd.resolve_run([str(a) for a in common(data, folder, 1, *extra)])
    d = train_ssd.build_data(run)
    parts = train_ssd.build_model_and_optimizer(run, d)
    if state_dict is not None:
        parts.net.load_state_dict(state_dict)
    trainer = train_ssd.build_trainer(run, d, parts)
    loader = build_loader(d.val, batch_size=2, num_workers=0, seed=3, epoch=0, collate_fn=d.collate,
                          shuffle=False)
    return trainer.validate(loader)["val_loss"]


@pytest.mark.slow
def test_validation_and_best_use_the_ema_weights(data, tmp_path):
    """A decay so close to 1 (no warm-up) that the EMA net stays the initial net: the epoch's
    validation loss is the initial net's, not the trained net's, and best.pth holds the EMA net (64 px)."""
    folder = tmp_path / "run"
    px = ("--resolution", "64")
    train(*common(data, folder, 1), *px, "--ema", "0.99999999", "--ema-warmup", "0")
    val_loss = metrics(folder)[0]["val_loss"]
    ckpt = torch.load(folder / "best.pth", weights_only=True)
    assert ckpt["val_loss"] == val_loss
    initial = _validation_loss(data, tmp_path / "probe1", None, *px)
    trained = _validation_loss(data, tmp_path / "probe2", ckpt["ema"]["raw_model"], *px)
    assert abs(trained - initial) > 1e-2 * initial  # the epoch moved the trained net
    assert val_loss == pytest.approx(initial, rel=1e-4)
    assert _validation_loss(data, tmp_path / "probe3", ckpt["model"], *px) == pytest.approx(val_loss, rel=1e-4)


@pytest.mark.slow
def test_corrupted_newest_checkpoint_falls_back_to_previous(data, reference, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    newest = checkpoints(folder)[-1]
    assert "Epoch-3" in newest.name
    newest.write_bytes(newest.read_bytes()[:1000])
    r = train("--resume", folder)
    assert "skipping checkpoint" in r.stderr and newest.name in r.stderr
    assert "continuing at epoch 3" in r.stderr
    assert max_abs_diff(final_model(reference, 3), final_model(folder, 3)) <= 1e-6


@pytest.mark.slow
def test_resume_override_rules(data, reference, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    # refused: one line naming the flag, exit 2
    for flag, value in (("--lr", "0.1"), ("--net", "mb2-ssd-lite"), ("--resolution", "160"), ("--seed", "4")):
        rc, err = run_inprocess(["--resume", folder, flag, value], capsys)
        assert rc == 2, err
        assert f"{flag} cannot change when resuming" in err and "--force-override" in err
        assert len(err.strip().splitlines()) == 1
    # the same value as saved is no change
    rc, err = run_inprocess(["--resume", folder, "--lr", "0.003", "--net", NET], capsys)
    assert rc == 0, err
    # free: applied silently (nothing left to do at --epochs 4)
    rc, err = run_inprocess(["--resume", folder, "--workers", "1", "--batch-size", "4", "--log-level", "info"],
                            capsys)
    assert rc == 0 and "nothing to do" in err, err
    assert json.loads((folder / "args.json").read_text())["args"]["batch_size"] == 4
    # forced
    rc, err = run_inprocess(["--resume", folder, "--lr", "0.1", "--force-override"], capsys)
    assert rc == 0 and "forced" in err, err
    assert json.loads((folder / "args.json").read_text())["args"]["lr"] == 0.1

    # warned: other data folders with the same classes
    other = tmp_path / "other"
    shutil.copytree(data, other)
    rc, err = run_inprocess(["--resume", folder, "--datasets", other], capsys)
    assert rc == 0 and "must have the same classes" in err, err
    # refused: other data folders with other classes
    ann = other / "annotations" / "instances_train2017.json"
    coco = json.loads(ann.read_text())
    coco["categories"][0]["name"] = "purple blob"
    ann.write_text(json.dumps(coco))
    rc, err = run_inprocess(["--resume", folder, "--datasets", other], capsys)
    assert rc == 2 and "differ from the resumed run" in err, err


@pytest.mark.slow
def test_amp_bf16_on_cpu_runs_and_learns(tiny_coco, tmp_path):
    """bf16 autocast is very slow on a CPU without bf16 instructions (a few images/s at 128 px):
    8 images at 64 px, batch 4, 4 epochs (8 steps) show it runs and learns."""
    folder = tmp_path / "run"
    # also: prior matching per sample in a worker process (upstream's MatchPrior), gradient clipping
    r = train(*common(tiny_coco, folder, 4), "--resolution", "64", "--batch-size", "4", "--amp", "--grad-clip", "10",
              "--matcher", "per-sample", "--workers", "1")
    assert "AMP bfloat16" in r.stderr
    losses = [m["train_loss"] for m in metrics(folder)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.slow  # uses the reference run
def test_pretrained_ssd_and_base_net_initialization(reference, tmp_path, capsys):
    from vision.datasets.synthetic import generate_coco_dataset
    from vision.ssd.registry import create_net
    data = tmp_path / "tiny"
    generate_coco_dataset(data, 4, 2, seed=1)  # one epoch is 2 steps: the loading is what is tested
    same = reference / "best.pth"
    rc, err = run_inprocess(common(data, tmp_path / "a", 1, "--pretrained-ssd", same, "--log-level", "info"),
                            capsys)
    assert rc == 0 and "heads included (7 classes)" in err, err
    other = tmp_path / "three-classes.pth"
    torch.save(create_net(NET, 3, resolution=128).state_dict(), other)  # an upstream-style plain state_dict
    rc, err = run_inprocess(common(data, tmp_path / "b", 1, "--pretrained-ssd", other), capsys)
    assert rc == 0 and "has 3 classes, the data 7: loaded all but the prediction heads" in err, err
    backbone = tmp_path / "backbone.pth"
    torch.save(create_net(NET, 3, resolution=128).base_net.state_dict(), backbone)
    rc, err = run_inprocess(common(data, tmp_path / "d", 1, "--base-net", backbone, "--log-level", "info"), capsys)
    assert rc == 0 and "backbone tensors from" in err, err
    wrong = tmp_path / "mb2.pth"
    torch.save(create_net("mb2-ssd-lite", 7).state_dict(), wrong)
    rc, err = run_inprocess(common(data, tmp_path / "c", 1, "--pretrained-ssd", wrong), capsys)
    last = err.strip().splitlines()[-1]
    assert rc == 2 and ("does not match" in last or "cannot initialise" in last) and "mb2-ssd-lite" in last, err
    assert "Traceback" not in err, err


def test_bad_input_is_one_line_and_exit_2(data, tmp_path, capsys):
    cases = [
        (["--datasets", tmp_path / "nope"], "dataset folder not found"),
        (["--datasets", tmp_path], "cannot tell the dataset type"),
        (["--datasets", tmp_path, "--dataset-type", "coco"], "annotation file not found"),
        (["--resume", tmp_path], "no args.json"),
        (["--resume", tmp_path / "missing"], "not found"),
        (["--datasets", data, "--checkpoint-folder", data / "annotations" / "instances_train2017.json"],
         "is a file"),
        (["--datasets", data, "--pretrained-ssd", tmp_path / "missing.pth"], "file not found"),
        (["--datasets", data, "--optimizer", "adam", "--nesterov"], "--nesterov needs"),
        (["--datasets", data, "--device", "banana"], "expected cpu, cuda or cuda:N"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--datasets", data, "--device", "cuda"], "CUDA is not available"))
    for argv, message in cases:
        rc, err = run_inprocess(argv + ["--checkpoint-folder", tmp_path / "ck"]
                                if "--checkpoint-folder" not in argv else argv, capsys)
        assert rc == 2, (argv, err)
        assert message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.slow  # uses the reference run
def test_checkpoint_of_another_net_is_refused(data, reference, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    path = checkpoints(folder)[-1]
    ckpt = torch.load(path, weights_only=True)
    ckpt["net"] = "mb2-ssd-lite"
    torch.save(ckpt, path)
    rc, err = run_inprocess(["--resume", path], capsys)
    assert rc == 2 and "checkpoint is of net mb2-ssd-lite" in err, err


@pytest.mark.slow  # uses the reference run
def test_existing_run_folder_is_not_overwritten(data, reference, capsys):
    rc, err = run_inprocess(common(data, reference, 4), capsys)
    assert rc == 2 and "already holds a training run" in err and "--resume" in err, err


@pytest.mark.parametrize("argv", [
    ["--batch-size", "0"], ["--batch_size", "-3"], ["--epochs", "0"], ["--num_epochs", "x"], ["--lr", "0"],
    ["--lr", "-1"], ["--lr", "1e9"], ["--lr", "nan"], ["--momentum", "1.5"], ["--betas", "1.0", "0.9"],
    ["--betas", "0.9"], ["--workers", "-1"], ["--resolution", "8"], ["--weight-decay", "-0.1"],
    ["--t-max", "0"], ["--milestones", "80,40"], ["--warmup-epochs", "-1"], ["--keep-checkpoints", "0"],
    ["--grad-clip", "0"], ["--gamma", "2"], ["--mb2-width-mult", "0"], ["--optimizer", "rmsprop"],
    ["--scheduler", "step"], ["--dataset-type", "darknet"], ["--validation-epochs", "0"],
])
def test_numeric_and_choice_flags_are_validated(argv):
    import train_ssd
    with pytest.raises(SystemExit) as e:
        train_ssd.build_parser().parse_args(argv)
    assert e.value.code == 2


def test_upstream_spellings_and_aliases_parse():
    import train_ssd
    args, given, _, _ = train_ssd.parse_args([
        "--dataset_type", "voc", "--data", "a", "b", "--batch_size", "8", "--num_epochs", "3", "--base_net", "x",
        "--validation_dataset", "v", "--t_max", "50", "--num_workers", "1", "--model-dir", "m",
        "--base_net_lr", "0.01", "--extra_layers_lr", "0.02", "--weight_decay", "5e-4", "--use_cuda", "false",
        "--validation_epochs", "2", "--debug_steps", "5", "--optim-choose", "SGD", "--betas", "0.8", "0.99",
        "--milestones", "10,20", "--pretrained_ssd", "p"])
    assert (args.dataset_type, args.datasets, args.batch_size, args.num_epochs) == ("voc", ["a", "b"], 8, 3)
    assert (args.base_net, args.validation_dataset, args.t_max, args.num_workers) == ("x", "v", 50.0, 1)
    assert (args.checkpoint_folder, args.base_net_lr, args.extra_layers_lr) == ("m", 0.01, 0.02)
    assert (args.weight_decay, args.use_cuda, args.validation_epochs, args.debug_steps) == (5e-4, False, 2, 5)
    assert (args.optimizer, args.betas, args.milestones, args.pretrained_ssd) == ("sgd", [0.8, 0.99], [10, 20], "p")
    assert "lr" not in given and given["batch_size"] == 8  # only what the command line says
    defaults, _, _, _ = train_ssd.parse_args([])
    assert (defaults.dataset_type, defaults.datasets, defaults.net) == ("auto", ["coco-data"], "mb2-ssd-lite")


SCRIPTS_WITH_HELP = ["train_ssd.py", "eval_ssd.py", "onnx_export.py", "run_ssd_example.py", "coco_downloader.py",
                     "open_images_downloader.py", "validate_image_files.py", "fix_coco_annotations.py",
                     "dataset_report.py"]


@pytest.mark.parametrize("script", SCRIPTS_WITH_HELP)
def test_help_states_each_default_once(script):
    import re
    r = run_script(script, "--help", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    text = " ".join(r.stdout.split())  # argparse wraps lines
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", text), text


def test_keep_empty_and_drop_empty_are_one_choice_with_one_default(capsys):
    import train_ssd
    p = train_ssd.build_parser()
    assert [p.parse_args(a).keep_empty for a in ([], ["--keep-empty"], ["--drop-empty"])] == [True, True, False]
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--keep-empty", "--drop-empty"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
    text = " ".join(p.format_help().split())
    assert "as background samples (the default) --drop-empty COCO: leave out images without boxes --" in text
    assert "made training diverge" not in text  # --memory-format's help speaks to users


# ----------------------------------------------------------------------------- library pieces
def test_lr_schedule_is_a_pure_function_of_position():
    from vision.training.schedule import StepLRSchedule, lr_factor
    assert lr_factor(0, "cosine", t_max=10) == 1.0
    assert lr_factor(5, "cosine", t_max=10) == pytest.approx(0.5)
    assert lr_factor(10, "cosine", t_max=10) == pytest.approx(0.0)
    assert [lr_factor(e, "multi-step", milestones=[2, 4], gamma=0.1) for e in (0, 1.9, 2, 3.5, 4)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert lr_factor(3.7, "none") == 1.0
    # warm-up: linear from the factor to 1 over 0.5 epochs, then the schedule alone
    assert lr_factor(0, "none", warmup_epochs=0.5, warmup_factor=0.01) == pytest.approx(0.01)
    assert lr_factor(0.25, "none", warmup_epochs=0.5, warmup_factor=0.01) == pytest.approx(0.505)
    assert lr_factor(0.5, "none", warmup_epochs=0.5, warmup_factor=0.01) == 1.0
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1},
                           {"params": [torch.zeros(1, requires_grad=True)], "lr": 1.0}], lr=1.0)
    sched = StepLRSchedule(opt, "cosine", t_max=4)
    sched.set_position(2, 0, 10)
    assert sched.get_last_lr() == pytest.approx([0.05, 0.5])
    fresh = StepLRSchedule(opt, "cosine", t_max=4)  # a resumed run: same position, same rates
    fresh.load_state_dict(sched.state_dict())
    fresh.set_position(2, 0, 10)
    assert fresh.get_last_lr() == pytest.approx([0.05, 0.5])


def test_param_groups_follow_upstream_and_freezing():
    from vision.ssd.registry import create_net
    from vision.training.optim import build_optimizer, param_groups
    net = create_net(NET, 3, resolution=128)
    groups = param_groups(net, 0.01, base_net_lr=0.001, extra_layers_lr=0.005)
    assert [g["name"] for g in groups] == ["base_net", "extra_layers", "heads"]
    assert [g["lr"] for g in groups] == [0.001, 0.005, 0.01]
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    opt = build_optimizer("sgd", groups, lr=0.01, momentum=0.9, nesterov=True)
    assert opt.param_groups[0]["nesterov"]
    net = create_net(NET, 3, resolution=128)
    assert [g["name"] for g in param_groups(net, 0.01, freeze_base_net=True)] == ["extra_layers", "heads"]
    assert not any(p.requires_grad for p in net.base_net.parameters())
    net = create_net(NET, 3, resolution=128)
    assert [g["name"] for g in param_groups(net, 0.01, freeze_net=True)] == ["heads"]
    assert not any(p.requires_grad for p in net.extras.parameters())
    opt = build_optimizer("adamw", param_groups(net, 0.01), lr=0.01, betas=[0.8, 0.9])
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)


def test_sampler_order_depends_only_on_seed_and_epoch_and_skips():
    from vision.training.data import ResumableSampler
    data = list(range(10))

    def order(epoch, skip=0, rank=0, replicas=1):
        s = ResumableSampler(data, num_replicas=replicas, rank=rank, seed=7)
        s.set_position(epoch, skip)
        return list(s)

    assert order(1) == order(1) and order(1) != order(2)
    assert order(1, skip=4) == order(1)[4:] and len(ResumableSampler(data, num_replicas=1, rank=0, seed=7)) == 10
    assert sorted(i for i, _ in order(3)) == data
    shards = order(3, rank=0, replicas=2) + order(3, rank=1, replicas=2)
    assert sorted(i for i, _ in shards) == data
    full, rest = dict(order(1)), dict(order(1, skip=4))
    assert all(full[i] == seed for i, seed in rest.items())  # a sample's seed does not depend on skipping
    assert len(set(full.values())) == 10


@pytest.mark.parametrize("n,old,new", [
    (16, (2, 1, 3), (4, 1)), (16, (2, 1, 3), (5, 1)), (12, (2, 2, 1), (2, 1)), (13, (2, 2, 2), (3, 3)),
    (12, (1, 1, 5), (2, 2)), (10, (3, 1, 1), (2, 2)),
])
def test_resumed_epoch_trains_each_image_once_whatever_the_batch_size_or_process_count(n, old, new):
    """``(batch, processes, steps done)`` then ``(batch, processes)`` for the rest: every image of the
    epoch is trained exactly once (up to DistributedSampler's padding to equal shares and the
    partial batch a drop_last loader leaves out, which an uninterrupted epoch has too)."""
    from vision.training.data import ResumableSampler

    def shares(world, skip):
        out = []
        for rank in range(world):
            s = ResumableSampler(list(range(n)), num_replicas=world, rank=rank, seed=11)
            s.set_position(4, skip)
            out.append([i for i, _ in s])
        return out

    batch, world, steps = old
    before = [i for share in shares(world, 0) for i in share[:steps * batch]]
    done = steps * batch * world
    assert sorted(before) == sorted(set(before)) and len(before) == done  # no padding reached yet
    after = [i for share in shares(new[1], done) for i in share]
    rest = set(range(n)) - set(before)
    assert rest <= set(after) and len(after) - len(rest) < new[1]  # beyond the rest: only the padding


def test_resume_merge_rules():
    from vision.training.resume import merge_resume_args
    from vision.utils.misc import UserError
    saved = {"lr": 0.1, "num_epochs": 5, "datasets": ["/a"], "net": "mb1-ssd"}
    defaults = {**saved, "new_flag": 1}
    names = {"lr": "--lr", "num_epochs": "--epochs", "net": "--net"}
    out = merge_resume_args(saved, {"num_epochs": 9, "lr": 0.1}, defaults, names)
    assert out == {**saved, "num_epochs": 9, "new_flag": 1}
    with pytest.raises(UserError, match="--net cannot change"):
        merge_resume_args(saved, {"net": "vgg16-ssd"}, defaults, names)
    assert merge_resume_args(saved, {"net": "vgg16-ssd"}, defaults, names, force=True)["net"] == "vgg16-ssd"
    assert merge_resume_args(saved, {"datasets": ["/b"]}, defaults, names)["datasets"] == ["/b"]
    # a flag newer than the run's args.json: given at its default it changes nothing; otherwise refused
    assert merge_resume_args(saved, {"new_flag": 1}, defaults, names) == defaults
    with pytest.raises(UserError, match="--new-flag cannot change"):
        merge_resume_args(saved, {"new_flag": 2}, defaults, names)


def test_stop_request_turns_sigterm_into_a_flag():
    import os
    from vision.training.loop import StopRequest
    stop = StopRequest().install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_nonfinite_guard_stops_after_several_in_a_row():
    from vision.training.loop import NonFiniteGuard
    from vision.utils.misc import Failure
    guard = NonFiniteGuard(limit=3)
    guard.bad(0, 1, 0.1)
    guard.bad(0, 2, 0.1)
    guard.ok()
    guard.bad(0, 4, 0.1)
    guard.bad(0, 5, 0.1)
    with pytest.raises(Failure, match="NaN/inf for 3 steps in a row"):
        guard.bad(0, 6, 0.1)
    assert guard.total == 5


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 8589934592 bytes."),
    RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. "),
    MemoryError(),
])
def test_out_of_memory_is_one_line_with_a_hint_and_exit_1(data, tmp_path, capsys, monkeypatch, error):
    from vision.training.loop import Trainer

    def oom(*args, **kwargs):
        raise error

    monkeypatch.setattr(Trainer, "train_step", oom)
    rc, err = run_inprocess(common(data, tmp_path / "oom", 1, "--log-level", "warning"), capsys)
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert "out of" in lines[0] and "memory" in lines[0] and "--batch-size" in lines[0], lines[0]
    assert ("GPU" if "CUDA" in str(error) else "host") in lines[0]


def test_other_runtime_errors_are_not_called_out_of_memory(data, tmp_path, capsys, monkeypatch):
    from vision.training.loop import Trainer

    def bug(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(Trainer, "train_step", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_inprocess(common(data, tmp_path / "bug", 1), capsys)


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_with_workers_stops_once_and_saves(data, tmp_path):
    """A terminal's Ctrl-C reaches the DataLoader workers too (they persist across epochs): they
    must neither die under the step nor each log their own 'SIGINT received'."""
    folder = tmp_path / "run"
    cmd = [sys.executable, SCRIPT, *common(data, folder, 3, "--workers", "2")]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    log = []
    try:
        for line in proc.stderr:
            log.append(line)
            if "Epoch: 1, Step: 2/8" in line:
                os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 0, "".join(log[-30:])
    finally:
        proc.kill()
    text = "".join(log)
    assert text.count("SIGINT received") == 1, text
    assert "Traceback" not in text, text
    assert [p for p in checkpoints(folder) if "interrupted" in p.name], text


def test_memory_format_rule():
    from vision.training.compute import use_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last("auto", cpu) and not use_channels_last("auto", cpu, amp=True)
    assert not use_channels_last("auto", cuda)
    assert use_channels_last("channels_last", cuda, amp=True) and not use_channels_last("contiguous", cpu)


@pytest.mark.parametrize("choice,expected", [("auto", True), ("contiguous", False), ("channels_last", True)])
def test_memory_format_flag_sets_the_weights_layout(data, tmp_path, capsys, monkeypatch, choice, expected):
    """The flag reaches the net: the first convolution's weight is (or is not) channels_last."""
    from vision.training.loop import Trainer

    seen = {}

    def record(self, *args, **kwargs):
        weight = next(p for p in self.net.parameters() if p.dim() == 4)
        seen["channels_last"] = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_step", record)
    rc, err = run_inprocess(common(data, tmp_path / choice, 1, "--memory-format", choice, "--log-level", "info"), capsys)
    assert rc == 130 and seen == {"channels_last": expected}, err
    assert (", channels_last" in err) == expected, err


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_the_process_group_with_workers_saves_and_resumes(data, tmp_path, workers):
    """timeout / SLURM / container stops signal every process of the job: the DataLoader workers
    must survive the SIGTERM, the main process save its position and exit 0, --resume go on."""
    folder = tmp_path / "run"
    cmd = [sys.executable, SCRIPT, *common(data, folder, 2, "--workers", str(workers))]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    log = []
    try:
        for line in proc.stderr:
            log.append(line)
            if "Epoch: 0, Step: 2/8" in line:
                os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, "".join(log[-30:])
    finally:
        proc.kill()
    text = "".join(log)
    assert text.count("SIGTERM received") == 1, text
    assert "Traceback" not in text and "killed by signal" not in text, text
    interrupted = [p for p in checkpoints(folder) if "interrupted" in p.name]
    assert len(interrupted) == 1, text
    step = torch.load(interrupted[0], weights_only=True)["step_in_epoch"]
    assert 2 <= step < 8
    r = train("--resume", folder)
    assert f"continuing at epoch 0, step {step}" in r.stderr
    assert "Epoch: 1, Step: 8/8" in r.stderr


@pytest.mark.parametrize("extra,expected", [((), 4.0), (("--max-expand", "1.5"), 1.5), (("--max-expand", "1"), 1.0)])
def test_max_expand_reaches_the_training_augmentation(data, tmp_path, extra, expected):
    """--max-expand is the zoom-out limit of the augmentation train_ssd.py builds (default 4, upstream's)."""
    import train_ssd
    run = train_ssd.resolve_run([str(a) for a in common(data, tmp_path / "run", 1, *extra)])
    d = train_ssd.build_data(run)
    part = d.train.datasets[0] if hasattr(d.train, "datasets") else d.train
    augmentation = part.transform.make()
    assert augmentation.geometry.max_expand == expected


@pytest.mark.parametrize("extra,expected", [((), 0.3), (("--min-crop-scale", "0.6"), 0.6), (("--min-crop-scale", "1"), 1.0)])
def test_min_crop_scale_reaches_the_training_augmentation(data, tmp_path, extra, expected):
    """--min-crop-scale is the zoom-in limit of the augmentation train_ssd.py builds (default 0.3, upstream's)."""
    import train_ssd
    run = train_ssd.resolve_run([str(a) for a in common(data, tmp_path / "run", 1, *extra)])
    d = train_ssd.build_data(run)
    part = d.train.datasets[0] if hasattr(d.train, "datasets") else d.train
    assert part.transform.make().geometry.min_scale == expected


@pytest.mark.parametrize("extra,expected", [((), True), (("--no-channel-swap",), False), (("--channel-swap",), True)])
def test_channel_swap_reaches_the_training_augmentation(data, tmp_path, extra, expected):
    """--no-channel-swap turns off the photometric channel permutation (on by default, upstream's)."""
    import train_ssd
    run = train_ssd.resolve_run([str(a) for a in common(data, tmp_path / "run", 1, *extra)])
    d = train_ssd.build_data(run)
    part = d.train.datasets[0] if hasattr(d.train, "datasets") else d.train
    assert part.transform.make().photometric.channel_swap is expected


def test_min_crop_scale_1_never_crops():
    """At 1 every patch is the whole (zoomed-out) canvas: boxes keep their place and size."""
    import numpy as np

    from vision.ssd.data_preprocessing import TrainAugmentation

    image = np.zeros((120, 160, 3), np.uint8)
    boxes = np.array([[10, 20, 50, 60], [100, 30, 150, 110]], np.float32)
    aug = TrainAugmentation(160, 127, 128.0, seed=0, max_expand=1, min_crop_scale=1)
    seen = set()
    for _ in range(40):
        _, out, _ = aug(image, boxes, np.array([1, 2]))
        xs = tuple(sorted(np.round(out[:, [0, 2]].flatten().numpy(), 4)))
        seen.add(xs)
    expected = {tuple(sorted(np.round(np.array([10, 50, 100, 150]) / 160, 4))),
                tuple(sorted(np.round(1 - np.array([10, 50, 100, 150]) / 160, 4)))}  # as is, or mirrored
    assert seen == expected
    with pytest.raises(ValueError):
        TrainAugmentation(160, min_crop_scale=0)
