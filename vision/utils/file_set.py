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

from vision.utils.misc import Failure, atomic_write_json, fsync_dir

log = logging.getLogger(__name__)

PENDING_SUFFIX = ".pending"
JOURNAL_SUFFIX = ".commit.json"  # journals are hidden files named ``.NAME.commit.json``


class CommitJournalError(Failure):
    """A journal this module did not write (unreadable, or naming files outside its folder):
    nothing is replaced on its word. Names the journal and the way out."""


def pending_path(target: Path) -> Path:
    """Where the new version of ``target`` waits for the commit."""
    return target.with_name(f".{target.name}{PENDING_SUFFIX}")


def finish_interrupted_commit(journal: Path, targets: Sequence[Path]) -> list[Path]:
    """Complete a commit that was killed after its commit point, or drop one killed before it.

    Returns the targets this call replaced (empty when there was nothing to finish).
    """
    done: list[Path] = []
    if journal.is_file():
        folder = journal.parent
        try:
            entries = json.loads(journal.read_text(encoding="utf-8"))["files"]
            pairs = [(folder / p, folder / t) for p, t in entries]  # names in the journal's folder
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise CommitJournalError(f"cannot read the commit journal {journal} ({e}); it was not written by "
                                     "this tool: move it away and run again") from None
        for pending, target in pairs:  # a forged journal must not move files anywhere else
            if target.resolve().parent != folder.resolve() or pending.resolve() != pending_path(target).resolve():
                raise CommitJournalError(f"the commit journal {journal} names {target} / {pending}, not a file "
                                         "of its folder and its pending version; it was not written by this "
                                         "tool: nothing was replaced, move it away and run again")
        for pending, target in pairs:
            if pending.is_file():
                os.replace(pending, target)
                done.append(target)
        fsync_dir(journal.parent)
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

    ``writers``: (target, function writing the new text to an open file), every target in
    the journal's folder (the journal records bare names, so a run from another working
    folder can finish it). An exception while writing deletes every pending file and
    propagates: no target has changed.
    """
    if not journal.name.endswith(JOURNAL_SUFFIX):
        raise ValueError(f"a commit journal's name must end with {JOURNAL_SUFFIX}: {journal}")
    for target, _ in writers:
        if target.parent != journal.parent:
            raise ValueError(f"{target} is not in the journal's folder {journal.parent}")
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
    fsync_dir(folder)
    atomic_write_json(journal, {"files": [[p.name, t.name] for p, t in written]})  # the commit point
    for pending, target in written:
        os.replace(pending, target)
    fsync_dir(folder)
    journal.unlink()
