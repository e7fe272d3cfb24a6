"""Shared by every test: the repository root, running a root-level script, a tiny COCO dataset.

``pytest.ini`` puts the repository on ``sys.path`` (``pythonpath = .``), so tests import
``vision`` and the scripts without editing the path themselves.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: object, cwd: str | os.PathLike = REPO, timeout: float = 300,
               env: Mapping[str, str] | None = None, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run ``python3 REPO/script *args`` (``script`` may be ``-m module``) and capture its text output.

    ``env`` entries are added to this process's environment.
    """
    command = ["-m", script[3:]] if script.startswith("-m ") else [str(REPO / script)]
    return subprocess.run([sys.executable, *command, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=stdin, env={**os.environ, **env} if env else None)


def run_script_inprocess(script: str, *args: object, cwd: str | os.PathLike | None = None
                         ) -> subprocess.CompletedProcess:
    """Run root-level ``script``'s ``main()`` in this process, with what ``run_script`` gives back
    (exit code, stdout, stderr). For tests about what a command does with its files, not about the
    process (signals, exit of the interpreter): it saves a Python and torch start-up per command.
    The root logger and the working folder are put back afterwards."""
    import contextlib
    import importlib
    import io
    import logging

    from vision.utils.misc import run_main
    module = importlib.import_module(Path(script).stem)
    root = logging.getLogger()
    handlers, level, here = root.handlers[:], root.level, os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = run_main(module.main, [str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(here)
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess([script, *map(str, args)], rc, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory) -> Path:
    """A small synthetic COCO root (8 train / 4 val images of 96x72, as COCO writes it) shared by the
    session; do not modify it (copy it first)."""
    from vision.datasets.synthetic import generate_coco_dataset

    root = tmp_path_factory.mktemp("tiny_coco") / "coco"
    generate_coco_dataset(root, 8, 4, seed=5, image_size=(96, 72))
    return root


class TinySSDHead(torch.nn.Module):
    """A tiny net shaped like an SSD for the training-loop tests: conv + BatchNorm, then
    (confidence [B, N, 2], locations [B, N, 4])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(6)

    def forward(self, x):
        y = self.bn(self.conv(x)).flatten(2).transpose(1, 2)  # [B, HW, 6]
        return y[..., :2], y[..., 2:]


def tiny_ssd_criterion(confidence, locations, labels, gt):
    """(regression, classification) losses for ``TinySSDHead`` outputs, as MultiboxLoss returns them."""
    return (locations - gt).abs().mean(), torch.nn.functional.cross_entropy(confidence.flatten(0, 1),
                                                                             labels.flatten())
