"""vision.training.checkpoint: names, atomic save/load, newest-valid fallback, pruning, RNG states."""
import os
import random

import numpy as np
import pytest
import torch

from vision.training import checkpoint as checkpoint_module
from vision.training.checkpoint import (BEST_NAME, TrainingCheckpoint, capture_rng_state, checkpoint_name, find_latest_valid_checkpoint,
                                     link_best, list_checkpoints, load_checkpoint, parse_checkpoint_name,
                                     prune_checkpoints, remove_stale_temp_files_in, restore_rng_state,
                                     save_checkpoint)
from vision.utils.misc import UserError


def _state(epoch, step=0):
    return {"epoch": epoch, "step_in_epoch": step, "model": {"w": torch.full((3,), float(epoch))},
            "rng": capture_rng_state(), "args": {"net": "mb1-ssd", "betas": [0.9, 0.999]}, "best_metric": None}


def test_names_round_trip_and_match_upstream_pattern():
    name = checkpoint_name("mb1-ssd", 7, 2.5)
    assert name == "mb1-ssd-Epoch-7-Loss-2.5.pth"
    # upstream onnx_export.py --model-dir picks the lowest float(name.split("Loss-")[1][:-4])
    assert float(name.split("Loss-")[1][:-4]) == 2.5
    assert parse_checkpoint_name(name) == (7, 0)
    mid = checkpoint_name("mb2-ssd-lite", 3, step_in_epoch=12)
    assert "Loss-" not in mid  # an export never picks an interrupted file
    assert parse_checkpoint_name(mid) == (3, 12)
    assert parse_checkpoint_name("best.pth") is None
    assert parse_checkpoint_name("mb1-ssd-Epoch-x-Loss-1.pth") is None


def test_save_is_atomic_and_loads_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / checkpoint_name("n", 0, 1.0), _state(0))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model"]["w"], torch.zeros(3))
    assert ckpt["args"]["betas"] == [0.9, 0.999]


def test_load_refuses_plain_weights_and_garbage(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(UserError, match="plain weights file"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        load_checkpoint(junk)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_order_puts_interrupted_between_epochs(tmp_path):
    for name in ("n-Epoch-10-Loss-1.0.pth", "n-Epoch-2-Loss-3.0.pth", "n-Epoch-3-Step-5-interrupted.pth",
                 "n-Epoch-3-Loss-2.0.pth", "best.pth", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "n-Epoch-2-Loss-3.0.pth", "n-Epoch-3-Step-5-interrupted.pth", "n-Epoch-3-Loss-2.0.pth",
        "n-Epoch-10-Loss-1.0.pth"]


def test_truncated_newest_falls_back_to_previous(tmp_path, caplog):
    save_checkpoint(tmp_path / checkpoint_name("n", 0, 2.0), _state(0))
    newest = save_checkpoint(tmp_path / checkpoint_name("n", 1, 1.0), _state(1))
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    path, ckpt = find_latest_valid_checkpoint(tmp_path)
    assert ckpt["epoch"] == 0 and path.name.startswith("n-Epoch-0-")
    assert "skipping checkpoint" in caplog.text and newest.name in caplog.text
    assert find_latest_valid_checkpoint(tmp_path / "nothing-here") is None


def test_prune_keeps_newest_n_plus_best_and_drops_stale_interrupted(tmp_path):
    names = [checkpoint_name("n", e, 10.0 - e) for e in range(5)]
    for e, name in enumerate(names):
        save_checkpoint(tmp_path / name, _state(e))
    (tmp_path / checkpoint_name("n", 2, step_in_epoch=3)).write_bytes(b"x")
    best = link_best(tmp_path, tmp_path / names[1])
    deleted = prune_checkpoints(tmp_path, keep=2, protect=[tmp_path / names[1]])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([names[1], names[3], names[4], BEST_NAME])
    assert len(deleted) == 3
    assert load_checkpoint(best)["epoch"] == 1
    # best.pth survives its epoch file being pruned later (hard link or copy)
    prune_checkpoints(tmp_path, keep=1)
    assert load_checkpoint(best)["epoch"] == 1


def test_link_best_replaces_atomically(tmp_path):
    a = save_checkpoint(tmp_path / checkpoint_name("n", 0, 2.0), _state(0))
    b = save_checkpoint(tmp_path / checkpoint_name("n", 1, 1.0), _state(1))
    link_best(tmp_path, a)
    link_best(tmp_path, b)
    assert load_checkpoint(tmp_path / BEST_NAME)["epoch"] == 1
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random(), np.random.rand(), np.random.randn(), torch.rand(1)  # advance, leave a cached gauss
    save_checkpoint(tmp_path / "r-Epoch-0-Loss-1.pth", _state(0))
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "r-Epoch-0-Loss-1.pth")["rng"])
    got = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


