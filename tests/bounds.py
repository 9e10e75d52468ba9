"""Test bounds for backend parity, from measurements, each with a stated margin.

These are *test* bounds: the largest |delta| at the output logits (in LSB, against LiteRT
with XNNPACK on the same machine) each backend showed on the suite's fixed inputs (seeded
generated inputs + the 13 photos), plus a margin. The inputs are fixed and the kernels are
deterministic, so a correct build reproduces the measured figure; the margin only absorbs
another build of the same library (a different ACL/Arm NN patch release, XNNPACK on another
CPU). A regression of 2x fails.

The *user-facing contract* is separate: ``armvww.analysis.parity.Contract`` (no logit off by
more than 32 LSB, no flip where the reference margin exceeds 16 LSB), documented in
docs/parity.md; it is what ``armvww parity`` enforces for users, and it is deliberately
looser than these bounds.

Measured 2026-11/12 (README "Backend parity", docs/parity.md):

==============================  ====  ====  =================================================
backend                         vww2  vww4  margin
==============================  ====  ====  =================================================
Arm NN CpuRef 23.08 (amd64)     1     3     +1 LSB: reference kernels, integer requantisation
Arm NN CpuAcc 23.08 (arm64)     6     11    +3 LSB: NEON kernels, measured under qemu-user
Arm NN GpuAcc 23.08 (PoCL)      6     11    +3 LSB: OpenCL kernels, PoCL lane only
LiteRT built-in kernels         11    11    +2 LSB: 11/11 on x86, 6/8 on arm64 (one bound)
==============================  ====  ====  =================================================
"""

from __future__ import annotations

MEASURED_LSB: dict[tuple[str, str], int] = {
    ("CpuRef", "vww2"): 1,
    ("CpuRef", "vww4"): 3,
    ("CpuAcc", "vww2"): 6,
    ("CpuAcc", "vww4"): 11,
    ("GpuAcc", "vww2"): 6,
    ("GpuAcc", "vww4"): 11,
    ("LiteRT:xnnpack=False", "vww2"): 11,
    ("LiteRT:xnnpack=False", "vww4"): 11,
}
MARGIN_LSB: dict[str, int] = {"CpuRef": 1, "CpuAcc": 3, "GpuAcc": 3, "LiteRT:xnnpack=False": 2}


def bound_lsb(backend: str, model: str) -> int:
    """The test bound: measured + margin."""
    return MEASURED_LSB[(backend, model)] + MARGIN_LSB[backend]
