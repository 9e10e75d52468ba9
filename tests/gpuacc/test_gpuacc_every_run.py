"""GpuAcc in every test run: one small model of armvww's own making with all six VWW operator
types, through GpuAcc on both Arm NN routes, against LiteRT.

Runs inside the GpuAcc lane (``tools/gpuacc_lane.sh``; ``tests/trees/test_gpuacc_every_run.py``
starts it from ``make test``), and unchanged on a Mali board (``ARMVWW_GPUACC_LANE=mali``).
On PoCL it is a FUNCTIONAL check of GpuAcc's code path and numerics (Arm Compute Library's
OpenCL kernels on an emulated arm64 CPU), not of Mali speed. The model is
:func:`armvww.model.tflite_build.vww_ops_model`: each operator type costs one PoCL kernel
compile under qemu, so the cold run stays within minutes, where vww2's takes half an hour.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import armvww
from armvww import backends
from armvww.analysis import parity
from armvww.model import load_model, tflite_build

from ..conftest import REPO, report_line

LANE = os.environ.get("ARMVWW_GPUACC_LANE", "")
pytestmark = [
    pytest.mark.gpuacc,
    pytest.mark.optional,
    pytest.mark.skipif(not LANE, reason="GpuAcc lane only (tools/gpuacc_lane.sh)"),
]

#: Inputs: generated image-like inputs plus fixed extremes.
N_GENERATED = 20


@pytest.fixture(scope="module")
def case() -> tuple[bytes, list[np.ndarray], np.ndarray, float]:
    data = tflite_build.vww_ops_model()
    model = load_model(data)
    assert model.op_counts == dict.fromkeys(tflite_build.VWW_OP_TYPES, 1), model.op_counts
    qs = parity.generated_inputs(model, N_GENERATED, seed=7)
    qs += [np.full((1, 8, 8, 1), v, np.int8) for v in (-128, -72, 127)]
    with armvww.Detector(data, backend="LiteRT") as ref:
        want = parity.stack([ref.run(q) for q in qs])
    return data, qs, want, float(model.output.scale)


def test_parser_route(case: tuple[bytes, list[np.ndarray], np.ndarray, float]) -> None:
    data, qs, want, scale = case
    t = time.perf_counter()
    av = backends.availability("GpuAcc")
    probe_s = time.perf_counter() - t
    assert av.available, f"GpuAcc should work in the {LANE} lane: {av.reason}"
    t = time.perf_counter()
    with armvww.Detector(data, backend="GpuAcc") as det:
        open_s = time.perf_counter() - t
        info = det.session_info
        got = parity.stack([det.run(q) for q in qs])
    placement = info["placement"]
    assert placement == {"GpuAcc": sum(placement.values())}, placement
    st = parity.compare("GpuAcc", got, want, scale)
    report_line(
        f"GpuAcc ({LANE}) parser route, VWW operator set vs LiteRT ({len(qs)} inputs): max |d| "
        f"{st.max_abs_lsb} LSB, exact {st.exact_share:.1%}, argmax {st.argmax_agreement:.1%}; "
        f"placement {placement}; probe {probe_s:.1f} s, open {open_s:.1f} s"
    )
    assert st.ok, st.as_dict()


def _delegate_path() -> Path:
    env = os.environ.get("ARMVWW_ARMNN_DELEGATE")
    p = Path(env) if env else REPO / ".cache" / "armnn-delegate" / "arm64"
    p = p / "libarmnnDelegate.so" if p.is_dir() else p
    if not p.is_file():
        pytest.fail(f"no delegate at {p}: run `python3 tools/armnn_delegate.py build --arch arm64`")
    return p


def test_delegate_route(case: tuple[bytes, list[np.ndarray], np.ndarray, float]) -> None:
    """The delegate route with Arm NN only (no LiteRT fallback): every node on GpuAcc."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    data, qs, want, scale = case
    t = time.perf_counter()
    delegate = load_delegate(
        str(_delegate_path()),
        {
            "backends": "GpuAcc",
            "logging-severity": "warning",
            "disable-tflite-runtime-fallback": "true",
        },
    )
    it = Interpreter(model_content=data, experimental_delegates=[delegate])
    it.allocate_tensors()
    open_s = time.perf_counter() - t
    nodes = Counter(op["op_name"] for op in it._get_ops_details())
    assert nodes == {"DELEGATE": 1}, nodes
    i_in = it.get_input_details()[0]["index"]
    i_out = it.get_output_details()[0]["index"]
    outs = []
    for q in qs:
        it.set_tensor(i_in, q)
        it.invoke()
        outs.append(it.get_tensor(i_out).copy())
    st = parity.compare("GpuAcc (delegate)", parity.stack(outs), want, scale)
    report_line(
        f"GpuAcc ({LANE}) delegate route, VWW operator set vs LiteRT ({len(qs)} inputs): max |d| "
        f"{st.max_abs_lsb} LSB, exact {st.exact_share:.1%}, argmax {st.argmax_agreement:.1%}; "
        f"nodes {dict(nodes)}; interpreter with delegate {open_s:.1f} s"
    )
    assert st.ok, st.as_dict()
