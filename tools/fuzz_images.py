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
    special = fuzzlib.special_images()
    n_mut = max(args.cases - len(special), 0)
    return itertools.chain(
        special, fuzzlib.image_cases(fuzzlib.image_seeds(), n_mut, args.seed, args.start)
    )


def _bucket(r: fuzzlib.Result) -> str:
    fmt = r.case.split("#")[0].split("-")[0]
    if r.outcome == "typed":
        return f"{fmt}: typed {r.detail['stage']} {r.detail['error']}"
    return f"{fmt}: {r.outcome}"


def main() -> int:
    return fuzzlib.fuzz_cli("image", __doc__ or "", "png-L#1:17", _cases, _bucket, str(VWW2))


if __name__ == "__main__":
    sys.exit(main())
