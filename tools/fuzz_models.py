#!/usr/bin/env python3
"""Fuzz the model loader and every available backend with mutations of the real VWW models.

Each case is a seeded, reproducible mutation of vww2 or vww4 (structural fields rewritten with
hostile values, huge dimensions, wrong tensor types, truncation, splices, bit flips...). A
child process (see ``tests/reliability/fuzzlib.py``) feeds it to :func:`armvww.parse_model`
and, when it is valid, to every available backend through :class:`armvww.Detector`. The child
has a 3 GB address-space limit; a signal is a crash; a case that takes longer than
``--timeout`` is killed and counted as a timeout.

    python tools/fuzz_models.py                 # 10,000 cases
    python tools/fuzz_models.py --cases 500 --seed 7

Prints the counts valid / typed error / untyped error / crash / timeout, and every failure
with its case id (``vww2#<seed>:<i> <mutation>``) for reproduction: ``--replay ID`` reruns
one case and writes its bytes with ``--dump FILE``. Exit status 0 only when there were no
untyped errors, crashes or timeouts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.reliability import fuzzlib  # noqa: E402

SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
MODELS = {
    "vww2": SHARED / "models" / "vww2_50_50_INT8.tflite",
    "vww4": SHARED / "models" / "vww4_128_128_INT8.tflite",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--replay", help="run only the case with this id prefix (vww2#1:17)")
    ap.add_argument("--dump", help="with --replay: write the mutated bytes here")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()

    models = [(n, p.read_bytes()) for n, p in MODELS.items() if p.is_file()]
    if not models:
        print(f"no models under {SHARED / 'models'} (set ARMVWW_SHARED)", file=sys.stderr)
        return 2
    cases = fuzzlib.model_cases(models, args.cases, args.seed)
    if args.replay:
        found = [(c, d) for c, d in cases if c.split(" ")[0] == args.replay]
        if not found:
            print(f"no case {args.replay}", file=sys.stderr)
            return 2
        if args.dump:
            Path(args.dump).write_bytes(found[0][1])
        cases = iter(found)

    start = time.monotonic()
    kinds: Counter[str] = Counter()
    done = [0]

    def progress(r: fuzzlib.Result) -> None:
        done[0] += 1
        if r.outcome == "valid":
            kinds["valid: " + ", ".join(f"{k}={v}" for k, v in r.detail["backends"].items())] += 1
        elif r.outcome == "typed":
            kinds[f"typed: {r.detail['stage']} {r.detail['error']}"] += 1
        if done[0] % 1000 == 0:
            print(f"  {done[0]} cases, {time.monotonic() - start:.0f} s", file=sys.stderr)

    counts, failures = fuzzlib.run_cases(
        cases,
        "model",
        workers=args.workers,
        timeout=args.timeout,
        on_result=progress,
        stderr_path=os.devnull,
    )
    elapsed = time.monotonic() - start
    summary = {
        "cases": sum(counts.values()),
        "seed": args.seed,
        **{o: counts[o] for o in fuzzlib.OUTCOMES},
        "seconds": round(elapsed, 1),
        "breakdown": dict(kinds.most_common()),
        "failures": [{"case": f.case, "outcome": f.outcome, **f.detail} for f in failures],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"model fuzz: {summary['cases']} cases (seed {args.seed}) in {elapsed:.0f} s")
        for o in fuzzlib.OUTCOMES:
            print(f"  {o:<8} {counts[o]}")
        print("  breakdown:")
        for k, v in kinds.most_common():
            print(f"    {v:>6}  {k}")
        for f in failures:
            print(f"FAILURE {f.outcome}: {f.case}\n  {json.dumps(f.detail)[:3000]}")
    bad = counts["untyped"] + counts["crash"] + counts["timeout"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
