"""Checks of the paths a user names for a script's outputs, made before any work is done.

Every script that writes files runs its output paths through here, so that

* an output never lands on one of the script's inputs (the same file by name, by a relative
  spelling, through a symlink or a hard link), nor on a checkpoint/weights/image/labels file the
  script did not create: ``refuse_output_over_inputs``, ``refuse_output_dir_over_inputs``;
* a file where a folder is expected, a folder where a file is expected, a path below a file or in
  a folder nobody may write (read-only file system, no permission) is one line naming the path,
  exit 2, instead of a traceback halfway through the run: ``check_output_file``,
  ``check_output_dir``.

Nothing is created here: a failed start leaves no empty folder behind. Writability is probed with a
temporary file in the nearest folder that exists (removed at once), because ``os.access`` says yes
to root everywhere except on a read-only file system.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence, Tuple, Union

from vision.utils.misc import UserError

PathLike = Union[str, "os.PathLike[str]"]
Named = Tuple[str, PathLike]  # (how the user gave it, e.g. "--output", the path)

# Files no script writes over unless it made them: weights and checkpoints, pictures, labels.
WEIGHT_SUFFIXES = frozenset({".pth", ".pt", ".ckpt", ".tar"})
# Image files the scripts read (OpenCV decodes them), in the order a file is looked for when an id
# could be several (VOC's JPEGImages/ID.*): the one list every reader of image folders uses.
IMAGE_EXTENSIONS: Tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS) | {".gif"}
# Annotated copies keep their input's format when it is one of these (any viewer shows them), else .jpg.
OUTPUT_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def is_image_file(path: PathLike) -> bool:
    """True when ``path``'s extension (any case) is one of ``IMAGE_EXTENSIONS``."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` are the same file: same inode when both exist (hard links,
    symlinks, ``./x`` vs ``x``), else the same fully resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(os.path.abspath(a)) == os.path.realpath(os.path.abspath(b))


def _existing_ancestor(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, flag: str, path: PathLike) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=folder)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write in {folder} ({e.strerror or type(e).__name__})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _check_parent(path: Path, flag: str) -> None:
    ancestor = _existing_ancestor(path.parent if path.name else path)
    if not ancestor.is_dir():
        raise UserError(f"{flag} {path}: {ancestor} is a file, not a folder")
    _probe_writable(ancestor, flag, path)


def check_output_file(path: PathLike, flag: str) -> Path:
    """``path`` as a file this process can create or replace; UserError (one line) otherwise."""
    p = Path(path)
    if str(path) == "" or p.is_dir():
        raise UserError(f"{flag} {path or repr(path)} is a folder; give a file name")
    _check_parent(p, flag)
    return p


def check_output_dir(path: PathLike, flag: str) -> Path:
    """``path`` as a folder this process can create or write in; UserError (one line) otherwise."""
    p = Path(path)
    if os.path.lexists(p) and not p.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder")
    if p.is_dir():
        _probe_writable(p, flag, path)
    else:
        _check_parent(p, flag)
    return p


def refuse_output_over_inputs(outputs: Iterable[Named], inputs: Iterable[Named],
                              protect: Iterable[str] = WEIGHT_SUFFIXES) -> None:
    """UserError when an output file is one of the inputs, or is an existing file with a protected
    suffix (a checkpoint, by default) that this run was not asked to replace."""
    inputs = [(f, i) for f, i in inputs if i is not None]
    protect = {s.lower() for s in protect}
    for flag, out in outputs:
        if out is None:
            continue
        for in_flag, inp in inputs:
            if same_file(out, inp):
                raise UserError(f"{flag} {out} is {in_flag} {inp}: refusing to write over an input; "
                                f"give another {flag}")
        if os.path.isfile(out) and Path(out).suffix.lower() in protect:
            raise UserError(f"{flag} {out} is an existing {Path(out).suffix} file this script did not write: "
                            f"refusing to overwrite it; give another {flag}")


def refuse_output_dir_over_inputs(flag: str, folder: PathLike, inputs: Sequence[Named]) -> None:
    """UserError when the output folder is an input folder or holds an input file (its outputs,
    named like the inputs, would replace them)."""
    for in_flag, inp in inputs:
        if inp is None:
            continue
        holder = inp if os.path.isdir(inp) else os.path.dirname(os.path.abspath(inp))
        if same_file(folder, holder):
            what = "is" if holder is inp else "holds"
            raise UserError(f"{flag} {folder} {what} {in_flag} {inp}: refusing to write outputs among the "
                            f"inputs; give another {flag}")


class WrittenRecord:
    """What a script wrote into an output folder, kept in ``FOLDER/.written-by-TOOL.json``, so a later
    run replaces its own earlier outputs but never a file of the same name it did not write (a photo
    that happens to be called like an output)."""

    def __init__(self, folder: PathLike, tool: str) -> None:
        self.path = Path(folder) / f".written-by-{tool}.json"
        self.tool = tool
        try:
            import json

            self.names: set[str] = set(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            self.names = set()

    def refuse_foreign(self, outputs: Iterable[PathLike], flag: str) -> None:
        """UserError when an output would replace an existing file this tool did not write."""
        for out in outputs:
            out = Path(out)
            if os.path.lexists(out) and out.name not in self.names:
                raise UserError(f"{flag} {out.parent} already holds {out.name}, which {self.tool} did not write: "
                                f"refusing to overwrite it; give another {flag}")

    def add(self, outputs: Iterable[PathLike]) -> None:
        from vision.utils.misc import atomic_write_json

        names = self.names | {Path(o).name for o in outputs}
        if names != self.names:
            self.names = names
            atomic_write_json(self.path, sorted(names), indent=None)
