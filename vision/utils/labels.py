"""Reading and writing ``labels.txt``: one class name a line, ``BACKGROUND`` first.

This is the file jetson-inference's detectNet and every script here read. A
blank line would become a class there, so we never write one and ignore them
when reading; a file without ``BACKGROUND`` gets it prepended (with a warning)
so the class count matches the heads.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from vision.utils.misc import UserError, store_labels

log = logging.getLogger(__name__)

BACKGROUND = "BACKGROUND"


def normalize_class_names(names: Sequence[str], source: str = "class list") -> list[str]:
    """Strip names, drop blanks, put BACKGROUND first, refuse duplicates."""
    cleaned = [str(n).strip() for n in names]
    cleaned = [n for n in cleaned if n]
    if not cleaned:
        raise UserError(f"{source}: no class names")
    if cleaned[0] != BACKGROUND:
        if BACKGROUND in cleaned:
            raise UserError(f"{source}: {BACKGROUND} must be the first class, found at line "
                            f"{cleaned.index(BACKGROUND) + 1}")
        log.warning("%s: no %s class first; adding it (class ids shift by one)", source, BACKGROUND)
        cleaned = [BACKGROUND] + cleaned
    seen: dict[str, int] = {}
    for i, n in enumerate(cleaned):
        if n in seen:
            raise UserError(f"{source}: duplicate class name {n!r} (entries {seen[n] + 1} and {i + 1})")
        seen[n] = i
    if len(cleaned) < 2:
        raise UserError(f"{source}: only {BACKGROUND}, no object classes")
    return cleaned


def read_labels(path: str | os.PathLike) -> list[str]:
    """Read a labels file (BACKGROUND first, blank lines and surrounding spaces ignored)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"labels file not found: {p}") from None
    except IsADirectoryError:
        raise UserError(f"labels file is a folder: {p}") from None
    except UnicodeDecodeError:
        raise UserError(f"labels file is not UTF-8 text: {p}") from None
    names = [n.strip() for n in text.splitlines()]
    names = [n for n in names if n]
    # "background" / "__background__" (other tools' spelling) is the BACKGROUND class, not one more
    # object class that would shift every label by one and mis-size the heads
    for i, n in enumerate(names):
        if n != BACKGROUND and n.strip("_").lower() == "background":
            if i != 0:
                raise UserError(f"{p}: {n!r} at entry {i + 1} looks like the background class, which must "
                                f"be the first line ({BACKGROUND})")
            log.warning("%s: reading %r as %s", p, n, BACKGROUND)
            names[0] = BACKGROUND
    return normalize_class_names(names, source=str(p))


def write_labels(path: str | os.PathLike, class_names: Sequence[str]) -> None:
    """Write labels.txt atomically, BACKGROUND first, no blank lines."""
    store_labels(path, normalize_class_names(class_names))
