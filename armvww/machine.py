"""Facts about this machine that benchmark records and the ``fastest`` cache key share."""

from __future__ import annotations

import os
import platform
from typing import Any


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "?"


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (2 decimals), or None where there are none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def identity() -> dict[str, Any]:
    """What identifies "this machine" for cached measurements: architecture, CPU, cores."""
    return {"machine": platform.machine(), "cpu": cpu_model(), "cores": usable_cores()}


#: ``mallopt(3)`` parameters, from glibc's ``malloc.h``.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap and are reused, not mapped afresh each time
#: (glibc's largest allowed value on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap up to this size is kept rather than given back.
TRIM_THRESHOLD = 128 << 20


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed image-sized blocks instead of mapping new ones.

    By default glibc maps each block over 128 KB afresh (raising that threshold only as such
    blocks are freed) and gives free heap memory back early, so a new process pays a page
    fault for every page of every decoded image: decoding the benchmark's PNG and JPEG files
    of 96x96 to 1920x1080 took 11.7 ms per file in a fresh process and 9.3 ms with this
    (``benchmarks/pipeline_bench.py``). The cost is memory: up to :data:`TRIM_THRESHOLD`
    of freed heap stays with the process. armvww calls this only in processes it owns (the
    pipeline's workers and the ``armvww`` command), never in a library caller's.

    Returns:
        True if both settings took (glibc), False elsewhere (no ``mallopt``: nothing done).
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
