"""Replace several files as one change: all of them, or (after a crash) none until finished.

Why: ``atomic_write`` makes one file old-or-new, but a tool that rewrites a *set* of
files (COCO's train and val annotation files, renumbered by one mapping) must never
leave half of the set changed: the loader would then see two numberings. The commit
here is the classic journal:

1. every new file is written in full beside its target (``.NAME.pending``) and fsynced;
   a failure here deletes them all and leaves every target untouched;
2. a journal (``JOURNAL``, written atomically) lists the pending files -- the commit point;
3. each pending file is renamed over its target, then the journal is deleted.

A process killed before step 2 leaves only pending files, which the next call of
``finish_interrupted_commit`` deletes (nothing changed). Killed after step 2, the next
call renames what is left and the set is complete. Call it before reading the files.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import IO, Callable, Sequence

from vision.utils.misc import atomic_write_json

log = logging.getLogger(__name__)

PENDING_SUFFIX = ".pending"


def pending_path(target: Path) -> Path:
    """Where the new version of ``target`` waits for the commit."""
    return target.with_name(f".{target.name}{PENDING_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def finish_interrupted_commit(journal: Path, targets: Sequence[Path]) -> list[Path]:
    """Complete a commit that was killed after its commit point, or drop one killed before it.

    Returns the targets this call replaced (empty when there was nothing to finish).
    """
    done: list[Path] = []
    if journal.is_file():
        try:
            entries = json.loads(journal.read_text(encoding="utf-8"))["files"]
            pairs = [(Path(p), Path(t)) for p, t in entries]
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise OSError(f"cannot read the commit journal {journal}: {e}") from None
        for pending, target in pairs:
            if pending.is_file():
                os.replace(pending, target)
                done.append(target)
        _fsync_dir(journal.parent)
        journal.unlink()
        if done:
            log.warning("finished an interrupted write: %s replaced by their new versions",
                        ", ".join(t.name for t in done))
    for target in targets:  # written before the commit point: the old versions still stand
        p = pending_path(target)
        if p.exists():
            p.unlink()
            log.info("removed %s, left by an interrupted run (the file itself was not changed)", p)
    return done


def commit_files(journal: Path, writers: Sequence[tuple[Path, Callable[[IO[str]], None]]],
                 encoding: str = "utf-8") -> None:
    """Replace every target by what its writer writes, all or none (see the module doc).

    ``writers``: (target, function writing the new text to an open file). An exception
    while writing deletes every pending file and propagates: no target has changed.
    """
    written: list[tuple[Path, Path]] = []
    try:
        for target, write in writers:
            pending = pending_path(target)
            written.append((pending, target))
            with open(pending, "w", encoding=encoding) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        for pending, _ in written:
            with contextlib.suppress(OSError):
                pending.unlink()
        raise
    folder = journal.parent
    _fsync_dir(folder)
    atomic_write_json(journal, {"files": [[str(p), str(t)] for p, t in written]})  # the commit point
    for pending, target in written:
        os.replace(pending, target)
    _fsync_dir(folder)
    journal.unlink()
