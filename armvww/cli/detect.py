"""``armvww detect``: detect people in images (files or directories)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from .. import labels
from ..detector import Detector
from .common import (
    EXIT_ITEM_ERRORS,
    EXIT_OK,
    add_backend_arg,
    add_model_arg,
    add_progress_arg,
    add_workers_arg,
    emit,
    printable,
    progress_bar,
)

log = logging.getLogger("armvww")


def cmd_detect(args: argparse.Namespace) -> int:
    truth, label_files = labels.truth_for(args.images)
    with (
        Detector(args.model, backend=args.backend, threshold=args.threshold) as det,
        progress_bar(args, machine_readable=args.json, total=None) as bar,
    ):
        results = []
        for r in det.iter_detect(args.images, workers=args.workers):
            results.append(r)
            bar.update(1)
            if args.json:  # JSON Lines stream out as they come
                row = r.as_dict()
                known = labels.truth_of(r, truth)
                if known is not None:
                    row["truth"] = labels.NAMES[known]
                emit(row)
        bar.close()
        if not args.json:
            print(f"model {det.model.name}  backend {det.backend}  threshold {det.threshold}")
            for reason in det.fallback:
                print(f"  skipped {reason}")
            names = [printable(labels.short_name(str(r.source), args.images)) for r in results]
            width = max([len(n) for n in names] + [5])
            print(f"{'image':<{width}}  {'truth':<9}  {'result':<9}  {'P(person)':>9}  runtime")
            for name, r in zip(names, results, strict=True):
                known = labels.truth_of(r, truth)
                t = "-" if known is None else labels.NAMES[known]
                if r.error is not None:
                    err = printable(str(r.error))
                    print(f"{name:<{width}}  {t:<9}  {'error':<9}  {'-':>9}  {err}")
                    continue
                mark = "" if known is None or known == int(r.person) else "  <- wrong"
                print(f"{name:<{width}}  {t:<9}  {r.label:<9}  {r.score:>9.3f}  {r.runtime}{mark}")
            if truth:
                where = ", ".join(str(f) for f in label_files)
                print(f"{labels.tally(results, truth).line()}  (truth: {where})")
        failed = sum(1 for r in results if r.error is not None)
        if failed:
            log.error("%d of %d images failed", failed, len(results))
        return EXIT_ITEM_ERRORS if failed else EXIT_OK


def add_subcommand(subparsers: Any) -> None:
    """Add ``detect`` to the CLI's subparsers (sets ``func``)."""
    d = subparsers.add_parser(
        "detect",
        help="detect people in images (files or directories)",
        description="Detect people in images. A labels.csv (path,label) in a folder given, or "
        "beside a file given, adds a truth column and a right/total summary; paths are shown "
        "relative to the folder given.",
    )
    add_model_arg(d)
    add_backend_arg(d)
    d.add_argument(
        "--threshold",
        "-t",
        type=float,
        default=0.5,
        help="person iff P(person) > T; at the default 0.5, the reference's argmax of the int8 "
        "logits (a tie is no person)",
    )
    d.add_argument(
        "--json",
        action="store_true",
        help="JSON Lines: one JSON object per image per line (with the raw int8 logits)",
    )
    add_workers_arg(d)
    add_progress_arg(d)
    d.add_argument("images", nargs="+", help="image files or directories")
    d.set_defaults(func=cmd_detect)
