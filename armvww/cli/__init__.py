"""The ``armvww`` command line: one module per subcommand (detect, info, backends, fetch, bench,
parity, eval); this one builds the parser and maps errors to exit codes.

Exit codes: 0 success; 1 ``detect`` ran but some images failed; 2 usage error; otherwise the
``exit_code`` of the :class:`~armvww.errors.ArmvwwError` family (see the README).
Messages go to stderr, never tracebacks (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import machine
from .._version import __version__
from ..errors import ArmvwwError
from . import backends, bench, detect, evaluate, fetch, info, parity
from .common import EXIT_ITEM_ERRORS, EXIT_OK, EXIT_USAGE, Command

log = logging.getLogger("armvww")

#: Subcommand modules, in the order of ``armvww --help``; each one's add_subcommand() adds its
#: parser and sets ``func`` (a Command) as the parser default.
_SUBCOMMANDS = (detect, info, backends, fetch, bench, parity, evaluate)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="armvww",
        description="Person detection (Arm MicroNet VWW) on Arm NN and LiteRT backends.",
    )
    p.add_argument("--version", action="version", version=f"armvww {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in _SUBCOMMANDS:
        module.add_subcommand(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``armvww`` console script; returns the exit code."""
    machine.keep_freed_memory()  # the command's own process: decode large images faster
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="armvww: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        func: Command = args.func
        return func(args)
    except ArmvwwError as exc:
        if args.debug:
            log.exception("failed")
        print(f"armvww: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


__all__ = ["EXIT_ITEM_ERRORS", "EXIT_OK", "EXIT_USAGE", "main"]
