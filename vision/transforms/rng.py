"""A random generator that every process (DataLoader worker) re-seeds for itself.

A ``numpy.random.Generator`` created in ``__init__`` would be copied into every
forked worker, and all workers would then draw the same augmentations. This
wrapper notices that it now lives in another process and builds a fresh
generator there, seeded from torch's per-worker seed, so runs are reproducible
after ``torch.manual_seed`` and workers (and epochs) differ.
"""
from __future__ import annotations

import os

import numpy as np
import torch


class ProcessLocalRNG:
    """Hand out a ``numpy.random.Generator`` private to the calling process.

    seed=None: follow torch (``torch.initial_seed()``, which DataLoader sets to
    ``base_seed + worker_id`` in each worker, and ``torch.manual_seed`` sets in
    the main process). seed=int: a fixed stream, made distinct per worker id.
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._gen: np.random.Generator | None = None
        self._pid = -1

    def get(self) -> np.random.Generator:
        pid = os.getpid()
        if self._gen is None or pid != self._pid:
            self._gen = np.random.default_rng(self._entropy())
            self._pid = pid
        return self._gen

    def _entropy(self) -> list[int]:
        if self.seed is None:
            return [torch.initial_seed()]
        info = torch.utils.data.get_worker_info()
        return [self.seed, 0 if info is None else info.id + 1]

    def __getstate__(self) -> dict:
        # pickled into a spawned worker: let it build its own generator there
        return {"seed": self.seed, "_gen": None, "_pid": -1}
