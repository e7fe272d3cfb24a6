"""Shared set-up of the reliability tests (hostile input, load)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The nets here are tiny (64 px): a second intra-op thread buys nothing, and on a busy 2-core CI
    machine an oversubscribed OpenMP pool makes a 10 ms forward pass take a second."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
