"""GpuAcc in every `make test`: the GpuAcc-on-PoCL lane with one small model of armvww's own
making (all six VWW operator types), on both Arm NN routes (PyArmNN parser, TfLite delegate),
against LiteRT. Runs ``tests/gpuacc/test_gpuacc_every_run.py`` inside the lane
(``tools/gpuacc_lane.sh``: trixie arm64 tree + PoCL + armvww's OpenCL shim, under qemu).

The delegate is the project's own build (``tools/armnn_delegate.py build --arch arm64``,
cached in ``.cache/armnn-delegate/arm64``); PoCL's compiled kernels are kept in
``.cache/pocl-kernels`` so a second run skips the compiles. The full vww2/vww4 GpuAcc lane
stays opt-in (``make test-gpuacc``). A functional check of GpuAcc, not of Mali speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..conftest import REPO, SHARED, report_line

pytestmark = [pytest.mark.trees, pytest.mark.gpuacc, pytest.mark.slow]

TREES = Path(os.environ.get("ARMVWW_TREES_DIR", REPO / ".cache" / "trees"))
EXPECTED = {"test_parser_route", "test_delegate_route"}


def test_gpuacc_every_run(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the GpuAcc lane needs root (chroot, binfmt_misc)")
    start = time.monotonic()
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "armnn_delegate.py"), "build", "--arch", "arm64"],
        check=True,
        timeout=3600,
    )
    built = time.monotonic()
    kernels = REPO / ".cache" / "pocl-kernels"
    cache_state = "warm" if kernels.is_dir() and any(kernels.iterdir()) else "cold"
    report = tmp_path / "gpuacc.txt"
    junit = tmp_path / "gpuacc.xml"
    tree = os.environ.get("ARMVWW_POCL_TREE", str(TREES / "trixie-arm64-pocl"))
    cmd = [
        "sh",
        str(REPO / "tools" / "gpuacc_lane.sh"),
        "--tree",
        tree,
        "--bind",
        str(SHARED),
        "--env",
        f"ARMVWW_SHARED={SHARED}",
        "--env",
        f"ARMVWW_REPORT_FILE={report}",
        "--",
        "python3",
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
    env = {k: v for k, v in os.environ.items() if k != "ARMVWW_STRICT"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    if report.exists():
        for line in report.read_text().splitlines():
            report_line(f"[gpuacc-pocl every run] {line}")
    report_line(
        f"[gpuacc-pocl every run] delegate build {built - start:.0f} s, lane "
        f"{time.monotonic() - built:.0f} s (tree, shim, probes, both routes; PoCL kernel cache "
        f"{cache_state})"
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
    passed = {
        c.get("name", "?")
        for c in ET.parse(junit).iter("testcase")
        if not any(k.tag in ("failure", "error", "skipped") for k in c)
    }
    assert passed >= EXPECTED, (passed, tail)
