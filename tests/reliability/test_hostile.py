"""Hostile inputs, second round (issue 14): one test group per class of defect.

Each class is tested through its general rule, with more than the one reported instance.
Permission tests run the command as root with the capabilities that bypass permission bits
dropped (``setpriv``), so the kernel really refuses; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, PdfImagePlugin, PngImagePlugin

import armvww
from armvww import images
from armvww.errors import (
    ArmvwwError,
    ImageDecodeError,
    InputError,
    ModelIntegrityError,
    ModelNotFoundError,
    OptionError,
)
from armvww.model import store
from armvww.pipeline import choose_plan

from . import fuzzlib

pytestmark = pytest.mark.litert
REPO = Path(__file__).resolve().parents[2]


def _png(img: Image.Image) -> bytes:
    return fuzzlib.encode(img, "PNG")


def _cli(
    args: list[str], env: dict[str, str] | None = None, unprivileged: bool = False
) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "armvww", *args]
    if unprivileged and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: permission bits do not bite")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(cmd, capture_output=True, env=full, cwd=REPO, timeout=120)


# -- 1: only the supported decoders see untrusted bytes ------------------------------------
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\nshowpage\n"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.mark.parametrize("data", [EPS, b"\xc5\xd0\xd3\xc6" + b"\0" * 40 + EPS, PDF])
def test_eps_and_other_plugins_are_never_reached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: bytes
) -> None:
    reached: list[str] = []

    def spy(name: str):  # type: ignore[no-untyped-def]
        def _open(self: object) -> None:
            reached.append(name)
            raise SyntaxError("spy")

        return _open

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy("EPS"))
    f = tmp_path / "holiday.png"  # the name must not matter
    f.write_bytes(data)
    for src in (data, f):
        with pytest.raises(ImageDecodeError, match="not in a format armvww reads"):
            images.load_image(src)
    assert reached == []
    assert "EPS" not in images.FORMATS and "PDF" not in images.FORMATS
    assert PdfImagePlugin  # imported: Pillow knows PDF, armvww still does not open it


# -- 4: missing data is an error, not a grey fill ------------------------------------------
def _photo(samples: list[tuple[Path, int]]) -> Image.Image:
    return Image.open(samples[0][0]).convert("RGB")


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("tail", [b"\xff\xd9", b"\xff\xfe\x00\x04ok\xff\xd9", b"\xff\xd9\xff\xd9"])
def test_a_jpeg_cut_short_is_refused_whatever_closes_it(
    samples: list[tuple[Path, int]], progressive: bool, tail: bytes
) -> None:
    buf = io.BytesIO()
    _photo(samples).save(buf, "JPEG", quality=90, progressive=progressive)
    data = buf.getvalue()
    images.load_image(data)  # the whole file decodes
    for cut in (len(data) // 3, len(data) // 2, len(data) - 200):
        with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
            images.load_image(data[:cut] + tail)


def test_a_png_cut_short_is_refused_even_with_an_iend(samples: list[tuple[Path, int]]) -> None:
    data = _png(_photo(samples))
    iend = data[-12:]
    for cut in (len(data) // 3, len(data) - 100):
        with pytest.raises(ImageDecodeError):
            images.load_image(data[:cut] + iend)


# -- aspect-ratio bomb and 16-bit memory -------------------------------------------------
def test_an_aspect_ratio_bomb_is_refused_from_the_header(
    det: armvww.Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[tuple[int, int]] = []
    real_load = PngImagePlugin.PngImageFile.load

    def spy(self: PngImagePlugin.PngImageFile):  # type: ignore[no-untyped-def]
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", spy)
    for w, h in ((1, 67_108_864), (40_000_000, 1), (3, 8_000_000)):
        with pytest.raises(ImageDecodeError, match="aspect ratio"):
            det.detect(fuzzlib.png_with_size(w, h))
    assert decoded == []


def test_16bit_grey_is_scaled_in_slices() -> None:
    a = np.random.default_rng(1).integers(0, 65536, size=(2048, 1024), dtype=np.uint16)
    a[0, :4] = (0, 65535, 128, 129)
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    tracemalloc.start()
    try:
        out = images.load_image(img)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    want = ((a.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    assert np.array_equal(np.asarray(out), want)
    # int64 copies of the whole image were 16x and more the 8-bit size
    assert peak < 5 * a.size, peak  # the 16-bit pixels (2x), the output (1x), slices


# -- 2 + 5: files that are not regular files are refused before reading --------------------
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_model_paths_that_are_not_regular_files(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "vww2_50_50_INT8.tflite")
    cases: list[tuple[list[str], dict[str, str]]] = [
        (["info", "-m", "/dev/zero"], {}),
        (["info", "-m", str(fifo)], {}),
        (["info"], {"ARMVWW_MODEL": "/dev/zero"}),
        (["info"], {"ARMVWW_MODEL": str(fifo)}),
        (["info", "-m", "vww2"], {"ARMVWW_MODEL_DIR": str(tmp_path)}),
        (["info", "-m", "vww2"], {"ARMVWW_MODEL": str(fifo)}),
        (["info", "-m", str(tmp_path)], {}),
    ]
    for args, env in cases:
        r = _cli(args, env)
        assert r.returncode == ModelNotFoundError.exit_code, (args, env, r.stderr)
        err = r.stderr.decode()
        assert "not a regular file" in err or "directory" in err, err
        assert "Traceback" not in err


def test_the_cache_folder_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARMVWW_MODEL_DIR", raising=False)
    cache = store.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    fifo = _fifo(cache / "vww4_128_128_INT8.tflite")
    try:
        with pytest.raises(ModelNotFoundError, match="not a regular file"):
            store.load_model("vww4")
    finally:
        fifo.unlink()


# -- 3: a known name and its hash agree ----------------------------------------------------
def test_a_known_name_holding_another_known_model_is_refused(
    tmp_path: Path, vww4_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "vww2_50_50_INT8.tflite"
    fake.write_bytes(vww4_bytes)
    with pytest.raises(ModelIntegrityError, match="that is vww4"):
        store.load_model(fake)
    monkeypatch.setenv("ARMVWW_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelIntegrityError, match="should be ML-zoo vww2"):
        store.load_model("vww2")

    fetched: list[str] = []

    def no_network(*a: object, **k: object) -> None:
        fetched.append("urlopen")
        raise OSError("offline")

    monkeypatch.setattr(store.urllib.request, "urlopen", no_network)
    with pytest.raises(armvww.FetchError):  # not "already present and verified"
        store.fetch("vww2", tmp_path)
    assert fetched == ["urlopen"]
    assert fake.read_bytes() == vww4_bytes  # left alone: nothing verified replaced it


# -- 6/7: stat errors and unlistable folders are per-item errors -----------------------------
def test_a_name_too_long_is_a_per_item_error(det: armvww.Detector, tmp_path: Path) -> None:
    good = tmp_path / "ok.png"
    good.write_bytes(_png(Image.new("L", (9, 9))))
    long = str(tmp_path / ("x" * 300 + ".png"))
    deep = str(tmp_path / "/".join(["d" * 200] * 30) / "y.png")
    out = det.detect_many([long, good, deep, Path(long)])
    assert [r.ok for r in out] == [False, True, False, False]
    assert all(isinstance(r.error, ImageDecodeError) for r in out if not r.ok)
    assert "File name too long" in str(out[0].error)


def _permission_tree(root: Path) -> dict[str, str | None]:
    """good files, a folder without read permission, one without search permission."""
    ok = _png(Image.new("L", (9, 9), 7))
    (root / "a.png").write_bytes(ok)
    for sub in ("noread", "nosearch", "z"):
        (root / sub).mkdir()
        (root / sub / "in.png").write_bytes(ok)
    (root / "noread").chmod(0o300)  # search, but no listing
    (root / "nosearch").chmod(0o600)  # listing, but no search
    return {
        "a.png": None,
        "noread": "ImageDecodeError",
        "nosearch/in.png": "ImageDecodeError",
        "z/in.png": None,
    }


def test_unlistable_and_unsearchable_folders_are_reported(vww2_path: Path, tmp_path: Path) -> None:
    expected = _permission_tree(tmp_path)
    try:
        r = _cli(
            ["detect", "--json", "-m", str(vww2_path), "-b", "LiteRT", str(tmp_path)],
            unprivileged=True,
        )
        alone = _cli(
            ["detect", "--json", "-m", str(vww2_path), "-b", "LiteRT", str(tmp_path / "noread")],
            unprivileged=True,
        )
        model_dir = _cli(
            ["info", "-m", "vww2"],
            {"ARMVWW_MODEL_DIR": str(tmp_path / "nosearch")},
            unprivileged=True,
        )
    finally:
        (tmp_path / "noread").chmod(0o755)
        (tmp_path / "nosearch").chmod(0o755)
    assert r.returncode == 1 and b"Traceback" not in r.stderr, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(d["source"], d.get("error", {}).get("type")) for d in got] == [
        (str(tmp_path / k), v) for k, v in expected.items()
    ]
    assert "cannot be listed" in got[1]["error"]["message"]
    assert alone.returncode == 1, alone.stderr
    assert [json.loads(x)["source"] for x in alone.stdout.splitlines()] == [
        str(tmp_path / "noread")
    ]
    # an unsearchable ARMVWW_MODEL_DIR is skipped with a warning; vww2 is found elsewhere
    # (models/ or the cache) or the not-found error names the folder: never a traceback
    assert b"Traceback" not in model_dir.stderr
    assert b"cannot be searched" in model_dir.stderr or model_dir.returncode == 0


def test_symlinked_folders_are_followed_and_loops_reported(
    det: armvww.Detector, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "p.png").write_bytes(_png(Image.new("L", (9, 9))))
    top = tmp_path / "top"
    top.mkdir()
    (top / "link").symlink_to(real)
    (top / "loop").symlink_to(top)
    out = det.detect_many(top)
    assert [(r.source, r.ok) for r in out] == [
        (str(top / "link" / "p.png"), True),
        (str(top / "loop"), False),
    ]
    assert "loop" in str(out[1].error)


# -- 8: detect_many / iter_detect input rules ------------------------------------------------
def test_a_path_string_is_one_item(det: armvww.Detector, tmp_path: Path) -> None:
    f = tmp_path / "one.png"
    f.write_bytes(_png(Image.new("L", (9, 9))))
    for arg in (str(f), f, os.fsencode(f)):
        out = det.detect_many(arg)  # type: ignore[arg-type]
        assert len(out) == 1
    assert det.detect_many(str(f))[0].ok  # a str path: that file
    assert not det.detect_many(os.fsencode(f))[0].ok  # bytes are image data, one item
    assert len(det.detect_many(str(tmp_path))) == 1  # a folder: its images
    assert [r.ok for r in det.detect_many(_png(Image.new("L", (9, 9))))] == [True]
    assert len(det.detect_many(np.zeros((20, 20), np.uint8))) == 1
    out = det.detect_many(12345)  # type: ignore[arg-type]
    assert len(out) == 1 and isinstance(out[0].error, InputError)


def test_a_generator_that_raises_keeps_what_it_produced(det: armvww.Detector) -> None:
    good = _png(Image.new("L", (9, 9)))

    def gen() -> Iterator[bytes]:
        yield good
        yield b"junk"
        raise RuntimeError("disk on fire")

    out = det.detect_many(gen())
    assert [r.ok for r in out] == [True, False, False]
    assert isinstance(out[2].error, InputError) and "disk on fire" in str(out[2].error)
    assert "after 2 items" in str(out[2].error)


def test_a_nul_path_is_a_per_item_error(det: armvww.Detector) -> None:
    good = _png(Image.new("L", (9, 9)))
    out = det.detect_many([good, "a\0b.png", Path("c\0d"), good])
    assert [r.ok for r in out] == [True, False, False, True]
    assert all(isinstance(r.error, InputError) for r in out[1:3])
    with pytest.raises(InputError):
        det.detect("a\0b.png")


def test_inputs_are_consumed_lazily(det: armvww.Detector) -> None:
    pulled = 0

    def gen() -> Iterator[np.ndarray]:
        nonlocal pulled
        for _ in range(5):
            pulled += 1
            yield np.zeros((30, 30), np.uint8)

    it = det.iter_detect(gen(), workers="none")
    next(it)
    assert pulled == 1
    assert len(list(it)) == 4 and pulled == 5

    # pipelined (the default): the look-ahead is bounded by the plan's window
    pulled = 0
    it = det.iter_detect(gen())
    next(it)
    assert 1 <= pulled <= 1 + choose_plan(files=False, replicable=True).window  # LiteRT
    assert len(list(it)) == 4 and pulled == 5

    tracemalloc.start()
    try:
        out = det.detect_many(np.full((400, 400, 3), i, np.uint8) for i in range(60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == 60 and all(r.ok for r in out)
    assert peak < 20 * 400 * 400 * 3, peak  # all 60 arrays at once would be 60x


# -- 9: file names that are not UTF-8 or hold newlines ---------------------------------------
def test_odd_file_names_keep_the_table_intact(vww2_path: Path, tmp_path: Path) -> None:
    png = _png(Image.new("L", (9, 9)))
    root = os.fsencode(tmp_path)
    for name in (b"bad\xff.png", b"two\nlines.png", b"tab\there.png"):
        with open(root + b"/" + name, "wb") as f:
            f.write(png)
    with open(root + b"/broken\xfe\n.png", "wb") as f:
        f.write(b"not a png")
    r = _cli(["detect", "-m", str(vww2_path), "-b", "LiteRT", str(tmp_path)])
    assert r.returncode == 1 and b"Traceback" not in r.stderr, r.stderr
    rows = r.stdout.decode("utf-8").splitlines()[2:]
    assert len(rows) == 4, rows
    assert "bad\\xff.png" in rows[0] and "broken\\xfe\\n.png" in rows[1]
    assert "tab\\there.png" in rows[2] and "two\\nlines.png" in rows[3]
    js = _cli(["detect", "--json", "-m", str(vww2_path), "-b", "LiteRT", str(tmp_path)])
    assert len(js.stdout.splitlines()) == 4


# -- 11: every public-API argument error is typed ---------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": 123},
        {"backend": None},
        {"backend": b"LiteRT"},
        {"backend": []},
        {"backend": ["LiteRT", 3]},
        {"backend": "Lite\0RT"},
        {"threshold": 10**400},
        {"threshold": math.nan},
        {"threshold": math.inf},
        {"threshold": "0.5"},
        {"threshold": True},
        {"max_pixels": math.nan},
        {"max_pixels": 1e9},
        {"max_pixels": 0},
        {"max_pixels": -5},
        {"fast_decode": "yes"},
        {"options": object()},
        {"options": [object()]},
        {"options": "LiteRT"},
    ],
)
def test_bad_detector_arguments_are_typed(vww2_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises((InputError, OptionError)) as info:
        armvww.Detector(vww2_path, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ArmvwwError)


@pytest.mark.parametrize("model", [12345, object(), 1.5, ["vww2"], "a\0b", Path("a\0b")])
def test_bad_model_arguments_are_typed(model: object) -> None:
    with pytest.raises(InputError):
        armvww.Detector(model, backend="LiteRT")  # type: ignore[arg-type]


def test_load_image_checks_max_pixels() -> None:
    for bad in (math.nan, math.inf, -1, 0, "9", None):
        with pytest.raises(InputError):
            images.load_image(np.zeros((4, 4), np.uint8), max_pixels=bad)  # type: ignore[arg-type]


# -- 12: outputs never mix between threads ---------------------------------------------------
class _SlowView:
    """Reads the shared buffer 1 ms after being asked: widens any copy-after-unlock race."""

    def __init__(self, buf: np.ndarray) -> None:
        self.buf = buf

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        time.sleep(0.001)
        return self.buf.copy() if copy else self.buf  # numpy 2 trusts copy=True


class ReusedBufferSession:
    """A stand-in session (named so: not a backend) whose output is a view of ONE buffer
    that every call rewrites, as PyArmNN's output is."""

    backend = "ReusedBufferStandIn"
    runtime = "stand-in"
    info: ClassVar[dict[str, object]] = {}

    def __init__(self) -> None:
        self.buf = np.zeros((1, 2), np.int8)

    def run(self, q: np.ndarray) -> _SlowView:
        self.buf[0, :] = q.flat[0]
        return _SlowView(self.buf)

    def close(self) -> None:
        pass


