"""GpuAcc on one small model of armvww's own making with all six VWW operator types, through
both Arm NN routes (PyArmNN parser, TfLite delegate), against LiteRT.

Runs inside the GpuAcc lane (``tools/gpuacc_lane.sh``; ``tests/trees/test_gpuacc_every_run.py``
starts it from the host), and unchanged on a Mali board (``ARMVWW_GPUACC_LANE=mali``).
On PoCL it is a FUNCTIONAL check of GpuAcc's code path and numerics (Arm Compute Library's
OpenCL kernels on an emulated arm64 CPU), not of Mali speed. The model is
:func:`armvww.model.tflite_build.vww_ops_model`: wired like MicroNet (channel PAD into a
residual ADD, a global AVERAGE_POOL_2D), so its kernels are the VWW models' kernels at a
fraction of their compile cost under qemu.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import armvww
from armvww import backends
from armvww.analysis import parity
from armvww.backends.armnn import ArmNNOptions
from armvww.model import tflite_build
from armvww.model.store import load_model

from ..conftest import report_line

LANE = os.environ.get("ARMVWW_GPUACC_LANE", "")
pytestmark = [
    pytest.mark.gpuacc,
    pytest.mark.optional,
    pytest.mark.skipif(not LANE, reason="GpuAcc lane only (tools/gpuacc_lane.sh)"),
]

#: Inputs: generated image-like inputs plus fixed extremes and the zero point.
N_GENERATED = 20
#: Measured on PoCL (docs/gpuacc-pocl.md): GpuAcc within 1 LSB of LiteRT on this model on
#: both routes; the bound keeps the test suite's margin (tests/bounds.py: +3), far inside
#: the 32 LSB contract users get.
BOUND_LSB = 1 + 3


@pytest.fixture(scope="module")
def case() -> tuple[bytes, list[np.ndarray], np.ndarray, float]:
    data = tflite_build.vww_ops_model()
    model = load_model(data)
    want_ops = dict.fromkeys((*tflite_build.VWW_OP_TYPES, "FULLY_CONNECTED"), 1)
    assert model.op_counts == want_ops, model.op_counts
    qs = parity.generated_inputs(model, N_GENERATED, seed=7)
    qs += [np.full(model.input.shape, v, np.int8) for v in (-128, model.input.zero_point, 127)]
    with armvww.Detector(data, backend="LiteRT") as ref:
        want = parity.stack([ref.run(q) for q in qs])
    return data, qs, want, float(model.output.scale)


def _check(label: str, got: np.ndarray, want: np.ndarray, scale: float, extra: str) -> None:
    st = parity.compare(label, got, want, scale)
    report_line(
        f"{label} ({LANE}), VWW operator set vs LiteRT ({len(got)} inputs): max |d| "
        f"{st.max_abs_lsb} LSB, exact {st.exact_share:.1%}, argmax {st.argmax_agreement:.1%}; "
        + extra
    )
    assert st.ok, st.as_dict()  # the contract
    assert st.max_abs_lsb <= BOUND_LSB, st.as_dict()  # what was measured, + margin


def test_parser_route(case: tuple[bytes, list[np.ndarray], np.ndarray, float]) -> None:
    data, qs, want, scale = case
    t = time.perf_counter()
    av = backends.availability("GpuAcc")
    probe_s = time.perf_counter() - t
    assert av.available, f"GpuAcc should work in the {LANE} lane: {av.reason}"
    t = time.perf_counter()
    with armvww.Detector(data, backend="GpuAcc", options=ArmNNOptions(route="parser")) as det:
        open_s = time.perf_counter() - t
        assert det.route == "parser"
        info = det.session_info
        got = parity.stack([det.run(q) for q in qs])
    placement = info["placement"]
    assert placement == {"GpuAcc": sum(placement.values())}, placement
    _check(
        "GpuAcc parser route",
        got,
        want,
        scale,
        f"placement {placement}; probe {probe_s:.1f} s, open {open_s:.1f} s",
    )


def test_delegate_route(case: tuple[bytes, list[np.ndarray], np.ndarray, float]) -> None:
    """The delegate route with Arm NN only (no LiteRT fallback): one DELEGATE node, every
    Arm NN layer on GpuAcc."""
    data, qs, want, scale = case
    av = backends.availability("GpuAcc")
    route = av.details.get("routes", {}).get("delegate", {})
    assert route.get("available"), f"GpuAcc's delegate route should work in {LANE}: {route}"
    t = time.perf_counter()
    opts = ArmNNOptions(route="delegate", pure_armnn=True)
    with armvww.Detector(data, backend="GpuAcc", options=opts) as det:
        open_s = time.perf_counter() - t
        assert det.route == "delegate"
        info = det.session_info
        got = parity.stack([det.run(q) for q in qs])
    assert info["placement"] == {"armnn_nodes": 7, "litert_nodes": 0, "delegate_nodes": 1}, info
    assert set(info["armnn_placement"]) == {"GpuAcc"}, info["armnn_placement"]
    _check(
        "GpuAcc delegate route",
        got,
        want,
        scale,
        f"placement {info['placement']} {info['armnn_placement']}; open {open_s:.1f} s "
        f"({info['library']}, {info['armnn_version']})",
    )
