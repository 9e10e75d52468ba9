"""``armvww bench``: parse the arguments into a :class:`~armvww.analysis.bench.BenchConfig`,
run the engine, print the report."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from .. import images, machine
from ..analysis import bench_report
from ..analysis.bench import BenchConfig, run_bench
from ..analysis.common import registered_entries
from ..errors import BackendUnavailableError
from .common import add_model_arg, add_progress_arg, progress_bar

log = logging.getLogger(__name__)


def _config_from_args(args: argparse.Namespace) -> BenchConfig:
    entries = registered_entries(args.backend or ["all"])
    paths = [str(p) for item in args.images for p in images.iter_image_paths(item)]
    modes = (
        tuple(m.strip() for m in args.mode.split(","))
        if args.mode
        else (("infer", "e2e") if paths else ("infer",))
    )
    workers = args.workers if args.workers is not None else 0
    if args.workers == -1:
        workers = machine.usable_cores()
    return BenchConfig(
        model=args.model,
        entries=tuple(entries),
        modes=modes,
        images=tuple(paths),
        iterations=args.iterations,
        duration_s=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        workers=workers,
        worker_kind=args.worker_kind,
        threads=args.threads,
        gpu_tuning=args.gpu_tuning,
        fast_decode=args.fast_decode,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Run ``armvww bench``; returns the exit code (0, or the error family's code)."""
    cfg = _config_from_args(args)
    with progress_bar(args, machine_readable=args.json or args.csv) as bar:
        report = run_bench(cfg, bar)
    if args.json:
        sys.stdout.write(bench_report.to_json(report) + "\n")
    elif args.csv:
        sys.stdout.write(bench_report.to_csv(report))
    else:
        sys.stdout.write(bench_report.to_text(report) + "\n")
    if not any(r.get("ran") for r in report["results"]):
        log.error("no backend could be benchmarked")
        return BackendUnavailableError.exit_code
    return 0


def add_subcommand(subparsers: Any) -> None:
    """Add ``bench`` to the CLI's subparsers (sets ``func``)."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark backends: cold start, latency percentiles, throughput, workers",
        description="Interleaved benchmark of one or more backends (the first is the "
        "reference of the ratios). Timings are of this machine, now: the machine, versions, "
        "options and load average are recorded in the output.",
    )
    add_model_arg(p)
    p.add_argument(
        "--backend",
        "-b",
        action="append",
        help="backend to measure, Name or Name:key=value:... (options-dataclass fields, e.g. "
        "LiteRT:xnnpack=false); repeat or comma-separate; 'all' (default) = every registered",
    )
    p.add_argument(
        "--mode",
        help="comma-separated: infer, e2e (default: infer, plus e2e when images are given)",
    )
    p.add_argument(
        "--images",
        nargs="*",
        default=[],
        help="image files or folders (for e2e; infer then uses their quantised tensors)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--iterations",
        "-n",
        type=int,
        default=500,
        help="timed iterations per backend and mode (default 500)",
    )
    g.add_argument(
        "--duration",
        "-d",
        type=float,
        default=None,
        help="timed seconds per backend and mode, instead of --iterations",
    )
    p.add_argument("--warmup", type=int, default=20, help="untimed iterations first (20)")
    p.add_argument("--rounds", type=int, default=5, help="interleaving rounds (5)")
    p.add_argument(
        "--workers",
        "-w",
        type=int,
        nargs="?",
        const=-1,
        default=None,
        help="also measure N-worker throughput (bare --workers: usable cores)",
    )
    p.add_argument(
        "--worker-kind",
        choices=("process", "thread"),
        default="process",
        help="workers are spawned processes (default) or threads",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="backend threads (where the backend has a threads option)",
    )
    p.add_argument(
        "--gpu-tuning",
        type=int,
        default=None,
        help="GPU tuning level (backends whose options have tuning_level)",
    )
    p.add_argument(
        "--fast-decode", action="store_true", help="JPEG draft-mode decoding in e2e (see README)"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON document")
    out.add_argument("--csv", action="store_true", help="CSV, one row per backend and mode")
    add_progress_arg(p)
    p.set_defaults(func=cmd_bench)
