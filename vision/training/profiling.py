"""Profile a few training steps with ``torch.profiler`` (the seed fork's ``--profile``).

``StepProfiler`` records steps ``first .. first + steps - 1`` (0-based, counted by ``step()``
calls; the step before ``first`` is a profiler warm-up, so the recorded ones are not the
slow first iterations) and writes two files into the run's folder, each atomically:

- ``profile-trace.json``: a Chrome trace (open it in ``chrome://tracing`` or Perfetto);
- ``profile-summary.txt``: the operators that took the most time (``key_averages`` table).

A run that stops inside the window still writes what was recorded. Outside the window the
profiler does nothing, so the rest of the run is not slowed down.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from types import TracebackType

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from vision.utils.misc import atomic_write

log = logging.getLogger(__name__)

TRACE_NAME = "profile-trace.json"
SUMMARY_NAME = "profile-summary.txt"


class StepProfiler:
    """Context manager: call ``step()`` after every training step; see the module docstring.

    ``cuda=True`` also records CUDA kernels (when CUDA is available). ``row_limit`` is the number
    of operators in the summary.
    """

    def __init__(self, folder: str | os.PathLike, first: int = 5, steps: int = 5, *, cuda: bool = False,
                 row_limit: int = 30) -> None:
        if first < 0 or steps < 1:
            raise ValueError(f"need first >= 0 and steps >= 1, got first={first}, steps={steps}")
        self.folder = Path(folder)
        self.first, self.steps, self.row_limit = int(first), int(steps), int(row_limit)
        self.cuda = bool(cuda) and torch.cuda.is_available()
        self.written: list[Path] = []
        self._calls = 0
        self._profiler: profile | None = None

    def __enter__(self) -> "StepProfiler":
        warmup = 1 if self.first >= 1 else 0
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self._profiler = profile(activities=activities,
                                 schedule=schedule(wait=self.first - warmup, warmup=warmup, active=self.steps,
                                                   repeat=1),
                                 on_trace_ready=self._write)
        self._profiler.__enter__()
        log.info("profiling training steps %d-%d into %s", self.first, self.first + self.steps - 1, self.folder)
        return self

    def step(self) -> None:
        """Mark the end of one training step."""
        self._calls += 1
        if self._profiler is not None:
            self._profiler.step()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._profiler is not None:
            profiler, self._profiler = self._profiler, None
            profiler.__exit__(exc_type, exc, tb)
        if not self.written:
            log.warning("--profile: the run ended before step %d; no profile written", self.first)

    def _write(self, prof: profile) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        trace = self.folder / TRACE_NAME
        fd, tmp = tempfile.mkstemp(prefix=f".{TRACE_NAME}.", suffix=".tmp", dir=self.folder)
        os.close(fd)
        try:
            prof.export_chrome_trace(tmp)
            os.replace(tmp, trace)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        sort_by = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort_by, row_limit=self.row_limit)
        summary = self.folder / SUMMARY_NAME
        last = min(self.first + self.steps, self._calls) - 1  # the run may have stopped inside the window
        with atomic_write(summary, "w", encoding="utf-8") as f:
            f.write(f"torch.profiler: training steps {self.first}-{last}, sorted by {sort_by}\n{table}\n")
        self.written = [trace, summary]
        log.info("profile written: %s, %s", trace, summary)