def test_stale_temp_files_of_killed_writes_are_removed(tmp_path):
    keep = save_checkpoint(tmp_path / checkpoint_name("n", 0, 1.0), _state(0))
    stale = [tmp_path / ".n-Epoch-1-Loss-0.5.pth.k2j4_x9a.tmp", tmp_path / ".best.pth.abc123de.tmp",
             tmp_path / ".args.json.zz_1.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    assert sorted(remove_stale_temp_files_in(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([keep.name, "notes.tmp"])


def test_resume_skips_a_checkpoint_with_nan_buffers(tmp_path, caplog):
    good = save_checkpoint(tmp_path / checkpoint_name("n", 0, 1.0), _state(0))
    bad = _state(1)
    bad["model"]["bn.running_var"] = torch.tensor([1.0, float("nan")])
    bad_path = tmp_path / checkpoint_name("n", 1, 1.0)
    torch.save(bad, bad_path)  # written by an older version, which saved whatever it had
    with caplog.at_level("WARNING"):
        path, ckpt = find_latest_valid_checkpoint(tmp_path)
    assert path == good and ckpt["epoch"] == 0
    assert bad_path.name in caplog.text and "bn.running_var" in caplog.text


def test_a_model_with_nan_is_never_saved(tmp_path):
    from vision.training.checkpoint import nonfinite_tensors
    from vision.utils.misc import Failure

    state = _state(0)
    state["model"]["bn.running_mean"] = torch.tensor([float("inf")])
    state["model"]["bn.num_batches_tracked"] = torch.tensor(3)
    assert nonfinite_tensors(state["model"]) == ["bn.running_mean"]
    with pytest.raises(Failure, match="NaN/inf"):
        save_checkpoint(tmp_path / checkpoint_name("n", 0, 1.0), state)
    assert list(tmp_path.iterdir()) == []


def test_training_checkpoint_writes_the_documented_keys_and_reads_older_files(tmp_path):
    """The module docstring lists exactly the keys written; a file from before a key existed still loads."""
    doc = checkpoint_module.__doc__.split("::")[1].split("\n\n")[1]
    documented = set()
    for line in doc.splitlines():
        if line.startswith("    ") and not line.startswith("     "):
            documented.update(k.strip() for k in line.strip().split("  ")[0].split(","))
    ckpt = TrainingCheckpoint(epoch=2, model={"w": torch.ones(2)}, step_in_epoch=3, samples_in_epoch=12,
                              class_names=["BACKGROUND", "a"], net="mb1-ssd", resolution=300)
    assert set(ckpt.to_dict()) == documented and len(documented) == 22
    path = ckpt.save(tmp_path / checkpoint_name("mb1-ssd", 2, step_in_epoch=3))
    back = TrainingCheckpoint.load(path)
    assert back.interrupted and back.samples_in_epoch == 12 and torch.equal(back.model["w"], torch.ones(2))
    assert back.to_dict().keys() == ckpt.to_dict().keys()
    old = _state(4)  # an older file: no samples_in_epoch, scaler, nonfinite_steps, world_size, ...
    save_checkpoint(tmp_path / "old.pth", old)
    read = TrainingCheckpoint.load(tmp_path / "old.pth")
    assert (read.epoch, read.step_in_epoch, read.samples_in_epoch, read.nonfinite_steps, read.scaler) == (4, 0, 0, 0,
                                                                                                          None)
    assert not read.interrupted and read.args["net"] == "mb1-ssd"
