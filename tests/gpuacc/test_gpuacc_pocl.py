"""GpuAcc for real, on PoCL (the opt-in lane: tools/gpuacc_lane.sh, `make test-gpuacc`).

A FUNCTIONAL check of GpuAcc's code path and numerics (Arm Compute Library's OpenCL kernels)
on an emulated arm64 CPU, not of Mali speed. Outside the lane every test skips; the lane
sets ``ARMVWW_GPUACC_LANE=pocl``. On a Mali board, set ``ARMVWW_GPUACC_LANE=mali`` and these
tests check the real GPU the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import armvww
from armvww import backends
from armvww.analysis import parity
from armvww.backends import armnn
from armvww.model import store

from ..conftest import report_line

LANE = os.environ.get("ARMVWW_GPUACC_LANE", "")
pytestmark = [
    pytest.mark.gpuacc,
    pytest.mark.optional,
    pytest.mark.skipif(
        not LANE, reason="GpuAcc lane only (tools/gpuacc_lane.sh, make test-gpuacc)"
    ),
]


def _gpuacc() -> None:
    av = backends.availability("GpuAcc")
    assert av.available, f"GpuAcc should work in the {LANE} lane: {av.reason}"


def test_gpuacc_parity_vww2(samples) -> None:
    _gpuacc()
    model = store.load_model("vww2")
    n = int(os.environ.get("ARMVWW_GPUACC_INPUTS", "20"))
    with armvww.Detector(model, backend="LiteRT") as ref:
        qs = parity.generated_inputs(model, n, seed=1) + [ref.quantize(p) for p, _ in samples]
        want = parity.stack([ref.run(q) for q in qs])
    with armvww.Detector(model, backend="GpuAcc") as det:
        info = det.session_info
        got = parity.stack([det.run(q) for q in qs])
    placement = info["placement"]
    assert placement == {"GpuAcc": sum(placement.values())}, placement
    st = parity.compare("GpuAcc", got, want, model.output.scale)
    report_line(
        f"parity GpuAcc ({LANE}) vww2 vs LiteRT ({len(qs)} inputs): max |d| {st.max_abs_lsb} LSB, "
        f"exact {st.exact_share:.1%}, argmax {st.argmax_agreement:.1%}, flips {len(st.flips)}; "
        f"load {info['load_s']:.1f} s"
    )
    assert st.ok, st.as_dict()


_SECOND = """
import json, sys, time
import armvww
from armvww.backends.armnn import ArmNNOptions
t = time.perf_counter()
d = armvww.Detector("vww2", backend="GpuAcc", options=ArmNNOptions(gpu_cached_network=sys.argv[1]))
print(json.dumps({"open_s": time.perf_counter() - t, "load_s": d.session_info["load_s"],
                  "cached": d.session_info.get("cached_network"),
                  "raw": d.run(__import__("numpy").full((1, 50, 50, 1), -72, "int8")).tolist()}))
"""


def test_gpuacc_cached_network_file(tmp_path: Path) -> None:
    """First load compiles and saves the network; a second process loads it from the file."""
    _gpuacc()
    cache = Path(os.environ.get("ARMVWW_GPUACC_CACHE", tmp_path)) / "vww2.armnn-cl-cache"
    cache.unlink(missing_ok=True)
    opts = armnn.ArmNNOptions(gpu_cached_network=str(cache), gpu_save_cached_network=True)
    with armvww.Detector("vww2", backend="GpuAcc", options=opts) as det:
        first = det.session_info
        import numpy as np

        raw = det.run(np.full((1, 50, 50, 1), -72, np.int8)).tolist()
    assert cache.is_file() and cache.stat().st_size > 0, first.get("cached_network")
    assert [p.name for p in cache.parent.iterdir() if p.name.endswith(".tmp")] == []
    out = subprocess.run(
        [sys.executable, "-c", _SECOND, str(cache)], capture_output=True, text=True, timeout=3600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    second = json.loads(out.stdout.strip().splitlines()[-1])
    assert second["cached"] == f"read {cache}" and second["raw"] == raw
    report_line(
        f"GpuAcc cached network ({LANE}): {cache.stat().st_size} bytes; LoadNetwork "
        f"{first['load_s']:.1f} s compiling and saving, {second['load_s']:.1f} s from the file "
        "in a new process"
    )


def test_gpuacc_tuning_options_are_refused_honestly() -> None:
    _gpuacc()
    p = armnn.probe()
    if p.features.get("runtime_backend_options"):
        pytest.skip("this PyArmNN exposes runtime backend options")
    # the parser route; `auto` takes the delegate for these options when it is there
    opts = armnn.ArmNNOptions(route="parser", gpu_tuning_level=2, gpu_tuning_file="/tmp/tuning.bin")
    with pytest.raises(armvww.OptionError, match="runtime options"):
        armvww.Detector("vww2", backend="GpuAcc", options=opts)
