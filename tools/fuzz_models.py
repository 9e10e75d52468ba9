#!/usr/bin/env python3
"""Fuzz the model loader and every available backend with mutations of the real VWW models.

Each case is a seeded, reproducible mutation of vww2 or vww4 (structural fields rewritten with
hostile values, huge dimensions, wrong tensor types, truncation, splices, bit flips...). A
child process (see ``tests/reliability/fuzzlib.py``) feeds it to :func:`armvww.parse_model`
and, when it is valid, to every available backend through :class:`armvww.Detector` (every
route of a backend that has several: Arm NN's parser and delegate), so Arm NN's vetting of
untrusted models (:mod:`armvww.backends.armnn_vet`) runs as it does for users. The child
has a 3 GB address-space limit; a signal is a crash; a case that takes longer than
``--timeout`` is killed and counted as a timeout.

    python tools/fuzz_models.py                 # 10,000 cases
    python tools/fuzz_models.py --cases 500 --seed 7
    python tools/fuzz_models.py --cases 1000 --start 3000 --seed 7   # one chunk of a run

Prints the counts valid / typed error / untyped error / crash / timeout, and every failure
with its case id (``vww2#<seed>:<i> <mutation>``) for reproduction: ``--replay ID`` reruns
one case and writes its bytes with ``--dump FILE``. Exit status 0 only when there were no
untyped errors, crashes or timeouts.
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
MODELS = {
    "vww2": SHARED / "models" / "vww2_50_50_INT8.tflite",
    "vww4": SHARED / "models" / "vww4_128_128_INT8.tflite",
}


def _cases(args: argparse.Namespace) -> Iterable[tuple[str, bytes]] | None:
    models = [(n, p.read_bytes()) for n, p in MODELS.items() if p.is_file()]
    if not models:
        print(f"no models under {SHARED / 'models'} (set ARMVWW_SHARED)", file=sys.stderr)
        return None
    return fuzzlib.model_cases(models, args.cases, args.seed, args.start)


def _bucket(r: fuzzlib.Result) -> str:
    if r.outcome == "valid":
        return "valid: " + ", ".join(f"{k}={v}" for k, v in r.detail["backends"].items())
    if r.outcome == "typed":
        return f"typed: {r.detail['stage']} {r.detail['error']}"
    return r.outcome


def main() -> int:
    return fuzzlib.fuzz_cli("model", __doc__ or "", "vww2#1:17", _cases, _bucket)


if __name__ == "__main__":
    sys.exit(main())
