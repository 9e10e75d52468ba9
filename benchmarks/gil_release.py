"""Does a backend's inference release the GIL? A counter thread spins while the main thread
runs inferences; its increments per second are compared with those while the main thread
sleeps (GIL free) and while it spins in Python (GIL held), in one run.

    python benchmarks/gil_release.py [-b LiteRT -b CpuRef ...] [--seconds 2]

Two measures: (1) per call, did the counter move at all while the inference ran (a call
that holds the GIL throughout lets it move ~0 times, whatever the load; the control is
``pickle.dumps``, a C call that holds the GIL); (2) share = counter rate during inferences /
counter rate during sleep (confounded by CPU contention on a loaded machine).
Runs anywhere armvww does
(the host, or inside the images: ``tools/images.sh run x86 -- python
benchmarks/gil_release.py -b CpuRef``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from armvww import Detector, machine


def progress_per_call(work: Callable[[], object], calls: int) -> tuple[float, float, float]:
    """Run ``work`` ``calls`` times while a counter thread spins: (share of calls during which
    the counter moved at all, median increments per call, median call seconds). A call that
    holds the GIL throughout lets the counter move ~0 times, whatever the machine's load."""
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    deltas: list[int] = []
    secs: list[float] = []
    try:
        for _ in range(calls):
            c0, t0 = count, time.perf_counter()
            work()
            secs.append(time.perf_counter() - t0)
            deltas.append(count - c0)
    finally:
        stop.set()
        t.join()
    moved = sum(1 for d in deltas if d > 0) / len(deltas)
    return moved, statistics.median(deltas), statistics.median(secs)


def counter_rate(work: Callable[[], object], seconds: float) -> tuple[float, int]:
    """(counter increments per second while ``work`` runs for ``seconds``, work calls)."""
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    calls = 0
    t0 = time.perf_counter()
    t.start()
    while time.perf_counter() - t0 < seconds:
        work()
        calls += 1
    stop.set()
    t.join()
    return count / (time.perf_counter() - t0), calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-b", "--backend", action="append", default=None)
    ap.add_argument("--model", default="vww2")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    sys.setswitchinterval(0.0005)  # hand the GIL over quickly, so holding shows
    rows = []
    for name in args.backend or ["LiteRT"]:
        with Detector(args.model, backend=name) as det:
            q = np.zeros(det.input_shape, np.int8)
            det.run(q)
            t0 = time.perf_counter()
            n = 0
            while time.perf_counter() - t0 < 0.5:
                det.run(q)
                n += 1
            infer_s = (time.perf_counter() - t0) / n
            free, _ = counter_rate(lambda s=infer_s: time.sleep(s), args.seconds)
            held, _ = counter_rate(lambda: sum(range(2000)), args.seconds)
            during, calls = counter_rate(lambda d=det, x=q: d.run(x), args.seconds)
            calls = max(5, min(200, int(args.seconds / infer_s)))
            blob = list(range(20_000))
            held_moved, _, _ = progress_per_call(lambda b=blob: pickle.dumps(b), calls)
            moved, per_call, call_s = progress_per_call(lambda d=det, x=q: d.run(x), calls)
            rows.append(
                {
                    "calls_with_counter_progress": round(moved, 3),
                    "median_counter_increments_per_call": per_call,
                    "median_call_us": round(call_s * 1e6, 1),
                    "control_gil_held_calls_with_progress (pickle.dumps)": round(held_moved, 3),
                    "backend": det.backend,
                    "route": getattr(det, "route", ""),
                    "runtime": det.runtime,
                    "emulated": bool(det.session_info.get("emulated")),
                    "infer_us": round(infer_s * 1e6, 1),
                    "inferences": calls,
                    "share_during_inference": round(during / free, 3),
                    "share_python_spin": round(held / free, 3),
                }
            )
    out = {"machine": machine.identity(), "loadavg": machine.loadavg(), "pid": os.getpid()}
    print(json.dumps({**out, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
