"""Detector on the real model and LiteRT: every sample, every input form, typed errors."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import armvww
from armvww.errors import BackendError, BackendUnavailableError, ImageDecodeError, InputError

from .reference_pipeline import reference_input

pytestmark = pytest.mark.litert


def _need_litert() -> None:
    """Any LiteRT runtime armvww can use (ai-edge-litert, or tflite-runtime in its lane)."""
    av = armvww.backends.availability("LiteRT")
    if not av.available:
        pytest.skip(f"no LiteRT runtime here: {av.reason}")


@pytest.fixture(scope="module")
def det(vww2_path: Path):
    _need_litert()
    with armvww.Detector(vww2_path, backend="LiteRT") as d:
        yield d


@pytest.fixture(scope="module")
def bare_litert(vww2_bytes: bytes):
    _need_litert()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the tflite-runtime lane
        from tflite_runtime.interpreter import Interpreter
    it = Interpreter(model_content=vww2_bytes)
    it.allocate_tensors()

    def run(q: np.ndarray) -> np.ndarray:
        it.set_tensor(it.get_input_details()[0]["index"], q)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"]).copy()

    return run


def test_every_sample_detects_on_litert(det, samples, bare_litert) -> None:
    correct = 0
    for path, label in samples:
        r = det.detect(path)
        assert r.backend == "LiteRT" and r.source == str(path) and r.fallback == ()
        assert r.raw.dtype == np.int8 and r.raw.shape == (2,)
        # the result equals an independent bare-interpreter run on the same tensor
        np.testing.assert_array_equal(r.raw, bare_litert(det.quantize(path)).reshape(-1))
        # score is the softmax of the dequantised logits, computed here independently
        z = (r.raw.astype(np.float64) - 34) * 0.05457817763090134
        assert r.score == pytest.approx(np.exp(z[1]) / np.exp(z).sum(), rel=1e-9)
        assert r.person == (r.score >= 0.5)
        correct += r.person == bool(label)
    # a smoke set of 13: the model card's 0.768 accuracy makes ~10 right; 9 measured
    assert correct >= 8


def test_input_forms_give_identical_results(det, samples) -> None:
    for path, _ in samples:
        data = path.read_bytes()
        pil = Image.open(io.BytesIO(data))
        arr = np.asarray(Image.open(path).convert("RGB" if pil.mode != "L" else "L"))
        forms = [path, str(path), data, pil, arr]
        if arr.ndim == 2:
            forms.append(arr[:, :, None])
        else:
            forms.append(np.dstack([arr, np.full(arr.shape[:2], 255, np.uint8)]))
        raws = [det.detect(f).raw for f in forms]
        for r in raws[1:]:
            np.testing.assert_array_equal(r, raws[0], err_msg=str(path))


def test_vww4_runs_through_the_same_api(samples) -> None:
    _need_litert()
    with armvww.Detector("vww4", backend="LiteRT") as d:
        assert d.input_shape == (1, 128, 128, 1)
        q = d.quantize(samples[0][0])
        assert q.shape == (1, 128, 128, 1)
        r = d.detect(samples[0][0])
        assert r.raw.shape == (2,)


def test_run_contract(det) -> None:
    q = np.full((1, 50, 50, 1), -72, np.int8)
    out = det.run(q)
    assert out.shape == (1, 2) and out.dtype == np.int8
    # non-contiguous and read-only views are accepted (copied), with the same answer
    big = np.full((1, 50, 100, 1), -72, np.int8)[:, :, ::2, :]
    assert not big.flags.c_contiguous
    np.testing.assert_array_equal(det.run(big), out)
    ro = q.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(det.run(ro), out)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, 50, 50, 1), np.uint8),
        np.zeros((1, 50, 50, 1), np.float32),
        np.zeros((50, 50), np.int8),
        np.zeros((1, 128, 128, 1), np.int8),
        [[1, 2]],
        None,
    ],
)
def test_run_rejects_wrong_tensors(det, bad) -> None:
    with pytest.raises(InputError, match=r"int8 .*shape \(1, 50, 50, 1\)"):
        det.run(bad)


def test_bad_images_are_typed(det, tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="not in a format"):
        det.detect(b"definitely not an image")
    with pytest.raises(ImageDecodeError, match="empty"):
        det.detect(b"")
    with pytest.raises(ImageDecodeError, match="does not exist"):
        det.detect(tmp_path / "missing.png")
    with pytest.raises(InputError, match="uint8"):
        det.detect(np.zeros((10, 10), np.float64))
    with pytest.raises(InputError, match="no pixels"):
        det.detect(np.zeros((0, 10), np.uint8))
    with pytest.raises(InputError, match="unsupported image input"):
        det.detect(12345)  # type: ignore[arg-type]


def test_detect_many_reports_each_item_once(det, samples, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"broken")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "b.png")
    items = [tmp_path, samples[0][0], b"nope"]
    res = det.detect_many(items)
    assert [r.source for r in res] == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        str(samples[0][0]),
        "<4 bytes>",
    ]
    assert [r.ok for r in res] == [False, True, True, False]
    assert isinstance(res[0].error, ImageDecodeError) and res[0].label == "error"


def test_threshold_and_backend_arguments(samples) -> None:
    _need_litert()
    with pytest.raises(InputError):
        armvww.Detector("vww2", backend="LiteRT", threshold=1.5)
    with pytest.raises(BackendUnavailableError, match=r"unknown backend 'Nope'.*LiteRT"):
        armvww.Detector("vww2", backend="Nope")
    with armvww.Detector("vww2", backend="LiteRT", threshold=0.0) as d:
        assert d.detect(samples[0][0]).person
    with armvww.Detector("vww2", backend="litert") as d:  # names are case-insensitive
        assert d.backend == "LiteRT"


# Known inputs where LiteRT's built-in kernels and XNNPACK give different int8 logits
# (ai-edge-litert 2.3.0, measured 2026-12): a photo for vww2 (11 LSB apart, the largest
# built-in-vs-XNNPACK gap seen) and the all-zero image for vww4.
KERNEL_WITNESSES = {
    "vww2": ("ml-embedded-evaluation-kit/man_and_baby.bmp", [46, 41], [35, 41]),
    "vww4": (None, [-24, -3], [-28, 3]),
}


@pytest.mark.parametrize("model_name", ["vww2", "vww4"])
def test_xnnpack_option_changes_the_kernels(
    model_name: str, request: pytest.FixtureRequest
) -> None:
    """``xnnpack`` is proven by its effect, and the session reports what really ran: with
    XNNPACK reported, a known input gives other logits than the built-in kernels (exactly
    the recorded ones on the pinned ai-edge-litert); a runtime that cannot apply XNNPACK
    (tflite-runtime 2.14's wheels) must say "built-in" and then gives the same logits."""
    _need_litert()
    request.getfixturevalue(f"{model_name}_path")  # the model is there, or a skip says why
    from .conftest import SAMPLES

    photo, want_xnn, want_builtin = KERNEL_WITNESSES[model_name]
    if photo is not None:
        request.getfixturevalue("samples")  # the photos are there, or a skip says why
    raws, delegates = {}, {}
    for xnnpack in (True, False):
        opts = armvww.LiteRTOptions(xnnpack=xnnpack)
        with armvww.Detector(model_name, backend="LiteRT", options=opts) as d:
            if photo is None:
                raws[xnnpack] = d.run(np.full(d.input_shape, d.model.input.zero_point, np.int8))[0]
            else:
                raws[xnnpack] = d.detect(SAMPLES / photo).raw
            runtime = d.session_info["runtime"]
            delegates[xnnpack] = d.session_info["delegate"]
    assert delegates[False].startswith("none")
    same = np.array_equal(raws[True], raws[False])
    if not delegates[True].startswith("none"):  # the session claims XNNPACK ran
        assert not same, f"{runtime}: reports XNNPACK, but ran the built-in kernels"
    else:
        assert same, f"{runtime}: reports {delegates[True]!r}, but gave XNNPACK-like logits"
    if runtime == "ai-edge-litert 2.3.0":
        assert raws[True].tolist() == want_xnn and raws[False].tolist() == want_builtin


_THREADS_PROBE = """
import os, sys, numpy as np, armvww
threads, xnnpack = int(sys.argv[1]), sys.argv[2] == "1"
before = len(os.listdir("/proc/self/task"))
opts = armvww.LiteRTOptions(threads=threads, xnnpack=xnnpack)
with armvww.Detector(sys.argv[3], backend="LiteRT", options=opts) as d:
    d.run(np.zeros(d.input_shape, np.int8))
    ran_xnnpack = not d.session_info["delegate"].startswith("none")
    print(len(os.listdir("/proc/self/task")) - before, ran_xnnpack)
"""


@pytest.mark.parametrize("xnnpack", [True, False])
def test_threads_option_starts_worker_threads(xnnpack: bool, vww2_path: Path) -> None:
    """``threads`` is proven by its effect: the process's thread count (/proc/self/task)
    grows by the interpreter's worker threads, and not at all with threads=1. Measured:
    XNNPACK starts threads-1 workers, the built-in kernels 2*(threads-1) (two pools); which
    of the two ran is the one the session reports."""
    _need_litert()
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc to count threads")
    extra, reported_xnnpack = {}, {}
    for threads in (1, 3):
        out = subprocess.run(
            [sys.executable, "-c", _THREADS_PROBE, str(threads), str(int(xnnpack)), str(vww2_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        count, rep = out.stdout.strip().splitlines()[-1].split()
        extra[threads], reported_xnnpack[threads] = int(count), rep == "True"
    assert extra[1] == 0, extra
    assert extra[3] == (2 if reported_xnnpack[3] else 4), (extra, reported_xnnpack)


def test_litert_options_are_validated() -> None:
    with pytest.raises(armvww.OptionError):
        armvww.LiteRTOptions(threads=0)


def test_closed_detector_raises(samples) -> None:
    _need_litert()
    d = armvww.Detector("vww2", backend="LiteRT")
    d.close()
    d.close()
    with pytest.raises(BackendError, match="closed"):
        d.detect(samples[0][0])


def test_threads_share_one_detector(det, samples) -> None:
    qs = [det.quantize(p) for p, _ in samples]
    serial = [det.run(q) for q in qs]
    errors: list[BaseException] = []
    mismatches = []

    def worker(k: int) -> None:
        try:
            for i in range(60):
                j = (i + k) % len(qs)
                if not np.array_equal(det.run(qs[j]), serial[j]):
                    mismatches.append(j)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and mismatches == []


def test_quantize_is_the_shared_preprocessing(det, samples) -> None:
    """Detector.quantize gives the reference restatement's bytes (independent of armvww)."""
    m = det.model
    h, w = m.input_hw
    for path, _ in samples:
        expect = reference_input(str(path), w, h, m.input.scale, m.input.zero_point, keep_grey=True)
        np.testing.assert_array_equal(det.quantize(path), expect, err_msg=str(path))


def test_selection_is_explained_on_the_result(samples) -> None:
    _need_litert()
    with armvww.Detector("vww2", backend="LiteRT") as d:
        assert d.detect(samples[0][0]).selection == "requested"
    with armvww.Detector("vww2", backend="auto") as d:
        r = d.detect(samples[0][0])
        assert r.selection.startswith("auto: the first usable of GpuAcc, CpuAcc, LiteRT")
        assert r.as_dict()["selection"] == r.selection
    with armvww.Detector("vww2", backend="fastest") as d:
        r = d.detect(samples[0][0])
        assert r.selection.startswith(f"fastest: picked {d.backend}: median latency")


def test_detector_calls_a_tie_no_person(vww2_path) -> None:
    """A hand-made tie through the Detector's own decision: the reference's argmax."""
    _need_litert()
    import numpy as np

    with armvww.Detector(vww2_path, backend="LiteRT") as det:
        tie = det.classify(np.array([34, 34], dtype=np.int8))
        assert tie.score == 0.5 and not tie.person and tie.label == "no_person"
        assert det.classify(np.array([34, 35], dtype=np.int8)).person


@pytest.mark.parametrize("threshold", [0.5, 0.0, 0.3, 0.514, 1.0])
def test_classify_equals_the_plain_detection_for_every_logit_pair(vww2_path, threshold) -> None:
    """classify's table and quick construction give, for all 65,536 int8 pairs, the
    Detection built field by field from person_score and decide."""
    _need_litert()
    import dataclasses

    from armvww import preprocess
    from armvww.detector import Detection

    with armvww.Detector(vww2_path, backend="LiteRT", threshold=threshold) as det:
        out = det.model.output
        pairs = np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)), -1)
        for raw in pairs.reshape(-1, 2).astype(np.int8):
            got = det.classify(raw, "<x>")
            score = preprocess.person_score(raw, out.scale, out.zero_point)
            want = Detection(
                person=preprocess.decide(raw, score, threshold),
                score=score,
                raw=raw,
                backend=det.backend,
                source="<x>",
                fallback=det.fallback,
                selection=det.selection,
                runtime=det.runtime,
                route=det.route,
            )
            for f in dataclasses.fields(Detection):
                a, b = getattr(got, f.name), getattr(want, f.name)
                if f.name == "raw":
                    assert a.dtype == np.int8 and a.tolist() == b.tolist()
                else:
                    assert a == b, (f.name, raw, a, b)
        assert set(vars(got)) == {f.name for f in dataclasses.fields(Detection)}
        with pytest.raises(ValueError, match="2 logits"):
            det.classify(np.zeros(3, np.int8))
