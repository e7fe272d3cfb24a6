"""The upright size of an image from its header, without decoding the pixels.

Why: a dataset report or an evaluation needs every image's size to turn
normalised boxes into pixels; decoding 100k pictures for that takes many
minutes, reading headers takes seconds. The size is the one ``load_image_rgb``
returns: EXIF orientations 5-8 (rotated by 90 degrees) swap width and height.
"""
from __future__ import annotations

import os
import warnings

from PIL import Image, UnidentifiedImageError

from vision.datasets.image_io import ImageDecodeError

_ROTATED = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees
_ORIENTATION_TAG = 0x0112


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the upright picture; ``ImageDecodeError`` when the header is unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                try:
                    orientation = img.getexif().get(_ORIENTATION_TAG, 1)
                except Exception:  # noqa: BLE001 - a damaged EXIF block: load_image_rgb ignores it too
                    orientation = 1
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(path, f"possible decompression bomb: {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageDecodeError(path, f"damaged image header ({e})") from None
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"header gives an empty image size {width}x{height}")
    return (height, width) if orientation in _ROTATED else (width, height)
