"""GpuAcc's tuning file and cached network on the delegate route, each across two processes
(the opt-in lane, ``make test-gpuacc``; unchanged on a Mali board).

Runtime options (the tuning level and file) go to the first delegate of a process and the
tuning file is written when that process exits, so every step runs in its own process. The
model is :func:`armvww.model.tflite_build.vww_ops_model` (the six VWW operator types).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO, report_line

LANE = os.environ.get("ARMVWW_GPUACC_LANE", "")
pytestmark = [
    pytest.mark.gpuacc,
    pytest.mark.optional,
    pytest.mark.skipif(not LANE, reason="GpuAcc lane only (tools/gpuacc_lane.sh)"),
]

_STEP = """
import json, sys, time
import numpy as np
import armvww
from armvww.backends.armnn import ArmNNOptions
from armvww.model import tflite_build
opts = ArmNNOptions(route="delegate", pure_armnn=True, **json.loads(sys.argv[1]))
data = tflite_build.vww_ops_model()
t = time.perf_counter()
with armvww.Detector(data, backend="GpuAcc", options=opts) as d:
    open_s = time.perf_counter() - t
    info = d.session_info
    qs = [np.full((1, 8, 8, 1), v, np.int8) for v in (-128, -72, 0, 127)]
    qs.append(np.arange(64, dtype=np.int64).reshape(1, 8, 8, 1).astype(np.int8))
    raw = [d.run(q).tolist() for q in qs]
print(json.dumps({"open_s": open_s, "load_s": info.get("load_s"), "raw": raw,
                  "route": d.route, "cached": info.get("cached_network"),
                  "armnn_placement": info.get("armnn_placement")}))
"""


def _step(**options: object) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _STEP, json.dumps(options)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["route"] == "delegate", result
    assert set(result["armnn_placement"]) == {"GpuAcc"}, result  # type: ignore[arg-type]
    return result


def test_tuning_file_written_then_read(tmp_path: Path) -> None:
    tuning = tmp_path / "gpu-tuning.bin"
    plain = _step()
    tuned = _step(gpu_tuning_level=1, gpu_tuning_file=str(tuning))
    assert tuning.is_file() and tuning.stat().st_size > 0, "level 1 wrote no tuning file"
    written = tuning.read_bytes()
    # Arm Compute Library's CLTuner file: a header naming the tuned parameters (`lws`...),
    # then one `kernel config;x;y;z` line per tuned kernel
    header, *lines = [ln for ln in written.decode().splitlines() if ln.strip()]
    assert header.startswith("lws") and lines, written[:300]
    assert all(ln.count(";") >= 3 for ln in lines), written[:300]
    reread = _step(gpu_tuning_file=str(tuning))
    assert tuning.read_bytes() == written, "reading the tuning file changed it"
    # tuning changes work-group sizes, not arithmetic
    assert tuned["raw"] == plain["raw"] == reread["raw"]
    report_line(
        f"GpuAcc ({LANE}) delegate tuning, VWW operator set: open {plain['open_s']:.1f} s "
        f"untuned, {tuned['open_s']:.1f} s tuning at level 1 (file {len(written)} bytes, "
        f"{len(lines)} kernels, written at exit), {reread['open_s']:.1f} s reading the file "
        "in a new process"
    )


def test_cached_network_on_the_delegate_route(tmp_path: Path) -> None:
    cache = tmp_path / "vww-ops.armnn-cl-cache"
    first = _step(gpu_cached_network=str(cache), gpu_save_cached_network=True)
    assert cache.is_file() and cache.stat().st_size > 0, first["cached"]
    second = _step(gpu_cached_network=str(cache))
    assert second["raw"] == first["raw"]
    assert "read" in str(second["cached"]), second["cached"]
    report_line(
        f"GpuAcc ({LANE}) delegate cached network, VWW operator set: {cache.stat().st_size} "
        f"bytes; open {first['open_s']:.1f} s compiling and saving, {second['open_s']:.1f} s "
        "from the file in a new process"
    )
