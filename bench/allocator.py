"""Tell glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

Why: a CNN forward allocates and frees the same large activation buffers every batch.
With glibc's defaults each buffer above the mmap threshold is a fresh ``mmap``, and
every page of it is faulted in (and zeroed by the kernel) again: on the 2-core machine
mb2-ssd-lite at batch 8 spent ~10 ms/image of system time on that, a quarter of its
CPU time (bench/eval.py, ``--keep-freed-memory``). Keeping freed memory in the heap
removes nearly all of those page faults. The cost is a process that holds on to its
peak memory.

Process-wide and irreversible, so only scripts call it (``main``), never library code
on its own. Same effect as starting the process with
``MALLOC_MMAP_THRESHOLD_=... MALLOC_TRIM_THRESHOLD_=... MALLOC_TOP_PAD_=...``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_INT_MAX = 2**31 - 1


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = _INT_MAX,
                      top_pad: int = 1 << 28) -> bool:
    """Raise glibc's mmap threshold, trim threshold and top pad (bytes) for this process.

    Returns True when glibc accepted all three, False elsewhere (musl, macOS, Windows:
    nothing is changed there).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    values = {_M_MMAP_THRESHOLD: mmap_threshold, _M_TRIM_THRESHOLD: trim_threshold, _M_TOP_PAD: top_pad}
    ok = all(mallopt(param, min(int(v), _INT_MAX)) == 1 for param, v in values.items())
    log.debug("malloc: keep freed memory %s", "on" if ok else "refused")
    return ok
