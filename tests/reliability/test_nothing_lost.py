"""Nothing lost: detect_many and ``armvww detect --json`` report every input exactly once, in
order, with a per-item error for the bad ones, and carry on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import armvww

from . import fuzzlib

pytestmark = pytest.mark.litert
REPO = Path(__file__).resolve().parents[2]


def _make_dir(root: Path, samples: list[tuple[Path, int]]) -> dict[str, str | None]:
    """A folder of good and bad files; returns {relative path: expected error type or None}
    for every file that is an input (image extension, regular file)."""
    good_png = fuzzlib.encode(Image.fromarray(fuzzlib.base_rgb(), "RGB"), "PNG")
    jpeg = fuzzlib.encode(Image.fromarray(fuzzlib.base_rgb(), "RGB"), "JPEG")
    files: dict[str, bytes] = {
        "a_good.png": good_png,
        "b_corrupt.jpg": jpeg[: len(jpeg) // 2],
        "c_empty.png": b"",
        "d_text_named.gif": b"this is not a picture\n",
        "e_bitflipped.png": fuzzlib.fix_png_crcs(good_png[:60] + b"\xff" * 40 + good_png[100:]),
        "f_bomb.png": fuzzlib.png_with_size(100_000, 100_000),
        "g_UPPER.JPG": jpeg,
        "sub/h_nested.bmp": fuzzlib.encode(Image.new("L", (20, 30), 99), "BMP"),
        "sub/deeper/i_float.tiff": fuzzlib.encode(Image.new("F", (8, 8), 0.5), "TIFF"),
        "notes.txt": b"not an input: no image extension",
    }
    expected: dict[str, str | None] = {
        "a_good.png": None,
        "b_corrupt.jpg": "ImageDecodeError",
        "c_empty.png": "ImageDecodeError",
        "d_text_named.gif": "ImageDecodeError",
        "e_bitflipped.png": "ImageDecodeError",
        "f_bomb.png": "ImageDecodeError",
        "g_UPPER.JPG": None,
        "sub/h_nested.bmp": None,
        "sub/deeper/i_float.tiff": "ImageDecodeError",
    }
    for rel, data in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    (root / "folder.jpg").mkdir()  # a directory with an image name is walked, not read
    for i, (photo, _label) in enumerate(samples[:3]):
        rel = f"sub/photo{i}{photo.suffix}"
        shutil.copyfile(photo, root / rel)
        expected[rel] = None
    return dict(sorted(expected.items(), key=lambda kv: root / kv[0]))


@pytest.fixture
def det(vww2_path: Path) -> armvww.Detector:
    try:
        return armvww.Detector(vww2_path, backend="LiteRT")
    except armvww.BackendUnavailableError as exc:
        pytest.skip(f"LiteRT is not usable: {exc}")


def test_detect_many_over_a_directory(
    det: armvww.Detector, tmp_path: Path, samples: list[tuple[Path, int]]
) -> None:
    expected = _make_dir(tmp_path, samples)
    with det:
        results = det.detect_many([tmp_path])
        assert [r.source for r in results] == [str(tmp_path / k) for k in expected]
        for r, (rel, err) in zip(results, expected.items(), strict=True):
            if err is None:
                assert r.ok and r.error is None, (rel, r.error)
                assert r.raw.tolist() == det.detect(tmp_path / rel).raw.tolist()
            else:
                assert type(r.error).__name__ == err, (rel, r.error)
                assert not r.ok and r.label == "error" and np.isnan(r.score)
                assert r.raw.size == 0 and r.as_dict()["error"]["type"] == err


def test_detect_many_mixed_inputs_in_order_with_duplicates(
    det: armvww.Detector, tmp_path: Path, samples: list[tuple[Path, int]]
) -> None:
    expected = _make_dir(tmp_path / "d", samples)
    good = tmp_path / "d" / "a_good.png"
    arr = fuzzlib.base_rgb(30, 30)
    items: list[object] = [
        good,
        tmp_path / "missing.png",
        str(tmp_path / "d"),
        good.read_bytes(),
        b"junk",
        arr,
        np.zeros((4, 4), np.float32),
        Image.new("L", (0, 0)),
        good,
    ]
    with det:
        results = det.detect_many(items)  # type: ignore[arg-type]
    n_dir = len(expected)
    assert len(results) == 8 + n_dir
    flat = [results[0], results[1], *results[2 + n_dir :]]
    kinds = [None if r.ok else type(r.error).__name__ for r in flat]
    assert kinds == [
        None,
        "ImageDecodeError",
        None,
        "ImageDecodeError",
        None,
        "InputError",
        "ImageDecodeError",
        None,
    ]
    assert flat[0].raw.tolist() == flat[2].raw.tolist() == flat[-1].raw.tolist()
    assert results[1].source == str(tmp_path / "missing.png")
    assert "does not exist" in str(results[1].error)
    assert [r.source for r in results[2 : 2 + n_dir]] == [str(tmp_path / "d" / k) for k in expected]


def test_detect_many_streams_lazily_and_continues(det: armvww.Detector) -> None:
    with det:
        out = list(det.iter_detect(iter([b"", fuzzlib.base_rgb(), b"x", fuzzlib.base_rgb()])))
    assert [r.ok for r in out] == [False, True, False, True]


def test_a_dangling_symlink_is_reported_not_dropped(det: armvww.Detector, tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(fuzzlib.encode(Image.new("L", (9, 9)), "PNG"))
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    with det:
        results = det.detect_many([tmp_path])
    assert [Path(str(r.source)).name for r in results] == ["gone.png", "ok.png"]


def _cli(args: list[str], root: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "armvww", *args]
    if root:  # root reads chmod-000 files; drop the capabilities that let it
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)


def test_cli_detect_json_reports_every_input_once(
    vww2_path: Path, tmp_path: Path, samples: list[tuple[Path, int]]
) -> None:
    expected = _make_dir(tmp_path, samples)
    locked = tmp_path / "sub" / "locked.png"
    locked.write_bytes(fuzzlib.encode(Image.new("L", (9, 9)), "PNG"))
    locked.chmod(0)
    root = os.geteuid() == 0
    if root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a chmod-000 file stays readable")
    expected["sub/locked.png"] = "ImageDecodeError"
    expected = dict(sorted(expected.items(), key=lambda kv: tmp_path / kv[0]))
    missing = tmp_path / "missing.jpg"
    try:
        r = _cli(
            ["detect", "--json", "-m", str(vww2_path), "-b", "LiteRT", str(tmp_path), str(missing)],
            root=root,
        )
    finally:
        locked.chmod(0o644)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    want = [(str(tmp_path / k), e) for k, e in expected.items()]
    want.append((str(missing), "ImageDecodeError"))
    got = [(d["source"], d.get("error", {}).get("type")) for d in lines]
    assert got == want
    for d in lines:
        if "error" in d:
            assert d["label"] == "error" and d["score"] is None and d["error"]["message"]
        else:
            assert d["label"] in ("person", "no_person") and 0 <= d["score"] <= 1
    locked_line = lines[[s for s, _ in want].index(str(locked))]
    assert "cannot be read" in locked_line["error"]["message"]


def test_cli_detect_all_good_exits_zero(vww2_path: Path, tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(
            fuzzlib.encode(Image.fromarray(fuzzlib.base_rgb(20 + i, 20), "RGB"), "PNG")
        )
    r = _cli(["detect", "--json", "-m", str(vww2_path), "-b", "LiteRT", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3


_HUGE_CHILD = """
import json, resource, sys
import armvww
det = armvww.Detector(sys.argv[1], backend="LiteRT")
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # keep the host safe
try:
    results = det.detect_many(sys.argv[2:])
    out = [[r.source, None if r.ok else type(r.error).__name__] for r in results]
except BaseException as exc:
    out = {"escaped": type(exc).__name__}
print(json.dumps(out))
"""


def test_a_huge_file_is_one_failed_item(vww2_path: Path, tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:
        f.truncate(4 << 30)  # sparse: no disk space used
    ok = tmp_path / "ok.png"
    ok.write_bytes(fuzzlib.encode(Image.new("L", (9, 9)), "PNG"))
    r = subprocess.run(
        [sys.executable, "-c", _HUGE_CHILD, str(vww2_path), str(huge), str(ok)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.splitlines()[-1]) == [
        [str(huge), "ImageDecodeError"],
        [str(ok), None],
    ]
