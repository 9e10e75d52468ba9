#!/usr/bin/env python3
"""Arm NN's two routes measured in one run: per-invoke overhead against LiteRT, and RSS over
Detector create/close cycles on the delegate route (with and without interpreter reuse).

Run where PyArmNN and a ``libarmnnDelegate.so`` are both usable, e.g. the x86 image::

    tools/images.sh run x86 -- \\
        python benchmarks/delegate_routes.py [--backend CpuRef] [--cycles 1000]

Overhead: ``armvww bench`` on a tiny int8 model of the project's own making (8x8 input, four
ops: a few hundred MACs), where time per invoke is almost all framework overhead, and on vww2.
Each route's p50 is set against LiteRT's built-in kernels (no XNNPACK, the same kernels a
LiteRT-kept node would run) in the same interleaved run.

Leak: Arm NN 23.08's delegate never unloads a network when an interpreter is destroyed
(~0.6 MB each). armvww keeps closed Detectors' interpreters for reuse
(``armnn_delegate.POOL_IDLE_MAX``); the run measures RSS growth over ``--cycles`` cycles with
the pool, then over ``--cycles // 5`` cycles with it disabled (``POOL_IDLE_MAX = 0``), in a
fresh process each. Figures, not assertions: print them and copy them into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_CYCLES = """
import gc, sys, numpy as np, armvww
from armvww.backends import armnn_delegate as ad
from armvww.backends.armnn import ArmNNOptions
from armvww.model import store
ad.POOL_IDLE_MAX = int(sys.argv[1]); n = int(sys.argv[2]); backend = sys.argv[3]
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
m = store.load_model("vww2"); o = ArmNNOptions(route="delegate")
q = np.zeros(m.input.shape, np.int8)
for _ in range(10):
    with armvww.Detector(m, backend=backend, options=o) as d: d.run(q)
gc.collect(); r0 = rss()
for _ in range(n):
    with armvww.Detector(m, backend=backend, options=o) as d: d.run(q)
gc.collect(); r1 = rss()
print(f"{r0:.2f} {r1:.2f} {ad.stats['created']} {ad.stats['reused']}")
"""


def cycles(pool: int, n: int, backend: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CYCLES, str(pool), str(n), backend],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.split()
    r0, r1, created, reused = float(out[0]), float(out[1]), int(out[2]), int(out[3])
    return {
        "cycles": n,
        "rss_before_mb": r0,
        "rss_after_mb": r1,
        "grown_mb": r1 - r0,
        "interpreters_created": created,
        "reused": reused,
    }


def bench(model: str, backend: str, iterations: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "armvww",
        "bench",
        "--model",
        model,
        "-n",
        str(iterations),
        "-b",
        "LiteRT:xnnpack=false",
        "-b",
        "LiteRT",
        "-b",
        f"{backend}:route=parser",
        "-b",
        f"{backend}:route=delegate",
        "--json",
    ]
    report = json.loads(
        subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    )
    return {r["backend"]: r["modes"]["infer"]["p50_us"] for r in report["results"] if r["ran"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="CpuRef")
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--iterations", type=int, default=300)
    args = ap.parse_args()
    from armvww.model import tflite_build as tb

    with tempfile.TemporaryDirectory() as tmp:
        tiny = os.path.join(tmp, "tiny.tflite")
        Path(tiny).write_bytes(tb.tiny_vww_model())
        for name, model in (("tiny 8x8", tiny), ("vww2", "vww2")):
            p50 = bench(model, args.backend, args.iterations)
            ref = p50.get("LiteRT:xnnpack=False")
            print(f"per-invoke p50 on {name} (µs):")
            for k, v in p50.items():
                over = f"  {v - ref:+.1f} µs vs LiteRT built-in" if ref is not None else ""
                print(f"  {k:<28} {v:>10.1f}{over}")
    for pool, n in ((4, args.cycles), (0, max(1, args.cycles // 5))):
        r = cycles(pool, n, args.backend)
        print(
            f"delegate Detector create/close x{n}, interpreter pool {pool}: RSS "
            f"{r['rss_before_mb']:.1f} -> {r['rss_after_mb']:.1f} MB ({r['grown_mb']:+.2f} MB, "
            f"{r['grown_mb'] * 1024 / n:.1f} KB/cycle; {r['interpreters_created']} interpreters"
            f" created, {r['reused']} reused)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
