"""Arrays given to run() and detect(): a typed error or the documented conversion, never a
wrong answer (wrong dtype or shape, NaN, non-contiguous, read-only, aliasing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import armvww

from . import fuzzlib

pytestmark = pytest.mark.litert


@pytest.fixture(scope="module")
def q(det: armvww.Detector) -> np.ndarray:
    """A real input tensor (from a picture), so a wrong path would give a different answer."""
    return det.quantize(fuzzlib.base_rgb(80, 60))


def test_run_rejects_every_wrong_dtype(det: armvww.Detector, q: np.ndarray) -> None:
    nan = np.full(q.shape, np.nan, np.float32)
    bad: list[Any] = [
        q.astype(np.uint8),
        q.astype(np.int16),
        q.astype(np.int32),
        q.astype(np.float32),
        q.astype(np.float64),
        nan,
        q.astype(bool),
        q.astype(object),
        q.astype(np.complex64),
        q.astype(">i2"),
    ]
    for a in bad:
        with pytest.raises(armvww.InputError, match=r"int8 array of shape \(1, 50, 50, 1\)"):
            det.run(a)


def test_run_rejects_every_wrong_shape(det: armvww.Detector, q: np.ndarray) -> None:
    for shape in [
        (50, 50),
        (1, 50, 50),
        (50, 50, 1),
        (1, 50, 50, 3),
        (2, 50, 50, 1),
        (1, 51, 50, 1),
        (1, 50, 49, 1),
        (1, 1, 50, 50, 1),
        (0, 50, 50, 1),
        (),
    ]:
        with pytest.raises(armvww.InputError, match=re.escape(f"got int8 {shape}")):
            det.run(np.zeros(shape, np.int8))
    with pytest.raises(armvww.InputError):
        det.run(q.reshape(1, 2500, 1, 1))


def test_run_rejects_things_that_are_not_arrays(det: armvww.Detector, q: np.ndarray) -> None:
    for x in (
        q.tolist(),
        q.tobytes(),
        memoryview(q.tobytes()),
        None,
        3,
        "q",
        Image.new("L", (50, 50)),
    ):
        with pytest.raises(armvww.InputError, match="int8 numpy array"):
            det.run(x)  # type: ignore[arg-type]


def test_non_contiguous_and_read_only_inputs_give_the_same_answer(
    det: armvww.Detector, q: np.ndarray
) -> None:
    want = det.run(q)
    ro = q.copy()
    ro.setflags(write=False)
    wide = np.zeros((1, 50, 100, 1), np.int8)
    wide[:, :, ::2] = q
    strided = wide[:, :, ::2]
    flipped_store = np.ascontiguousarray(q[:, ::-1, ::-1])
    reversed_view = flipped_store[:, ::-1, ::-1]
    fortran = np.asfortranarray(q)
    broadcast = np.broadcast_to(q, q.shape)  # read-only, zero-copy
    for name, a in [
        ("read-only", ro),
        ("strided", strided),
        ("reversed", reversed_view),
        ("fortran", fortran),
        ("broadcast", broadcast),
    ]:
        assert np.array_equal(a, q), name
        np.testing.assert_array_equal(det.run(a), want, err_msg=name)
    assert not strided.flags.c_contiguous and not reversed_view.flags.c_contiguous


def test_run_neither_changes_its_input_nor_returns_a_shared_buffer(
    det: armvww.Detector, q: np.ndarray
) -> None:
    before = q.copy()
    other = det.quantize(np.full((40, 40), 250, np.uint8))
    a = det.run(q)
    a_copy = a.copy()
    b = det.run(other)
    np.testing.assert_array_equal(q, before)
    np.testing.assert_array_equal(a, a_copy)  # the second call did not overwrite the first
    assert not np.array_equal(a, b), "two different pictures should give different logits"
    a[:] = 0
    np.testing.assert_array_equal(det.run(q), a_copy)


def test_image_arrays_documented_conversions(det: armvww.Detector) -> None:
    rgb = fuzzlib.base_rgb(70, 55)
    grey = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 17, np.uint8)], axis=2)
    # HxWx3 is RGB, HxWx4 drops alpha, HxWx1 is HxW
    np.testing.assert_array_equal(det.quantize(rgba), det.quantize(rgb))
    np.testing.assert_array_equal(det.quantize(grey[:, :, None]), det.quantize(grey))
    np.testing.assert_array_equal(det.quantize(rgb), det.quantize(Image.fromarray(rgb, "RGB")))
    np.testing.assert_array_equal(det.quantize(grey), det.quantize(Image.fromarray(grey, "L")))


def test_image_arrays_views_give_the_same_answer(det: armvww.Detector) -> None:
    rgb = fuzzlib.base_rgb(70, 55)
    want = det.quantize(rgb)
    ro = rgb.copy()
    ro.setflags(write=False)
    big = np.zeros((110, 140, 3), np.uint8)
    big[::2, ::2] = rgb
    rev_store = np.ascontiguousarray(rgb[::-1, ::-1])
    for name, a in [
        ("read-only", ro),
        ("strided", big[::2, ::2]),
        ("reversed", rev_store[::-1, ::-1]),
        ("fortran", np.asfortranarray(rgb)),
        ("channels-view", np.concatenate([rgb, rgb], axis=2)[:, :, :3]),
    ]:
        np.testing.assert_array_equal(det.quantize(a), want, err_msg=name)
        assert det.detect(a).raw.tolist() == det.detect(rgb).raw.tolist(), name


def test_image_arrays_wrong_dtype_or_shape_are_refused(det: armvww.Detector) -> None:
    rgb = fuzzlib.base_rgb(30, 20)
    for a in (
        rgb.astype(np.float32),
        np.full((20, 30), np.nan),
        rgb.astype(np.int8),
        rgb.astype(np.uint16),
        rgb.astype(bool),
        rgb.astype(np.int64),
    ):
        with pytest.raises(armvww.InputError, match="uint8"):
            det.detect(a)
    for shape in [(20, 30, 2), (20, 30, 5), (600,), (1, 20, 30, 3), (), (0, 30), (20, 0, 3)]:
        with pytest.raises(armvww.InputError):
            det.detect(np.zeros(shape, np.uint8))
    for x in (3.5, None, [1, 2, 3], object()):
        with pytest.raises(armvww.InputError):
            det.detect(x)  # type: ignore[arg-type]


def test_detection_agrees_with_run(det: armvww.Detector, q: np.ndarray) -> None:
    d = det.detect(fuzzlib.base_rgb(80, 60))
    raw = det.run(q).reshape(-1)
    assert d.raw.tolist() == raw.tolist()
    logits = (raw.astype(np.float64) - det.model.output.zero_point) * det.model.output.scale  # type: ignore[operator]
    p = np.exp(logits[1]) / np.exp(logits).sum()
    assert d.score == pytest.approx(p, abs=1e-12)
    assert d.person == (int(raw[1]) > int(raw[0]))  # argmax at the default threshold


@pytest.mark.parametrize("bad", [float("nan"), -0.01, 1.01, "0.5", None, float("inf")])
def test_bad_thresholds_are_refused(vww2_path: Path, bad: object) -> None:
    with pytest.raises(armvww.InputError, match="threshold"):
        armvww.Detector(vww2_path, backend="LiteRT", threshold=bad)  # type: ignore[arg-type]
