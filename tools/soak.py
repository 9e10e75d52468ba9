#!/usr/bin/env python3
"""Soak: 1,000,000 LiteRT inferences with resident memory sampled, then 1,000 Detector
create/close cycles. Every answer is checked against the first answer for its input.

Resident memory (``VmRSS`` of /proc/self/status) is sampled every ``--sample`` calls; the
baseline is taken after ``--warmup`` calls. The run passes when growth after warm-up stays
under ``--limit-mb`` (5 MB) for the inferences and for the create/close cycles, open file
descriptors and threads return to their baseline, and no answer changed.

    python tools/soak.py                  # the full run (about 10 minutes on 2 cores)
    python tools/soak.py --quick          # 20,000 inferences, 100 cycles
    python tools/soak.py --json           # summary as JSON
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import armvww  # noqa: E402
from tests.reliability import workload  # noqa: E402

SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
VWW2 = SHARED / "models" / "vww2_50_50_INT8.tflite"


def rss_mb() -> float:
    """Resident set size of this process, in MB (from /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def soak_inferences(
    det: armvww.Detector, total: int, warmup: int, every: int, log: bool
) -> dict[str, Any]:
    items = workload.make_items(det, 32)
    ref = [workload.call(det, it) for it in items]
    tensors = [(k, it) for k, it in enumerate(items) if it[0] == "run"]
    pictures = [(k, it) for k, it in enumerate(items) if it[0] == "detect"]
    samples: list[tuple[int, float]] = []
    base = None
    mismatches = 0
    t0 = time.monotonic()
    for i in range(total):
        # 1 call in 100 goes through decode + preprocess; the rest are plain inferences
        k, it = pictures[i % len(pictures)] if i % 100 == 0 else tensors[i % len(tensors)]
        if workload.call(det, it) != ref[k]:
            mismatches += 1
        n = i + 1
        if n == warmup:
            gc.collect()
            base = rss_mb()
            samples.append((n, base))
        elif n % every == 0 or n == total:
            samples.append((n, rss_mb()))
            if log and n % (every * 10) == 0:
                print(
                    f"  {n} inferences, RSS {samples[-1][1]:.1f} MB, {time.monotonic() - t0:.0f} s",
                    file=sys.stderr,
                )
    gc.collect()
    final = rss_mb()
    assert base is not None
    after = [r for n, r in samples if n >= warmup]
    return {
        "inferences": total,
        "warmup": warmup,
        "rss_baseline_mb": round(base, 2),
        "rss_final_mb": round(final, 2),
        "rss_max_mb": round(max(after), 2),
        "growth_mb": round(final - base, 2),
        "max_growth_mb": round(max(after) - base, 2),
        "mismatches": mismatches,
        "seconds": round(time.monotonic() - t0, 1),
        "samples": len(samples),
    }


def soak_detectors(model: bytes, cycles: int, warmup: int) -> dict[str, Any]:
    import numpy as np

    q = None
    want = None
    base = base_fds = base_threads = 0.0
    t0 = time.monotonic()
    for i in range(cycles):
        det = armvww.Detector(model, backend="LiteRT")
        if q is None:
            q = np.zeros(det.input_shape, np.int8)
            want = det.run(q).tobytes()
        assert det.run(q).tobytes() == want
        det.close()
        del det
        if i + 1 == warmup:
            gc.collect()
            base, base_fds, base_threads = rss_mb(), fds(), threading.active_count()
    gc.collect()
    final = rss_mb()
    return {
        "cycles": cycles,
        "warmup": warmup,
        "rss_baseline_mb": round(base, 2),
        "rss_final_mb": round(final, 2),
        "growth_mb": round(final - base, 2),
        "fds_before": int(base_fds),
        "fds_after": fds(),
        "threads_before": int(base_threads),
        "threads_after": threading.active_count(),
        "seconds": round(time.monotonic() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,000 inferences, 100 cycles")
    ap.add_argument("--inferences", type=int, default=1_000_000)
    ap.add_argument("--cycles", type=int, default=1_000)
    ap.add_argument("--warmup", type=int, default=20_000, help="inferences before the baseline")
    ap.add_argument("--sample", type=int, default=10_000, help="sample RSS every N inferences")
    ap.add_argument("--limit-mb", type=float, default=5.0)
    ap.add_argument("--model", default=str(VWW2))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.inferences, args.cycles, args.warmup, args.sample = 20_000, 100, 2_000, 1_000
    model = Path(args.model).read_bytes()

    with armvww.Detector(model, backend="LiteRT") as det:
        runtime = det.runtime
        inf = soak_inferences(det, args.inferences, args.warmup, args.sample, not args.json)
    cyc = soak_detectors(model, args.cycles, warmup=max(args.cycles // 20, 10))
    ok = (
        inf["growth_mb"] < args.limit_mb
        and inf["max_growth_mb"] < args.limit_mb
        and inf["mismatches"] == 0
        and cyc["growth_mb"] < args.limit_mb
        and cyc["fds_after"] <= cyc["fds_before"]
        and cyc["threads_after"] <= cyc["threads_before"]
    )
    summary = {
        "runtime": runtime,
        "inferences": inf,
        "detectors": cyc,
        "limit_mb": args.limit_mb,
        "ok": ok,
    }
    print(json.dumps(summary, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
