"""``armvww eval``: parse the arguments, run :func:`armvww.analysis.evaluate.evaluate`,
print the report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..analysis.common import BackendEntry, expand_backends
from ..analysis.evaluate import evaluate, to_text
from ..errors import BackendUnavailableError
from ..labels import read_labelled
from ..model.store import load_model
from .common import add_model_arg, add_progress_arg, add_workers_arg, progress_bar

log = logging.getLogger(__name__)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``armvww eval``. Exit 0; 1 when some images could not be decoded; 16 when a
    backend could not run (or none was available)."""
    model = load_model(args.model)
    items = read_labelled(args.labelled)
    # no reference here: 'all' is every available backend, LiteRT included
    entries, explicit = expand_backends(args.backend or ["all"], BackendEntry("-"))
    with progress_bar(args, machine_readable=args.json) as bar:
        report = evaluate(items, entries, model, args.threshold, bar, args.workers)
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        per_image = args.per_image if args.per_image is not None else len(items) <= 50
        sys.stdout.write(to_text(report, per_image) + "\n")
    ran = [r for r in report["results"] if not r["error"]]
    if not ran or (explicit and len(ran) < len(report["results"])):
        log.error("a backend could not run (see the report)")
        return BackendUnavailableError.exit_code
    return 1 if report["image_errors"] else 0


def add_subcommand(subparsers: Any) -> None:
    """Add ``eval`` to the CLI's subparsers (sets ``func``)."""
    p = subparsers.add_parser(
        "eval",
        help="accuracy, precision, recall, confusion matrix on labelled images, per backend",
        description="Evaluate backends on labelled images: a folder with person/ and "
        "no_person/ subfolders, or a CSV of path,label. Exit 0; 1 some images failed to "
        "decode; 16 a backend could not run.",
    )
    p.add_argument("labelled", help="folder with person/ and no_person/, or a CSV path,label")
    add_model_arg(p)
    p.add_argument(
        "--backend",
        "-b",
        action="append",
        help="backends (Name or Name:key=value), comma-separated or repeated; "
        "'all' (default) = every available one",
    )
    p.add_argument("--threshold", "-t", type=float, default=0.5, help="P(person) threshold")
    p.add_argument(
        "--per-image",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="each image's decisions side by side (default: when there are <= 50 images)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document")
    add_progress_arg(p)
    add_workers_arg(p)
    p.set_defaults(func=cmd_eval)
