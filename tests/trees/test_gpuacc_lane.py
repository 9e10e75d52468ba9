"""The opt-in GpuAcc-on-PoCL lane, from the host: `make test-gpuacc` (ARMVWW_GPUACC=1).

It builds the image armvww:gpuacc-pocl (PoCL adds about 600 MB to armvww:arm64) and, with a
cold PoCL kernel cache, spends about 30 minutes of kernel compilation per model under qemu;
the kernel cache (``.cache/pocl-kernels``) makes later runs a few minutes. A functional check
of GpuAcc, not of Mali speed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO, report_line

pytestmark = [
    pytest.mark.gpuacc,
    pytest.mark.slow,
    pytest.mark.optional,
    pytest.mark.skipif(
        os.environ.get("ARMVWW_GPUACC") != "1",
        reason="opt-in lane: set ARMVWW_GPUACC=1 or run `make test-gpuacc` (tens of minutes)",
    ),
]


def test_gpuacc_on_pocl(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the lane needs root (image builds, podman, binfmt_misc)")
    report = tmp_path / "gpuacc.txt"
    cache = REPO / ".cache" / "gpuacc"
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        "sh",
        str(REPO / "tools" / "gpuacc_lane.sh"),
        "--bind",
        str(tmp_path),
        "--bind",
        str(cache),
        "--env",
        f"ARMVWW_REPORT_FILE={report}",
        "--env",
        f"ARMVWW_GPUACC_CACHE={cache}",
        "--",
        "python",
        "-m",
        "pytest",
        "tests/gpuacc",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=-ra",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=4 * 3600)
    if report.exists():
        for line in report.read_text().splitlines():
            report_line(f"[gpuacc-pocl] {line}")
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
    summary = [ln for ln in proc.stdout.splitlines() if " passed" in ln][-1:]
    assert summary and "skipped" not in summary[0] and "failed" not in summary[0], tail
