"""The Arm NN backends, run wherever pyarmnn imports: the docker/ images (trixie, 23.08: CpuRef
on amd64; CpuAcc, GpuAcc and CpuRef on emulated arm64) and the host's bookworm 20.08.

The host test suite runs this file inside each image (tests/trees/test_trees.py) and checks
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

from ..bounds import bound_lsb
from ..conftest import report_line

_NO_PYARMNN = importlib.util.find_spec("pyarmnn") is None
pytestmark = [
    pytest.mark.armnn,
    # without pyarmnn in this interpreter these tests skip; the image lanes (tests/trees) run
    # them for real and assert which must pass, so here the skip is allowed even in CI
    *([pytest.mark.optional] if _NO_PYARMNN else []),
    pytest.mark.skipif(
        _NO_PYARMNN,
        reason="pyarmnn is not installed here (Debian: apt install python3-pyarmnn); the "
        "Arm NN suite runs inside the docker/ images (tests/trees)",
    ),
]

EMULATED = bool(os.environ.get("ARMVWW_EMULATION"))
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
    assert st.max_abs_lsb <= bound_lsb(name, model_name)  # evidence + margin: tests/bounds.py
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
        pytest.skip("needs the GpuAcc backend and an OpenCL ICD loader (arm64 image)")
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


# LiteRT's answer for vww2 on the all-zero image (every pixel at the input zero point, -72),
# stored so that lanes without LiteRT (the host's Debian python3) have an independent
# expectation. Recorded with ai-edge-litert 2.3.0, XNNPACK and built-in kernels alike
# (2026-12); the test re-checks it against LiteRT wherever LiteRT is installed.
LITERT_VWW2_ZERO_IMAGE = [52, 41]


def test_defective_runtime_is_refused_for_pad_models() -> None:
    """The PAD probe decides: a runtime that pads int8 with 0 (bookworm's Arm NN 20.08) is
    refused for vww2 and, when forced, is shown to answer wrongly; a fixed runtime (23.08)
    shows the zero point in the probe's border and answers vww2 within its bound."""
    av = _usable("CpuRef")
    q = np.full((1, 50, 50, 1), -72, np.int8)
    want = np.array(LITERT_VWW2_ZERO_IMAGE)
    if backends.availability("LiteRT").available:
        with armvww.Detector("vww2", backend="LiteRT") as ref:
            np.testing.assert_array_equal(ref.run(q)[0], want)  # the stored answer holds
    if not av.details.get("defective_pad"):
        assert av.details.get("pad_border") == tb.PAD_PROBE_ZERO_POINT, av.details
        with armvww.Detector("vww2", backend="CpuRef") as det:
            got = det.run(q)[0]
        off = int(np.abs(got.astype(int) - want).max())
        report_line(f"PAD probe passed ({av.runtime}): all-zero image -> {got.tolist()}, {off} LSB")
        assert off <= bound_lsb("CpuRef", "vww2")
        return
    assert "PAD probe" in av.reason
    assert av.details.get("pad_border") == 0, av.details  # the raw 0, not the zero point
    with pytest.raises(DefectiveRuntimeError, match="PAD probe"):
        armvww.Detector("vww2", backend="CpuRef")
    # a model without PAD is fine on the same runtime
    with armvww.Detector(tb.tiny_vww_model(), backend="CpuRef") as det:
        assert det.run(np.zeros((1, 8, 8, 1), np.int8)).shape == (1, 2)
    # opting in runs it, and shows why it is refused by default: the answer is further from
    # LiteRT's than a healthy CpuRef ever is (measured 14 LSB; 23.08 gives 0)
    opts = armnn.ArmNNOptions(allow_defective=True)
    with armvww.Detector("vww2", backend="CpuRef", options=opts) as det:
        bad = det.run(q)[0]
        assert det.session_info.get("defective_pad") is True
    off = int(np.abs(bad.astype(int) - want).max())
    report_line(
        f"defective {av.runtime}: all-zero image -> {bad.tolist()} vs LiteRT "
        f"{want.tolist()} ({off} LSB off); refused by default"
    )
    assert off > bound_lsb("CpuRef", "vww2")


def _cpuacc_or_skip() -> None:
    _usable("CpuAcc")
    if not armnn.probe().features.get("model_options"):
        pytest.skip("this PyArmNN has no BackendOptions (see test_options_are_feature_detected)")


def test_options_are_feature_detected() -> None:
    p = armnn.probe()
    name = "CpuAcc" if p.backends.get("CpuAcc", {}).get("ok") else "CpuRef"
    _usable(name)
    tiny = tb.tiny_vww_model()
    if p.features.get("model_options"):
        opts = armnn.ArmNNOptions(cpu_threads=1, cpu_fast_math=False)
        with armvww.Detector(tiny, backend=name, options=opts) as d:
            assert d.run(np.ones((1, 8, 8, 1), np.int8)).shape == (1, 2)
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


_CPU_THREADS_PROBE = """
import os, sys, numpy as np, armvww
from armvww.backends import armnn
from armvww.model import tflite_build as tb
armnn.probe()  # the probe's child process comes and goes before the count
before = len(os.listdir("/proc/self/task"))
opts = armnn.ArmNNOptions(cpu_threads=int(sys.argv[1]))
with armvww.Detector(tb.tiny_vww_model(), backend="CpuAcc", options=opts) as d:
    d.run(np.zeros(d.input_shape, np.int8))
    print(len(os.listdir("/proc/self/task")) - before)
"""


def test_cpu_threads_sets_the_compute_library_thread_pool() -> None:
    """``cpu_threads`` proven by its effect: the process gains the Compute Library
    scheduler's worker threads (threads - 1 of them) when the CpuAcc network loads."""
    _cpuacc_or_skip()
    extra = {}
    for n in (1, 3):
        out = subprocess.run(
            [sys.executable, "-c", _CPU_THREADS_PROBE, str(n)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        extra[n] = int(out.stdout.strip().splitlines()[-1])
    report_line(
        f"CpuAcc threads started: cpu_threads=1 -> +{extra[1]}, cpu_threads=3 -> +{extra[3]}"
    )
    assert extra[3] - extra[1] == 2, extra


_ONE_COUNT_PER_PROCESS = """
import json, os, sys, numpy as np, armvww
from armvww.backends import armnn
from armvww.errors import OptionError
from armvww.model import tflite_build as tb
route = sys.argv[1]
armnn.probe()  # the probe's child process comes and goes before the counts
model = tb.tiny_vww_model()
x = np.zeros((1, 8, 8, 1), np.int8)

def det(n):
    opts = armnn.ArmNNOptions(route=route, cpu_threads=n)
    d = armvww.Detector(model, backend="CpuAcc", options=opts)
    d.run(x)
    return d

def tasks():
    return len(os.listdir("/proc/self/task"))

out = {}
a = det(1)
out["a"] = tasks()
try:
    det(3)
    out["refused"] = ""
except OptionError as exc:
    out["refused"] = str(exc)
out["a_after_refusal"] = tasks()
b = det(None)
out["b"] = [b.session_info.get("cpu_threads"), b.session_info.get("cpu_threads_note", "")]
a.close()
b.close()
c = det(3)
out["c"] = [tasks(), c.session_info.get("cpu_threads")]
c.close()
d = det(1)  # the delegate route has an idle interpreter of these options: loaded anew
out["d"] = [tasks(), d.session_info.get("interpreter", "")]
d.close()
e = det(None)  # nothing open: runs on what the last load set, and says so
out["e"] = [tasks(), e.session_info.get("cpu_threads"), e.session_info.get("cpu_threads_note", "")]
e.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("route", ["parser", "delegate"])
def test_cpu_threads_are_one_count_per_process(route: str) -> None:
    """CpuAcc's thread count is the Compute Library scheduler's, one for the process: a
    Detector that would change an open one's count is refused (the open one keeps its
    threads), one with ``cpu_threads=None`` runs on and reports the count in force, and a
    session never reuses a network loaded under another count. Counted by the scheduler's
    worker threads in ``/proc/self/task`` (threads - 1 of them)."""
    _cpuacc_or_skip()
    if route == "delegate" and not armnn.delegate_route("CpuAcc")["available"]:
        pytest.skip("no Arm NN delegate here")
    out = subprocess.run(
        [sys.executable, "-c", _ONE_COUNT_PER_PROCESS, route],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    report_line(f"CpuAcc one thread count per process ({route}): {r}")
    assert "one for the whole process" in r["refused"] and "cpu_threads=3" in r["refused"]
    assert r["a_after_refusal"] == r["a"]  # the refused load started no threads
    assert r["b"][0] == "1" and "the open CpuAcc session" in r["b"][1]
    assert r["c"] == [r["a"] + 2, "3"]
    assert r["d"][0] == r["a"]  # back to 1 thread: the load happened
    if route == "delegate":
        assert r["d"][1] == "new"
    assert r["e"][:2] == [r["a"], "1"] and "earlier CpuAcc session" in r["e"][2]


def test_cpu_fast_math_is_a_no_op_for_int8(samples) -> None:
    """Arm NN's CpuAcc fast math only lets the Compute Library pick Winograd / reduced
    precision kernels for float32/16 convolutions; for the int8 VWW models it changes
    nothing: outputs are bit-identical with and without it (documented in the README)."""
    _cpuacc_or_skip()
    model = store.load_model("vww2")
    with armvww.Detector(model, backend="CpuAcc") as plain:
        qs = parity.generated_inputs(model, 20, seed=3) + [plain.quantize(p) for p, _ in samples]
        want = parity.stack([plain.run(q) for q in qs])
    fast = armnn.ArmNNOptions(cpu_fast_math=True)
    with armvww.Detector(model, backend="CpuAcc", options=fast) as det:
        got = parity.stack([det.run(q) for q in qs])
    np.testing.assert_array_equal(got, want)
    report_line(f"CpuAcc cpu_fast_math on int8 vww2: {len(qs)} inputs bit-identical (no-op)")


def _sqrt_model() -> bytes:
    """int8 (1, 8, 8, 1) -> SQRT -> MAX_POOL_2D -> (1, 2): Arm NN 23.08's CpuAcc has no int8
    SQRT (measured: it places the layer on the next backend), CpuRef has."""
    T, Op = tb.TensorDef, tb.OpDef
    q = {"scale": 0.05, "zero_point": -10}
    tensors = [
        T((1, 8, 8, 1), "int8", "input", **q),
        T((1, 8, 8, 1), "int8", "sqrt", **q),
        T((1, 2, 1, 1), "int8", "pool", **q),
        T((2,), "int32", "shape", data=np.array([1, 2], np.int32)),
        T((1, 2), "int8", "Identity", **q),
    ]
    pool = {"padding": "VALID", "stride_w": 8, "stride_h": 4, "filter_width": 8}
    ops = [
        Op("SQRT", [0], [1]),
        Op("MAX_POOL_2D", [1], [2], {**pool, "filter_height": 4}),
        Op("RESHAPE", [2, 3], [4], {"new_shape": [1, 2]}),
    ]
    return tb.build_model(tensors, ops, [0], [4])


def test_offloaded_layers_are_reported() -> None:
    """A layer the first backend cannot run goes to the next one of the preference list,
    and session_info names it."""
    _usable("CpuAcc")
    _usable("CpuRef")
    model = _sqrt_model()
    q = np.arange(64, dtype=np.int8).reshape(1, 8, 8, 1)
    with pytest.raises(armvww.ArmvwwError):
        armvww.Detector(model, backend="CpuAcc")  # CpuAcc alone cannot run it
    with armvww.Detector(model, backend=["CpuAcc", "CpuRef"]) as det:
        got = det.run(q)
        info = det.session_info
        assert det.backend == "CpuAcc"
    assert "Sqrt:0:0" in info["offloaded_layers"], info
    assert info["placement"].get("CpuRef", 0) >= 1 and info["placement"].get("CpuAcc", 0) >= 1
    with armvww.Detector(model, backend="CpuRef") as ref:
        np.testing.assert_array_equal(got, ref.run(q))
    report_line(f"offload CpuAcc -> CpuRef: {info['offloaded_layers']}, {info['placement']}")


def test_profiling_reports_every_workload() -> None:
    p = armnn.probe()
    if not p.features.get("profiling"):
        pytest.skip(f"this PyArmNN ({p.version}) has no INetworkProperties/get_profiling_data")
    name = next(n for n in ("CpuAcc", "CpuRef") if p.backends.get(n, {}).get("ok"))
    _usable(name)
    model = store.load_model("vww2")
    q = np.full(model.input.shape, model.input.zero_point, np.int8)
    # profiling is about workloads, not answers: 20.08's PAD defect does not matter here
    plain = backends.get(name).open(model, armnn.ArmNNOptions(allow_defective=True))
    try:
        with pytest.raises(OptionError, match="profiling=True"):
            plain.profile()  # type: ignore[attr-defined]
    finally:
        plain.close()
    opts = armnn.ArmNNOptions(profiling=True, allow_defective=True)
    session = backends.get(name).open(model, opts)
    try:
        session.run(q)
        try:
            prof = session.profile()  # type: ignore[attr-defined]
        except armvww.BackendError as exc:  # a typed error, never a KeyError (20.08)
            pytest.skip(f"this PyArmNN cannot read its profiler: {exc}")
    finally:
        session.close()
    assert prof, "no workloads profiled"
    # every layer's workload runs on the backend; Arm NN's own events say "Unknown"
    assert {v["backend"] for v in prof.values()} <= {name, "Unknown"}, prof
    mine = {k: v for k, v in prof.items() if v["backend"] == name}
    times = [t for v in mine.values() for t in np.ravel(v["time_us"])]
    assert times and all(t >= 0 for t in times) and sum(times) > 0
    convs = [k for k in mine if "onvolution" in k]
    assert convs, sorted(prof)[:10]  # the model's convolutions are among the workloads
    report_line(
        f"profiling {name}: {len(mine)} workloads, {len(convs)} convolutions, "
        f"total {sum(times):.0f} us"
    )


def test_first_layers_against_the_int8_reference(samples) -> None:
    """Arm NN's intermediate tensors (the model rewritten with extra outputs) for vww2's
    first 8 layers, against the independent numpy int8 reference fed with Arm NN's own
    layer inputs: so LiteRT and Arm NN drifting together would be caught."""
    from .. import int8_reference as ref

    p = armnn.probe()
    usable = [n for n in ("CpuAcc", "CpuRef") if p.backends.get(n, {}).get("ok")]
    usable = [n for n in usable if not p.backends[n].get("defective_pad")]
    if not usable:
        pytest.skip("no non-defective Arm NN backend here")
    try:
        const = ref.constants_via_litert(store.load_model("vww2").data)
    except ImportError:
        pytest.skip("reading the weights needs LiteRT (ai-edge-litert) in this interpreter")
    model = store.load_model("vww2")
    n_layers = 8
    with armvww.Detector(model, backend=usable[0]) as det:
        photos = [det.quantize(p) for p, _ in samples[:2]]
    qs = [np.full(model.input.shape, model.input.zero_point, np.int8)]
    qs += parity.generated_inputs(model, 2, seed=1) + photos
    tensors = [op.outputs[0] for op in model.operators[:n_layers]]
    for name in usable:
        got, _ = parity.capture_tensors(model, name, qs, None, tensors=tensors)
        inputs = {model.input.index: np.stack(qs), **got}
        diffs = []
        for k, op in enumerate(model.operators[:n_layers]):
            x = inputs[op.inputs[0]]
            want = [ref.first_layers(model, const, xi, 1, "away", start=k) for xi in x]
            w = np.stack([o[op.outputs[0]] for o in want]).astype(np.int16)
            diffs.append(int(np.abs(got[op.outputs[0]].astype(np.int16) - w).max()))
        report_line(
            f"int8 reference vs {name}, vww2 layers 0-{n_layers - 1}, layer by layer "
            f"({len(qs)} inputs): max |d| {diffs}" + (" [emulated]" if EMULATED else "")
        )
        assert max(diffs) <= REFERENCE_LAYER_BOUND_LSB[name], (name, diffs)


# Max |d| per layer against the int8 reference (layer by layer), measured in the image lanes
# (2026-12, 5 inputs): CpuAcc 0 on every layer (bit-exact: ACL uses the same fixed-point
# rule); CpuRef 1 on every layer (it requantises through float). Margin +1 LSB.
REFERENCE_LAYER_BOUND_LSB = {"CpuRef": 2, "CpuAcc": 1}


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


# -- issue 14, class 14: models that crash Arm NN are vetted in a child process --------------
_VET_CHILD = r"""
import dataclasses, hashlib, json, random, sys
import numpy as np
import armvww
from armvww import backends
from armvww.backends import armnn
from tests.reliability import fuzzlib

vww2 = open(sys.argv[1], "rb").read()
# vww2#7:2666 (tree fuzz, seed 7): random bytes over per-channel scales; it killed Arm NN
# 23.08 CpuRef with SIGABRT. Validation refuses it now, so it is handed to the backend as
# a Model built without validation: the backend's own vetting must catch it.
bad, desc = fuzzlib.mutate_model(vww2, fuzzlib.model_sites(vww2), random.Random("7:2666"))
assert desc == "bytes 205795+11", desc  # the case vww2#7:2666 of model_cases
good = armvww.parse_model(vww2)
model = dataclasses.replace(good, data=bad, sha1=hashlib.sha1(bad).hexdigest(),
                            sha256=hashlib.sha256(bad).hexdigest(), known=None, source="2666")
out = {}
for name in armnn.ARMNN_BACKENDS:
    av = backends.availability(name)
    for route, r in av.details.get("routes", {}).items():
        if not r.get("available"):
            continue
        try:
            s = backends.get(name).open(model, armnn.ArmNNOptions(route=route,
                                                                  allow_defective=True))
            s.run(np.zeros(model.input.shape, np.int8))  # 23.08 CpuRef aborts here on it
            s.close()
            out[f"{name}/{route}"] = ["opened", av.runtime]
        except armvww.ArmvwwError as exc:
            out[f"{name}/{route}"] = [f"{type(exc).__name__}: {exc}", av.runtime]
print("RESULT " + json.dumps(out))
"""


def _vet_child(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from ..conftest import REPO

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=1200,
    )


def test_a_model_that_crashes_arm_nn_is_a_typed_error(vww2_path: Path, tmp_path: Path) -> None:
    """A model that aborts Arm NN 23.08 on load, on every Arm NN backend and route available
    here: the process that asked survives with ModelCrashError naming the signal, backend,
    route and Arm NN version (without vetting the child running this dies with SIGABRT)."""
    proc = _vet_child(_VET_CHILD, tmp_path, str(vww2_path))
    assert proc.returncode == 0, f"the process died ({proc.returncode}): {proc.stderr[-2000:]}"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    results: dict[str, list[str]] = json.loads(line[len("RESULT ") :])
    assert results, "no Arm NN backend and route was available"
    for pair, (outcome, runtime) in results.items():
        name, route = pair.split("/")
        if name == "CpuRef" and "33.0.0" in runtime:  # 23.08 CpuRef aborts on it
            assert outcome.startswith("ModelCrashError"), f"{pair}: {outcome}"
            assert "SIGABRT" in outcome and f"{route} route" in outcome, outcome
            assert "33.0.0" in outcome and "armvww fetch vww2" in outcome, outcome
            assert "CpuRef" in outcome, outcome
        # elsewhere Arm NN may run it: the vetted child survived, so this process did too
    report_line(f"crashing model vww2#7:2666 on {sorted(results)}: the process survived")


_VET_CACHE_CHILD = r"""
import sys
import armvww, numpy as np
from armvww.backends import armnn
from armvww.model import tflite_build as tb

tiny = armvww.parse_model(tb.tiny_vww_model(), "tiny")  # valid, not a pinned model
for i in range(2):
    with armvww.Detector(tiny, backend="CpuRef", options=armnn.ArmNNOptions(route="parser")) as d:
        d.run(np.zeros(d.input_shape, np.int8))
        print("VET " + d.session_info["vetting"])
with armvww.Detector(sys.argv[1], backend="CpuRef", options=armnn.ArmNNOptions(route="parser",
                     allow_defective=True)) as d:
    print("VET " + d.session_info["vetting"])
with armvww.Detector(tiny, backend="CpuRef", options=armnn.ArmNNOptions(route="parser",
                     vet="off")) as d:
    print("VET " + d.session_info["vetting"])
"""


def test_vetting_verdicts_are_cached_in_memory_and_on_disk(vww2_path: Path, tmp_path: Path) -> None:
    _usable("CpuRef")
    if not armnn.parser_route("CpuRef")["available"]:
        pytest.skip("CpuRef has no parser route here")
    first = _vet_child(_VET_CACHE_CHILD, tmp_path, str(vww2_path))
    assert first.returncode == 0, first.stderr[-2000:]
    said = [ln[4:] for ln in first.stdout.splitlines() if ln.startswith("VET ")]
    assert said[0].startswith("ok: parser route: load+run CpuRef; in a child"), said
    assert said[1].endswith("cached (memory)"), said
    assert said[2] == "not needed: pinned vww2", said
    assert said[3] == "off", said
    assert len(list((tmp_path / "cache" / "armvww" / "vetted").glob("*.json"))) == 1
    again = _vet_child(_VET_CACHE_CHILD, tmp_path, str(vww2_path))
    said = [ln[4:] for ln in again.stdout.splitlines() if ln.startswith("VET ")]
    assert said[0].endswith("cached (disk)"), said