def test_outputs_are_copied_under_the_lock(
    det: armvww.Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = armvww.Detector(det.model, backend="LiteRT")
    monkeypatch.setattr(d, "_session", ReusedBufferSession())
    bad: list[tuple[int, list[list[int]]]] = []

    def worker(k: int) -> None:
        q = np.full(d.input_shape, k, np.int8)
        for _ in range(40):
            out = d.run(q)
            if out.tolist() != [[k, k]]:
                bad.append((k, out.tolist()))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    d.close()
    assert bad == []


# -- 5: the fastest cache file is checked, bounded and re-measured when unsound ---------------
@pytest.fixture
def alarm() -> Iterator[None]:
    """Turn a hang (a blocking open or read) into a test failure after 30 s."""
    import signal

    class Hung(BaseException):  # not an OSError: no handler may swallow it
        pass

    def boom(*_: object) -> None:
        raise Hung("hung for 30 s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _place(path: Path, kind: str, runtimes: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # the session's cache may hold a real one (test_detector)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "deep":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(1 << 30)  # sparse: 1 GB of nothing
    elif kind == "unavailable":
        doc = {
            "version": 1,
            "runtimes": runtimes,
            "order": ["CpuRef"],
            "median_us": {"CpuRef": 1.0},
        }
        path.write_text(json.dumps(doc))


@pytest.mark.parametrize("kind", ["fifo", "zero", "deep", "huge", "unavailable"])
def test_an_unsound_fastest_cache_is_measured_again(
    vww2_path: Path, kind: str, alarm: None
) -> None:
    from armvww import select

    if not armvww.backends.availability("LiteRT").available:
        pytest.skip("LiteRT is not usable here")
    model = store.load_model(vww2_path)
    runtimes = select._available()
    if "CpuRef" in runtimes and kind == "unavailable":
        runtimes = {k: v for k, v in runtimes.items() if k != "CpuRef"}
    path = select.cache_path(model, runtimes)
    _place(path, kind, runtimes)
    try:
        if kind == "unavailable" and "CpuRef" in select._available():
            pytest.skip("CpuRef is available here")
        tracemalloc.start()
        try:
            choice = select.fastest_choice(model)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert not choice.cached and "LiteRT" in choice.order
        assert peak < 32 << 20, peak  # the 1 GB file is not read
        with armvww.Detector(model, backend="fastest") as det:
            assert det.backend in choice.order
    finally:
        if path.exists() or path.is_symlink():
            path.unlink()


# -- 10: LiteRT threads are bounded ----------------------------------------------------------
def test_litert_threads_are_bounded() -> None:
    from armvww.backends.litert import MAX_THREADS, LiteRTOptions

    for bad in (0, -1, MAX_THREADS + 1, 100_000, True, 2.0, "4"):
        with pytest.raises(OptionError):
            LiteRTOptions(threads=bad)  # type: ignore[arg-type]
    assert LiteRTOptions(threads=MAX_THREADS).threads == MAX_THREADS


# -- 13: ARMVWW_PROBE_TIMEOUT is validated ---------------------------------------------------
@pytest.mark.parametrize("raw", ["abc", "nan", "-1", "0", "1e9", "inf", "5s"])
def test_a_bad_probe_timeout_is_reported_clearly(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from armvww.backends import armnn_delegate, armnn_options, armnn_parser

    monkeypatch.setenv("ARMVWW_PROBE_TIMEOUT", raw)
    value, problem = armnn_options.probe_timeout()
    assert value == armnn_options.DEFAULT_PROBE_TIMEOUT
    assert problem.startswith(f"ARMVWW_PROBE_TIMEOUT={raw!r} is not valid")
    assert "export ARMVWW_PROBE_TIMEOUT=300" in problem
    monkeypatch.setattr(armnn_parser.importlib.util, "find_spec", lambda name: object())
    # both routes report it before any probe process is started
    assert armnn_parser._run_probe(None).error == problem
    assert armnn_delegate._run_probe(Path("/nonexistent/lib.so"), None).error == problem


def test_a_good_probe_timeout_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from armvww.backends import armnn_options

    monkeypatch.setenv("ARMVWW_PROBE_TIMEOUT", " 12.5 ")
    assert armnn_options.probe_timeout() == (12.5, "")


def test_a_gpu_cached_network_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    from armvww.backends.armnn_options import ArmNNOptions

    fifo = _fifo(tmp_path / "net.bin")
    for bad in (str(fifo), "/dev/zero", str(tmp_path)):
        with pytest.raises(OptionError, match="must be a regular file"):
            ArmNNOptions(gpu_cached_network=bad)
    ArmNNOptions(gpu_cached_network=str(tmp_path / "new.bin"))


# -- labels.csv beside images is read like any other file: regular, bounded ------------------
def test_a_labels_file_that_is_a_fifo_does_not_hang(vww2_path: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_png(Image.new("L", (9, 9))))
    os.mkfifo(tmp_path / "labels.csv")
    r = _cli(["detect", "-m", str(vww2_path), "-b", "LiteRT", str(tmp_path)])
    assert b"Traceback" not in r.stderr
    assert b"labels.csv" in r.stderr and r.returncode == InputError.exit_code, r.stderr


# -- 14: operator options a native parser would misread are refused --------------------------
def _options_sites(data: bytes) -> list[fuzzlib.Site]:
    return [s for s in fuzzlib.model_sites(data) if s.what.endswith(".builtin_options_type")]


def test_the_seeded_case_that_crashed_cpuref_is_refused(
    vww2_bytes: bytes, vww4_bytes: bytes
) -> None:
    models = [("vww2", vww2_bytes), ("vww4", vww4_bytes)]
    case = next(
        d for c, d in fuzzlib.model_cases(models, 60, seed=2024) if c.startswith("vww4#2024:49 ")
    )
    with pytest.raises(ModelIntegrityError, match="builtin options of type 9"):
        armvww.parse_model(case)


def test_crashing_mutation_is_refused(vww4_bytes: bytes) -> None:
    """``vww4#2024:49``'s decisive bit: operator 22 (CONV_2D) options type 1 -> 9."""
    buf = bytearray(vww4_bytes)
    for off, bit in ((257487, 3), (439084, 4), (282291, 4), (488882, 5)):
        buf[off] ^= 1 << bit
    with pytest.raises(
        ModelIntegrityError, match=r"operator 22 \(CONV_2D\) carries builtin options"
    ):
        armvww.parse_model(bytes(buf))


def test_every_wrong_options_type_is_refused(vww2_bytes: bytes) -> None:
    sites = _options_sites(vww2_bytes)
    assert len(sites) >= 60
    tried = 0
    for site in sites[::5]:
        orig = vww2_bytes[site.pos]
        if orig == 0:
            continue
        for t in (0, 2, 5, 9, 17, 255):
            if t == orig:
                continue
            buf = bytearray(vww2_bytes)
            buf[site.pos] = t
            with pytest.raises(ModelIntegrityError, match="builtin options"):
                armvww.parse_model(bytes(buf))
            tried += 1
    assert tried > 50


def test_out_of_range_window_options_are_refused(vww2_bytes: bytes) -> None:
    sites = fuzzlib.model_sites(vww2_bytes)
    conv = {
        s.what.split(".")[0]
        for s in sites
        if s.what.endswith(".builtin_options_type") and vww2_bytes[s.pos] == 1
    }
    # Conv2DOptions: field1 stride_w, field2 stride_h, field3 fused activation
    bad = {"options.field1": 0, "options.field2": 0, "options.field3": 9}
    hits = 0
    for site in sites:
        op, _, rest = site.what.partition(".")
        if op in conv and rest in bad:
            buf = bytearray(vww2_bytes)
            buf[site.pos : site.pos + site.size] = bad[rest].to_bytes(
                site.size, "little", signed=True
            )
            with pytest.raises(ModelIntegrityError):
                armvww.parse_model(bytes(buf))
            hits += 1
    assert hits >= 30


# -- the API / file-kind / environment fuzz corpus (tools/fuzz_api.py runs 10,000) -----------
def test_api_fuzz_corpus(vww2_path: Path) -> None:
    cases = list(fuzzlib.api_cases(150, seed=2024))
    counts, failures = fuzzlib.run_cases(cases, "api", workers=2, timeout=120, model=str(vww2_path))
    report = "\n".join(f"{f.outcome}: {f.case}: {f.detail}" for f in failures)
    assert failures == [], report
    assert sum(counts.values()) == 150
    assert counts["valid"] >= 30 and counts["typed"] >= 30, counts


def test_zero_points_outside_the_type_are_refused(vww2_bytes: bytes, vww4_bytes: bytes) -> None:
    """``vww2#7:70`` and ``vww2#7:960`` (seed 7) aborted CpuRef 23.08 (SIGABRT): an int8
    tensor's zero point flipped to 2**60 / 2**30. Refused by validation now."""
    models = [("vww2", vww2_bytes), ("vww4", vww4_bytes)]
    want = {"vww2#7:70", "vww2#7:960"}
    found = 0
    for c, d in fuzzlib.model_cases(models, 961, seed=7):
        if c.split(" ")[0] in want:
            with pytest.raises(ModelIntegrityError, match="zero point outside"):
                armvww.parse_model(d)
            found += 1
    assert found == 2


# -- 14: quantisation parameters and operator arities Arm NN aborts on ------------------------
#: The six seed-7 cases of the 10,000-case model fuzz in the trixie amd64 tree that passed
#: validation and killed Arm NN 23.08 CpuRef (SIGABRT, one SIGSEGV), and what refuses each.
TREE_FUZZ_CRASHES = {
    "vww2#7:1618": "257 quantisation scales but 1 zero points",
    "vww2#7:2666": "quantisation scale of -2.57",
    "vww2#7:2822": "quantisation scale of -9",
    "vww4#7:4331": "along dimension 3562370",
    "vww2#7:4888": r"operator 26 \(CONV_2D\) has 1 inputs",
    "vww4#7:7981": "along dimension 974668598",
}


def test_the_tree_fuzz_crashes_are_refused(vww2_bytes: bytes, vww4_bytes: bytes) -> None:
    models = [("vww2", vww2_bytes), ("vww4", vww4_bytes)]
    found = 0
    for c, d in fuzzlib.model_cases(models, 7982, seed=7):
        want = TREE_FUZZ_CRASHES.get(c.split(" ")[0])
        if want is not None:
            with pytest.raises(ModelIntegrityError, match=want):
                armvww.parse_model(d)
            found += 1
    assert found == len(TREE_FUZZ_CRASHES)


def _patched(data: bytes, site: fuzzlib.Site, raw: bytes) -> bytes:
    buf = bytearray(data)
    buf[site.pos : site.pos + site.size] = raw
    return bytes(buf)


def test_scales_must_be_finite_and_positive(vww2_bytes: bytes) -> None:
    sites = [s for s in fuzzlib.model_sites(vww2_bytes) if s.kind == "f32" and ".scale[" in s.what]
    assert len(sites) > 1000
    for site in sites[::97]:
        for value in (0.0, -0.5, math.inf, math.nan, -math.inf):
            bad = _patched(vww2_bytes, site, np.float32(value).tobytes())
            with pytest.raises(ModelIntegrityError, match="scales must be finite and > 0"):
                armvww.parse_model(bad)


def test_per_channel_scales_must_fit_their_dimension(vww4_bytes: bytes) -> None:
    sites = fuzzlib.model_sites(vww4_bytes)
    qdims = [s for s in sites if s.what.endswith(".quantized_dimension")]
    assert qdims, "vww4 stores quantized_dimension for its depthwise weights"
    for site in qdims:
        for value in (-1, 2, 4, 1 << 30):  # a dimension of another size, or none at all
            bad = _patched(vww4_bytes, site, value.to_bytes(4, "little", signed=True))
            with pytest.raises(ModelIntegrityError, match="per-channel scales need one per"):
                armvww.parse_model(bad)


def test_per_channel_scales_only_on_constants(vww2_bytes: bytes) -> None:
    """A per-channel weight tensor pointed at the empty buffer 0 is an activation with
    several scales (Arm NN asserts a single scale on activations)."""
    m = armvww.parse_model(vww2_bytes)
    per_channel = {f"tensor{t.index}" for t in m.tensors if len(t.scales) > 1}
    sites = [
        s
        for s in fuzzlib.model_sites(vww2_bytes)
        if s.what.endswith(".buffer") and s.what.split(".")[0] in per_channel
    ]
    assert len(sites) > 50
    for site in sites[::9]:
        with pytest.raises(ModelIntegrityError, match="is not constant but has"):
            armvww.parse_model(_patched(vww2_bytes, site, (0).to_bytes(4, "little")))


def test_scale_and_zero_point_counts_must_agree(vww2_bytes: bytes) -> None:
    sites = [s for s in fuzzlib.model_sites(vww2_bytes) if s.what.endswith(".zero_point.len")]
    assert len(sites) > 100
    for site in sites[::11]:
        n = int.from_bytes(vww2_bytes[site.pos : site.pos + 4], "little")
        bad = _patched(vww2_bytes, site, (n - 1).to_bytes(4, "little"))
        with pytest.raises(ModelIntegrityError, match="quantisation scales but"):
            armvww.parse_model(bad)


def test_operator_input_counts_are_checked(vww2_bytes: bytes) -> None:
    m = armvww.parse_model(vww2_bytes)
    sites = {s.what: s for s in fuzzlib.model_sites(vww2_bytes)}
    tried = 0
    for op in m.operators:
        site = sites[f"op{op.index}.inputs.len"]
        fewest = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "ADD": 2, "PAD": 2}.get(op.op, 1)
        for n in sorted({0, fewest - 1}):  # fewer inputs than the operator needs
            bad = _patched(vww2_bytes, site, n.to_bytes(4, "little"))
            with pytest.raises(ModelIntegrityError, match=f"a {op.op} takes"):
                armvww.parse_model(bad)
            tried += 1
    assert tried > 60
    # a required input marked absent
    first = sites["op0.inputs[1]"]
    with pytest.raises(ModelIntegrityError, match="lacks a required input"):
        armvww.parse_model(_patched(vww2_bytes, first, (-1).to_bytes(4, "little", signed=True)))


# -- 14: the Arm NN vetting verdict cache is read like the fastest cache ----------------------
def test_vet_option_is_checked() -> None:
    from armvww.backends.armnn_options import ArmNNOptions

    assert ArmNNOptions().vet == "auto"  # the default protects
    with pytest.raises(OptionError, match="vet must be one of auto, full, off"):
        ArmNNOptions(vet="no")


def test_gpuacc_loads_are_vetted_on_a_cpu_backend_unless_full() -> None:
    from armvww.backends.armnn_vet import plan

    usable = ["CpuRef", "CpuAcc", "GpuAcc"]
    assert plan(["CpuRef"], "auto", usable, "parser") == [[["CpuRef"], True]]
    assert plan(["GpuAcc"], "auto", usable, "parser") == [
        [["GpuAcc"], False],  # optimise for GpuAcc: its layer checks, no kernel compile
        [["CpuAcc"], True],
    ]
    assert plan(["GpuAcc", "CpuRef"], "auto", usable, "delegate") == [[["CpuRef"], True]]
    assert plan(["GpuAcc"], "full", usable, "parser") == [[["GpuAcc"], True]]
    assert plan(["GpuAcc"], "auto", ["GpuAcc"], "parser") == [[["GpuAcc"], True]]


def _verdict_key() -> dict[str, object]:
    return {"model_sha256": "ab" * 32, "backends": ["CpuRef"], "route": "parser"}


def _verdict_doc(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "version": 1,
        "key": _verdict_key(),
        "ok": False,
        "reason": "crashed Arm NN (SIGABRT)",
        "plan": "parser route: load+run CpuRef",
    }
    doc.update(over)
    return doc


def test_an_unsound_verdict_file_is_vetted_again(tmp_path: Path) -> None:
    from armvww.backends import armnn_vet

    good = tmp_path / "good.json"
    good.write_text(json.dumps(_verdict_doc()))
    v = armnn_vet._load(good, _verdict_key())
    assert v is not None and not v.ok and v.cached == "disk" and "SIGABRT" in v.reason
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (armnn_vet.MAX_VERDICT_BYTES + 1))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    cases = {
        "fifo": fifo,
        "device": Path("/dev/zero"),
        "folder": tmp_path,
        "big": big,
        "deep": deep,
    }
    for name, doc in {
        "garbage": b"\xff\xfe not json",
        "other key": json.dumps(_verdict_doc(key={"model_sha256": "cd" * 32})).encode(),
        "other version": json.dumps(_verdict_doc(version=99)).encode(),
        "ok not a bool": json.dumps(_verdict_doc(ok="yes")).encode(),
        "no reason": json.dumps(
            {k: v for k, v in _verdict_doc().items() if k != "reason"}
        ).encode(),
        "a list": b"[1, 2]",
    }.items():
        cases[name] = tmp_path / f"{name}.json"
        cases[name].write_bytes(doc)
    for name, path in cases.items():  # a FIFO with no writer would hang a plain open()
        assert armnn_vet._load(path, _verdict_key()) is None, name


def test_tensor_names_must_be_utf8(vww2_bytes: bytes, vww4_bytes: bytes) -> None:
    """``vww2#7:158`` and ``vww4#7:93`` (seed 7) put bytes that are not UTF-8 into a tensor
    name; LiteRT's Python API then raised UnicodeDecodeError on the Arm NN delegate route."""
    models = [("vww2", vww2_bytes), ("vww4", vww4_bytes)]
    found = 0
    for c, d in fuzzlib.model_cases(models, 159, seed=7):
        if c.split(" ")[0] in ("vww2#7:158", "vww4#7:93"):
            with pytest.raises(ModelIntegrityError, match="name is not UTF-8"):
                armvww.parse_model(d)
            found += 1
    assert found == 2
    m = armvww.parse_model(vww2_bytes)
    name = m.tensors[5].name.encode()
    at = vww2_bytes.find(len(name).to_bytes(4, "little") + name)
    assert at > 0
    bad = bytearray(vww2_bytes)
    bad[at + 4] = 0xFF  # never valid in UTF-8
    with pytest.raises(ModelIntegrityError, match="tensor 5's name is not UTF-8"):
        armvww.parse_model(bytes(bad))
