"""Hostile model bytes: every case ends in a valid Model or a typed ArmvwwError, never a crash.

The big run (10,000 cases) is ``tools/fuzz_models.py``; this is its fixed, seeded corpus plus
hand-made structural cases and the "no native parser before validation" check.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import armvww
from armvww import errors
from armvww.backends import litert

from ..conftest import VWW2 as _VWW2
from . import fuzzlib

pytestmark = pytest.mark.litert


def _litert_module() -> Any:
    mod, _desc, reason = litert._probe("auto")
    if mod is None:
        pytest.skip(f"LiteRT is not installed: {reason}")
    return mod


# -- the seeded mutation corpus, through the loader and every backend, in child processes ----

CORPUS_CASES = 240


def test_seeded_mutation_corpus(vww2_bytes: bytes, vww4_bytes: bytes) -> None:
    _litert_module()
    cases = list(
        fuzzlib.model_cases([("vww2", vww2_bytes), ("vww4", vww4_bytes)], CORPUS_CASES, seed=2024)
    )
    counts, failures = fuzzlib.run_cases(cases, "model", workers=2, timeout=60)
    report = "\n".join(f"{f.outcome}: {f.case}: {f.detail}" for f in failures)
    assert failures == [], report
    assert sum(counts.values()) == CORPUS_CASES
    # the corpus must exercise both ends: models that still load, and models that are refused
    assert counts["valid"] >= 20, counts
    assert counts["typed"] >= 50, counts


def test_worker_sees_a_crash_as_a_crash() -> None:
    """The isolation itself works: a child killed by a signal is counted, then replaced."""
    with fuzzlib.Worker(timeout=30) as w:
        assert w.proc is not None
        ok = w.run("ok", "model", b"")
        assert (ok.outcome, ok.detail["error"]) == ("typed", "ModelIntegrityError")
        w.proc.kill()
        dead = w.run("killed", "model", b"")
        assert dead.outcome == "crash" and dead.detail["returncode"] == -9
        again = w.run("after restart", "model", b"")
        assert again.outcome == "typed" and w.restarts == 1


# -- hand-made structural cases, in process (armvww's parser is pure Python) ------------------


def _u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def _patched(data: bytes, pos: int, raw: bytes) -> bytes:
    return data[:pos] + raw + data[pos + len(raw) :]


def _structural_cases(m: bytes) -> list[tuple[str, bytes, type[errors.ArmvwwError]]]:
    sites = fuzzlib.model_sites(m)

    def site(what: str) -> fuzzlib.Site:
        return next(s for s in sites if s.what == what)

    mie, ume = errors.ModelIntegrityError, errors.UnsupportedModelError
    tensors_len = site("sg0.tensors.len").pos
    inp = armvww.parse_model(m).input.index
    dims = [s for s in sites if s.what.startswith(f"tensor{inp}.shape[")]
    in_type = site(f"tensor{inp}.type").pos
    opcode_index = next(s for s in sites if s.what.endswith(".opcode_index")).pos
    return [
        ("empty", b"", mie),
        ("4 bytes", m[:4], mie),
        ("header only", m[:8], mie),
        ("wrong identifier", _patched(m, 4, b"TFL2"), mie),
        ("zip file", b"PK\x03\x04" + m[4:], mie),
        ("root offset past the end", _patched(m, 0, _u32(len(m) + 4)), mie),
        ("root offset -1", _patched(m, 0, _u32(0xFFFFFFFF)), mie),
        ("root offset 0", _patched(m, 0, _u32(0)), mie),
        ("vtable length odd", _patched(m, site("model.vtable_len").pos, b"\x05\x00"), mie),
        ("vtable length 0xffff", _patched(m, site("model.vtable_len").pos, b"\xff\xff"), mie),
        ("tensor vector length 2^32-1", _patched(m, tensors_len, _u32(0xFFFFFFFF)), mie),
        ("tensor vector length 2^24+1", _patched(m, tensors_len, _u32((1 << 24) + 1)), mie),
        ("subgraph count 0", _patched(m, site("model.subgraphs.len").pos, _u32(0)), ume),
        ("version 2", _patched(m, site("model.version").pos, _u32(2)), ume),
        ("input dims 2^31-1", _patched(m, dims[1].pos, _u32(0x7FFFFFFF)), ume),
        ("input dims -1", _patched(m, dims[1].pos, _u32(0xFFFFFFFF)), ume),
        ("input type float32", _patched(m, in_type, b"\x00"), ume),
        ("tensor type 200", _patched(m, in_type, b"\xc8"), mie),
        ("opcode index 2^31", _patched(m, opcode_index, _u32(1 << 31)), mie),
        ("op input index 10^6", _patched(m, site("op0.inputs[0]").pos, _u32(10**6)), mie),
        ("input tensor index -5", _patched(m, site("sg0.inputs[0]").pos, _u32(-5)), mie),
        ("truncated to half", m[: len(m) // 2 // 4 * 4], mie),
        ("64 MiB + 1 of zeros", bytes(64 * 1024 * 1024 + 1), ume),
    ]


@pytest.mark.parametrize("model", ["vww2", "vww4"])
def test_structural_corpus_gives_the_expected_typed_error(
    model: str, vww2_bytes: bytes, vww4_bytes: bytes
) -> None:
    m = vww2_bytes if model == "vww2" else vww4_bytes
    for name, data, expected in _structural_cases(m):
        with pytest.raises(expected) as info:
            armvww.parse_model(data, name)
        assert name in str(info.value), (name, info.value)


def _foreign() -> list[tuple[str, Callable[[], bytes], type[errors.ArmvwwError]]]:
    tb = pytest.importorskip(
        "armvww.model.tflite_build", reason="armvww.model.tflite_build is not there yet"
    )
    ume = errors.UnsupportedModelError
    return [
        ("float", tb.float_model, ume),
        ("wrong output", tb.wrong_output_model, ume),
        ("two inputs", tb.two_input_model, ume),
        ("rgb input", tb.rgb_input_model, ume),
        ("custom op", tb.custom_op_model, ume),
        ("pad probe", tb.pad_probe_model, ume),
    ]


def test_foreign_models_are_refused_before_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _litert_module()
    reached: list[str] = []

    def spy(**kw: Any) -> Any:
        reached.append("native")
        raise RuntimeError("the native interpreter must not be reached")

    monkeypatch.setattr(mod, "Interpreter", spy)
    for name, make, expected in _foreign():
        with pytest.raises(expected):
            armvww.Detector(make(), backend="LiteRT")
        assert reached == [], f"{name}: bytes reached the native interpreter"


def test_rejected_bytes_never_reach_the_native_parser(
    vww2_bytes: bytes, vww4_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every corpus case that armvww's validation refuses is refused by Detector() with the
    same error, before any Interpreter is constructed; valid ones reach it with exactly the
    validated bytes."""
    mod = _litert_module()
    seen: list[bytes] = []

    class Reached(Exception):
        pass

    def spy(**kw: Any) -> Any:
        seen.append(kw["model_content"])
        raise Reached

    monkeypatch.setattr(mod, "Interpreter", spy)
    cases = list(fuzzlib.model_cases([("vww2", vww2_bytes), ("vww4", vww4_bytes)], 200, seed=99))
    cases += [(n, d) for n, d, _ in _structural_cases(vww2_bytes)]
    refused = passed = 0
    for name, data in cases:
        try:
            model = armvww.parse_model(data, "<case>")
        except errors.ArmvwwError as exc:
            refused += 1
            with pytest.raises(type(exc)):
                armvww.Detector(data, backend="LiteRT")
            assert seen == [], f"{name}: refused bytes reached the native parser"
            continue
        passed += 1
        with pytest.raises(errors.ArmvwwError):  # the spy's exception, wrapped
            armvww.Detector(data, backend="LiteRT")
        assert seen == [model.data], name
        seen.clear()
    assert refused > 50 and passed > 50, (refused, passed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(min_size=0, max_size=512), root=st.integers(0, 600))
