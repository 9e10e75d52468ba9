"""``armvww backends``: list backends and why any is unavailable."""

from __future__ import annotations

import argparse
from typing import Any

from .. import backends
from .common import EXIT_OK, emit


def cmd_backends(args: argparse.Namespace) -> int:
    rows = backends.available_backends()
    if args.json:
        for a in rows:
            emit(a.as_dict())
        return EXIT_OK
    for a in rows:
        state = "available" if a.available else "unavailable"
        detail = a.runtime if a.available else a.reason
        if a.available and a.reason:
            detail = f"{a.runtime}; {a.reason}"
        print(f"{a.name:<8} {state:<11} {detail}")
        for route, r in a.details.get("routes", {}).items():
            rstate = "available" if r.get("available") else "unavailable"
            where = f" [{r['library']}]" if r.get("library") else ""
            rdetail = r.get("runtime", "") if r.get("available") else r.get("reason", "")
            print(f"{'':<8} route={route:<8} {rstate:<11} {rdetail}{where}")
    return EXIT_OK


def add_subcommand(subparsers: Any) -> None:
    """Add ``backends`` to the CLI's subparsers (sets ``func``)."""
    b = subparsers.add_parser("backends", help="list backends and why any is unavailable")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_backends)
