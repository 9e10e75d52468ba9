"""The benchmark engine behind ``armvww bench`` (writers: :mod:`.bench_report`).

What one run measures, per backend (looked up through :mod:`armvww.backends`, so every
registered backend can be benchmarked by name):

* **Cold start**, in this process: ``import_s`` (first :func:`armvww.backends.availability`
  call, which imports the runtime; 0 when an earlier backend of the same family already paid
  it), ``open_s`` (the whole ``Detector(...)`` construction: model validation + backend
  load), the backend's own phases read from ``session.info`` (see :data:`COLD_KEYS`), and
  ``first_inference_s``.
* **Warm-up**: ``--warmup`` iterations, not counted.
* **Steady state**, per mode, *interleaved*: the backends take turns in ``--rounds`` rounds
  (A B C A B C ...), so a noisy neighbour or a thermal drift hits every backend alike.
  Every iteration is timed with ``perf_counter_ns``; we report min, p50, p90, p99, max and
  mean (percentiles by the nearest-rank method, so each one is a real sample) and
  throughput = iterations / sum of timed block wall times.

  - ``infer``: :meth:`Detector.run` on pre-quantised int8 tensors (from ``--images`` when
    given, else a seeded random tensor). This is the API path, lock and copy included.
  - ``e2e``: :meth:`Detector.detect` on image files: read + decode + the shared
    preprocessing + inference + softmax.
  - ``workers``: N workers (default: usable cores), each with its own Detector (its own
    interpreter or Arm NN network), in processes (``spawn``) or threads. Each runs the same
    loop as the modes above after a common start barrier; throughput = all iterations /
    (last finish - first start). A 1-worker run of the same machinery is measured
    alternately with the N-worker run, and ``scaling`` = N-worker / 1-worker throughput.

Ratios are against the first backend that ran: ``throughput_ratio`` = this / first
(> 1 is faster) and ``p50_ratio`` = this / first (< 1 is faster).

Cold-start keys read from ``session.info`` (:data:`COLD_KEYS`, all in seconds, all
optional): ``parse_s`` (model parse, e.g. ``ITfLiteParser``), ``optimize_s``
(``armnn.Optimize``), ``load_s`` (``LoadNetwork`` / LiteRT interpreter construction +
``allocate_tensors``), ``tune_s`` (GPU tuning, GpuAcc with a tuning level). A backend may
also set ``emulated`` (bool) and ``emulation`` (e.g. ``"qemu-aarch64"``); both are copied to
the result and the table labels such rows ``(emulated)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from .. import backends, machine
from .._version import __version__
from ..detector import Detector
from ..errors import ArmvwwError, BackendError, InputError
from ..model.store import load_model
from .common import BackendEntry, advance, entry_options, progress_or_silent

log = logging.getLogger(__name__)

#: Cold-start phases read from ``session.info`` when the backend reports them (seconds).
COLD_KEYS: tuple[str, ...] = ("parse_s", "optimize_s", "load_s", "tune_s")
#: Steady-state modes.
MODES: tuple[str, ...] = ("infer", "e2e")
#: Version of the JSON layout.
SCHEMA = "armvww.bench/1"
#: Fields of every latency summary, in output order.
STAT_FIELDS: tuple[str, ...] = (
    "n",
    "min_us",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
    "mean_us",
    "throughput_per_s",
)

WorkerKind = Literal["process", "thread"]


# -- statistics -----------------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (numpy's ``inverted_cdf``): always one of the values.

    Raises:
        ValueError: no values, or ``p`` outside [0, 100].
    """
    if not len(sorted_values):
        raise ValueError("percentile of no values")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    return float(np.percentile(sorted_values, p, method="inverted_cdf"))


