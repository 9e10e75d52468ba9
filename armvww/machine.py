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
