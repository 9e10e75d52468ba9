"""The Arm NN TfLite delegate route with a real ``libarmnnDelegate.so`` (Arm NN 23.08 built by
the project), run inside the Debian trixie trees next to the parser route (tests/trees).

Delegate and parser run the same Arm NN backend on the same int8 inputs (the 13 photos and
generated ones): the same network on the same kernels, so the outputs must be bit-identical.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import armvww
from armvww import backends
from armvww.analysis import parity
from armvww.backends import armnn_delegate
from armvww.backends.armnn import ArmNNOptions
from armvww.errors import OptionError
from armvww.model import store

from ..conftest import report_line

_LOC = armnn_delegate.find_delegate()
_NO_PYARMNN = importlib.util.find_spec("pyarmnn") is None
pytestmark = [
    pytest.mark.armnn,
    # the image lanes (tests/trees) run these with the image's delegate build and assert
    # which passed; elsewhere there is no Arm NN 23.08 to load it against
    *([pytest.mark.optional] if _LOC.path is None or _NO_PYARMNN else []),
    pytest.mark.skipif(_LOC.path is None, reason=f"no Arm NN delegate here: {_LOC.reason}"),
    pytest.mark.skipif(_NO_PYARMNN, reason="pyarmnn is not installed (the parser route)"),
]

EMULATED = bool(os.environ.get("ARMVWW_EMULATION"))
#: Generated inputs per (backend, model), on top of the photos. CpuRef under qemu is slow
#: (about 1 s per vww4 inference and route): there the proof with hundreds of inputs is
#: CpuAcc's, and CpuRef's the same reference kernels as the amd64 lane's 300/60 + 13.
N_INPUTS = {
    ("CpuRef", "vww2"): 10 if EMULATED else 300,
    ("CpuRef", "vww4"): 0 if EMULATED else 60,
    ("CpuAcc", "vww2"): 300,
    ("CpuAcc", "vww4"): 100,
}
#: Photos per (backend, model) under qemu (all 13 otherwise).
N_PHOTOS_EMULATED = {("CpuRef", "vww4"): 4}
#: Inputs of the CLI's parity and bench runs (CpuRef, both routes).
N_CLI = "5" if EMULATED else "20"
DELEGATE = ArmNNOptions(route="delegate")
PARSER = ArmNNOptions(route="parser")


def _both_routes(name: str) -> None:
    av = backends.availability(name)
    routes = av.details.get("routes", {})
    for r in ("parser", "delegate"):
        if not routes.get(r, {}).get("available"):
            pytest.skip(f"{name} {r} route unavailable here: {routes.get(r, {}).get('reason')}")


@pytest.mark.parametrize("model_name", ["vww2", "vww4"])
@pytest.mark.parametrize("name", ["CpuRef", "CpuAcc"])
def test_delegate_matches_parser_bit_for_bit(name: str, model_name: str, samples) -> None:
    _both_routes(name)
    model = store.load_model(model_name)
    n = N_INPUTS[(name, model_name)]
    if EMULATED:
        samples = samples[: N_PHOTOS_EMULATED.get((name, model_name), len(samples))]
    with armvww.Detector(model, backend=name, options=PARSER) as par:
        qs = parity.generated_inputs(model, n, seed=3) + [par.quantize(p) for p, _ in samples]
        want = parity.stack([par.run(q) for q in qs])
        assert par.route == "parser"
    with armvww.Detector(model, backend=name, options=DELEGATE) as dele:
        assert dele.route == "delegate" and dele.backend == name
        got = parity.stack([dele.run(q) for q in qs])
        info = dele.session_info
        r = dele.detect(samples[0][0])
    st = parity.compare(f"{name} delegate", got, want, model.output.scale)
    report_line(
        f"delegate vs parser {name} {model_name} ({len(qs)} inputs: {n} generated + "
        f"{len(samples)} photos): max |d| {st.max_abs_lsb} LSB, exact {st.exact_share:.1%}"
        + (" [emulated]" if EMULATED else "")
    )
    assert st.max_abs_lsb == 0 and st.exact_share == 1.0
    # the whole graph is one DELEGATE node, every Arm NN layer on the backend asked for
    assert info["placement"] == {
        "armnn_nodes": sum(model.op_counts.values()),
        "litert_nodes": 0,
        "delegate_nodes": 1,
    }, info["placement"]
    assert set(info["armnn_placement"]) == {name}, info["armnn_placement"]
    # route, library and Arm NN version on every result
    assert r.route == "delegate" and str(_LOC.path) in r.runtime and "Arm NN 33." in r.runtime
    assert info["library"] == str(_LOC.path) and info["armnn_version"].startswith("Arm NN 33.")


def test_auto_route_prefers_the_parser_and_takes_the_delegate_for_its_options(
    tmp_path: Path,
) -> None:
    _both_routes("CpuRef")
    with armvww.Detector("vww2", backend="CpuRef") as det:
        assert det.route == "parser"
    dot = tmp_path / "net.dot"
    with armvww.Detector("vww2", backend="CpuRef", options=ArmNNOptions(dot_file=str(dot))) as det:
        assert det.route == "delegate"
        assert det.session_info["delegate_options"]["serialize-to-dot"] == str(dot)
    text = dot.read_text()
    assert "BackendID : CpuRef" in text and "LayerName" in text


def test_pure_armnn_and_the_option_keys() -> None:
    _both_routes("CpuRef")
    opts = ArmNNOptions(route="delegate", pure_armnn=True, cpu_threads=1, log_severity="error")
    with armvww.Detector("vww2", backend="CpuRef", options=opts) as det:
        d = det.session_info["delegate_options"]
        assert d["disable-tflite-runtime-fallback"] == "true"
        assert d["number-of-threads"] == "1" and d["logging-severity"] == "error"
        assert det.session_info["placement"]["litert_nodes"] == 0
    keys = backends.availability("CpuRef").details["routes"]["delegate"]["option_keys"]
    assert set(armnn_delegate.KEYS) <= set(keys), keys  # 23.08 knows every key armvww maps


def test_profiling_is_refused_on_the_delegate_route() -> None:
    _both_routes("CpuRef")
    with pytest.raises(OptionError, match="parser-route option"):
        armvww.Detector(
            "vww2", backend="CpuRef", options=ArmNNOptions(route="delegate", profiling=True)
        )


def test_later_runtime_options_are_refused_not_ignored() -> None:
    """The first delegate of this process made Arm NN's runtime without GPU runtime options;
    a Detector asking for GPU kernel profiling later would be silently ignored by Arm NN."""
    _both_routes("CpuRef")
    with armvww.Detector("vww2", backend="CpuRef", options=DELEGATE):
        pass
    asking = ArmNNOptions(route="delegate", gpu_kernel_profiling=True)
    with pytest.raises(OptionError, match="process-wide"):
        armvww.Detector("vww2", backend="CpuRef", options=asking)


def test_detector_cycles_do_not_load_new_networks() -> None:
    """23.08's delegate never unloads a network (~0.6 MB per interpreter): closed Detectors
    leave their interpreter for the next one of the same model and options. RSS figures are
    in benchmarks/delegate_leak.py; here the mechanism: 1,000 create/close cycles load one
    network."""
    _both_routes("CpuRef")
    cycles = 30 if EMULATED else 1000
    model = store.load_model("vww2")
    q = np.zeros(model.input.shape, np.int8)
    with armvww.Detector(model, backend="CpuRef", options=DELEGATE) as det:
        first = det.run(q)
    before = dict(armnn_delegate.stats)
    rss0 = _rss_mb()
    for _ in range(cycles):
        with armvww.Detector(model, backend="CpuRef", options=DELEGATE) as det:
            assert np.array_equal(det.run(q), first)
            assert det.session_info["interpreter"].startswith("reused")
    grown = _rss_mb() - rss0
    assert armnn_delegate.stats["created"] == before.get("created", 0)
    assert armnn_delegate.stats["reused"] - before.get("reused", 0) == cycles
    report_line(f"delegate: {cycles} Detector create/close cycles, RSS {grown:+.2f} MB")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_cli_backends_parity_and_bench_put_both_routes_side_by_side(tmp_path: Path) -> None:
    _both_routes("CpuRef")
    run = [sys.executable, "-m", "armvww"]
    rows = {
        r["backend"]: r
        for r in map(
            json.loads,
            subprocess.run(
                [*run, "backends", "--json"], capture_output=True, text=True, check=True
            ).stdout.splitlines(),
        )
    }
    routes = rows["CpuRef"]["details"]["routes"]
    assert routes["parser"]["available"] and routes["delegate"]["available"]
    assert routes["delegate"]["library"] == str(_LOC.path)
    text = subprocess.run([*run, "backends"], capture_output=True, text=True, check=True).stdout
    assert "route=delegate" in text and "route=parser" in text
    par = subprocess.run(
        [
            *run,
            "parity",
            "--reference",
            "CpuRef:route=parser",
            "-b",
            "CpuRef:route=delegate",
            "-n",
            N_CLI,
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert par.returncode == 0, par.stderr[-2000:]
    (res,) = json.loads(par.stdout)["results"]
    assert res["backend"] == "CpuRef:route=delegate" and res["max_abs_lsb"] == 0, res
    bench = subprocess.run(
        [
            *run,
            "bench",
            "-b",
            "LiteRT",
            "-b",
            "CpuRef:route=parser",
            "-b",
            "CpuRef:route=delegate",
            "-n",
            N_CLI,
            "--warmup",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    results = {r["backend"]: r for r in json.loads(bench.stdout)["results"]}
    assert results["CpuRef:route=parser"]["session_info"]["route"] == "parser"
    assert results["CpuRef:route=delegate"]["session_info"]["route"] == "delegate"


def test_fastest_measures_each_route() -> None:
    _both_routes("CpuRef")
    from armvww import select

    model = store.load_model("vww2")
    choice = select.fastest_choice(model, refresh=True)
    assert {"CpuRef:route=parser", "CpuRef:route=delegate"} <= set(choice.order), choice
    report_line(f"fastest on vww2: {choice.explain()}")
    with armvww.Detector(model, backend="fastest") as det:
        name, route = select.split_route(choice.order[0])
        assert det.backend == name and det.route == (route or "")


_EXIT_SCRIPT = """
import numpy as np
import armvww
from armvww.backends.armnn import ArmNNOptions
with armvww.Detector("vww2", backend="CpuRef", options=ArmNNOptions(route="delegate")) as d:
    d.run(np.zeros(d.model.input.shape, np.int8))
left_open = armvww.Detector(
    "vww2", backend="CpuRef", options=ArmNNOptions(route="delegate", log_severity="error")
)
left_open.run(np.zeros(left_open.model.input.shape, np.int8))


def dropped():  # a Detector that goes out of scope unclosed (collected: never closed)
    d = armvww.Detector("vww2", backend="CpuRef", options=ArmNNOptions(route="delegate"))
    d.run(np.zeros(d.model.input.shape, np.int8))


dropped()
print("end of script")
"""


def test_exit_destroys_the_delegates_cleanly() -> None:
    """At exit, the pooled interpreter of a closed Detector, a Detector left open and one
    dropped unclosed (out of scope) release their delegates before Python tears its modules
    down: no "Exception ignored in
    Delegate.__del__" (LiteRT's finalizer finding its ``ctypes`` gone) and exit status 0."""
    _both_routes("CpuRef")
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("end of script"), proc.stdout
    assert "Exception ignored" not in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
