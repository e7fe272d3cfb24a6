"""Crash safety of train_ssd.py: SIGKILL at exact and random moments, then ``--resume``; a disk that
fills up or a folder that becomes unwritable while a checkpoint is saved.

Every killed run must resume from the newest COMPLETE checkpoint (no file under a checkpoint name
is ever partial, so none is skipped as damaged), finish with weights identical to an uninterrupted
run with the same seed, leave no temp files, and keep ``best.pth`` the checkpoint its records name.
A failed save must keep the previous checkpoints, end with one error line saying what happened
and a non-zero exit, and the run must continue from there with ``--resume``.

Setting (small on purpose): mb1-ssd-lite at 64 px, 8 training images, batch 2 (4 steps an epoch),
3 epochs, --workers 0, fixed seed, one compute thread per process.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from crash_runner import REPO, Child

pytestmark = pytest.mark.slow

NET = "mb1-ssd-lite"
EPOCHS = 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tiny_coco):
    return tiny_coco


def train_args(data: Path, folder: Path) -> list[str]:
    return ["--datasets", str(data), "--net", NET, "--resolution", "64", "--batch-size", "2", "--workers", "0",
            "--seed", "3", "--lr", "0.003", "--warmup-epochs", "0.5", "--t-max", str(EPOCHS), "--debug-steps", "1",
            "--epochs", str(EPOCHS), "--checkpoint-folder", str(folder)]


def train(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train_ssd.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def checkpoints(folder: Path) -> list[Path]:
    from vision.training.checkpoint import list_checkpoints
    return list_checkpoints(folder)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def final_model(folder: Path) -> dict:
    path = next(p for p in checkpoints(folder) if p.name.startswith(f"{NET}-Epoch-{EPOCHS - 1}-Loss-"))
    return load(path)["model"]


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run, and how long its training part took (for random kill times)."""
    folder = tmp_path_factory.mktemp("crash_ref") / "run"
    child = Child("train_ssd.py", train_args(data, folder))
    child.wait_for("training epochs", timeout=120)
    t0 = time.monotonic()
    assert child.wait() == 0, child.text[-4000:]
    return {"folder": folder, "seconds": time.monotonic() - t0, "model": final_model(folder),
            "metrics": metrics(folder)}


def check_after_kill(folder: Path) -> Path | None:
    """Right after a SIGKILL: every file under a checkpoint name is complete. Returns the newest."""
    found = checkpoints(folder)
    for p in [*found, *folder.glob("best.pth")]:
        ckpt = load(p)  # a partial file would fail here
        assert "model" in ckpt and "optimizer" in ckpt, p
    return found[-1] if found else None


def resume_to_the_end(folder: Path, newest: Path | None) -> str:
    r = train("--resume", folder)
    assert r.returncode == 0, r.stderr[-4000:]
    if newest is None:
        assert "no usable checkpoint" in r.stderr, r.stderr[-3000:]
    else:
        assert f"resuming from {newest}" in r.stderr, r.stderr[-3000:]
    assert "skipping checkpoint" not in r.stderr, "a damaged checkpoint was found (a partial file got a final name)"
    return r.stderr


def check_finished_like_reference(folder: Path, reference: dict) -> None:
    model = final_model(folder)
    assert model.keys() == reference["model"].keys()
    diff = {k: (model[k].double() - reference["model"][k].double()).abs().max().item()
            for k in model if model[k].numel()}
    worst = max(diff.items(), key=lambda kv: kv[1])
    assert worst[1] == 0.0, f"weights differ from the uninterrupted run: {worst}"
    got = metrics(folder)
    assert [m["epoch"] for m in got] == list(range(EPOCHS))
    assert [m["train_loss"] for m in got] == [m["train_loss"] for m in reference["metrics"]]
    temps = sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))
    assert not temps, f"temp files left behind: {temps}"
    # best.pth is the checkpoint the run's records call best
    last = load(checkpoints(folder)[-1])
    best_file = folder / last["best_metric"]["file"]
    assert best_file.is_file(), best_file
    same = (folder / "best.pth").read_bytes() == best_file.read_bytes()
    assert same, f"best.pth is not {best_file.name}, the best checkpoint according to the run's records"


def best_updates(reference: dict) -> list[int]:
    """Epochs whose validation loss was the best so far (each one re-links best.pth)."""
    out, best = [], None
    for m in reference["metrics"]:
        if best is None or m["val_loss"] < best:
            out.append(m["epoch"])
            best = m["val_loss"]
    return out


def kill_at_hook(args: list, hooks: dict[str, str]) -> str:
    """Start a run with ``hooks``, SIGKILL it inside the hooked moment; return its output."""
    child = Child("train_ssd.py", args, hooks)
    try:
        child.wait_for("CRASH-HOOK", timeout=180)
    finally:
        child.kill()
    return child.text


