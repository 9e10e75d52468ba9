"""``armvww parity``: parse the arguments, run
:func:`armvww.analysis.parity_report.run_parity`, print the report.

Exit codes: the report's ``exit_code`` (0 every backend compared meets the contract; 3 some
backend breaks it; 16 a backend named explicitly could not run, or nothing was compared);
the usual ``armvww`` codes for other errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from .. import images
from ..analysis import parity
from ..analysis.common import BackendEntry, expand_backends
from ..analysis.parity_report import (
    EXIT_CONTRACT_BROKEN,
    PER_LAYER_INPUTS,
    check_candidate,
    parity_inputs,
    run_parity,
    to_text,
)
from ..errors import BackendUnavailableError
from ..model.store import load_model
from .common import add_model_arg, add_progress_arg, add_workers_arg, progress_bar

log = logging.getLogger(__name__)


def cmd_parity(args: argparse.Namespace) -> int:
    """Run ``armvww parity``; returns the exit code (see the module docs)."""
    model = load_model(args.model)
    candidate = load_model(args.candidate_model) if args.candidate_model else None
    if candidate is not None:
        check_candidate(model, candidate)
    contract = parity.Contract(
        tolerance_lsb=args.tolerance_lsb
        if args.tolerance_lsb is not None
        else parity.Contract.tolerance_lsb,
        near_tie_lsb=args.near_tie_lsb
        if args.near_tie_lsb is not None
        else parity.Contract.near_tie_lsb,
    )
    reference = BackendEntry.parse(args.reference)
    entries, explicit = expand_backends(args.backends or [], reference)
    paths = [str(p) for item in args.images for p in images.iter_image_paths(item)]
    n_gen = args.inputs if args.inputs is not None else (0 if paths else 200)
    qs = parity_inputs(model, n_gen, args.seed, paths, reference, args.workers)
    with progress_bar(args, machine_readable=args.json) as bar:
        report = run_parity(
            model,
            entries,
            reference,
            qs,
            contract,
            per_layer=args.per_layer,
            per_layer_inputs=args.per_layer_inputs,
            candidate_model=candidate,
            explicit=explicit,
            progress=bar,
        )
    report["inputs"] = {"generated": n_gen, "seed": args.seed, "images": paths}
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        desc = []
        if n_gen:
            desc.append(f"{n_gen} generated (seed {args.seed})")
        if paths:
            desc.append(f"{len(paths)} images")
        sys.stdout.write(to_text(report, f": {' + '.join(desc)}") + "\n")
    code: int = report["exit_code"]
    if code == EXIT_CONTRACT_BROKEN:
        log.error("the parity contract is broken by %s", ", ".join(report["broken"]))
    elif code:
        log.error("nothing compared, or a requested backend could not run (see 'skipped')")
    return code


def add_subcommand(subparsers: Any) -> None:
    """Add ``parity`` to the CLI's subparsers (sets ``func``)."""
    p = subparsers.add_parser(
        "parity",
        help="compare backends against a reference on the same int8 inputs",
        description="Run the same int8 inputs through backends and a reference and report "
        "max |d| (LSB, logits), exact share, RMSE per byte, argmax agreement and hard flips. "
        f"Exit 0: every backend meets the contract; {EXIT_CONTRACT_BROKEN}: some backend "
        f"breaks it; {BackendUnavailableError.exit_code}: a named backend could not run.",
    )
    add_model_arg(p)
    p.add_argument(
        "--backends",
        "-b",
        action="append",
        help="backends to compare: Name or Name:key=value (e.g. LiteRT:xnnpack=false), "
        "comma-separated or repeated; 'all' (default) = every available one",
    )
    p.add_argument(
        "--reference", default="LiteRT", help="the reference backend entry (default LiteRT)"
    )
    p.add_argument(
        "--inputs",
        "-n",
        type=int,
        default=None,
        help="seeded generated inputs (default 200, or 0 when --images are given)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the generated inputs (1)")
    p.add_argument("--images", nargs="*", default=[], help="image files or folders")
    p.add_argument(
        "--tolerance-lsb",
        type=int,
        default=None,
        help=f"largest allowed |d| of a logit (default {parity.Contract.tolerance_lsb})",
    )
    p.add_argument(
        "--near-tie-lsb",
        type=int,
        default=None,
        help="flips are forgiven at reference margins up to this "
        f"(default {parity.Contract.near_tie_lsb})",
    )
    p.add_argument("--per-layer", action="store_true", help="locate divergence layer by layer")
    p.add_argument(
        "--per-layer-inputs",
        type=int,
        default=PER_LAYER_INPUTS,
        help=f"inputs re-run per backend for --per-layer (default {PER_LAYER_INPUTS})",
    )
    p.add_argument(
        "--candidate-model",
        default=None,
        help="the backends run this model (same graph, e.g. changed weights); the reference "
        "runs --model",
    )
    p.add_argument("--json", action="store_true", help="one JSON document")
    add_progress_arg(p)
    add_workers_arg(p)
    p.set_defaults(func=cmd_parity)
