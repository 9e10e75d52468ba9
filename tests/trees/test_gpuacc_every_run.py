"""GpuAcc on PoCL with one small model of armvww's own making (all six VWW operator types,
wired like MicroNet), on both Arm NN routes (PyArmNN parser, the project's cross-built TfLite
delegate), against LiteRT. Runs ``tests/gpuacc/test_gpuacc_every_run.py`` inside the lane
(``tools/gpuacc_lane.sh``: trixie arm64 tree + PoCL + armvww's OpenCL shim, under qemu).

The delegate is the one in armvww:gpuacc-pocl (FROM armvww:arm64: its cross-compiled build
stage) or the project's build in ``.cache/armnn-delegate/arm64``; PoCL's compiled kernels are kept
in ``$ARMVWW_POCL_CACHE_DIR`` (default ``.cache/pocl-kernels``), so a second run skips the
compiles. A functional check of GpuAcc, not of Mali speed. Part of every ``make test`` (its
own job, ``make test-gpuacc-small``; strict in CI: it must pass, never skip as root); its
cold cost: README ("GpuAcc on PoCL").
"""

from __future__ import annotations

import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..conftest import REPO, report_line

pytestmark = [
    pytest.mark.trees,
    pytest.mark.gpuacc,
    pytest.mark.slow,
]

EXPECTED = {"test_parser_route", "test_delegate_route"}
#: PoCL builds ACL's kernels without LLVM's optimisations in this job: a cold run takes about
#: a fifth less CPU, with the same parity figures as the optimised build (max 1 LSB, 93.5%
#: exact; docs/gpuacc-pocl.md; a check of GpuAcc's code path and numerics, not of speed). The
#: opt-in vww2/vww4 lane keeps PoCL's defaults.
POCL_FLAGS = "-cl-opt-disable"


def test_gpuacc_small_model_both_routes(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the GpuAcc lane needs root (image builds, podman, binfmt_misc)")
    built = time.monotonic()
    kernels = Path(os.environ.get("ARMVWW_POCL_CACHE_DIR", REPO / ".cache" / "pocl-kernels"))
    cache_state = "warm" if kernels.is_dir() and any(kernels.iterdir()) else "cold"
    report = tmp_path / "gpuacc.txt"
    junit = tmp_path / "gpuacc.xml"
    cmd = [
        "sh",
        str(REPO / "tools" / "gpuacc_lane.sh"),
        "--bind",
        str(tmp_path),
        "--env",
        f"ARMVWW_REPORT_FILE={report}",
        "--env",
        f"POCL_EXTRA_BUILD_FLAGS={POCL_FLAGS}",
        "--",
        "python",
        "-m",
        "pytest",
        "tests/gpuacc/test_gpuacc_every_run.py",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-o",
        "addopts=-ra",
    ]
    env = dict(os.environ, ARMVWW_POCL_CACHE_DIR=str(kernels))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    if report.exists():
        for line in report.read_text().splitlines():
            report_line(f"[gpuacc-pocl small model] {line}")
    report_line(
        f"[gpuacc-pocl small model] lane {time.monotonic() - built:.0f} s (image build when "
        f"stale, probes, both routes; PoCL kernel cache {cache_state})"
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
    passed = {
        c.get("name", "?")
        for c in ET.parse(junit).iter("testcase")
        if not any(k.tag in ("failure", "error", "skipped") for k in c)
    }
    assert passed >= EXPECTED, (passed, tail)
