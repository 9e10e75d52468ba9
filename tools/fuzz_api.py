#!/usr/bin/env python3
"""Fuzz the public API, file kinds and environment variables (issue 14's classes).

Each case, in a child process with a time limit (a hang is a failure), is one of: a
``Detector(...)`` with hostile arguments (wrong types, NaN/inf/huge numbers, NUL paths,
FIFOs, ``/dev/zero``, symlink loops, long names, a file named like vww2 holding vww4);
``detect``/``detect_many`` over hostile items (FIFOs, devices, folders with link loops,
non-UTF-8 and newline names, EPS bytes, a JPEG cut short, arrays of the wrong dtype) given as
a list, a single item, a generator, or a generator that raises (a result count that is not
the input count is a LOST item, counted as untyped); environment variables
(``ARMVWW_MODEL``, ``ARMVWW_MODEL_DIR``, ``ARMVWW_PROBE_TIMEOUT``, ``XDG_CACHE_HOME``) set to
hostile values; ``LiteRTOptions(threads=...)``.

    python tools/fuzz_api.py                 # 10,000 cases
    python tools/fuzz_api.py --cases 500 --seed 3

Exit status 0 only when there were no untyped errors (lost items included), crashes or
timeouts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.reliability import fuzzlib  # noqa: E402

SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
VWW2 = SHARED / "models" / "vww2_50_50_INT8.tflite"


def _cases(args: argparse.Namespace) -> Iterable[tuple[str, bytes]] | None:
    if not VWW2.is_file():
        print(f"{VWW2} is absent (set ARMVWW_SHARED)", file=sys.stderr)
        return None
    return fuzzlib.api_cases(args.cases, args.seed, args.start)


def _bucket(r: fuzzlib.Result) -> str:
    kind = r.case.split('"kind": "')[1].split('"')[0] if '"kind": "' in r.case else "?"
    if r.outcome == "typed":
        return f"{kind}: typed {r.detail.get('error')}"
    if r.outcome == "untyped":
        return f"{kind}: untyped {r.detail.get('error')}"
    return f"{kind}: {r.outcome}"


def main() -> int:
    return fuzzlib.fuzz_cli("api", __doc__ or "", "api#1:17", _cases, _bucket, str(VWW2))


if __name__ == "__main__":
    sys.exit(main())
