#!/usr/bin/env python3
"""One Detector shared by 8 threads for 100,000 calls each, checked against a serial run.

The inputs are a fixed set of distinct pictures (through ``detect``, so decoding and
preprocessing run in parallel) and int8 tensors (through ``run``); their answers are
recorded serially first (twice, and the two serial runs must agree), then every threaded
answer is compared byte for byte. Prints calls, mismatches and errors; exit status 0 only
when there were no mismatches and no errors.

    python tools/stress_threads.py                       # 8 x 100,000 on vww2, LiteRT
    python tools/stress_threads.py --calls 2000 --model vww4 --backend CpuAcc
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import armvww  # noqa: E402
from tests.reliability import workload  # noqa: E402

SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
MODELS = {
    "vww2": SHARED / "models" / "vww2_50_50_INT8.tflite",
    "vww4": SHARED / "models" / "vww4_128_128_INT8.tflite",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--calls", type=int, default=100_000, help="calls per thread")
    ap.add_argument("--model", default="vww2", help="vww2, vww4 or a path")
    ap.add_argument("--backend", default="LiteRT")
    ap.add_argument("--items", type=int, default=32, help="distinct inputs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = MODELS.get(args.model, Path(args.model))
    with armvww.Detector(model, backend=args.backend) as det:
        items = workload.make_items(det, args.items)
        t0 = time.monotonic()
        ref = workload.serial_answers(det, items, passes=2)
        print(
            f"serial: {2 * len(items)} calls, {len(set(ref))} distinct answers "
            f"({time.monotonic() - t0:.1f} s)"
        )
        t0 = time.monotonic()
        tally = workload.hammer(
            det, items, ref, args.threads, args.calls, seed=args.seed, stop_on_error=False
        )
        elapsed = time.monotonic() - t0
    summary = {
        "model": det.model.name,
        "backend": det.backend,
        "runtime": det.runtime,
        "threads": args.threads,
        "calls_per_thread": args.calls,
        "calls_answered": tally.calls,
        "mismatches": tally.mismatches,
        "typed_errors": dict(tally.typed_errors),
        "untyped_errors": len(tally.untyped_errors),
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(summary, indent=2))
    if tally.first_mismatch:
        print("first mismatch:", tally.first_mismatch)
    for e in tally.untyped_errors[:10]:
        print("untyped:", e)
    ok = (
        tally.mismatches == 0
        and not tally.typed_errors
        and not tally.untyped_errors
        and tally.calls == args.threads * args.calls
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
