"""Hostile and unusual image bytes: every format and mode decodes to the documented tensor,
damaged ones end in ImageDecodeError, bombs are refused before decoding.

The big run (10,000 cases) is ``tools/fuzz_images.py``; this is its fixed, seeded corpus plus
the semantic checks (EXIF orientation, 16-bit scaling, alpha, palette, CMYK, 0/1 pixel).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

import armvww
from armvww import images

from ..reference_pipeline import reference_input
from . import fuzzlib

pytestmark = pytest.mark.litert


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _expected_image(name: str, data: bytes) -> Image.Image:
    """What the documented rules say each seed must become, built from the source pixels
    (lossless formats) or from the decoder's raw output (lossy formats), not via armvww."""
    rgb = fuzzlib.base_rgb()
    grey = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    fmt, _, mode = name.partition("-")
    lossy = fmt == "jpeg" or name in ("webp-RGB", "tiff-jpeg")
    if lossy:
        raw = _open(data)
        return raw if raw.mode in ("L", "RGB") else raw.convert("RGB")
    if mode == "exif6":  # orientation 6: turn a quarter clockwise for display
        return Image.fromarray(np.ascontiguousarray(np.rot90(rgb, -1)), "RGB")
    rgb_modes = (
        "RGB",
        "RGB-lzw",
        "RGBA",
        "RGBA-lossless",
        "RGB-interlaced",
        "multipage",
        "anim-lossless",
    )
    if mode in rgb_modes or name == "ppm-RGB":
        return Image.fromarray(rgb, "RGB")  # alpha dropped, not composited
    if mode in ("L", "LA") or name == "pgm-L":
        return Image.fromarray(grey, "L")
    if mode == "1":
        return Image.fromarray(np.where(grey > 100, 255, 0).astype(np.uint8), "L")
    if mode in ("P", "P-transparency", "anim", "interlaced"):
        raw = _open(data)  # first frame; palette looked up with numpy, transparency ignored
        pal = np.array(raw.getpalette("RGB"), dtype=np.uint8).reshape(-1, 3)
        return Image.fromarray(pal[np.asarray(raw)], "RGB")
    if mode == "I16":
        v = rgb[..., 0].astype(np.int64) * 257
        return Image.fromarray(
            np.vectorize(lambda x: round(x * 255 / 65535))(v).astype(np.uint8), "L"
        )
    if mode == "CMYK":
        return Image.fromarray(rgb, "RGB").convert("CMYK").convert("RGB")
    if mode == "1x1":
        return _open(data).convert("RGB")
    raise AssertionError(f"no expectation for seed {name}")


@pytest.mark.parametrize("name", [n for n, _ in fuzzlib.image_seeds()])
def test_every_format_and_mode_gives_the_documented_tensor(det: armvww.Detector, name: str) -> None:
    data = dict(fuzzlib.image_seeds())[name]
    if name == "tiff-F":
        with pytest.raises(armvww.ImageDecodeError, match="32-bit float"):
            det.quantize(data)
        return
    got = det.quantize(data)
    expected = det.quantize(_expected_image(name, data))
    assert got.dtype == np.int8 and got.shape == det.input_shape
    np.testing.assert_array_equal(got, expected)


