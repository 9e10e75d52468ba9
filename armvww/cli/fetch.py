"""``armvww fetch``: download a known model from ML-zoo (the only network use)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..model import manifest, store
from .common import EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest else None
    path = store.fetch(args.name, dest)
    print(path)
    return EXIT_OK


def add_subcommand(subparsers: Any) -> None:
    """Add ``fetch`` to the CLI's subparsers (sets ``func``)."""
    f = subparsers.add_parser(
        "fetch", help="download a known model from ML-zoo (the only network use)"
    )
    f.add_argument("name", choices=sorted(manifest.KNOWN_MODELS))
    f.add_argument("--dest", help=f"folder (default: {store.cache_dir()})")
    f.set_defaults(func=cmd_fetch)
