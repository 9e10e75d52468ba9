"""The shared preprocessing: golden bytes, an independent reference, a C oracle, properties."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from armvww import images, preprocess
from armvww.model import Model, parse_model

from .conftest import REPO
from .reference_pipeline import reference_input, reference_q

GOLDEN = json.loads((REPO / "tests" / "golden" / "preprocess_sha256.json").read_text())
VWW2_SCALE, VWW2_ZP = 0.007549178320914507, -72  # float32 value stored in the model


@pytest.fixture(scope="module")
def models(vww2_bytes: bytes, vww4_bytes: bytes) -> dict[str, Model]:
    return {"vww2": parse_model(vww2_bytes), "vww4": parse_model(vww4_bytes)}


def _input(m: Model, img: Image.Image) -> np.ndarray:
    s = m.input
    assert s.scale is not None and s.zero_point is not None
    return preprocess.image_to_input(img, s.shape, s.scale, s.zero_point)


@pytest.mark.parametrize("name", ["vww2", "vww4"])
def test_golden_bytes_of_every_sample(name: str, models: dict[str, Model], samples) -> None:
    m = models[name]
    for path, _ in samples:
        rel = path.relative_to(path.parent.parent).as_posix()
        q = _input(m, images.load_image(path))
        assert q.shape == m.input.shape and q.dtype == np.int8
        assert hashlib.sha256(q.tobytes()).hexdigest() == GOLDEN[name][rel], rel


@pytest.mark.parametrize("name", ["vww2", "vww4"])
def test_every_sample_matches_the_independent_reference(
    name: str, models: dict[str, Model], samples
) -> None:
    """armvww's bytes equal the reference restatement's (grey photos: its ``keep_grey``
    reading of armvww's documented departure), and the golden hashes are the reference's,
    not armvww's own recording."""
    m = models[name]
    s = m.input
    h, w = m.input_hw
    for path, _ in samples:
        rel = path.relative_to(path.parent.parent).as_posix()
        ref = reference_input(str(path), w, h, s.scale, s.zero_point, keep_grey=True)  # type: ignore[arg-type]
        assert hashlib.sha256(ref.tobytes()).hexdigest() == GOLDEN[name][rel], rel
        np.testing.assert_array_equal(_input(m, images.load_image(path)), ref, err_msg=rel)


def test_grey_images_skip_the_grey_conversion(models: dict[str, Model], samples) -> None:
    """The reference turns grey into RGB and back (the v-1 quirk); we keep grey as is.
    Converting to RGB ourselves must give the reference's bytes exactly."""
    m = models["vww2"]
    s = m.input
    grey = [p for p, _ in samples if Image.open(p).mode == "L"]
    assert len(grey) == 2
    for path in grey:
        img = images.load_image(path)
        assert img.mode == "L"
        via_rgb = _input(m, img.convert("RGB"))
        ref = reference_input(str(path), 50, 50, s.scale, s.zero_point)  # type: ignore[arg-type]
        np.testing.assert_array_equal(via_rgb, ref)
        direct = _input(m, img)
        keep = reference_input(str(path), 50, 50, s.scale, s.zero_point, keep_grey=True)  # type: ignore[arg-type]
        np.testing.assert_array_equal(direct, keep)
        assert (direct != via_rgb).any()  # the quirk really shows on these photos


def test_grey_quirk_values() -> None:
    v = np.arange(256, dtype=np.uint8)
    grey = preprocess.rgb_to_grey(np.stack([v, v, v], axis=-1))
    quirk = tuple(int(x) for x in np.nonzero(grey != v)[0])
    assert quirk == preprocess.GREY_QUIRK_VALUES
    assert all(int(grey[x]) == x - 1 for x in quirk)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (apt-get install gcc) for the C oracle")
    exe = tmp_path_factory.mktemp("oracle") / "vww_ref"
    src = REPO / "tests" / "oracle" / "vww_ref.c"
    subprocess.run([cc, "-O2", "-ffp-contract=off", "-o", str(exe), str(src), "-lm"], check=True)
    return exe


@pytest.mark.parametrize(
    ("scale", "zp"),
    [(VWW2_SCALE, VWW2_ZP), (0.008137832395732403, -70), (0.003, 100), (0.004, -128)],
)
def test_grey_and_quant_match_the_c_oracle(oracle: Path, scale: float, zp: int) -> None:
    rng = np.random.default_rng(7)
    trip = np.concatenate(
        [
            np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1),
            rng.integers(0, 256, size=(20000, 3), dtype=np.uint8),
        ]
    )
    text = f"{float(np.float32(scale))!r} {zp}\n" + "\n".join(" ".join(map(str, t)) for t in trip)
    out = subprocess.run([str(oracle)], input=text, capture_output=True, text=True, check=True)
    ref = np.array([line.split() for line in out.stdout.splitlines()], dtype=np.int64)
    grey = preprocess.rgb_to_grey(trip)
    np.testing.assert_array_equal(grey, ref[:, 0])
    np.testing.assert_array_equal(preprocess.quantize_grey(grey, scale, zp), ref[:, 1])


