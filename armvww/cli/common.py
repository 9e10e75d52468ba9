"""What every ``armvww`` subcommand module shares: exit codes, common arguments, JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

EXIT_OK = 0
EXIT_ITEM_ERRORS = 1
EXIT_USAGE = 2

#: A subcommand handler: parsed arguments in, exit code out.
Command = Callable[[argparse.Namespace], int]


def _backend_arg(value: str) -> str | list[str]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts[0] if len(parts) == 1 else parts


def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help="model path or known name (vww2, vww3, vww4); default: $ARMVWW_MODEL or vww2",
    )


def add_backend_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument(
        "--backend",
        "-b",
        type=_backend_arg,
        default=default,
        help="backend name, comma-separated preference list (GpuAcc,CpuAcc), or auto "
        f"(default: {default})",
    )


def emit(obj: Any) -> None:
    """One JSON object on one line of stdout."""
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal and the output is "
        "for people)",
    )


def add_workers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        choices=("auto", "none", "thread", "process"),
        default="auto",
        help="who decodes and preprocesses while inference runs (armvww.pipeline): auto "
        "(default: by input kind and cores), none (sequential), thread, process",
    )


def progress_bar(
    args: argparse.Namespace, machine_readable: bool = False, total: int | None = 1
) -> tqdm[Any]:
    """The stderr progress bar of a long subcommand: as ``--progress``/``--no-progress`` say,
    else tqdm's own terminal detection, and off for machine-readable output."""
    if args.progress is not None:
        disable: bool | None = not args.progress
    else:
        disable = True if machine_readable else None  # None: tqdm shows it on a terminal only
    return tqdm(total=total, disable=disable, file=sys.stderr, leave=False, mininterval=0.1)


def printable(text: str) -> str:
    """``text`` safe for one table cell: bytes of a non-UTF-8 file name (kept as surrogates
    by Python) become ``\\xff``, control characters (a newline in a name) ``\\n``-style
    escapes, so a row stays one line and printing never raises UnicodeEncodeError."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
