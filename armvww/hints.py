"""Hints that run as printed: how to call the ``armvww`` command the way the user did.

A hint in an error must be a command the user can paste. In the make flow the command is
``.venv/bin/armvww`` (not on PATH), with ``python -m armvww`` it is that interpreter, and
from the console script on PATH it is plain ``armvww``.
"""

from __future__ import annotations

import os
import shutil
import sys


def _as_typed(path: str) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full)
    except ValueError:
        return full
    if rel.startswith(os.pardir):
        return full
    return rel if os.sep in rel else f".{os.sep}{rel}"


def command(args: str) -> str:
    """``armvww <args>`` spelled the way this process was started."""
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    if name == "__main__.py" and os.path.basename(os.path.dirname(argv0)) == "armvww":
        return f"{_as_typed(sys.executable)} -m armvww {args}"
    if name == "armvww" and os.path.isfile(argv0):
        on_path = shutil.which("armvww")
        if on_path and os.path.samefile(on_path, argv0):
            return f"armvww {args}"
        return f"{_as_typed(argv0)} {args}"
    return f"armvww {args}"


def make_command(repo: str, target: str) -> str:
    """``make TARGET`` for the checkout at ``repo``, spelled to run from the working
    directory (``make -C REPO TARGET`` when that is another folder)."""
    try:
        here = os.path.samefile(repo, os.getcwd())
    except OSError:
        here = False
    return f"make {target}" if here else f"make -C {_as_typed(repo)} {target}"
