"""``armvww fetch``: download known models or the sample photos, verified (the only network
use)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import samples
from ..model import store
from .common import EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest else None
    for name in args.names:
        if args.list:
            for d in samples.planned(name, dest):
                print(f"{d.url}  {d.size} bytes  SHA-1 {d.sha1}  -> {d.dest}")
        else:
            print(samples.fetch_named(name, dest))
    return EXIT_OK


def add_subcommand(subparsers: Any) -> None:
    """Add ``fetch`` to the CLI's subparsers (sets ``func``)."""
    f = subparsers.add_parser(
        "fetch",
        help="download a known model or the sample photos, verified (the only network use)",
        description="Download known models (from ML-zoo) or the sample photos (samples: 13 "
        "labelled photos from pinned GitHub commits), each verified by size and SHA-1, into "
        f"the user cache ({store.cache_root()}). Prints where they are. A verified copy is "
        "reused without network. $ARMVWW_FETCH_BASE replaces the URLs with a mirror laid out "
        "like the shared folder (<base>/models/FILE, <base>/data/vww_samples/PATH).",
    )
    f.add_argument(
        "names",
        nargs="+",
        choices=samples.FETCH_NAMES,
        metavar="NAME",
        help=f"one or more of: {', '.join(samples.FETCH_NAMES)}",
    )
    f.add_argument("--dest", help="folder (default: the user cache)")
    f.add_argument(
        "--list",
        action="store_true",
        help="only list URL, size, SHA-1 and destination of each file (no network)",
    )
    f.set_defaults(func=cmd_fetch)
