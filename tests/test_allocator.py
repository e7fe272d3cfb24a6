"""bench/allocator.py keep_freed_memory: a freed large buffer is reused without new page faults.

Runs in a subprocess: the setting is process-wide and must not leak into the test process.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource, sys
import torch
from bench.allocator import keep_freed_memory
ok = keep_freed_memory() if sys.argv[1] == "keep" else None
def forward_like():
    # activation-sized buffers, each freed after the next one exists, as in a CNN forward
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = None
    for mb in (23, 69, 23, 8, 35, 46, 12):
        y = torch.empty(mb << 20, dtype=torch.uint8)
        y.fill_(1)
        x = y
    del x, y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [forward_like() for _ in range(6)]
print(json.dumps({"ok": ok, "faults": min(faults[2:])}))
"""


def _probe(mode: str) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_freed_memory_avoids_page_faults() -> None:
    default, keep = _probe("default"), _probe("keep")
    assert keep["ok"] is True
    pages = (69 << 20) // 4096
    assert default["faults"] > pages, "with glibc's defaults buffers this large are fresh mmaps each time"
    assert keep["faults"] < pages // 10, keep
