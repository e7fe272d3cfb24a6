"""Decode one image file into an RGB uint8 array, or say clearly why not.

This sits in the training hot path, so a normal JPEG/PNG is read once and
decoded once by OpenCV. The slower Pillow decoder is only used where OpenCV
fails or a JPEG does not end with its end-of-image marker (OpenCV versions
differ: some silently return a half-grey picture for a truncated file).

Everything that cannot become a picture raises ``ImageDecodeError`` (a
``UserError``): zero-byte files, truncated files, text renamed to ``.jpg``,
unreadable paths, and "decompression bombs" whose header claims more pixels
than ``max_pixels`` (checked from the header, before any pixel is decoded).
"""
from __future__ import annotations

import io
import os
import struct
import warnings

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from vision.utils.misc import UserError

__all__ = ["ImageDecodeError", "load_image_rgb", "decode_image_bytes", "check_pixel_limit", "DEFAULT_MAX_PIXELS"]

# Same order of magnitude as Pillow's own error threshold (2 * 89.5 M pixels).
DEFAULT_MAX_PIXELS = 178_000_000

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
# Start-of-frame markers (they carry the image size); C4/C8/CC are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB


class ImageDecodeError(UserError):
    """An image file that cannot be turned into pixels (bad, truncated, too big, unreadable)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")

    def __reduce__(self):  # keep it picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


def _jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from the first start-of-frame segment, None if not found."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD9:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF:
            if i + 10 > n:
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height, data[i + 9]
        if marker == 0xDA:  # start of scan before any frame header: broken
            return None
        i += 2 + length
    return None


def _check_pixels(path, width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"header gives an empty image size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            path, f"{width}x{height} = {width * height} pixels is over the limit of {max_pixels} "
                  f"(possible decompression bomb)")


def _to_rgb8(path, img: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> uint8 HxWx3 RGB (alpha dropped, 16/32-bit scaled down)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if img.mode.startswith("I;16") or 255.0 < hi <= 65535.0:
            arr = arr / 257.0
        elif hi > 65535.0:
            arr = arr * (255.0 / hi)
        elif img.mode == "F" and hi <= 1.0:
            arr = arr * 255.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageDecodeError(path, f"unsupported pixel layout {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def _decode_with_pillow(path, data: bytes, max_pixels: int | None) -> np.ndarray:
    """Slow, careful path: Pillow refuses truncated files (LOAD_TRUNCATED_IMAGES is False)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched Pillow to accept truncated files; we would silently train on grey.
        raise ImageDecodeError(path, "file looks truncated and Pillow is set to LOAD_TRUNCATED_IMAGES")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                _check_pixels(path, img.width, img.height, max_pixels)
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb8(path, img)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(path, f"possible decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image file (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            msg = f"file is truncated ({msg})"
        raise ImageDecodeError(path, msg) from None


def load_image_rgb(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as an RGB uint8 array of shape [H, W, 3].

    Grayscale becomes 3 equal channels, alpha is dropped (not composited),
    16-bit images are scaled to 8 bit, CMYK is converted, and the EXIF
    orientation tag is applied (so H, W are the upright picture's).
    ``max_pixels=None`` disables the decompression-bomb guard.
    Raises ``ImageDecodeError`` for anything that is not a complete image.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a folder, not a file") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as e:
        raise ImageDecodeError(path, f"read error: {e.strerror or e}") from None
    return decode_image_bytes(data, path, max_pixels=max_pixels)


def _pillow_header_size(data: bytes, path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from Pillow reading only the header; None for a format Pillow does not
    know. A decompression bomb is an ``ImageDecodeError``; a damaged header raises Pillow's error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                return probe.size
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(path, f"possible decompression bomb: {e}") from None
    except UnidentifiedImageError:
        return None


def check_pixel_limit(data: bytes, path: str | os.PathLike = "<bytes>",
                      max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Raise ``ImageDecodeError`` when the header of the encoded image ``data`` claims an empty
    size or more than ``max_pixels`` pixels; nothing is decoded.

    Why: other decoders (OpenCV, scikit-image in validate_image_files.py) would allocate the
    whole picture first -- a 24 KB PNG can claim 196 M pixels (588 MB as RGB). Unknown formats
    and unreadable headers pass: the decoder that follows reports them.
    """
    size = None
    if data[:2] == _JPEG_SOI:
        header = _jpeg_header(data)
        size = header[:2] if header is not None else None
    elif data[:8] == _PNG_MAGIC and len(data) >= 24:
        size = struct.unpack_from(">II", data, 16)
    if size is None and data:
        try:
            size = _pillow_header_size(data, path)
        except ImageDecodeError:
            raise
        except Exception:  # noqa: BLE001 - a header Pillow cannot read: the real decoder will say so
            return
    if size is not None:
        _check_pixels(path, int(size[0]), int(size[1]), max_pixels)


def decode_image_bytes(data: bytes, path: str | os.PathLike = "<bytes>",
                       max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image held in memory; see ``load_image_rgb`` (``path`` is for messages)."""
    if not data:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    careful = False  # True: do not trust OpenCV's result, let Pillow decide
    if data[:2] == _JPEG_SOI:
        header = _jpeg_header(data)
        if header is None:
            careful = True  # odd segment layout: Pillow decides (and checks the size)
        else:
            _check_pixels(path, header[0], header[1], max_pixels)
            # Trailing padding is harmless; anything else after the data means truncation
            # or appended bytes, which Pillow tells apart.
            careful = not data.rstrip(b"\x00\r\n ").endswith(_JPEG_EOI)
    elif data[:8] == _PNG_MAGIC:
        if len(data) < 24:
            raise ImageDecodeError(path, "PNG file is truncated (no header)")
        width, height = struct.unpack_from(">II", data, 16)
        _check_pixels(path, width, height, max_pixels)
        careful = _PNG_IEND not in data[-64:]  # also avoids libpng's stderr noise
    else:
        # Other formats: Pillow reads only the header here (cheap) to learn the size.
        try:
            size = _pillow_header_size(data, path)  # None: maybe a format only OpenCV knows; it will tell
        except (OSError, ValueError, SyntaxError, struct.error, EOFError) as e:
            raise ImageDecodeError(path, f"damaged image header ({e})") from None
        if size is not None:
            _check_pixels(path, size[0], size[1], max_pixels)

    if careful:
        return _decode_with_pillow(path, data, max_pixels)

    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        if _IMREAD_RGB is not None:
            image = cv2.imdecode(buf, _IMREAD_RGB)
        else:
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if image is not None:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    except cv2.error:
        image = None
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        return _decode_with_pillow(path, data, max_pixels)
    return image