def test_kill_at_exact_moments_then_resume_is_exact(data, reference, tmp_path):
    """One run killed three times, each resumed run inside the next window, then finished:
    1. half of the epoch-1 checkpoint written to its temp file,
    2. the epoch-2 checkpoint complete under its temp name, not renamed,
    3. the last checkpoint saved, best.pth not yet re-linked to it (so the resumed run has no
       epoch left to train: what the killed run did not finish must still be done)."""
    folder = tmp_path / "run"
    kill_at_hook(train_args(data, folder), {"CRASH_HOOK_WRITE": rf"^\.{NET}-Epoch-1-Loss-.*\.pth\.",
                                            "CRASH_HOOK_WRITE_BYTES": "10000000"})
    newest = check_after_kill(folder)
    assert newest is not None and newest.name.startswith(f"{NET}-Epoch-0-Loss-"), newest
    assert list(folder.glob(f".{NET}-Epoch-1-*.tmp")), "the kill was meant to leave a partial temp file"

    out = kill_at_hook(["--resume", folder], {"CRASH_HOOK_REPLACE": rf"^{NET}-Epoch-2-Loss-.*\.pth$"})
    assert f"resuming from {newest}" in out
    newest = check_after_kill(folder)
    assert newest.name.startswith(f"{NET}-Epoch-1-Loss-"), newest

    assert best_updates(reference)[-1] == EPOCHS - 1, "the setting changed: the last epoch must be the best"
    out = kill_at_hook(["--resume", folder], {"CRASH_HOOK_REPLACE": r"^best\.pth$"})
    assert f"resuming from {newest}" in out
    newest = check_after_kill(folder)
    assert newest.name.startswith(f"{NET}-Epoch-{EPOCHS - 1}-Loss-"), newest

    resume_to_the_end(folder, newest)
    check_finished_like_reference(folder, reference)


def test_kill_at_random_moments_then_resume_is_exact(data, reference, tmp_path):
    """Kill a run, then each resumed run, at random moments of the training part; then finish."""
    rng = random.Random(11)
    folder = tmp_path / "run"
    args, kills, newest = train_args(data, folder), [], None
    for attempt in range(3):
        child = Child("train_ssd.py", args)
        try:
            try:
                child.wait_for("training epochs", timeout=120)
            except AssertionError:
                if child.proc.poll() == 0:  # an earlier kill came after the last checkpoint
                    break
                raise
            delay = rng.uniform(0.05, 0.95) * reference["seconds"]
            time.sleep(delay)
        finally:
            child.kill()
        newest = check_after_kill(folder)
        kills.append((round(delay, 2), newest.name if newest else None))
        args = ["--resume", folder]
    print("kills (seconds into training, newest complete checkpoint after it):", kills)
    resume_to_the_end(folder, newest)
    check_finished_like_reference(folder, reference)


# ------------------------------------------------------------------------------------ full or read-only disk
def last_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def fail_save(args: list, name_re: str, errno_name: str, after: int) -> str:
    """Run until writing a file matching ``name_re`` fails with ``errno_name`` after ``after`` bytes."""
    child = Child("train_ssd.py", args, {"CRASH_HOOK_FAIL": name_re, "CRASH_HOOK_FAIL_ERRNO": errno_name,
                                         "CRASH_HOOK_FAIL_AFTER": str(after)})
    rc = child.wait()
    assert rc == 1, child.text[-3000:]
    return child.text


def test_failed_save_keeps_previous_checkpoint_and_says_why(data, reference, tmp_path):
    """The disk fills up half-way through the epoch-1 checkpoint; after --resume, the folder becomes
    unwritable (chmod does not stop root, so the failure is injected) when epoch 2 is saved; after
    another --resume the last checkpoint fits but the disk is full for metrics.jsonl; then space and
    rights are back and the run finishes as if nothing happened."""
    folder = tmp_path / "run"
    out = fail_save(train_args(data, folder), rf"{NET}-Epoch-1-Loss-.*\.pth", "ENOSPC", 10_000_000)
    line = last_error_line(out)
    assert "No space left on device" in line and f"{NET}-Epoch-1-Loss-" in line and "--resume" in line, line
    assert [p.name.split("-Loss-")[0] for p in checkpoints(folder)] == [f"{NET}-Epoch-0"]
    check_after_kill(folder)
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]

    out = fail_save(["--resume", folder], rf"{NET}-Epoch-2-Loss-.*\.pth", "EACCES", 0)
    line = last_error_line(out)
    assert "Permission denied" in line and f"{NET}-Epoch-2-Loss-" in line and "--resume" in line, line
    files = checkpoints(folder)
    assert [p.name.split("-Loss-")[0] for p in files] == [f"{NET}-Epoch-0", f"{NET}-Epoch-1"]
    check_after_kill(folder)

    out = fail_save(["--resume", folder], r"metrics\.jsonl", "ENOSPC", 0)
    line = last_error_line(out)
    assert "No space left on device" in line and "metrics.jsonl" in line and "--resume" in line, line
    files = checkpoints(folder)
    assert files[-1].name.startswith(f"{NET}-Epoch-{EPOCHS - 1}-Loss-")
    assert [m["epoch"] for m in metrics(folder)] == list(range(EPOCHS - 1))
    check_after_kill(folder)

    resume_to_the_end(folder, files[-1])
    check_finished_like_reference(folder, reference)


def test_real_full_disk_when_tmpfs_can_be_mounted(data, reference, tmp_path):
    """The same on a real filesystem that runs out of space (a small tmpfs; needs mount rights)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    size = reference["folder"].joinpath("best.pth").stat().st_size
    # an epoch's checkpoint is written before validation and rewritten after it: room for epoch 0
    # twice, not for epoch 1's second write
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size * 5 // 2}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the simulated case covers it")
    try:
        folder = mnt / "run"
        r = train(*train_args(data, folder))
        assert r.returncode == 1, r.stderr[-3000:]
        line = last_error_line(r.stderr)
        assert "No space left on device" in line and f"{NET}-Epoch-1-Loss-" in line, line
        files = checkpoints(folder)
        assert [p.name.split("-Loss-")[0] for p in files][0] == f"{NET}-Epoch-0"
        assert all(p.name.endswith("-Loss-nan.pth") for p in files[1:]), files  # saved before validation
        check_after_kill(folder)
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
