"""``armvww info``: model facts and hash verdict."""

from __future__ import annotations

import argparse
from typing import Any

from ..model import store
from .common import EXIT_OK, add_model_arg, emit


def cmd_info(args: argparse.Namespace) -> int:
    model = store.load_model(args.model)
    facts = model.facts()
    if args.json:
        emit(facts)
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


def add_subcommand(subparsers: Any) -> None:
    """Add ``info`` to the CLI's subparsers (sets ``func``)."""
    i = subparsers.add_parser("info", help="model facts and hash verdict")
    add_model_arg(i)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
