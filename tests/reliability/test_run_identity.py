"""A checkpoint folder holds one run: run ids, refusing a new run over another, --archive-old-run,
--resume continuing only the folder's own run, and failed starts leaving no folder behind.

Every "folder holding another run" case is one parameter of ``test_new_run_into_a_folder_with_another_run``.
The refusals happen before any data is read, so those cases run ``main()`` in this process.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

NET = "mb1-ssd-lite"


def run_inprocess(argv, capsys):
    import train_ssd
    from vision.utils.misc import run_main
    rc = run_main(train_ssd.main, [str(a) for a in argv])
    return rc, capsys.readouterr().err


@pytest.fixture(autouse=True)
def _restore_logging():
    import logging
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from vision.datasets.synthetic import generate_coco_dataset
    root = tmp_path_factory.mktemp("identity_data") / "syn"
    generate_coco_dataset(root, 4, 2, seed=1, image_size=(96, 72))  # 2 steps an epoch
    return root


def common(data, folder, epochs=1, *extra):
    return ["--datasets", data, "--net", NET, "--resolution", "128", "--batch-size", "2", "--workers", "0",
            "--seed", "3", "--epochs", str(epochs), "--checkpoint-folder", folder, *extra]


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """A real 1-epoch run folder (copy it before changing it)."""
    import logging
    import train_ssd
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    folder = tmp_path_factory.mktemp("identity_run") / "run"
    assert train_ssd.main([str(a) for a in common(data, folder)]) == 0
    root.handlers[:] = handlers
    root.setLevel(level)
    return folder


def _checkpoint_files(folder):
    from vision.training.checkpoint import list_checkpoints
    return list_checkpoints(folder)


def _fake_checkpoint(path, run_id="0ld0ld"):
    from vision.training.checkpoint import TrainingCheckpoint
    TrainingCheckpoint(epoch=0, model={"w": torch.ones(1)}, net=NET, run_id=run_id).save(path)


ARGS_JSON = {"run_id": "0ld0ld", "args": {"net": "mb2-ssd-lite"}, "class_names": ["BACKGROUND", "a"],
             "created": "2026-01-02T03:04:05+00:00"}


def _make_other_run(folder: Path, kind: str) -> None:
    folder.mkdir(parents=True)
    if kind in ("args.json", "full run"):
        (folder / "args.json").write_text(json.dumps(ARGS_JSON))
    if kind in ("checkpoint", "full run"):
        _fake_checkpoint(folder / f"{NET}-Epoch-0-Loss-1.5.pth")
    if kind in ("interrupted checkpoint",):
        _fake_checkpoint(folder / f"{NET}-Epoch-2-Step-3-interrupted.pth")
    if kind in ("metrics.jsonl", "full run"):
        (folder / "metrics.jsonl").write_text(json.dumps({"run_id": "0ld0ld", "epoch": 0, "val_loss": 1.5}) + "\n")
    if kind in ("best.pth", "full run"):
        _fake_checkpoint(folder / "best.pth")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


KINDS = ["args.json", "checkpoint", "interrupted checkpoint", "metrics.jsonl", "best.pth", "full run"]


@pytest.mark.parametrize("extra", [[], ["--force-override"]], ids=["plain", "force-override"])
@pytest.mark.parametrize("kind", KINDS)
def test_new_run_into_a_folder_with_another_run_is_refused(data, tmp_path, capsys, kind, extra):
    folder = tmp_path / "B"
    _make_other_run(folder, kind)
    before = _snapshot(folder)
    rc, err = run_inprocess(common(data, folder, 1, *extra), capsys)
    assert rc == 2, err
    line = err.strip()
    assert len(line.splitlines()) == 1, err
    assert "already holds a training run" in line and f"--resume {folder}" in line, line
    assert "--checkpoint-folder" in line and "--archive-old-run" in line, line
    if kind in ("args.json", "full run"):  # named by its args.json
        assert "run 0ld0ld (net mb2-ssd-lite, created 2026-01-02T03:04:05+00:00)" in line, line
    assert _snapshot(folder) == before  # nothing of the other run was touched


@pytest.mark.slow
def test_archive_old_run_moves_it_aside_and_starts_a_new_one(data, finished_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    old_id = json.loads((folder / "args.json").read_text())["run_id"]
    before = _snapshot(folder)
    rc, err = run_inprocess(common(data, folder, 1, "--archive-old-run"), capsys)
    assert rc == 0, err
    archived = folder / f"archived-{old_id[:12]}"
    assert "--archive-old-run: moved run" in err and str(archived) in err, err
    assert {k: v for k, v in _snapshot(archived).items()} == {  # every file of the old run, unchanged
        Path(k).name: v for k, v in before.items() if Path(k).parts[0] != "tensorboard"}
    new = json.loads((folder / "args.json").read_text())
    assert new["run_id"] != old_id and len(new["run_id"]) == 32
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["run_id"] for r in rows] == [new["run_id"]]
    for path in _checkpoint_files(folder):
        assert torch.load(path, weights_only=True)["run_id"] == new["run_id"]


@pytest.mark.slow
def test_resume_continues_only_the_folders_own_run(data, finished_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    run_id = json.loads((folder / "args.json").read_text())["run_id"]
    own = _checkpoint_files(folder)[-1]
    assert torch.load(own, weights_only=True)["run_id"] == run_id
    foreign = torch.load(own, weights_only=True)
    foreign["run_id"], foreign["epoch"] = "f0reign", 5
    torch.save(foreign, folder / f"{NET}-Epoch-5-Loss-0.1.pth")  # newer, of another run
    # an explicit checkpoint of another run: refused in one line
    rc, err = run_inprocess(["--resume", folder / f"{NET}-Epoch-5-Loss-0.1.pth"], capsys)
    assert rc == 2 and "belongs to run f0reign" in err and len(err.strip().splitlines()) == 1, err
    # the folder: the foreign file is skipped, saying so, and the run's own newest one continues
    rc, err = run_inprocess(["--resume", folder, "--epochs", "2", "--log-level", "info"], capsys)
    assert rc == 0, err
    assert f"skipping checkpoint {folder / f'{NET}-Epoch-5-Loss-0.1.pth'}: it belongs to run f0reign" in err, err
    assert "continuing at epoch 1" in err, err
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["run_id"]) for r in rows] == [(0, run_id), (1, run_id)]


@pytest.mark.slow
def test_a_run_from_before_run_ids_still_resumes(data, finished_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    desc = json.loads((folder / "args.json").read_text())
    del desc["run_id"]
    (folder / "args.json").write_text(json.dumps(desc))
    for path in _checkpoint_files(folder) + [folder / "best.pth"]:
        ckpt = torch.load(path, weights_only=True)
        del ckpt["run_id"], ckpt["samples_in_epoch_total"]
        path.unlink()  # best.pth is a hard link of the epoch's file
        torch.save(ckpt, path)
    rows = [{k: v for k, v in json.loads(line).items() if k != "run_id"}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc, err = run_inprocess(["--resume", folder, "--epochs", "2", "--log-level", "info"], capsys)
    assert rc == 0 and "continuing at epoch 1" in err, err
    assert "run_id" not in json.loads((folder / "args.json").read_text()) or \
        json.loads((folder / "args.json").read_text())["run_id"] is None


@pytest.mark.parametrize("case", ["missing dataset", "pretrained of another net"])
def test_a_failed_start_leaves_no_checkpoint_folder(data, tmp_path, capsys, case):
    folder = tmp_path / "new" / "run"
    if case == "missing dataset":
        argv = common(tmp_path / "no-data", folder)
    else:
        from vision.ssd.registry import create_net
        wrong = tmp_path / "mb2.pth"
        torch.save(create_net("mb2-ssd-lite", 7).state_dict(), wrong)
        argv = common(data, folder, 1, "--pretrained-ssd", wrong)
    rc, err = run_inprocess(argv, capsys)
    assert rc == 2, err
    assert not folder.exists() and not (tmp_path / "new").exists(), list(tmp_path.rglob("*"))


# ------------------------------------------------------- sets without boxes; the epoch saved first
@pytest.mark.parametrize("which", ["training", "validation"])
def test_a_set_without_a_single_box_is_refused(data, tmp_path, capsys, which):
    from vision.datasets.synthetic import generate_coco_dataset
    empty = tmp_path / "empty"
    generate_coco_dataset(empty, 4, 2, seed=1, image_size=(96, 72), empty_share=1.0)
    capsys.readouterr()  # the generator's own log line is not the run's
    folder = tmp_path / "run"
    argv = (common(empty, folder, 1, "--log-level", "warning") if which == "training"
            else common(data, folder, 1, "--validation-dataset", empty, "--log-level", "warning"))
    rc, err = run_inprocess(argv, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"the {which} set in" in err and "not one box" in err, err
    assert not folder.exists()


@pytest.mark.slow
def test_eval_refuses_a_set_without_a_single_box(finished_run, tmp_path):
    from tests.conftest import run_script
    from vision.datasets.synthetic import generate_coco_dataset
    empty = tmp_path / "empty"
    generate_coco_dataset(empty, 2, 2, seed=1, image_size=(96, 72), empty_share=1.0)
    r = run_script("eval_ssd.py", "--trained-model", finished_run / "best.pth", "--dataset-type", "coco",
                   "--dataset", empty, "--eval_dir", tmp_path / "out", timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "the evaluation set in" in r.stderr and "not one box" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_failing_validation_does_not_lose_the_epoch(data, tmp_path, capsys, monkeypatch):
    from vision.training.loop import Trainer
    from vision.utils.misc import Failure

    def broken(self, batches):
        raise Failure("validation broke (test)")

    folder = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(Trainer, "validate", broken)
        rc, err = run_inprocess(common(data, folder, 2), capsys)
    assert rc == 1 and "validation broke" in err, err
    files = _checkpoint_files(folder)
    assert [p.name for p in files] == [f"{NET}-Epoch-0-Loss-nan.pth"], files
    assert torch.load(files[0], weights_only=True)["metrics"]["train_images"] == 4
    rc, err = run_inprocess(["--resume", folder, "--log-level", "info"], capsys)
    assert rc == 0 and "continuing at epoch 1" in err, err
    assert "epoch 0 was saved but not validated" in err, err  # its validation is done first
    names = [p.name for p in _checkpoint_files(folder)]
    assert [n.split("-Loss-")[0] for n in names] == [f"{NET}-Epoch-0", f"{NET}-Epoch-1"], names
    assert not [n for n in names if n.endswith("-Loss-nan.pth")], names  # replaced by the validated ones
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and all("val_loss" in r for r in rows), rows


# ------------------------------------------------------------------------------------ --profile
@pytest.mark.slow
def test_profile_writes_a_trace_and_a_summary_into_the_run_folder(data, tmp_path, capsys):
    folder = tmp_path / "run"
    rc, err = run_inprocess(common(data, folder, 1, "--profile", "--log-level", "info"), capsys)
    assert rc == 0, err
    trace, summary = folder / "profile-trace.json", folder / "profile-summary.txt"
    assert json.loads(trace.read_text())["traceEvents"]
    assert summary.read_text().startswith("torch.profiler: training steps 1-1"), summary.read_text()[:200]
    assert "profile written" in err
    # a free flag on --resume (nothing left to do here)
    rc, err = run_inprocess(["--resume", folder, "--profile"], capsys)
    assert rc == 0, err