def test_arbitrary_bytes_with_a_tflite_header(body: bytes, root: int) -> None:
    data = _u32(root) + b"TFL3" + body
    try:
        model = armvww.parse_model(data)
    except errors.ArmvwwError:
        return
    assert model.input.dtype == "int8"  # pragma: no cover - vanishingly unlikely


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_hypothesis_field_mutations_of_vww2(data: st.DataObject) -> None:
    m = _VWW2.read_bytes() if _VWW2.is_file() else None
    if m is None:
        pytest.skip(f"{_VWW2} is absent")
    sites = _sites(m)
    buf = bytearray(m)
    for _ in range(data.draw(st.integers(1, 4))):
        s = data.draw(st.sampled_from(sites))
        raw = data.draw(st.binary(min_size=s.size, max_size=s.size))
        buf[s.pos : s.pos + s.size] = raw
    try:
        model = armvww.parse_model(bytes(buf))
    except errors.ArmvwwError:
        return
    assert model.input.shape[0] == 1 and model.output.shape == (1, 2)


_SITES: dict[int, list[fuzzlib.Site]] = {}


def _sites(m: bytes) -> list[fuzzlib.Site]:
    key = hash(m)
    if key not in _SITES:
        _SITES[key] = [s for s in fuzzlib.model_sites(m) if s.kind != "ident"]
    return _SITES[key]
