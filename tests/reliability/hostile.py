"""Shared helpers of the hostile-input tests: run a script (in-process or as a subprocess) and check
that a bad input ends as ONE clear error line naming the file/item, with the right exit code and
never a traceback; build a small synthetic COCO root and a tiny checkpoint to feed the scripts.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tests.conftest import REPO, run_script

# The nets the end-to-end checks use: the cheapest to build, at the smallest resolution.
NET = "sq-ssd-lite"
RES = 64


def script_module(name: str):
    """Import ``name``.py from the repository root (scripts are importable: main() parses argv)."""
    return importlib.import_module(name)


def run_inproc(script: str, argv: Sequence[str], capsys) -> tuple[int, str, str]:
    """Run ``script.main(argv)`` through ``run_main`` as ``python3 script.py`` would: (rc, stdout, stderr).

    A SystemExit (argparse) gives its code. Any other exception propagates, so a test sees an
    unexpected traceback as a failure.
    """
    from vision.utils.misc import run_main

    mod = script_module(script)
    capsys.readouterr()
    try:
        rc = run_main(mod.main, [str(a) for a in argv])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(script: str, argv: Sequence[str], cwd: Path | None = None, timeout: float = 300,
                   env: dict | None = None) -> subprocess.CompletedProcess:
    """``python3 script.py ARGV`` in the repository root (or ``cwd``)."""
    return run_script(f"{script}.py", *argv, cwd=cwd or REPO, timeout=timeout,
                      env={"OMP_NUM_THREADS": "1", **(env or {})})


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if " ERROR " in line or line.startswith(("ERROR", "error"))
            or ": error: " in line]


def assert_clean_error(rc: int, err: str, needles: Iterable[str], expected_rc: int | Sequence[int] = 2,
                       what: str = "") -> str:
    """``rc`` is the expected exit code, ``err`` has no traceback, and one error line holds every needle.

    Returns that line (for further checks).
    """
    needles = [str(n) for n in needles]
    codes = (expected_rc,) if isinstance(expected_rc, int) else tuple(expected_rc)
    assert "Traceback" not in err, f"{what}: traceback instead of a one-line error:\n{err[-3000:]}"
    assert rc in codes, f"{what}: exit code {rc}, expected {codes}; stderr:\n{err[-3000:]}"
    lines = error_lines(err)
    for line in lines:
        if all(n in line for n in needles):
            return line
    raise AssertionError(f"{what}: no error line names all of {needles}; error lines:\n" + "\n".join(lines)
                         + f"\n--- stderr tail:\n{err[-2000:]}")


# ----------------------------------------------------------------------------- data
def make_coco(root: Path, num_train: int = 8, num_val: int = 4, seed: int = 0,
              image_size: tuple[int, int] = (64, 48)) -> Path:
    from vision.datasets.synthetic import generate_coco_dataset

    generate_coco_dataset(root, num_train, num_val, seed=seed, image_size=image_size)
    return root


def clone_coco(base: Path, dest: Path, mutate: Callable[[dict], Any] | None = None,
               raw: bytes | None = None, splits: Sequence[str] = ("train", "val")) -> Path:
    """A COCO root at ``dest`` sharing ``base``'s image folders (symlinks) with the annotation files
    of ``splits`` replaced by ``raw`` bytes or by ``mutate(dict)`` applied to a copy (written with
    Python's json, so NaN/Infinity literals are allowed, as some exporters write them)."""
    dest.mkdir(parents=True)
    (dest / "annotations").mkdir()
    for split in ("train", "val"):
        os.symlink(base / f"{split}2017", dest / f"{split}2017", target_is_directory=True)
        src = base / "annotations" / f"instances_{split}2017.json"
        out = dest / "annotations" / f"instances_{split}2017.json"
        if split not in splits:
            shutil.copyfile(src, out)
        elif raw is not None:
            out.write_bytes(raw)
        else:
            data = json.loads(src.read_text())
            res = mutate(data) if mutate else None
            if res is not None:
                data = res
            out.write_text(json.dumps(data))
    return dest


def class_names_of(coco_root: Path, split: str = "val") -> list[str]:
    data = json.loads((coco_root / "annotations" / f"instances_{split}2017.json").read_text())
    return ["BACKGROUND"] + [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]


def make_checkpoint(path: Path, class_names: Sequence[str], net: str = NET, resolution: int = RES,
                    seed: int = 0, plain: bool = False) -> Path:
    """A tiny random-weight model file: this project's checkpoint dict, or a plain state_dict."""
    import torch

    from vision.ssd.registry import create_net

    torch.manual_seed(seed)
    model = create_net(net, len(class_names), resolution=resolution)
    path.parent.mkdir(parents=True, exist_ok=True)
    if plain:
        torch.save(model.state_dict(), path)
    else:
        torch.save({"epoch": 0, "model": model.state_dict(), "class_names": list(class_names), "net": net,
                    "resolution": resolution, "args": {"net": net, "resolution": resolution}}, path)
    return path


# ----------------------------------------------------------------------------- images
def png_bomb(width: int, height: int) -> bytes:
    """A real decompression bomb: a valid 1-bit grayscale PNG of width x height black pixels.

    14000 x 14000 is ~24 KB on disk and 196 M pixels (588 MB as RGB) once decoded.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_header_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A JPEG whose frame header claims a huge size (the data is a tiny real image's)."""
    import cv2
    import numpy as np
    import struct

    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack_from(">H", data, i + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, i + 5, height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def reference_picture():
    import numpy as np

    yy, xx = np.mgrid[0:48, 0:64]
    return np.dstack([xx * 4, yy * 5, np.full_like(xx, 90)]).astype(np.uint8)


def write_image_corpus(folder: Path) -> dict[str, dict]:
    """Every kind of image file a dataset meets, good and bad. Returns {name: {"bad": bool, "shape": (h, w)}};
    the good ones all show ``reference_picture()`` (EXIF-rotated: once turned upright)."""
    import io

    import cv2
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    # a smooth RGB picture (lossy encodings stay close to it): red grows left to right, green top to bottom
    yy, xx = np.mgrid[0:48, 0:64]
    noise = np.dstack([xx * 4, yy * 5, np.full_like(xx, 90)]).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", noise[..., ::-1])
    jpg = jpg.tobytes()
    out: dict[str, dict] = {}

    def put(name: str, data: bytes, bad: bool, shape=None) -> None:
        (folder / name).write_bytes(data)
        out[name] = {"bad": bad, "shape": shape}

    def pil_bytes(img: "Image.Image", fmt: str, **kw) -> bytes:
        bio = io.BytesIO()
        img.save(bio, fmt, **kw)
        return bio.getvalue()

    put("good.jpg", jpg, False, (48, 64))
    put("truncated.jpg", jpg[: len(jpg) // 2], True)
    put("zero_bytes.jpg", b"", True)
    put("text_named.jpg", b"this is a text file, not a picture\n" * 3, True)
    put("html_named.png", b"<html><body>404 Not Found</body></html>", True)
    put("cmyk.jpg", pil_bytes(Image.fromarray(noise).convert("CMYK"), "JPEG", quality=90), False, (48, 64))
    put("gray.jpg", pil_bytes(Image.fromarray(noise[..., 0]), "JPEG"), False, (48, 64))
    ok, png16 = cv2.imencode(".png", noise[..., ::-1].astype(np.uint16) * 257)
    put("rgb16.png", png16.tobytes(), False, (48, 64))
    put("gray16.png", pil_bytes(Image.fromarray(noise[..., 0].astype(np.uint16) * 257), "PNG"),
        False, (48, 64))
    put("rgba.png", pil_bytes(Image.fromarray(np.dstack([noise, noise[..., :1]]), "RGBA"), "PNG"), False, (48, 64))
    put("palette.png", pil_bytes(Image.fromarray(noise).convert("P"), "PNG"), False, (48, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    put("exif_rotated.jpg", pil_bytes(Image.fromarray(noise), "JPEG", exif=exif), False, (64, 48))
    put("bomb.png", png_bomb(14000, 14000), True)
    put("header_bomb.jpg", jpeg_header_bomb(), True)
    return out
