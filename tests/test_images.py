"""Image decoding rules: modes, EXIF orientation, 16-bit, bombs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from armvww import images
from armvww.errors import ImageDecodeError


def _png(img: Image.Image, **kw: object) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG", **kw)
    return b.getvalue()


def test_modes_map_to_l_or_rgb() -> None:
    rgb = Image.new("RGB", (8, 6), (200, 100, 50))
    assert images.load_image(rgb.convert("RGBA")).mode == "RGB"
    assert images.load_image(rgb.convert("P")).mode == "RGB"
    assert images.load_image(rgb.convert("CMYK")).mode == "RGB"
    assert images.load_image(rgb.convert("L")).mode == "L"
    assert images.load_image(rgb.convert("LA")).mode == "L"
    assert images.load_image(rgb.convert("1")).mode == "L"


def test_rgba_drops_alpha_like_the_reference() -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., :3] = (10, 20, 30)
    a[..., 3] = 0  # fully transparent: the reference ignores alpha, so do we
    out = np.asarray(images.load_image(_png(Image.fromarray(a, "RGBA"))))
    assert (out == (10, 20, 30)).all()


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    v = np.array([[0, 257, 32768, 65535, 1000]], dtype=np.uint16)
    img = Image.fromarray(v)
    decoded = images.load_image(_png(img))
    assert decoded.mode == "L"
    expect = np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(decoded), expect)


def test_exif_orientation_is_applied() -> None:
    a = np.zeros((4, 8, 3), np.uint8)
    a[0, 0] = 255  # a marked corner
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    b = io.BytesIO()
    img.save(b, format="PNG", exif=exif)
    out = np.asarray(images.load_image(b.getvalue()))
    assert out.shape == (8, 4, 3)
    expect = np.asarray(img.transpose(Image.Transpose.ROTATE_270))
    np.testing.assert_array_equal(out, expect)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    big = _png(Image.new("L", (4000, 4000)), optimize=True)
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        images.load_image(big, max_pixels=1_000_000)


def test_float_images_are_refused() -> None:
    with pytest.raises(ImageDecodeError, match="float"):
        images.load_image(Image.new("F", (4, 4)))


def test_truncated_png_is_typed() -> None:
    data = _png(Image.new("RGB", (64, 64), (1, 2, 3)))
    with pytest.raises(ImageDecodeError):
        images.load_image(data[: len(data) // 2])


def test_directory_walk(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.JPG", "sub/c.bmp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in images.iter_image_paths(tmp_path)]
    assert found == ["a.JPG", "b.png", "sub/c.bmp"]
