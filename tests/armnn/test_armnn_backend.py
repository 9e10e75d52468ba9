"""The Arm NN backends, run wherever pyarmnn imports: the Debian trixie trees (23.08: CpuRef
on amd64; CpuAcc, GpuAcc and CpuRef on emulated arm64) and the host's bookworm 20.08.

The host test suite runs this file inside each tree (tests/trees/test_trees.py) and checks
which tests passed there. Parity bounds below come from measurements (README, "Backend
parity"); each test reports its figures in the terminal summary.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import armvww
from armvww import backends
from armvww.analysis import parity
from armvww.backends import armnn
from armvww.errors import DefectiveRuntimeError, OptionError
from armvww.model import store
from armvww.model import tflite_build as tb

from ..conftest import report_line

_NO_PYARMNN = importlib.util.find_spec("pyarmnn") is None
pytestmark = [
    pytest.mark.armnn,
    # without pyarmnn in this interpreter these tests skip; the tree lanes (tests/trees) run
    # them for real and assert which must pass, so here the skip is allowed even in CI
    *([pytest.mark.optional] if _NO_PYARMNN else []),
    pytest.mark.skipif(
        _NO_PYARMNN,
        reason="pyarmnn is not installed here (Debian: apt install python3-pyarmnn); the "
        "Arm NN suite runs inside the Debian trees (tests/trees)",
    ),
]

EMULATED = bool(os.environ.get("ARMVWW_EMULATION"))
# Max |delta| in LSB against LiteRT (XNNPACK) that each backend showed on our inputs, with
# headroom; see the README. A regression beyond these fails.
BOUND_LSB = {
    ("CpuRef", "vww2"): 2,
    ("CpuRef", "vww4"): 4,
    ("CpuAcc", "vww2"): 32,
    ("CpuAcc", "vww4"): 24,
    ("GpuAcc", "vww2"): 32,
    ("GpuAcc", "vww4"): 32,
}
# Generated inputs per (backend, model): CpuRef is slow (27 ms vww2 / 270 ms vww4 natively,
# 0.4-1.7 s vww2 under qemu), so it gets fewer where it is slow.
N_INPUTS = {
    ("CpuRef", "vww2"): 4 if EMULATED else 300,
    ("CpuRef", "vww4"): 0 if EMULATED else 60,
    ("CpuAcc", "vww2"): 300,
    ("CpuAcc", "vww4"): 100,
    ("GpuAcc", "vww2"): 100,
    ("GpuAcc", "vww4"): 30,
}


def _usable(name: str) -> armvww.Availability:
    av = backends.availability(name)
    if not av.available:
        pytest.skip(f"{name} unavailable here: {av.reason}")
    return av


def _litert() -> None:
    if not backends.availability("LiteRT").available:
        pytest.skip("LiteRT is not installed in this environment (the reference)")


def test_probe_reports_every_arm_nn_backend() -> None:
    p = armnn.probe()
    assert p.error == "", p.error
    assert p.version.startswith("Arm NN ")
    for name in armnn.ARMNN_BACKENDS:
        b = p.backends[name]
        assert b["ok"] or b["reason"], b
        report_line(f"probe {name}: " + ("ok" if b["ok"] else f"unavailable: {b['reason']}"))
    assert p.backends["CpuRef"]["ok"]


def test_cli_backends_agrees_with_the_probe() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "armvww", "backends", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {r["backend"]: r for r in map(json.loads, out.splitlines())}
    p = armnn.probe()
    for name in armnn.ARMNN_BACKENDS:
        assert rows[name]["available"] == bool(p.backends[name]["ok"])
        assert rows[name]["available"] or rows[name]["reason"]
    report_line(
        "armvww backends: "
        + ", ".join(f"{n}={'yes' if r['available'] else 'no'}" for n, r in rows.items())
    )


@pytest.mark.parametrize("model_name", ["vww2", "vww4"])
@pytest.mark.parametrize("name", ["CpuRef", "CpuAcc", "GpuAcc"])
def test_parity_against_litert(name: str, model_name: str, samples) -> None:
    av = _usable(name)
    _litert()
    if av.details.get("defective_pad"):
        pytest.skip(f"{name} is defective here (PAD probe); see test_defective_runtime_*")
    n = int(os.environ.get("ARMVWW_PARITY_N", N_INPUTS[(name, model_name)]))
    if n == 0:
        pytest.skip(f"{name} on {model_name} is too slow here; measured natively elsewhere")
    model = store.load_model(model_name)
    with armvww.Detector(model, backend="LiteRT") as ref:
        qs = parity.generated_inputs(model, n, seed=1) + [ref.quantize(p) for p, _ in samples]
        want = parity.stack([ref.run(q) for q in qs])
    with armvww.Detector(model, backend=name) as det:
        assert det.backend == name
        got = parity.stack([det.run(q) for q in qs])
        placement = det.session_info["placement"]
    assert placement == {name: sum(placement.values())}, placement  # no silent offload
    st = parity.compare(name, got, want, model.output.scale)
    report_line(
        f"parity {name} {model_name} vs LiteRT ({len(qs)} inputs): max |d| {st.max_abs_lsb} LSB, "
        f"exact {st.exact_share:.1%}, argmax {st.argmax_agreement:.1%}, "
        f"rmse/byte {st.rmse_per_byte:.3f}, flips {len(st.flips)} "
        f"(hard {len(st.disagreements)})" + (" [emulated]" if EMULATED else "")
    )
    assert st.max_abs_lsb <= BOUND_LSB[(name, model_name)]
    assert st.disagreements == []
    assert st.exact_share >= (0.75 if name == "CpuRef" else 0.2)


def test_sample_decisions_match_litert(samples) -> None:
    _litert()
    for name in ("CpuAcc", "CpuRef"):
        av = backends.availability(name)
        if av.available and not av.details.get("defective_pad"):
            break
    else:
        pytest.skip("no non-defective Arm NN backend here")
    with (
        armvww.Detector("vww2", backend="LiteRT") as ref,
        armvww.Detector("vww2", backend=name) as det,
    ):
        near_tie = parity.Contract().near_tie_lsb
        for path, _ in samples:
            mine, theirs = det.detect(path), ref.detect(path)
            margin = abs(int(theirs.raw[1]) - int(theirs.raw[0]))
            if mine.person != theirs.person:
                # a flip is only allowed at a near-tie of the reference (measured: CpuAcc
                # flips man_and_baby.bmp, margin 5 LSB, P(person) 0.432 -> 0.514)
                assert margin <= near_tie, (path, mine.raw, theirs.raw)
                report_line(
                    f"{name} flips {path.name} at margin {margin} LSB: "
                    f"{theirs.score:.3f} -> {mine.score:.3f}"
                )


def test_fallback_from_gpuacc_to_cpuacc(samples) -> None:
    _usable("CpuAcc")
    gpu = backends.availability("GpuAcc")
    if gpu.available:
        pytest.skip("GpuAcc works here, so there is nothing to fall back from")
    with armvww.Detector("vww2", backend=["GpuAcc", "CpuAcc"]) as det:
        r = det.detect(samples[0][0])
        assert r.backend == "CpuAcc"
        assert r.fallback and r.fallback[0].startswith("GpuAcc: ")
        report_line(f"fallback GpuAcc -> CpuAcc, reason on the result: {r.fallback[0][:120]}")


def test_broken_opencl_icd_is_a_reason(tmp_path: Path) -> None:
    """An OpenCL ICD loader whose only vendor library does not load: GpuAcc gets a reason."""
    loader = next(iter(Path("/usr/lib").glob("*/libOpenCL.so.1")), None)
    if loader is None or "GpuAcc" not in _listed_backends():
        pytest.skip("needs the GpuAcc backend and an OpenCL ICD loader (arm64 tree)")
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "libOpenCL.so").symlink_to(loader)
    vendors = tmp_path / "vendors"
    vendors.mkdir()
    (vendors / "broken.icd").write_text(str(tmp_path / "missing-driver.so") + "\n")
    env = dict(
        os.environ,
        LD_LIBRARY_PATH=str(libdir),
        OCL_ICD_VENDORS=str(vendors),
        ARMVWW_PROBE_ONLY="GpuAcc",
    )
    code = (
        "from armvww.backends import armnn; import json; p = armnn.probe(); "
        "print(json.dumps(p.backends['GpuAcc']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout.strip().splitlines()[-1])
    assert verdict["ok"] is False and verdict["reason"]
    report_line(f"broken OpenCL ICD -> GpuAcc reason: {verdict['reason'][:140]}")


def _listed_backends() -> set[str]:
    armnn.import_pyarmnn()
    return {str(b) for b in armnn.runtime().GetDeviceSpec().GetSupportedBackends()}


def test_defective_runtime_is_refused_for_pad_models() -> None:
    av = _usable("CpuRef")
    if not av.details.get("defective_pad"):
        pytest.skip(f"this Arm NN ({av.runtime}) passes the PAD probe")
    assert "PAD probe" in av.reason
    with pytest.raises(DefectiveRuntimeError, match="PAD probe"):
        armvww.Detector("vww2", backend="CpuRef")
    # a model without PAD is fine on the same runtime
    with armvww.Detector(tb.tiny_vww_model(), backend="CpuRef") as det:
        assert det.run(np.zeros((1, 8, 8, 1), np.int8)).shape == (1, 2)
    # opting in runs it, and shows why it is refused by default: the answer differs
    q = np.full((1, 50, 50, 1), -72, np.int8)
    opts = armnn.ArmNNOptions(allow_defective=True)
    with armvww.Detector("vww2", backend="CpuRef", options=opts) as det:
        bad = det.run(q)
        assert det.session_info.get("defective_pad") is True
    if backends.availability("LiteRT").available:
        with armvww.Detector("vww2", backend="LiteRT") as ref:
            good = ref.run(q)
        assert not np.array_equal(bad, good)
        report_line(
            f"defective {av.runtime}: all-zero image -> {bad.tolist()} vs LiteRT "
            f"{good.tolist()}; refused by default"
        )


def test_options_are_feature_detected() -> None:
    p = armnn.probe()
    name = "CpuAcc" if p.backends.get("CpuAcc", {}).get("ok") else "CpuRef"
    _usable(name)
    tiny = tb.tiny_vww_model()
    if p.features.get("model_options"):
        opts = armnn.ArmNNOptions(cpu_threads=1, cpu_fast_math=False)
        with armvww.Detector(tiny, backend=name, options=opts) as d:
            out = d.run(np.ones((1, 8, 8, 1), np.int8))
        with armvww.Detector(tiny, backend=name) as d:
            np.testing.assert_array_equal(d.run(np.ones((1, 8, 8, 1), np.int8)), out)
    else:
        with pytest.raises(OptionError, match="BackendOptions"):
            armvww.Detector(
                tiny, backend=name, options=armnn.ArmNNOptions(route="parser", cpu_threads=1)
            )
    if not p.features.get("runtime_backend_options"):
        # the parser route's own refusal (route "auto" would take the delegate for these)
        opts = armnn.ArmNNOptions(route="parser", gpu_tuning_level=1, gpu_tuning_file="/tmp/t.bin")
        with pytest.raises(OptionError, match="runtime options"):
            armvww.Detector(tiny, backend=name, options=opts)


def test_several_detectors_threads_and_closing(samples) -> None:
    p = armnn.probe()
    names = [n for n in ("CpuAcc", "CpuRef") if p.backends.get(n, {}).get("ok")]
    names = [n for n in names if not p.backends[n].get("defective_pad")]
    if not names:
        pytest.skip("no non-defective Arm NN backend here")
    model = tb.tiny_vww_model((16, 16))
    rng = np.random.default_rng(5)
    qs = [rng.integers(-128, 128, size=(1, 16, 16, 1), dtype=np.int8) for _ in range(8)]
    dets = [armvww.Detector(model, backend=names[0]) for _ in range(2)]
    dets += [armvww.Detector(model, backend=n) for n in names[1:]]
    serial = [[d.run(q) for q in qs] for d in dets]
    start = threading.Barrier(4)

    def work(i: int) -> list[str]:
        d = dets[i % len(dets)]
        start.wait(timeout=60)  # all four threads run at once
        return [
            f"{i}:{j}"
            for j, q in enumerate(qs * 3)
            if not np.array_equal(d.run(q), serial[i % len(dets)][j % len(qs)])
        ]

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(work, i) for i in range(4)]
    # .result() re-raises whatever a thread raised: an exception fails the test
    assert [f.result() for f in futures] == [[]] * 4
    dets[0].close()  # one runtime per process: closing one network leaves the others working
    np.testing.assert_array_equal(dets[1].run(qs[0]), serial[1][0])
    for d in dets[1:]:
        d.close()


# (backend, route) -> calls per thread; CpuRef is slow natively and very slow under qemu
_THREAD_CALLS = {"CpuRef": 2 if EMULATED else 12, "CpuAcc": 6 if EMULATED else 40}


@pytest.mark.parametrize("route", ["parser", "delegate"])
@pytest.mark.parametrize("name", ["CpuRef", "CpuAcc", "GpuAcc"])
def test_eight_threads_give_the_serial_answers(name: str, route: str, vww2_path: Path) -> None:
    """One Detector shared by 8 threads gives exactly its serial answers on every Arm NN
    backend and route (PyArmNN's output is a view of a buffer every inference reuses: the
    Detector must copy it under its lock)."""
    from ..reliability import workload

    _usable(name)
    try:
        det = armvww.Detector(vww2_path, backend=name, options=armnn.ArmNNOptions(route=route))
    except armvww.BackendUnavailableError as exc:
        pytest.skip(f"{name} via the {route} route is not usable here: {exc}")
    with det:
        items = workload.make_items(det, 8)
        ref = workload.serial_answers(det, items)
        calls = _THREAD_CALLS.get(name, 10)
        tally = workload.hammer(det, items, ref, 8, calls, seed=14)
    assert tally.untyped_errors == [] and not tally.typed_errors, tally
    assert tally.calls == 8 * calls
    assert tally.mismatches == 0, tally.first_mismatch
    report_line(f"8 threads x {calls} calls on {name} ({route}): 0 mismatches")


def test_seeded_model_fuzz_corpus_on_every_backend(vww2_path: Path, vww4_path: Path) -> None:
    """The seeded mutation corpus of tests/reliability (seed 2024, the one that found
    ``vww4#2024:49``, a CONV_2D whose options claim to be SoftmaxOptions, which crashed
    CpuRef 23.08) through the loader and EVERY backend available here, each case in a child
    process: no crash, no hang, no untyped error."""
    from ..reliability import fuzzlib

    if not any(backends.availability(n).available for n in armnn.ARMNN_BACKENDS):
        pytest.skip("no Arm NN backend is available here")
    models = [("vww2", vww2_path.read_bytes())]
    if not EMULATED:
        models.append(("vww4", vww4_path.read_bytes()))
    # natively the first 60 cases (they hold vww4#2024:49); under qemu CpuRef is slow
    n = 12 if EMULATED else 60
    cases = list(fuzzlib.model_cases(models, n, seed=2024))
    counts, failures = fuzzlib.run_cases(cases, "model", workers=2, timeout=600)
    report = "\n".join(f"{f.outcome}: {f.case}: {f.detail}" for f in failures)
    assert failures == [], report
    assert sum(counts.values()) == n
    report_line(f"model fuzz corpus (seed 2024, {n} cases) on every backend: {dict(counts)}")
