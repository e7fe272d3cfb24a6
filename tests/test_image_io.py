"""image_io: every kind of image file a dataset meets, good and bad."""
from __future__ import annotations

import io
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image

from vision.datasets import image_io
from vision.datasets.image_io import ImageDecodeError, load_image_rgb
from vision.utils.misc import UserError


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """An RGB picture with a clear left-red / right-blue layout (survives JPEG well)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (230, 20, 20)
    img[:, w // 2:] = (20, 20, 230)
    return img


def _jpeg_bytes(rgb: np.ndarray, **kw) -> bytes:
    bio = io.BytesIO()
    Image.fromarray(rgb).save(bio, "JPEG", quality=95, **kw)
    return bio.getvalue()


def _write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_rgb_jpeg_channel_order_and_dtype(tmp_path):
    p = _write(tmp_path, "a.jpg", _jpeg_bytes(_smooth_rgb()))
    img = load_image_rgb(p)
    assert img.dtype == np.uint8 and img.shape == (48, 64, 3)
    assert img[24, 5, 0] > 200 and img[24, 5, 2] < 60    # left is red in RGB order
    assert img[24, 60, 2] > 200 and img[24, 60, 0] < 60  # right is blue


def test_grayscale_jpeg_becomes_three_equal_channels(tmp_path):
    gray = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    ok, buf = cv2.imencode(".jpg", gray)
    p = _write(tmp_path, "g.jpg", buf.tobytes())
    img = load_image_rgb(p)
    assert img.shape == (32, 64, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 120, 240, 0  # fully transparent
    bio = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(bio, "PNG")
    img = load_image_rgb(_write(tmp_path, "a.png", bio.getvalue()))
    assert img.shape == (20, 30, 3)
    assert tuple(img[5, 5]) == (10, 120, 240)


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_scaled_to_8bit(tmp_path, channels):
    shape = (10, 12) if channels == 1 else (10, 12, 3)
    a = np.full(shape, 40000, np.uint16)
    if channels == 3:
        a[..., 2] = 65535  # OpenCV order: this is red
    ok, buf = cv2.imencode(".png", a)
    img = load_image_rgb(_write(tmp_path, "d.png", buf.tobytes()))
    assert img.dtype == np.uint8 and img.shape == (10, 12, 3)
    assert abs(int(img[0, 0, 1]) - 40000 // 257) <= 1
    if channels == 3:
        assert img[0, 0, 0] == 255


def test_16bit_grayscale_via_pillow_path(tmp_path):
    bio = io.BytesIO()
    Image.fromarray(np.full((8, 9), 40000, np.uint16)).save(bio, "PNG")
    img = image_io._decode_with_pillow("x.png", bio.getvalue(), None)
    assert img.shape == (8, 9, 3) and abs(int(img[0, 0, 0]) - 156) <= 1


def test_cmyk_jpeg(tmp_path):
    bio = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(bio, "JPEG", quality=95)  # pure red
    img = load_image_rgb(_write(tmp_path, "cmyk.jpg", bio.getvalue()))
    assert img.shape == (30, 40, 3)
    assert img[15, 20, 0] > 200 and img[15, 20, 1] < 60 and img[15, 20, 2] < 60


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(tmp_path, orientation):
    rgb = _smooth_rgb(32, 64)  # landscape: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _jpeg_bytes(rgb, exif=exif.tobytes())
    img = load_image_rgb(_write(tmp_path, "r.jpg", data))
    with Image.open(io.BytesIO(data)) as im:
        from PIL import ImageOps
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert img.shape == expected.shape
    assert img.shape[:2] == ((64, 32) if orientation in (6, 8) else (32, 64))
    assert np.abs(img.astype(int) - expected.astype(int)).mean() < 3


def test_truncated_jpeg_raises(tmp_path):
    data = _jpeg_bytes((np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8))
    for cut in (len(data) - 2, len(data) * 2 // 3, 400):
        p = _write(tmp_path, f"t{cut}.jpg", data[:cut])
        with pytest.raises(ImageDecodeError, match="truncat|damaged|cannot read"):
            load_image_rgb(p)


def test_truncated_jpeg_raises_even_if_opencv_returns_a_picture(tmp_path, monkeypatch):
    """Older OpenCV builds return a grey-filled image for a truncated JPEG; we must not trust it."""
    data = _jpeg_bytes(_smooth_rgb())
    p = _write(tmp_path, "t.jpg", data[: len(data) - 40])
    monkeypatch.setattr(image_io.cv2, "imdecode", lambda buf, flags: np.full((48, 64, 3), 128, np.uint8))
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image_rgb(p)


def test_jpeg_with_trailing_bytes_still_loads(tmp_path):
    data = _jpeg_bytes(_smooth_rgb()) + b"some camera trailer" * 10
    assert load_image_rgb(_write(tmp_path, "trailer.jpg", data)).shape == (48, 64, 3)


def test_truncated_png_raises(tmp_path):
    ok, buf = cv2.imencode(".png", (np.random.default_rng(1).random((50, 50, 3)) * 255).astype(np.uint8))
    data = buf.tobytes()
    with pytest.raises(ImageDecodeError):
        load_image_rgb(_write(tmp_path, "t.png", data[: len(data) // 2]))


def test_zero_bytes(tmp_path):
    with pytest.raises(ImageDecodeError, match="empty file"):
        load_image_rgb(_write(tmp_path, "z.jpg", b""))


def test_text_named_jpg(tmp_path):
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_image_rgb(_write(tmp_path, "notes.jpg", b"this is a text file, not a picture\n" * 20))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="folder"):
        load_image_rgb(tmp_path)


@pytest.mark.parametrize("fmt", ["jpg", "png", "bmp"])
def test_decompression_bomb_guard(tmp_path, fmt):
    ok, buf = cv2.imencode("." + fmt, np.zeros((100, 120, 3), np.uint8))
    p = _write(tmp_path, "big." + fmt, buf.tobytes())
    assert load_image_rgb(p).shape == (100, 120, 3)  # default limit: fine
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image_rgb(p, max_pixels=100 * 120 - 1)
    assert load_image_rgb(p, max_pixels=None).shape == (100, 120, 3)


def test_bomb_rejected_before_decoding(tmp_path, monkeypatch):
    ok, buf = cv2.imencode(".jpg", np.zeros((100, 120, 3), np.uint8))
    p = _write(tmp_path, "big.jpg", buf.tobytes())

    def boom(*a, **k):
        raise AssertionError("decoded a bomb")
    monkeypatch.setattr(image_io.cv2, "imdecode", boom)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_image_rgb(p, max_pixels=50)


def test_normal_jpeg_decoded_once_without_pillow(tmp_path, monkeypatch):
    p = _write(tmp_path, "a.jpg", _jpeg_bytes(_smooth_rgb()))
    calls = []
    real = image_io.cv2.imdecode
    monkeypatch.setattr(image_io.cv2, "imdecode", lambda *a: calls.append(1) or real(*a))

    def no_pillow(*a, **k):
        raise AssertionError("Pillow used on the fast path")
    monkeypatch.setattr(image_io.Image, "open", no_pillow)
    load_image_rgb(p)
    assert len(calls) == 1


def test_other_formats_load(tmp_path):
    rgb = _smooth_rgb()
    for fmt in ("bmp", "tiff", "webp"):
        ok, buf = cv2.imencode("." + fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            continue
        img = load_image_rgb(_write(tmp_path, "x." + fmt, buf.tobytes()))
        assert img.shape == (48, 64, 3) and img[24, 5, 0] > 200, fmt
    bio = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(bio, "GIF")
    img = load_image_rgb(_write(tmp_path, "x.gif", bio.getvalue()))
    assert img.shape == (48, 64, 3) and img[24, 5, 0] > 200


def test_error_is_user_error_and_picklable(tmp_path):
    with pytest.raises(ImageDecodeError) as ei:
        load_image_rgb(_write(tmp_path, "z.jpg", b""))
    e = ei.value
    assert isinstance(e, UserError)
    assert str(tmp_path / "z.jpg") in str(e) and "\n" not in str(e)
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.reason, str(e2)) == (e.path, e.reason, str(e))
