"""What the bench scripts share: the repository on ``sys.path`` (so ``python3 bench/X.py`` runs from any
folder), train_ssd.py's OpenMP wait policy, and the machine facts every result line carries.

Import it first thing (``import common``): Python puts bench/ itself on the path when it runs a
script from it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LOAD_KEY = "load_avg_1min"  # the 1-minute load average in every JSON result line


def passive_openmp() -> None:
    """As train_ssd.py: idle OpenMP threads sleep instead of spinning. With libgomp's default spinning,
    a 2-core machine shared with DataLoader workers or any other process measured 2-30x slower steps
    (bench/README.md). Takes effect only before torch loads libgomp; the environment wins
    (``OMP_WAIT_POLICY=ACTIVE`` times spinning threads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_average() -> float:
    """The 1-minute load average, rounded (results from a busy machine are inflated: say so)."""
    return round(os.getloadavg()[0], 2)


def cpu_count() -> int:
    """CPUs this process may run on (affinity / container aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
