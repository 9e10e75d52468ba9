#!/usr/bin/env python3
"""Fuzz image decoding and preprocessing with damaged images of every supported format.

Seeds are small images made with Pillow (PNG, JPEG, BMP, GIF, TIFF, WebP, PPM in modes 1, L,
LA, P, RGB, RGBA, CMYK, I;16, F, with EXIF orientation), plus fixed hostile cases
(decompression bombs, 0-pixel and 1-pixel images, every EXIF orientation). Each case goes,
in a child process with a 3 GB address-space limit, through
:meth:`armvww.Detector.quantize` and :meth:`~armvww.Detector.run` on vww2 (LiteRT).

    python tools/fuzz_images.py                 # 10,000 cases
    python tools/fuzz_images.py --cases 500 --seed 3

Prints the counts valid / typed error / untyped error / crash / timeout and every failure
with its case id. Exit status 0 only when there were no untyped errors, crashes or timeouts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.reliability import fuzzlib  # noqa: E402

SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
VWW2 = SHARED / "models" / "vww2_50_50_INT8.tflite"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--replay", help="run only the case with this id prefix (png-L#1:17)")
    ap.add_argument("--dump", help="with --replay: write the mutated bytes here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not VWW2.is_file():
        print(f"{VWW2} is absent (set ARMVWW_SHARED)", file=sys.stderr)
        return 2

    special = fuzzlib.special_images()
    n_mut = max(args.cases - len(special), 0)
    cases: Iterable[tuple[str, bytes]] = itertools.chain(
        special, fuzzlib.image_cases(fuzzlib.image_seeds(), n_mut, args.seed)
    )
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
        fmt = r.case.split("#")[0].split("-")[0]
        if r.outcome == "typed":
            kinds[f"{fmt}: typed {r.detail['stage']} {r.detail['error']}"] += 1
        else:
            kinds[f"{fmt}: {r.outcome}"] += 1
        if done[0] % 1000 == 0:
            print(f"  {done[0]} cases, {time.monotonic() - start:.0f} s", file=sys.stderr)

    counts, failures = fuzzlib.run_cases(
        cases,
        "image",
        workers=args.workers,
        timeout=args.timeout,
        model=str(VWW2),
        on_result=progress,
        stderr_path=os.devnull,
    )
    elapsed = time.monotonic() - start
    summary = {
        "cases": sum(counts.values()),
        "seed": args.seed,
        **{o: counts[o] for o in fuzzlib.OUTCOMES},
        "seconds": round(elapsed, 1),
        "breakdown": dict(sorted(kinds.items())),
        "failures": [{"case": f.case, "outcome": f.outcome, **f.detail} for f in failures],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"image fuzz: {summary['cases']} cases (seed {args.seed}) in {elapsed:.0f} s")
        for o in fuzzlib.OUTCOMES:
            print(f"  {o:<8} {counts[o]}")
        print("  breakdown:")
        for k, v in sorted(kinds.items()):
            print(f"    {v:>6}  {k}")
        for f in failures:
            print(f"FAILURE {f.outcome}: {f.case}\n  {json.dumps(f.detail)[:3000]}")
    bad = counts["untyped"] + counts["crash"] + counts["timeout"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