def test_resize_and_crop_sizes_match_the_c_oracle(oracle: Path) -> None:
    """The reference's resize sizes (``int()`` truncation) and its crop box (Pillow's
    half-to-even rounding), restated in C, for every photo size up to 700 px a side against
    square and non-square models: armvww with ``reference_truncation=True`` agrees on every
    case; without it only the shorter side differs, and only where truncation bites."""
    cases = [
        (W, H, w, h)
        for (w, h) in ((50, 50), (128, 128), (64, 32), (96, 96))
        for W in range(1, 701, 3)
        for H in (W, W + 1, 2 * W + 3, max(1, W // 3), 97, 161, 193)
    ]
    text = "box\n" + "\n".join(" ".join(map(str, c)) for c in cases)
    out = subprocess.run([str(oracle)], input=text, capture_output=True, text=True, check=True)
    ref = [tuple(map(int, line.split())) for line in out.stdout.splitlines()]
    assert len(ref) == len(cases)
    truncated = 0
    for (W, H, w, h), (rw, rh, *box) in zip(cases, ref, strict=True):
        assert preprocess.resized_size(W, H, w, h, reference_truncation=True) == (rw, rh)
        assert preprocess.crop_box(rw, rh, w, h) == tuple(box), (W, H, w, h)
        fixed = preprocess.resized_size(W, H, w, h)
        short = max(w, h)
        if min(rw, rh) < short:  # the reference's truncation: armvww keeps the model side
            truncated += 1
            assert min(fixed) == short and max(fixed) >= max(rw, rh)
        else:
            assert fixed == (max(rw, w), max(rh, h))
    assert truncated > 100  # the sweep really holds truncation sizes


def test_hand_computed_quantisation_and_sizes() -> None:
    """Values worked out by hand from the reference formulas (vww2: scale 0.00754918,
    zero point -72)."""
    table = preprocess.quant_table(VWW2_SCALE, VWW2_ZP)
    # 0 -> 0/255/s - 72 = -72; 128 -> 66.49 - 72 = -5.51 -> -5; 255 -> 132.46 - 72 -> 60
    assert (int(table[0]), int(table[128]), int(table[255])) == (-72, -5, 60)
    # (200, 100, 50) -> 59.8 + 58.7 + 5.7 = 124.2 -> 124 -> 64.41 - 72 = -7.59 -> -7
    rgb = np.full((3, 5, 3), (200, 100, 50), np.uint8)
    q = preprocess.image_to_input(images.load_image(rgb), (1, 2, 2, 1), VWW2_SCALE, VWW2_ZP)
    assert q.tolist() == [[[[-7], [-7]], [[-7], [-7]]]]
    # 97 px for a 50 px model: 50 / 97 * 97 = 49.999... -> int() -> 49 in the reference;
    # a 97 x 130 photo: 130 * 50 / 97 = 67.01 -> 67
    assert preprocess.resized_size(97, 130, 50, 50, reference_truncation=True) == (49, 67)
    assert preprocess.resized_size(97, 130, 50, 50) == (50, 67)
    # crop of 67 rows to 50: (17 / 2, 117 / 2) = (8.5, 58.5) -> half to even (8, 58)
    assert preprocess.crop_box(50, 67, 50, 50) == (0, 8, 50, 58)


def test_quant_table_is_clamped_before_the_cast() -> None:
    t = preprocess.quant_table(0.001, 0)  # 255/255/0.001 = 1000: far above int8
    assert t[255] == 127 and t[0] == 0 and t.min() >= -128
    t2 = preprocess.quant_table(0.001, -128)
    assert t2[0] == -128 and t2[255] == 127
    assert not t.flags.writeable


@pytest.mark.parametrize(("size", "expect_short"), [(97, 50), (161, 50), (193, 50), (96, 50)])
def test_shorter_side_is_exactly_the_model_side(size: int, expect_short: int) -> None:
    assert preprocess.resized_size(size, size * 2, 50, 50) == (50, int(size * 2 * (50.0 / size)))
    assert min(preprocess.resized_size(size * 2, size, 50, 50)) == expect_short


@pytest.mark.parametrize(
    ("width", "height"), [(97, 97), (161, 161), (193, 193), (97, 130), (300, 161), (193, 388)]
)
def test_reference_truncation_reproduces_the_reference_quirk(
    tmp_path: Path, width: int, height: int
) -> None:
    """Generated photos of the sizes where the reference's ``int()`` makes the shorter side
    49 px for a 50 px model (its crop then pads black): ``reference_truncation=True`` gives
    the reference's bytes exactly; the default keeps a real last row and column."""
    rng = np.random.default_rng(width * 1000 + height)
    arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    p = tmp_path / "x.png"
    Image.fromarray(arr).save(p)
    assert min(preprocess.resized_size(width, height, 50, 50, reference_truncation=True)) == 49
    img = images.load_image(p)
    ref = reference_input(str(p), 50, 50, VWW2_SCALE, VWW2_ZP)
    quirky = preprocess.image_to_input(img, (1, 50, 50, 1), VWW2_SCALE, VWW2_ZP, True)
    np.testing.assert_array_equal(quirky, ref)
    fixed = preprocess.image_to_input(img, (1, 50, 50, 1), VWW2_SCALE, VWW2_ZP)
    assert not np.array_equal(fixed, ref)
    edge = (fixed[0, -1] if height <= width else fixed[0, :, -1]).ravel()
    assert (edge != VWW2_ZP).any()  # the short side's last line is real image, not padding


def test_crop_box_rounds_half_to_even() -> None:
    assert preprocess.crop_box(55, 50, 50, 50) == (2, 0, 52, 50)  # 2.5 -> 2, 52.5 -> 52
    assert preprocess.crop_box(57, 50, 50, 50) == (4, 0, 54, 50)  # 3.5 -> 4


def test_dequantize_in_int64_and_softmax() -> None:
    q = np.array([-128, 127], dtype=np.int8)
    d = preprocess.dequantize(q, 0.5, 127)
    np.testing.assert_allclose(d, [-127.5, 0.0])
    p = preprocess.softmax(np.array([1000.0, 1000.0]))
    np.testing.assert_allclose(p, [0.5, 0.5])
    # person score from raw logits: index 1 is person
    assert preprocess.person_score(np.array([0, 100], np.int8), 0.1, 0) > 0.99


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    side=st.sampled_from([(50, 50), (128, 128), (64, 32)]),
    colour=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_properties_shape_range_determinism(w, h, side, colour, seed) -> None:
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if colour else (h, w)
    arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
    th, tw = side
    img = images.load_image(arr)
    q1 = preprocess.image_to_input(img, (1, th, tw, 1), VWW2_SCALE, VWW2_ZP)
    q2 = preprocess.image_to_input(
        images.load_image(arr.copy()), (1, th, tw, 1), VWW2_SCALE, VWW2_ZP
    )
    assert q1.shape == (1, th, tw, 1) and q1.dtype == np.int8
    assert q1.min() >= -72 and q1.max() <= 60  # hand-computed q(0), q(255) for vww2
    np.testing.assert_array_equal(q1, q2)


@settings(max_examples=40, deadline=None)
@given(v=st.integers(0, 255))
def test_uniform_grey_image_maps_through_the_table(v: int) -> None:
    arr = np.full((70, 90), v, np.uint8)
    q = preprocess.image_to_input(images.load_image(arr), (1, 50, 50, 1), VWW2_SCALE, VWW2_ZP)
    assert (q == reference_q(v, VWW2_SCALE, VWW2_ZP)).all()


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(-128, 127),
    b=st.integers(-128, 127),
    scale=st.floats(1e-4, 8.0),
    zp=st.integers(-128, 127),
)
def test_person_score_equals_the_two_class_softmax(a: int, b: int, scale: float, zp: int) -> None:
    raw = np.array([a, b], np.int8)
    z = (np.array([a, b], np.float64) - zp) * scale
    expect = 1.0 / (1.0 + np.exp(np.clip(z[0] - z[1], -700, 700)))
    assert preprocess.person_score(raw, scale, zp) == pytest.approx(expect, rel=1e-9, abs=1e-300)
    assert preprocess.softmax(z)[1] == pytest.approx(expect, rel=1e-9, abs=1e-300)


def test_a_tie_is_no_person_like_the_reference_argmax() -> None:
    """Equal logits give P(person) = 0.5 exactly; the reference's argmax picks index 0."""
    scale, zp = 0.05457818, 34  # vww2's output quantisation
    for v in (-128, 0, 34, 127):
        tie = np.array([v, v], dtype=np.int8)
        score = preprocess.person_score(tie, scale, zp)
        assert score == 0.5
        assert int(np.argmax(tie)) == 0
        assert preprocess.decide(tie, score) is False
        assert preprocess.decide(tie, score, preprocess.DEFAULT_THRESHOLD) is False
    for raw in ([40, 41], [41, 40], [-128, 127], [127, -128]):
        a = np.array(raw, dtype=np.int8)
        s = preprocess.person_score(a, scale, zp)
        assert preprocess.decide(a, s) == (int(np.argmax(a)) == 1)


def test_other_thresholds_compare_the_score_strictly() -> None:
    a = np.array([40, 41], dtype=np.int8)
    s = preprocess.person_score(a, 0.05457818, 34)  # about 0.514
    assert preprocess.decide(a, s, 0.5) and preprocess.decide(a, s, 0.51)
    assert not preprocess.decide(a, s, 0.52)
    assert not preprocess.decide(a, s, s)  # strictly greater
    assert not preprocess.decide(a, 1.0, 1.0)  # threshold 1: nothing is a person
    assert preprocess.decide(a, 1e-9, 0.0) and not preprocess.decide(a, 0.0, 0.0)


@pytest.mark.parametrize("scale", [0.05457818, 1e-4, 0.1, 8.0, 100.0])
def test_the_score_table_holds_person_score_for_every_gap(scale: float) -> None:
    table = preprocess.gap_scores(scale)
    assert len(table) == 511
    for a in range(-128, 128, 3):
        for b in range(-128, 128):
            raw = np.array([a, b], np.int8)
            assert table[a - b + 255] == preprocess.person_score(raw, scale, 7)
    assert table[255] == 0.5 and table[0] > 0.5 > table[510]