# numpy restatements of the EXIF orientations: what to do to the stored pixels for display
_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _with_orientation(img: Image.Image, fmt: str, o: int, **kw: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = o
    return fuzzlib.encode(img, fmt, exif=exif, **kw)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_equals_the_pre_rotated_image(
    det: armvww.Detector, orientation: int
) -> None:
    a = fuzzlib.base_rgb(40, 64)  # tall, so a quarter turn changes the crop
    src = Image.fromarray(a, "RGB")
    turned = Image.fromarray(np.ascontiguousarray(_ORIENT[orientation](a)), "RGB")
    want = det.quantize(fuzzlib.encode(turned, "PNG"))
    assert np.array_equal(det.quantize(_with_orientation(src, "PNG", orientation)), want)
    if features.check("webp"):
        webp = _with_orientation(src, "WEBP", orientation, lossless=True)
        assert np.array_equal(det.quantize(webp), want)
    # JPEG is lossy: rotate the decoder's own pixels instead of the source
    jpeg = _with_orientation(src, "JPEG", orientation, quality=95)
    stored = np.asarray(_open(jpeg).convert("RGB"))
    turned_j = Image.fromarray(np.ascontiguousarray(_ORIENT[orientation](stored)), "RGB")
    assert np.array_equal(det.quantize(jpeg), det.quantize(turned_j))
    if orientation in (6, 8):  # the check has teeth: a quarter turn changes the tensor
        assert not np.array_equal(want, det.quantize(fuzzlib.encode(src, "PNG")))


def test_invalid_exif_orientation_is_ignored(det: armvww.Detector) -> None:
    src = Image.fromarray(fuzzlib.base_rgb(), "RGB")
    q = det.quantize(_with_orientation(src, "PNG", 99))
    np.testing.assert_array_equal(q, det.quantize(fuzzlib.encode(src, "PNG")))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_by_round_v_times_255_over_65535(
    det: armvww.Detector, fmt: str
) -> None:
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    data = fuzzlib.encode(Image.fromarray(v), fmt)
    assert _open(data).mode.startswith("I")  # really a 16-bit file
    want = np.array([round(x * 255 / 65535) for x in range(65536)], dtype=np.uint8)
    got = images.load_image(data)
    assert got.mode == "L"
    np.testing.assert_array_equal(np.asarray(got).reshape(-1), want)
    # and not Pillow's clipping convert("L"), which would make almost everything 255
    assert int(np.asarray(got)[128, 0]) == round(32768 * 255 / 65535) == 128
    expected = det.quantize(Image.fromarray(want.reshape(256, 256), "L"))
    np.testing.assert_array_equal(det.quantize(data), expected)


@pytest.mark.parametrize("name", [n for n, _ in fuzzlib.special_images() if n.startswith("bomb")])
def test_decompression_bombs_are_refused(det: armvww.Detector, name: str) -> None:
    data = dict(fuzzlib.special_images())[name]
    with pytest.raises(armvww.ImageDecodeError):
        det.quantize(data)


def test_bomb_limits_apply_to_every_input_kind(vww2_path: Path) -> None:
    with armvww.Detector(vww2_path, backend="LiteRT", max_pixels=99 * 99) as small:
        img = Image.new("L", (100, 100), 7)
        for item in (fuzzlib.encode(img, "PNG"), img):
            with pytest.raises(armvww.ImageDecodeError, match="decompression-bomb"):
                small.quantize(item)
        assert small.quantize(Image.new("L", (99, 99), 7)).shape == small.input_shape


def test_zero_pixel_images(det: armvww.Detector) -> None:
    for name in ("zero-png-0x5", "zero-png-5x0", "empty"):
        with pytest.raises(armvww.ImageDecodeError):
            det.quantize(dict(fuzzlib.special_images())[name])
    with pytest.raises(armvww.ImageDecodeError, match="no pixels"):
        det.quantize(Image.new("L", (0, 0)))
    with pytest.raises(armvww.InputError, match="no pixels"):
        det.quantize(np.zeros((0, 5), np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"])
def test_one_pixel_images_match_the_reference(
    det: armvww.Detector, fmt: str, tmp_path: Path
) -> None:
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow was built without WebP")
    px = Image.new("RGB", (1, 1), (200, 30, 90))
    data = fuzzlib.encode(px.quantize(2) if fmt == "GIF" else px, fmt)
    f = tmp_path / f"one.{fmt.lower()}"
    f.write_bytes(data)
    spec = det.model.input
    assert spec.scale is not None and spec.zero_point is not None
    ref = reference_input(str(f), 50, 50, spec.scale, spec.zero_point)
    got = det.quantize(data)
    np.testing.assert_array_equal(got, ref)
    assert len(np.unique(got)) == 1


def test_not_an_image_and_truncations(det: armvww.Detector) -> None:
    png = fuzzlib.encode(Image.fromarray(fuzzlib.base_rgb(), "RGB"), "PNG")
    jpeg = fuzzlib.encode(Image.fromarray(fuzzlib.base_rgb(), "RGB"), "JPEG")
    cuts = (b"hello", png[:8], png[:40], png[: len(png) // 2], png[:-100], jpeg[:-100])
    for data in cuts:
        with pytest.raises(armvww.ImageDecodeError):
            det.quantize(data)


CORPUS_CASES = 400


def test_seeded_mutation_corpus(vww2_path: Path) -> None:
    """Damaged images of every seed, in child processes: typed errors or tensors only."""
    cases = fuzzlib.special_images() + list(
        fuzzlib.image_cases(fuzzlib.image_seeds(), CORPUS_CASES, seed=2024)
    )
    counts, failures = fuzzlib.run_cases(cases, "image", workers=2, model=str(vww2_path))
    assert failures == [], "\n".join(f"{f.outcome}: {f.case}: {f.detail}" for f in failures)
    assert sum(counts.values()) == len(cases)
    assert counts["valid"] >= 50 and counts["typed"] >= 100, counts


# -- reproducers of bugs the fuzzer found (fixed; kept as regression tests) --------------------


@pytest.mark.parametrize("case", ["tiff-L#2:608", "tiff-L#5:3416", "tiff-1#8:4156"])
def test_fuzz_reproducer_tiff_type_error(det: armvww.Detector, case: str) -> None:
    seed, index = (int(x) for x in case.split("#")[1].split(":"))
    cid, data = list(fuzzlib.image_cases(fuzzlib.image_seeds(), index + 1, seed))[index]
    assert cid.startswith(case + " ")
    with pytest.raises(armvww.ImageDecodeError):
        det.quantize(data)


_ASPECT_CHILD = """
import json, resource, sys
import numpy as np
import armvww
det = armvww.Detector(sys.argv[1], backend="LiteRT")
png = open(sys.argv[2], "rb").read()
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # keep the host safe
try:
    det.quantize(png)
    out = "tensor"
except armvww.ArmvwwError as exc:
    out = type(exc).__name__
except BaseException as exc:
    out = "untyped " + type(exc).__name__
print(json.dumps(out))
"""


def test_extreme_aspect_ratio_is_bounded(vww2_path: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    f = tmp_path / "thin.png"
    f.write_bytes(fuzzlib.encode(Image.new("L", (1, 4_000_000), 128), "PNG"))
    r = subprocess.run(
        [sys.executable, "-c", _ASPECT_CHILD, str(vww2_path), str(f)],
        capture_output=True,
        text=True,
        env=dict(__import__("os").environ, PYTHONPATH=str(fuzzlib.REPO)),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] in ('"tensor"', '"ImageDecodeError"'), r.stdout
