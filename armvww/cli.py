"""The ``armvww`` command line: detect, info, backends, fetch.

Exit codes: 0 success; 1 ``detect`` ran but some images failed; 2 usage error; otherwise the
``exit_code`` of the :class:`~armvww.errors.ArmvwwError` family (see the README).
Messages go to stderr, never tracebacks (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, backends, manifest, store
from .errors import ArmvwwError

log = logging.getLogger("armvww")

EXIT_OK = 0
EXIT_ITEM_ERRORS = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Command] = {}


def command(fn: Command) -> Command:
    """Register ``cmd_<name>`` as the handler of subcommand ``<name>``."""
    _COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


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


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")


@command
def cmd_detect(args: argparse.Namespace) -> int:
    from . import labels
    from .detector import Detector

    truth, label_files = labels.truth_for(args.images)
    with Detector(args.model, backend=args.backend, threshold=args.threshold) as det:
        results = det.detect_many(args.images)
        if args.json:
            for r in results:
                row = r.as_dict()
                known = labels.truth_of(r, truth)
                if known is not None:
                    row["truth"] = labels.NAMES[known]
                _emit(row)
        else:
            print(f"model {det.model.name}  backend {det.backend}  threshold {det.threshold}")
            for reason in det.fallback:
                print(f"  skipped {reason}")
            names = [labels.short_name(str(r.source), args.images) for r in results]
            width = max([len(n) for n in names] + [5])
            print(f"{'image':<{width}}  {'truth':<9}  {'result':<9}  {'P(person)':>9}  runtime")
            for name, r in zip(names, results, strict=True):
                known = labels.truth_of(r, truth)
                t = "-" if known is None else labels.NAMES[known]
                if r.error is not None:
                    print(f"{name:<{width}}  {t:<9}  {'error':<9}  {'-':>9}  {r.error}")
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


@command
def cmd_info(args: argparse.Namespace) -> int:
    model = store.load_model(args.model)
    facts = model.facts()
    if args.json:
        _emit(facts)
        return EXIT_OK
    i, o = model.input, model.output
    print(f"source     {model.source}")
    print(f"size       {model.size} bytes")
    print(f"sha1       {model.sha1}")
    print(f"verdict    {facts['hash_verdict']}")
    print(f"input      {i.name} {i.shape} {i.dtype} scale={i.scale:.8g} zero_point={i.zero_point}")
    print(f"output     {o.name} {o.shape} {o.dtype} scale={o.scale:.8g} zero_point={o.zero_point}")
    ops = ", ".join(f"{k} x{v}" for k, v in sorted(model.op_counts.items()))
    print(f"operators  {len(model.operators)}: {ops}")
    print(f"labels     0={model.labels[0]} 1={model.labels[1]}")
    return EXIT_OK


@command
def cmd_backends(args: argparse.Namespace) -> int:
    rows = backends.available_backends()
    if args.json:
        for a in rows:
            _emit(a.as_dict())
        return EXIT_OK
    for a in rows:
        state = "available" if a.available else "unavailable"
        detail = a.runtime if a.available else a.reason
        if a.available and a.reason:
            detail = f"{a.runtime}; {a.reason}"
        print(f"{a.name:<8} {state:<11} {detail}")
    return EXIT_OK


@command
def cmd_fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    dest = Path(args.dest) if args.dest else None
    path = store.fetch(args.name, dest)
    print(path)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="armvww",
        description="Person detection (Arm MicroNet VWW) on Arm NN and LiteRT backends.",
    )
    p.add_argument("--version", action="version", version=f"armvww {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
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
    d.add_argument("images", nargs="+", help="image files or directories")

    i = sub.add_parser("info", help="model facts and hash verdict")
    add_model_arg(i)
    i.add_argument("--json", action="store_true")

    b = sub.add_parser("backends", help="list backends and why any is unavailable")
    b.add_argument("--json", action="store_true")

    f = sub.add_parser("fetch", help="download a known model from ML-zoo (the only network use)")
    f.add_argument("name", choices=sorted(manifest.KNOWN_MODELS))
    f.add_argument("--dest", help=f"folder (default: {store.cache_dir()})")

    # Subcommands defined in their own modules: each add_subcommand() adds its parser and
    # sets ``func`` (a Command) as the parser default.
    # (one import + one call per module, below)
    from . import bench

    bench.add_subcommand(sub)
    from . import parity_cli

    parity_cli.add_subcommand(sub)
    from . import evaluate

    evaluate.add_subcommand(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``armvww`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="armvww: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        func: Command = getattr(args, "func", None) or _COMMANDS[args.command]
        return func(args)
    except ArmvwwError as exc:
        if args.debug:
            log.exception("failed")
        print(f"armvww: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