@dataclass(frozen=True)
class Stats:
    """Latency summary of ``n`` timed iterations (microseconds) and the throughput."""

    n: int
    min_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float
    throughput_per_s: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int], wall_s: float) -> Stats:
        """Summarise per-iteration latencies (ns) measured over ``wall_s`` seconds of loops.

        Raises:
            ValueError: no samples.
        """
        if not len(samples_ns):
            raise ValueError("no samples to summarise")
        us = np.asarray(samples_ns, dtype=np.float64) / 1000.0
        p50, p90, p99 = np.percentile(us, (50, 90, 99), method="inverted_cdf")
        return cls(
            n=len(us),
            min_us=float(us.min()),
            p50_us=float(p50),
            p90_us=float(p90),
            p99_us=float(p99),
            max_us=float(us.max()),
            mean_us=float(us.mean()),
            throughput_per_s=len(us) / wall_s if wall_s > 0 else math.inf,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded to 0.1 µs / 0.1 per second."""
        return {k: (v if k == "n" else round(v, 1)) for k, v in dataclasses.asdict(self).items()}


# -- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run needs; recorded verbatim in the output.

    Attributes:
        model: a known name or a path (``None``: the default model).
        entries: the backends to compare; the first is the reference of the ratios.
        modes: steady-state modes (``infer``, ``e2e``).
        images: image files for ``e2e`` (and the tensors of ``infer``).
        iterations: timed iterations per backend and mode (ignored when ``duration_s``).
        duration_s: timed seconds per backend and mode, instead of ``iterations``.
        warmup: untimed iterations before measuring.
        rounds: interleaving rounds (each backend gets 1/rounds of its budget per turn).
        workers: workers of the multi-worker measurement (0: no multi-worker run).
        worker_kind: ``process`` (spawn) or ``thread``.
        threads: backend threads, for every backend whose options have a ``threads`` field.
        gpu_tuning: GPU tuning level, for backends whose options have ``tuning_level``.
        fast_decode: ``Detector(fast_decode=True)`` (JPEG draft mode) in ``e2e``.
        seed: seed of the random input tensor when no images are given.
    """

    model: str | None = None
    entries: tuple[BackendEntry, ...] = (BackendEntry("LiteRT"),)
    modes: tuple[str, ...] = ("infer",)
    images: tuple[str, ...] = ()
    iterations: int = 500
    duration_s: float | None = None
    warmup: int = 20
    rounds: int = 5
    workers: int = 0
    worker_kind: WorkerKind = "process"
    threads: int | None = None
    gpu_tuning: int | None = None
    fast_decode: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.entries:
            raise InputError("bench needs at least one backend")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise InputError(f"unknown mode(s) {bad}; modes are {', '.join(MODES)}")
        if "e2e" in self.modes and not self.images:
            raise InputError("mode e2e needs image files (--images)")
        if self.iterations < 1 or self.warmup < 0 or self.rounds < 1 or self.workers < 0:
            raise InputError("iterations and rounds must be >= 1; warmup and workers >= 0")
        if self.duration_s is not None and not self.duration_s > 0:
            raise InputError(f"duration must be > 0 s, got {self.duration_s}")
        if self.worker_kind not in ("process", "thread"):
            raise InputError(f"worker kind must be process or thread, got {self.worker_kind!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = dataclasses.asdict(self)
        d["entries"] = [e.label for e in self.entries]
        d["modes"] = list(self.modes)
        d["images"] = list(self.images)
        return d


def build_options(entry: BackendEntry, cfg: BenchConfig) -> backends.BackendOptions | None:
    """The options dataclass for ``entry``: global ``threads``/``gpu_tuning`` where the
    backend's options have such a field, then the entry's own overrides.

    Raises:
        OptionError: an override names a field the backend's options do not have, or a
            value the options reject.
    """
    return entry_options(entry, {"threads": cfg.threads, "tuning_level": cfg.gpu_tuning})


# -- the run's record --------------------------------------------------------------------------
def _dist_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Facts that make results comparable across boards: CPU, cores, OS, versions, load."""
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": platform.machine(),
        "cpu": machine.cpu_model(),
        "cores_usable": machine.usable_cores(),
        "cores_total": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "armvww": __version__,
        "numpy": np.__version__,
        "pillow": _dist_version("pillow"),
        "loadavg_start": machine.loadavg(),
    }


# -- timing loops ---------------------------------------------------------------------------
def timed_block(
    fn: Callable[[Any], object],
    items: Sequence[Any],
    start: int,
    n: int | None,
    until_ns: int | None,
    out: list[int],
) -> tuple[int, int]:
    """Run ``fn(items[k % len(items)])`` ``n`` times (or until ``until_ns``), appending
    each call's latency (ns) to ``out``. Returns (iterations, wall ns of the block)."""
    clock = time.perf_counter_ns
    m = len(items)
    k = start
    t_block = clock()
    if n is not None:
        for k in range(start, start + n):
            t0 = clock()
            fn(items[k % m])
            out.append(clock() - t0)
        done = n
    else:
        assert until_ns is not None
        done = 0
        t1 = t_block
        while t1 < until_ns:
            t0 = clock()
            fn(items[k % m])
            t1 = clock()
            out.append(t1 - t0)
            k += 1
            done += 1
    return done, clock() - t_block


# -- one backend in this process ------------------------------------------------------------
@dataclass
class _Runner:
    entry: BackendEntry
    det: Any = None  # Detector
    error: str = ""
    cold: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    runtime: str = ""
    samples: dict[str, list[int]] = field(default_factory=dict)
    wall_ns: dict[str, int] = field(default_factory=dict)
    next_k: dict[str, int] = field(default_factory=dict)


def _open_runner(entry: BackendEntry, cfg: BenchConfig, model: Any, q0: np.ndarray) -> _Runner:
    r = _Runner(entry)
    t0 = time.perf_counter()
    av = backends.availability(entry.name)
    import_s = time.perf_counter() - t0
    if not av.available:
        r.error = f"unavailable: {av.reason}"
        return r
    try:
        opts = build_options(entry, cfg)
        t0 = time.perf_counter()
        det = Detector(model, backend=[entry.name], options=opts, fast_decode=cfg.fast_decode)
        open_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        det.run(q0)
        first_s = time.perf_counter() - t0
    except ArmvwwError as exc:
        r.error = f"{type(exc).__name__}: {exc}"
        return r
    r.det = det
    r.info = det.session_info
    r.runtime = det.runtime
    cold: dict[str, Any] = {"import_s": import_s, "open_s": open_s}
    for key in COLD_KEYS:
        v = r.info.get(key)
        if isinstance(v, (int, float)):
            cold[key] = float(v)
    cold["first_inference_s"] = first_s
    cold["total_s"] = import_s + open_s + first_s
    r.cold = {k: round(v, 6) for k, v in cold.items()}
    return r


def _mode_fn(det: Any, mode: str) -> Callable[[Any], object]:
    return det.run if mode == "infer" else det.detect  # type: ignore[no-any-return]


def _inputs(cfg: BenchConfig, det: Any, model: Any) -> list[np.ndarray]:
    """Pre-quantised tensors: of ``cfg.images``, else one seeded random tensor."""
    if cfg.images:
        return [det.quantize(p) for p in cfg.images]
    rng = np.random.default_rng(cfg.seed)
    return [rng.integers(-128, 128, size=model.input.shape, dtype=np.int8)]


# -- workers --------------------------------------------------------------------------------
def _worker_main(job: dict[str, Any], barrier: Any, results: Any) -> None:
    """One worker: own Detector, warm-up, barrier, timed loop; puts a result dict."""
    try:
        model = load_model(job["model_data"])
        opts = job["options"]
        det = Detector(
            model, backend=[job["backend"]], options=opts, fast_decode=job["fast_decode"]
        )
        items: list[Any]
        fn: Callable[[Any], object]
        if job["mode"] == "infer":
            items = [np.frombuffer(b, np.int8).reshape(job["shape"]).copy() for b in job["tensors"]]
            fn = det.run
        else:
            items = list(job["paths"])
            fn = det.detect
        for k in range(job["warmup"]):
            fn(items[k % len(items)])
    except BaseException as exc:  # reported to the parent, which raises
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        results.put({"error": "another worker failed"})
        return
    samples: list[int] = []
    clock = time.perf_counter_ns
    cpu = time.process_time if job["kind"] == "process" else time.thread_time
    c_start = cpu()
    t_start = clock()
    until = t_start + int(job["duration_s"] * 1e9) if job["duration_s"] else None
    n = None if until else job["iterations"]
    timed_block(fn, items, job["start"], n, until, samples)
    t_end = clock()
    cpu_s = cpu() - c_start
    det.close()
    results.put({"t_start": t_start, "t_end": t_end, "samples": samples, "cpu_s": cpu_s})


def run_workers(
    cfg: BenchConfig,
    entry: BackendEntry,
    mode: str,
    n_workers: int,
    model: Any,
    tensors: Sequence[np.ndarray],
) -> dict[str, Any]:
    """Run ``n_workers`` workers with their own Detector; aggregate throughput and latency.

    ``perf_counter_ns`` is CLOCK_MONOTONIC on Linux, so start/end times of processes compare.

    Raises:
        BackendError: a worker failed (its message is included).
    """
    job = {
        "model_data": model.data,
        "backend": entry.name,
        "options": build_options(entry, cfg),
        "fast_decode": cfg.fast_decode,
        "mode": mode,
        "shape": tuple(model.input.shape),
        "tensors": [t.tobytes() for t in tensors],
        "paths": list(cfg.images),
        "warmup": max(cfg.warmup, 5),
        "iterations": cfg.iterations,
        "duration_s": cfg.duration_s,
        "start": 0,
        "kind": cfg.worker_kind,
    }
    # processes and threads differ only in the primitives they are started with
    barrier: Any
    results: Any
    runner: Any
    if cfg.worker_kind == "process":
        ctx = mp.get_context("spawn")
        barrier, results, runner = ctx.Barrier(n_workers), ctx.Queue(), ctx.Process
    else:
        barrier, results, runner = threading.Barrier(n_workers), queue.Queue(), threading.Thread
    workers = [
        runner(target=_worker_main, args=({**job, "start": i}, barrier, results), daemon=True)
        for i in range(n_workers)
    ]
    for w in workers:
        w.start()
    got = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    errors = [g["error"] for g in got if "error" in g]
    if errors:
        raise BackendError(f"{entry.label} worker failed: {errors[0]}")
    samples = [s for g in got for s in g["samples"]]
    wall_ns = max(g["t_end"] for g in got) - min(g["t_start"] for g in got)
    cpu_us = 1e6 * sum(g["cpu_s"] for g in got) / len(samples)
    return {
        "workers": n_workers,
        **Stats.from_ns(samples, wall_ns / 1e9).as_dict(),
        "cpu_us_per_iter": round(cpu_us, 1),
    }


# -- the engine -----------------------------------------------------------------------------
def run_bench(cfg: BenchConfig, progress: tqdm[Any] | None = None) -> dict[str, Any]:
    """Run the benchmark described by ``cfg``; return the report (see :func:`to_json`).

    Backends that cannot be used are reported with the reason and skipped; ratios are
    against the first backend that ran.

    Raises:
        ModelNotFoundError, ModelIntegrityError, UnsupportedModelError: the model.
        InputError: an image in ``cfg.images`` cannot be used.
        OptionError: bad backend options.
        BackendError: a backend failed while running.
    """
    meta = machine_info()
    t0 = time.perf_counter()
    model = load_model(cfg.model)
    model_read_s = time.perf_counter() - t0

    runners: list[_Runner] = []
    q0 = np.zeros(model.input.shape, np.int8)
    for entry in cfg.entries:
        if progress is not None:
            progress.set_description_str(f"opening {entry.label}")
        r = _open_runner(entry, cfg, model, q0)
        if r.error:
            log.warning("bench: skipping %s: %s", entry.label, r.error)
        runners.append(r)
    live = [r for r in runners if r.det is not None]
    tensors: list[np.ndarray] = []
    if live:
        tensors = _inputs(cfg, live[0].det, model)

    # budget: one unit per timed iteration (or per 10 ms in duration mode), per mode
    per_mode = cfg.iterations if cfg.duration_s is None else max(1, int(cfg.duration_s * 100))
    prog = progress_or_silent(
        progress,
        per_mode * len(live) * len(cfg.modes)
        + (4 if cfg.workers else 0) * len(live) * len(cfg.modes),
    )

    for mode in cfg.modes:
        items: list[Any] = list(tensors) if mode == "infer" else list(cfg.images)
        for r in live:  # warm-up, untimed
            fn = _mode_fn(r.det, mode)
            for k in range(cfg.warmup):
                fn(items[k % len(items)])
            r.samples[mode], r.wall_ns[mode], r.next_k[mode] = [], 0, 0
        for rnd in range(cfg.rounds):
            for r in live:
                fn = _mode_fn(r.det, mode)
                if cfg.duration_s is None:
                    n = cfg.iterations // cfg.rounds + (
                        1 if rnd < cfg.iterations % cfg.rounds else 0
                    )
                    if n == 0:
                        continue
                    done, wall = timed_block(fn, items, r.next_k[mode], n, None, r.samples[mode])
                    step = done
                else:
                    until = time.perf_counter_ns() + int(cfg.duration_s / cfg.rounds * 1e9)
                    done, wall = timed_block(
                        fn, items, r.next_k[mode], None, until, r.samples[mode]
                    )
                    step = int(cfg.duration_s / cfg.rounds * 100)
                r.next_k[mode] += done
                r.wall_ns[mode] += wall
                advance(prog, step, f"{mode} {r.entry.label} round {rnd + 1}/{cfg.rounds}")

    results: list[dict[str, Any]] = []
    for r in runners:
        res: dict[str, Any] = {
            "backend": r.entry.label,
            "name": r.entry.name,
            "ran": r.det is not None,
        }
        if r.det is None:
            res["error"] = r.error
            results.append(res)
            continue
        res["runtime"] = r.runtime
        res["emulated"] = bool(r.info.get("emulated", False))
        if "emulation" in r.info:
            res["emulation"] = r.info["emulation"]
        res["session_info"] = _jsonable(r.info)
        res["cold"] = r.cold
        res["modes"] = {
            m: Stats.from_ns(r.samples[m], r.wall_ns[m] / 1e9).as_dict() for m in cfg.modes
        }
        results.append(res)

    if cfg.workers:
        for mode in cfg.modes:
            for r, res in zip(runners, results, strict=True):
                if r.det is None:
                    continue
                advance(prog, 0, f"workers {mode} {r.entry.label}")
                res.setdefault("workers", {})[mode] = _scaling(
                    cfg, r.entry, mode, model, tensors, prog
                )
    for r in live:
        r.det.close()
    add_ratios(results)
    meta["loadavg_end"] = machine.loadavg()
    prog.close()
    return {
        "schema": SCHEMA,
        "meta": meta,
        "model": {
            "name": model.name,
            "sha1": model.sha1,
            "input": list(model.input.shape),
            "read_s": round(model_read_s, 6),
        },
        "config": cfg.as_dict(),
        "results": results,
    }


def _scaling(
    cfg: BenchConfig,
    entry: BackendEntry,
    mode: str,
    model: Any,
    tensors: Sequence[np.ndarray],
    prog: tqdm[Any],
) -> dict[str, Any]:
    """1-worker and N-worker runs, alternated twice; the better of each, and the scaling."""
    one: list[dict[str, Any]] = []
    many: list[dict[str, Any]] = []
    for _ in range(2):
        one.append(run_workers(cfg, entry, mode, 1, model, tensors))
        prog.update(1)
        many.append(run_workers(cfg, entry, mode, cfg.workers, model, tensors))
        prog.update(1)
    best1 = max(one, key=lambda d: d["throughput_per_s"])
    bestn = max(many, key=lambda d: d["throughput_per_s"])
    return {
        "kind": cfg.worker_kind,
        "single": best1,
        "multi": bestn,
        "all_single_per_s": [d["throughput_per_s"] for d in one],
        "all_multi_per_s": [d["throughput_per_s"] for d in many],
        "scaling": round(bestn["throughput_per_s"] / best1["throughput_per_s"], 3),
    }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = repr(v)
    return out


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Add ``ratios`` per mode to every result that ran, against the first that ran:
    ``throughput_ratio`` = this / first and ``p50_ratio`` = this / first (3 decimals)."""
    ran = [r for r in results if r.get("ran")]
    if not ran:
        return
    ref = ran[0]
    for r in ran:
        ratios: dict[str, dict[str, float]] = {}
        for mode, st in r["modes"].items():
            base = ref["modes"].get(mode)
            if not base:
                continue
            ratios[mode] = {
                "throughput_ratio": round(st["throughput_per_s"] / base["throughput_per_s"], 3),
                "p50_ratio": round(st["p50_us"] / base["p50_us"], 3),
            }
        r["ratios"] = {"reference": ref["backend"], **ratios}
