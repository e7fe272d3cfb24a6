"""train_ssd.py under torchrun: 2 CPU processes, gloo backend, DistributedDataParallel."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NET = "mb1-ssd-lite"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_process_gloo_run_and_single_process_resume(tmp_path):
    from vision.datasets.synthetic import generate_coco_dataset
    from vision.ssd.registry import create_net
    from vision.training.checkpoint import list_checkpoints

    data = tmp_path / "syn"
    generate_coco_dataset(data, 12, 4, seed=2)
    folder = tmp_path / "run"
    args = ["--datasets", data, "--net", NET, "--resolution", "64", "--batch-size", "2", "--workers", "0",
            "--seed", "1", "--device", "cpu", "--debug-steps", "1", "--checkpoint-folder", folder]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "train_ssd.py", *map(str, args), "--epochs", "2"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-4000:]
    log = r.stdout + r.stderr
    # 12 images over 2 processes of batch 2: 3 steps an epoch, each of 4 images
    assert "3 steps of 4 images per epoch on 2 processes" in log
    assert log.count("training done") == 1  # only rank 0 logs at info level
    assert log.count("Epoch: 1, Step: 3/3") == 1

    files = list_checkpoints(folder)
    assert [p.name.split("-Loss-")[0] for p in files] == [f"{NET}-Epoch-0", f"{NET}-Epoch-1"]
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    ckpt = torch.load(files[-1], weights_only=True)
    assert ckpt["world_size"] == 2
    net = create_net(NET, 7, resolution=64)
    assert list(ckpt["model"]) == list(net.state_dict())  # unwrapped: no "module." prefix
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in rows] == [0, 1]
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in rows)

    # the DDP run's checkpoint continues in a single process
    r = subprocess.run([sys.executable, "train_ssd.py", "--resume", str(folder), "--epochs", "3"], cwd=REPO,
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "continuing at epoch 2" in r.stderr
    assert torch.load(list_checkpoints(folder)[-1], weights_only=True)["epoch"] == 2


@pytest.mark.slow
def test_two_process_run_stopped_mid_epoch_resumes_in_one_process_at_the_next_image(tmp_path):
    """SIGTERM to the torchrun process group inside epoch 1 (after 1 step of 2 x 2 images), then a
    single-process --resume: the rest of the epoch is the 8 images not trained yet (4 steps of 2),
    not 5 steps from the old step index (the upstream behaviour: 14 images, two twice)."""
    import signal
    from vision.datasets.synthetic import generate_coco_dataset
    from vision.training.checkpoint import list_checkpoints

    data = tmp_path / "syn"
    generate_coco_dataset(data, 12, 4, seed=2)
    folder = tmp_path / "run"
    args = ["--datasets", data, "--net", NET, "--resolution", "128", "--batch-size", "2", "--workers", "0",
            "--seed", "1", "--device", "cpu", "--debug-steps", "1", "--checkpoint-folder", folder, "--epochs", "2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "train_ssd.py", *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=ENV,
                            start_new_session=True)
    log = []
    try:
        for line in proc.stderr:
            log.append(line)
            if "Epoch: 1, Step: 1/3" in line:
                os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = "".join(log)
    interrupted = [p for p in list_checkpoints(folder) if "interrupted" in p.name]
    assert len(interrupted) == 1, text[-4000:]
    ckpt = torch.load(interrupted[0], weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 1
    done = ckpt["samples_in_epoch_total"]
    assert done == 4 * ckpt["step_in_epoch"] and 0 < done < 12

    r = subprocess.run([sys.executable, "train_ssd.py", "--resume", str(folder)], cwd=REPO,
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-4000:]
    assert f"{done} of its 12 images were trained before the stop (by 2 processes, now 1)" in r.stderr, r.stderr
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in rows] == [0, 1]
    assert rows[1]["train_images"] == 12 and rows[0]["train_images"] == 12


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(per_rank_args, **popen):
    """Two train_ssd.py processes joined as a gloo group by hand (as two torchrun nodes would be), each
    with its own command line."""
    port = _free_port()
    procs = []
    for rank, args in enumerate(per_rank_args):
        env = {**ENV, "RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": str(len(per_rank_args)),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "train_ssd.py", *map(str, args)], cwd=REPO, env=env,
                                      stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, **popen))
    return procs


@pytest.mark.slow
@pytest.mark.parametrize("images_b,expected", [
    (6, "(training images: 6 vs 8)"),
    # same classes and numbers of images, other pictures and boxes (another seed): not trained on silently
    (8, "(training images and boxes:"),
], ids=["other-counts", "same-counts-other-contents"])
def test_ranks_on_different_data_are_refused_on_every_rank(tmp_path, images_b, expected):
    from vision.datasets.synthetic import generate_coco_dataset
    a, b = tmp_path / "a", tmp_path / "b"
    generate_coco_dataset(a, 8, 2, seed=2)
    generate_coco_dataset(b, images_b, 2, seed=3)
    common = ["--net", NET, "--resolution", "64", "--batch-size", "2", "--workers", "0", "--seed", "1",
              "--device", "cpu", "--epochs", "1", "--checkpoint-folder", tmp_path / "run"]
    procs = _start_ranks([["--datasets", a, *common], ["--datasets", b, *common]])
    outs = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, outs):
        assert p.returncode == 2, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert f"process 1 sees other data than process 0 {expected}" in last, err[-3000:]
        assert "Traceback" not in err and "terminate called" not in err


def _signal_rank1_mid_epoch(tmp_path, folder, sig, resolution: int):
    """Two ranks on one small synthetic set; ``sig`` to process 1 once process 0 logs epoch 0's step 2.
    Returns (exit code, stderr) of process 0, then of process 1, both ended."""
    from vision.datasets.synthetic import generate_coco_dataset
    data = tmp_path / "syn"
    generate_coco_dataset(data, 24, 2, seed=2)
    args = ["--datasets", data, "--net", NET, "--resolution", str(resolution), "--batch-size", "2", "--workers",
            "0", "--seed", "1", "--device", "cpu", "--debug-steps", "1", "--epochs", "3", "--checkpoint-folder", folder]
    rank0, rank1 = _start_ranks([args, args])
    try:
        log = []
        for line in rank0.stderr:
            log.append(line)
            if "Epoch: 0, Step: 2/" in line:
                rank1.send_signal(sig)
        rank0.wait(timeout=300)
        err1 = rank1.communicate(timeout=300)[1]
    finally:
        for p in (rank0, rank1):
            if p.poll() is None:
                p.kill()
    return rank0.returncode, "".join(log), rank1.returncode, err1


@pytest.mark.slow
def test_when_one_process_dies_the_other_ends_with_one_line_and_the_resume_command(tmp_path):
    import signal
    folder = tmp_path / "run"
    rc0, err, _, _ = _signal_rank1_mid_epoch(tmp_path, folder, signal.SIGKILL, resolution=128)
    assert rc0 == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "another training process ended or stopped answering" in last, err[-3000:]
    assert f"continue with --resume {folder}" in last and "Traceback" not in err, err[-3000:]


@pytest.mark.slow
def test_two_process_run_with_ema_saves_rank_0s_ema_and_resumes_in_one_process(tmp_path):
    """--ema under DDP: every rank keeps the EMA (its validation share runs it), rank 0 saves it
    like the net; one optimizer step is one update on every rank, and a one-process resume goes on
    counting from the saved updates."""
    from vision.datasets.synthetic import generate_coco_dataset
    from vision.training.checkpoint import list_checkpoints

    data = tmp_path / "syn"
    generate_coco_dataset(data, 12, 4, seed=2)
    folder = tmp_path / "run"
    args = ["--datasets", data, "--net", NET, "--resolution", "64", "--batch-size", "2", "--workers", "0",
            "--seed", "1", "--device", "cpu", "--debug-steps", "1", "--checkpoint-folder", folder,
            "--ema", "0.9", "--ema-warmup", "2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "train_ssd.py", *map(str, args), "--epochs", "1"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-4000:]
    ckpt = torch.load(list_checkpoints(folder)[-1], weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["ema"]["updates"] == 3  # 3 steps of 2 x 2 images
    raw = ckpt["ema"]["raw_model"]
    assert list(ckpt["model"]) == list(raw)
    assert max((ckpt["model"][k].float() - raw[k].float()).abs().max().item() for k in raw) > 1e-4

    r = subprocess.run([sys.executable, "train_ssd.py", "--resume", str(folder), "--epochs", "2"], cwd=REPO,
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "3 updates so far" in r.stderr
    assert torch.load(list_checkpoints(folder)[-1], weights_only=True)["ema"]["updates"] == 3 + 6  # 6 steps of 2


@pytest.mark.slow
def test_a_rank_that_refuses_alone_ends_the_other_with_one_line(tmp_path):
    """Process 1 is given a missing folder (its own one-line refusal, exit 2) after both joined: process 0
    ends with one line (exit 1), not gloo's traceback, and does not wait for a timeout."""
    from vision.datasets.synthetic import generate_coco_dataset
    a = tmp_path / "a"
    generate_coco_dataset(a, 8, 2, seed=2)
    common = ["--net", NET, "--resolution", "64", "--batch-size", "2", "--workers", "0", "--seed", "1",
              "--device", "cpu", "--epochs", "1", "--checkpoint-folder", tmp_path / "run"]
    procs = _start_ranks([["--datasets", a, *common], ["--datasets", tmp_path / "missing", *common]])
    outs = [p.communicate(timeout=300)[1] for p in procs]
    assert procs[1].returncode == 2, outs[1][-3000:]
    assert procs[0].returncode == 1, outs[0][-3000:]
    last = outs[0].strip().splitlines()[-1]
    assert "another training process ended or stopped answering before training started" in last, outs[0][-3000:]
    assert all("Traceback" not in err and "terminate called" not in err for err in outs)


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_at_the_same_step(tmp_path):
    """SIGTERM to process 1 only: both stop at the same step, process 0 saves the position and names
    the cause; neither waits in a collective the other never reaches."""
    import signal
    rc0, err, rc1, err1 = _signal_rank1_mid_epoch(tmp_path, tmp_path / "run", signal.SIGTERM, resolution=64)
    assert rc0 == 0 and rc1 == 0, (err[-3000:], err1[-3000:])
    assert "stopped by a signal to another process at epoch 0" in err, err[-3000:]
    assert "Traceback" not in err + err1 and "terminate called" not in err + err1
