"""The pipeline's targets (issue 12), as ratios measured in one run.

    ARMVWW_MODEL_DIR=/path/to/models python benchmarks/pipeline_bench.py [--quick] [--out F]
    python benchmarks/pipeline_bench.py million [--n 1000000]   # the stream test alone
    # another backend, some input sets, fewer items (e.g. CpuAcc under qemu, in armvww:arm64):
    tools/images.sh run arm64 -- python benchmarks/pipeline_bench.py -b CpuAcc \
        --sets photos,frames640 --scale 0.25 --rounds 2 --out benchmarks/results-pipeline-cpuacc.md

For each input set: the single-thread stage costs (inference = ``Detector.run`` on the
prepared tensors; preparation = ``Preparer`` = read, decode, EXIF, resize, crop, grey,
quantise), the CPU bound ``cores / (inference + preparation)`` items/s, sequential
``detect_many(workers="none")`` and the pipelined ``detect_many`` (``workers="auto"``, what
users get, judged by the targets; other plans beside it) side by side: every round measures
the stage costs and then every run, and each ratio is the median of the per-round ratios, so
a change of load moves the bound with the runs. The machine's own ceiling (two preparation
streams at once) is measured too. Pipelined rates are steady state: from the result at
10% of the run to the last (worker start-up, 0.3-4 s here depending on the load, is reported
apart, and the whole run's rate with it). Writes
``benchmarks/results-pipeline-<machine>.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from armvww import Detector, machine, pipeline  # noqa: E402
from armvww.backends.armnn_options import ArmNNOptions  # noqa: E402
from armvww.model import tflite_build  # noqa: E402
from armvww.pipeline import Plan, PlanSpec  # noqa: E402

SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
SAMPLES = SHARED / "data" / "vww_samples"
SIZES = [(96, 96), (320, 240), (640, 480), (1280, 720), (1920, 1080)]
#: Frame sizes of the frame sets (``frames96`` ...).
SETS_FRAMES = [(96, 96), (160, 120), (320, 240), (480, 360), (640, 480)]
#: Fewest items a stage-cost measurement runs (8 distinct frames alone are too few: noise).
STAGE_ITEMS = 400
#: The input sets (``--sets``).
SETS = (
    "photos",
    "generated",
    *(f"frames{w}" for w, _ in SETS_FRAMES),
    "ceiling",
    "one-core",
)


def sample_paths() -> list[str]:
    with (SAMPLES / "labels.csv").open() as f:
        return [str(SAMPLES / row["path"]) for row in csv.DictReader(f)]


def make_photos(folder: Path, per_size: int = 2) -> list[str]:
    """Photo-like PNG and JPEG files of several sizes (seeded)."""
    rng = np.random.default_rng(12)
    out = []
    for w, h in SIZES:
        for k in range(per_size):
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            base = np.stack(
                [
                    128 + 100 * np.sin(xx / (w / 12 + k)),
                    128 + 100 * np.cos(yy / (h / 9)),
                    128 + 80 * np.sin((xx + yy) / (w / 10)),
                ],
                -1,
            )
            img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
            d = ImageDraw.Draw(img)
            for _ in range(12):
                x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
                x1, y1 = x0 + int(rng.integers(4, w // 3)), y0 + int(rng.integers(4, h // 3))
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                d.ellipse((x0, y0, x1, y1), fill=colour)
            img = img.filter(ImageFilter.GaussianBlur(1))
            noise = rng.normal(0, 6, (h, w, 3))
            arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
            for ext in ("png", "jpg"):
                p = folder / f"gen_{w}x{h}_{k}.{ext}"
                Image.fromarray(arr, "RGB").save(p, quality=90)
                out.append(str(p))
    return out


@dataclass(frozen=True)
class Costs:
    """One round's per-item seconds, each stage run alone on one Python thread."""

    #: inference, wall time (``Detector.run``)
    inference: float
    #: the process's CPU seconds over that inference: every thread's, so a thread pool's
    #: (CpuAcc's default: the Compute Library's on every core) or an OpenCL device's on the
    #: CPU (GpuAcc on PoCL) counts; for a one-thread inference it is the wall time
    inference_cpu: float
    #: preparation (read, decode, EXIF, resize, crop, grey, quantise), one thread
    preparation: float

    def bound(self, cores: int) -> float:
        """The CPU bound, items/s: ``cores / (inference + preparation)``, each stage's cost
        in CPU time (what it takes from the cores; for one-thread stages, their time)."""
        return cores / (self.inference_cpu + self.preparation)


def stage_costs(det: Detector, items: list[Any], rounds: int, least: int = STAGE_ITEMS) -> Costs:
    """Median per-item costs, each stage alone, single thread, interleaved; the distinct
    ``items`` are repeated to at least ``least`` a measurement."""
    items = items * max(1, -(-least // len(items)))
    qs = [det.quantize(x) for x in items]
    det.run(qs[0])  # warm: a first inference may compile kernels (GpuAcc on PoCL: seconds)
    inf: list[float] = []
    cpu: list[float] = []
    prep: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for x in items:
            det.quantize(x)
        prep.append((time.perf_counter() - t0) / len(items))
        t0, c0 = time.perf_counter(), time.process_time()
        for q in qs:
            det.run(q)
        inf.append((time.perf_counter() - t0) / len(qs))
        cpu.append((time.process_time() - c0) / len(qs))
    return Costs(statistics.median(inf), statistics.median(cpu), statistics.median(prep))


#: The steady rate is timed after this share of a run's results: worker processes start
#: one after the other (0.3-0.4 s each here: an interpreter, numpy, Pillow, a LiteRT
#: session), so the first results come from one worker alone.
STEADY_SKIP = 0.1
#: A run over a generator of the items (a camera's frames: no length known) with this plan.
STREAMED = "streamed:"
#: A run with this plan whose frames are pickled to worker processes, as before the
#: shared-memory ring (``pipeline.RING_BYTES = 0`` for the run).
PICKLED = "pickled:"
#: Frame lists up to this size are distinct arrays (as a camera's are); pickle writes an
#: array it has already written in a message as a reference, so 8 arrays repeated would
#: flatter pickling. Larger sets repeat 8 arrays (their plans use threads: nothing pickled).
DISTINCT_FRAME_BYTES = 2 * 2**30
#: Sequential seconds of work in one run of a frames set (estimated: pipeline.FRAME_SECONDS).
FRAME_RUN_SECONDS = 2.0


def timed(det: Detector, items: list[Any], workers: PlanSpec) -> tuple[float, float, float]:
    """(total s, steady items/s after the first :data:`STEADY_SKIP` of the results, s to
    the first result).
    ``"streamed:auto"``: ``auto`` over a generator of the items, not the list;
    ``"pickled:auto"``: ``auto`` with frames pickled to worker processes (no ring)."""
    if isinstance(workers, str) and workers.startswith(PICKLED):
        saved = pipeline.RING_BYTES
        pipeline.RING_BYTES = 0
        try:
            return timed(det, items, workers[len(PICKLED) :])  # type: ignore[arg-type]
        finally:
            pipeline.RING_BYTES = saved
    streamed = isinstance(workers, str) and workers.startswith(STREAMED)
    source: Any = (x for x in items) if streamed else items
    if streamed:
        workers = workers[len(STREAMED) :]  # type: ignore[index]
    skip = max(1, int(len(items) * STEADY_SKIP))
    t0 = time.perf_counter()
    first = steady = 0.0
    n = 0
    for r in det.iter_detect(source, workers=workers):
        n += 1
        if n == 1:
            first = time.perf_counter()
        if n == skip:
            steady = time.perf_counter()
        assert r.ok, r.error
    end = time.perf_counter()
    assert n == len(items) > skip
    return end - t0, (n - skip) / (end - steady), first - t0


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.targets: list[tuple[str, str, float, bool]] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        for line in lines:
            print(line, flush=True)

    def target(self, name: str, measured: float, goal: float, higher: bool) -> None:
        ok = measured >= goal if higher else measured <= goal
        rel = ">=" if higher else "<="
        self.targets.append((name, f"{rel} {goal}", measured, ok))
        print(f"{'PASS' if ok else 'MISS'}  {name}: {measured:.3f} (goal {rel} {goal})", flush=True)


def compare(
    rep: Report,
    det: Detector,
    title: str,
    items: list[Any],
    plans: dict[str, PlanSpec],
    rounds: int,
    frames: bool,
    least: int = STAGE_ITEMS,
) -> None:
    """Each round measures the stage costs (over at least ``least`` items, so the bound) and
    then every run, so a change of load between rounds moves bound and runs together; the
    ratios are per-round medians."""
    cores = machine.usable_cores()
    distinct = list({id(x): x for x in items}.values())  # each input once, all sizes
    names = ["sequential", *plans]
    rates: dict[str, list[float]] = {k: [] for k in names}
    ratios: dict[str, list[float]] = {k: [] for k in names}
    starts: dict[str, list[float]] = {k: [] for k in plans}
    whole: dict[str, list[float]] = {k: [] for k in names}  # incl. start-up, x the goal
    costs: list[Costs] = []
    goal_name = "CPU bound"
    for _ in range(rounds):
        c = stage_costs(det, distinct, 1, least)
        costs.append(c)
        # frames, and files on a backend with one session (its inferences are one stream:
        # they cannot use more than one core's share however well preparation overlaps)
        inference_only = (frames or not det.replicable) and c.preparation < c.inference
        goal_name = "inference-only rate" if inference_only else "CPU bound"
        goal_rate = 1 / c.inference if inference_only else c.bound(cores)
        total, _, _ = timed(det, items, "none")
        rates["sequential"].append(len(items) / total)
        whole["sequential"].append(len(items) / total / goal_rate)
        for k, plan in plans.items():
            total, steady, start = timed(det, items, plan)
            rates[k].append(steady)
            starts[k].append(start)
            whole[k].append(len(items) / total / goal_rate)
        for k in names:
            ratios[k].append(rates[k][-1] / goal_rate)

    def med(f: Any) -> float:
        return float(statistics.median(f(c) for c in costs))

    i, icpu, p = (
        med(lambda c: c.inference),
        med(lambda c: c.inference_cpu),
        med(lambda c: c.preparation),
    )
    bound = cores / (icpu + p)
    rate = {k: statistics.median(v) for k, v in rates.items()}
    mr = {k: statistics.median(v) for k, v in ratios.items()}
    us = 1e6
    cpu_note = f" ({icpu * us:.0f} µs of CPU, every thread's)" if abs(icpu - i) > 0.05 * i else ""
    rep.add(
        "",
        f"### {title}",
        f"{len(items)} items per run, {rounds} rounds (each: stage costs, then every run), "
        f"{cores} cores; stage costs (each stage alone, median of the rounds): inference "
        f"{i * us:.0f} µs{cpu_note}, preparation {p * us:.0f} µs per item -> CPU bound {cores} / "
        f"({icpu * us:.0f} + {p * us:.0f} µs of CPU) = {bound:.0f}/s; inference-only rate "
        f"{1 / i:.0f}/s; goal: 0.9 x the {goal_name} (ratios: median over rounds of run / that "
        "round's goal)",
        "",
        f"| run | items/s, steady (median) | x {goal_name}, steady (median) | x sequential "
        f"| whole run incl. start-up, x {goal_name} | start-up s |",
        "|---|---|---|---|---|---|",
    )
    for k in names:
        st = f"{statistics.median(starts[k]):.2f}" if k in starts else "-"
        rep.add(
            f"| {k} | {rate[k]:.0f} | {mr[k]:.3f} | {rate[k] / rate['sequential']:.3f} "
            f"| {statistics.median(whole[k]):.3f} | {st} |"
        )
    rep.target(f"{title}: pipelined (auto) / {goal_name}", mr["auto"], 0.9, True)


TWO_STREAMS_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from armvww import Detector
paths = json.loads(sys.argv[2])
det = Detector("vww2", backend="LiteRT")
for x in paths[:13]:
    det.quantize(x)
t0 = time.perf_counter()
for x in paths:
    det.quantize(x)
print((time.perf_counter() - t0) / len(paths))
"""


def two_streams(rep: Report, paths: list[str]) -> None:
    """The machine's own ceiling: the preparation stage alone, once in one process, then in
    two processes at once (one per core). Their per-item costs say how much of the
    single-thread CPU bound two busy cores can reach here (shared caches, memory, clocks)."""
    cmd = [sys.executable, "-c", TWO_STREAMS_CHILD, str(REPO), json.dumps(paths)]

    def cost(out: str) -> float:
        return float(out.strip().splitlines()[-1])

    alone = cost(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    both = [cost(pr.communicate()[0]) for pr in pair]
    ceiling = 2 * alone / sum(both)
    rep.add(
        "",
        "### The machine's ceiling: two preparation streams at once",
        f"{len(paths)} photos prepared in one process: {alone * 1e6:.0f} µs per item; in two "
        f"processes at once: {both[0] * 1e6:.0f} and {both[1] * 1e6:.0f} µs per item. Two busy "
        f"cores reach {ceiling:.3f} of twice the single-thread rate, so that is about the most "
        "any pipeline reaches of the CPU bound on this machine.",
    )


ONE_CORE_CHILD = """
import json, os, statistics, sys, time
sys.path.insert(0, sys.argv[1])
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from armvww import Detector
paths = json.loads(sys.argv[2])
rounds = int(sys.argv[3])
det = Detector("vww2", backend="LiteRT")
det.detect_many(paths, workers="none")
t = {"none": [], "auto": []}
for _ in range(rounds):
    for k in t:
        t0 = time.perf_counter()
        det.detect_many(paths, workers=k)
        t[k].append(time.perf_counter() - t0)
print(json.dumps(t))
"""


def one_core(rep: Report, paths: list[str], rounds: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", ONE_CORE_CHILD, str(REPO), json.dumps(paths), str(rounds)],
        capture_output=True,
        text=True,
        check=True,
    )
    t = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = statistics.median(a / b for a, b in zip(t["auto"], t["none"], strict=True))
    rep.add(
        "",
        "### 1 core (sched_setaffinity to one CPU): pipelined (workers=auto) vs sequential",
        f"{len(paths)} files, {rounds} interleaved rounds; median per-round time ratio "
        f"auto / sequential = {ratio:.3f} (auto picks no workers on one core); median s per "
        f"run: sequential {statistics.median(t['none']):.3f}, auto "
        f"{statistics.median(t['auto']):.3f}",
    )
    rep.target("1 core: pipeline cost vs sequential (time ratio)", ratio, 1.03, False)


def rss_kb(pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:  # a child that just ended
        return 0
    return -1


def children_rss_kb() -> int:
    """The resident memory of this process's children (the pipeline's worker processes)."""
    pids = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update((task / "children").read_text().split())
        except OSError:
            pass
    return sum(rss_kb(p) for p in pids)


#: Plans of the million-item stream (``million --plan``): what ``auto`` picks for it (no
#: workers: the frames are small and come from an iterator), and the worker plans forced.
MILLION_PLANS: dict[str, PlanSpec] = {
    "auto": "auto",
    "thread": Plan.of("thread", infer=True),
    "process": Plan.of("process", infer=True),
}


def million(n: int, plan: str = "auto") -> dict[str, Any]:
    """``n`` tiny frames (8x8 grey, value k % 256) through ``iter_detect``: RSS growth and
    every result present once, in order (each value's raw output is known in advance)."""
    det = Detector("vww2", backend="LiteRT")
    frames = [np.full((8, 8), v, np.uint8) for v in range(256)]
    expect = [det.detect(f).raw.tolist() for f in frames]

    def stream() -> Any:
        for k in range(n):
            yield frames[k % 256]

    t0 = time.perf_counter()
    base = peak = workers_base = workers_peak = 0
    count = wrong = 0
    for r in det.iter_detect(stream(), workers=MILLION_PLANS[plan]):
        if r.error is not None or r.raw.tolist() != expect[count % 256]:
            wrong += 1
        count += 1
        if count == 10_000:
            base = rss_kb()
            workers_base = children_rss_kb()
        if count % 10_000 == 0:
            peak = max(peak, rss_kb())
            workers_peak = max(workers_peak, children_rss_kb())
    took = time.perf_counter() - t0
    return {
        "items": n,
        "results": count,
        "wrong_or_missing": wrong + (n - count),
        "rss_after_10k_kb": base,
        "rss_peak_kb": peak,
        "workers_rss_after_10k_kb": workers_base,
        "workers_rss_peak_kb": workers_peak,
        "growth_mb": round((peak - base) / 1024, 2),
        "seconds": round(took, 1),
        "plan": plan if plan == "auto" else MILLION_PLANS[plan].describe(),  # type: ignore[union-attr]
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("what", nargs="?", default="all", choices=("all", "million"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument(
        "--million-json",
        action="append",
        default=[],
        help="the result of a `million` run to include (repeatable: one per plan)",
    )
    ap.add_argument(
        "--plan", default="auto", choices=tuple(MILLION_PLANS), help="the million run's plan"
    )
    ap.add_argument("-b", "--backend", default="LiteRT", help="backend (label) to run on")
    ap.add_argument(
        "--model",
        default="vww2",
        help="model name or path; 'vww-ops': armvww's small model with the six VWW operator "
        "types (tflite_build.vww_ops_model: GpuAcc on PoCL compiles few kernels)",
    )
    ap.add_argument(
        "--route",
        choices=("parser", "delegate"),
        help="the Arm NN route (ArmNNOptions.route) for an Arm NN backend",
    )
    ap.add_argument(
        "--cpu-threads",
        type=int,
        help="CpuAcc's thread count (ArmNNOptions.cpu_threads; one per process): 1 makes "
        "every stage cost a single-thread one and leaves the other cores to preparation",
    )
    ap.add_argument("--sets", default=",".join(SETS), help=f"input sets, of {','.join(SETS)}")
    ap.add_argument("--scale", type=float, default=1.0, help="x the item counts (< 1: fewer)")
    ap.add_argument("--rounds", type=int, help="rounds per set (default 3 quick, else 5)")
    ap.add_argument(
        "--out", default=str(REPO / "benchmarks" / f"results-pipeline-{platform.machine()}.md")
    )
    args = ap.parse_args()
    if args.what == "million":
        print(json.dumps(million(args.n, args.plan)))
        return 0
    rounds = args.rounds or (3 if args.quick else 5)
    sets = [x for x in args.sets.split(",") if x]
    unknown = set(sets) - set(SETS)
    if unknown:
        ap.error(f"unknown sets {sorted(unknown)}; known: {', '.join(SETS)}")
    load0 = machine.loadavg()
    rep = Report()
    model: Any = tflite_build.vww_ops_model() if args.model == "vww-ops" else args.model
    options = (
        ArmNNOptions(route=args.route or "auto", cpu_threads=args.cpu_threads)
        if args.route or args.cpu_threads
        else None
    )
    det = Detector(model, backend=args.backend, options=options)

    def times(k: int) -> int:
        return max(1, round(k * args.scale))

    least = max(1, round(STAGE_ITEMS * min(1.0, args.scale)))  # stage-cost items per round

    cores = machine.usable_cores()
    chunk = pipeline.PROCESS_CHUNK  # the plans' default chunk, in their labels
    # "auto" is what users get and what the targets judge; the others are there to show
    # whether another plan would do better here (then "auto" should pick it).
    # "(caller infers)": the workers prepare, this process infers; "(infer)": each worker
    # prepares and infers in its own session, this process collects
    files_plans: dict[str, PlanSpec] = {
        "auto": "auto",
        f"process x{cores}, chunks of 16 (caller infers)": Plan(
            "process", cores, 16, 16 * 8 * cores, "bench"
        ),
        f"process x{cores}, chunks of 64 (infer)": Plan(
            "process", cores, 64, 64 * 2 * cores, "bench", infer=True
        ),
        f"thread x{cores}, chunk 4 (caller infers)": Plan("thread", cores, 4, 8 * cores, "bench"),
        f"thread x{cores}, chunk 4 (infer)": Plan(
            "thread", cores, 4, 8 * cores, "bench", infer=True
        ),
    }
    frame_plans: dict[str, Any] = {
        "auto": "auto",
        "auto, frames from a generator (a camera: no length known)": STREAMED + "auto",
        "auto, frames pickled to worker processes (no shared-memory ring)": PICKLED + "auto",
        "thread x1 (caller infers)": Plan("thread", 1, 1, 2, "bench"),
        f"thread x{cores}, chunk 4 (caller infers)": Plan("thread", cores, 4, 8 * cores, "bench"),
        f"thread x{cores}, chunk 4 (infer)": Plan(
            "thread", cores, 4, 8 * cores, "bench", infer=True
        ),
        f"process x{cores}, chunks of 16 (infer)": Plan(
            "process", cores, 16, 16 * 2 * cores, "bench", infer=True
        ),
        f"process x{cores}, chunks of {chunk} (infer)": Plan.of("process", cores, infer=True),
        f"process x{max(1, cores - 1)} and the caller, chunks of {chunk} (infer)": Plan.of(
            "process", max(1, cores - 1), infer=True, caller=True
        ),
    }
    if not det.replicable:  # one session only (Arm NN): no plan can infer in workers
        for plans in (files_plans, frame_plans):
            for k in [k for k, v in plans.items() if isinstance(v, Plan) and v.infer]:
                del plans[k]
    photos = sample_paths()
    if "photos" in sets:
        # >= 1000 files per run: the regime where "auto" starts worker processes; 5,200 so
        # that the workers' start (both sessions opening) is a small part of the steady rate
        k = times(400)
        compare(
            rep,
            det,
            f"the 13 shared photos (x {k})",
            photos * k,
            files_plans,
            rounds,
            False,
            least,
        )
    if "generated" in sets:
        with tempfile.TemporaryDirectory() as tmp:
            gen = make_photos(Path(tmp))
            k = times(50)
            title = f"{len(gen)} generated PNG+JPEG, 96x96 to 1920x1080 (x {k})"
            compare(rep, det, title, gen * k, files_plans, rounds, False, least)
    rng = np.random.default_rng(3)
    for w, h in SETS_FRAMES:
        if f"frames{w}" not in sets:
            continue
        fr = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(8)]
        # at least 4,800 frames and about 2 s of sequential work a run (96x96: 10,848), so
        # that the steady rate is not the workers' ramp-up; a list that long is a batch
        # (worker processes) up to 320x240 (pipeline.min_batch_frames)
        cost = pipeline.FRAME_SECONDS + w * h * pipeline.PIXEL_SECONDS
        k = times(max(600, math.ceil(FRAME_RUN_SECONDS / (8 * cost))))
        if 8 * k * fr[0].nbytes <= DISTINCT_FRAME_BYTES:
            items = [f.copy() for f in fr * k]
            title = f"frames {w}x{h} uint8 RGB arrays ({8 * k} distinct arrays, 8 contents)"
        else:
            items = fr * k
            title = f"frames {w}x{h} uint8 RGB arrays (8 arrays x {k})"
        compare(rep, det, title, items, frame_plans, rounds, True, least)
    if "ceiling" in sets:
        two_streams(rep, photos * times(40))
    if "one-core" in sets:
        one_core(rep, photos * times(80), rounds * 4)  # long enough to see 1%
    for million_json in args.million_json:
        m = json.loads(Path(million_json).read_text())
        rep.add(
            "",
            "### A million-item stream (`iter_detect` on a generator of 8x8 grey frames)",
            f"{m['results']} results for {m['items']} items, {m['wrong_or_missing']} wrong or "
            f"missing (each value's raw output known in advance, so order is checked too); "
            f"RSS after 10k items {m['rss_after_10k_kb'] / 1024:.1f} MB, peak "
            f"{m['rss_peak_kb'] / 1024:.1f} MB: growth {m['growth_mb']} MB (this process); "
            f"worker processes together {m['workers_rss_after_10k_kb'] / 1024:.1f} MB after 10k "
            f"items, peak {m['workers_rss_peak_kb'] / 1024:.1f} MB; took {m['seconds']} s "
            f"(plan {m['plan']})",
        )
        kind = m["plan"].split(" (")[0]
        rep.target(f"million-item stream ({kind}): RSS growth MB", m["growth_mb"], 20, False)
        rep.target(
            f"million-item stream ({kind}): wrong or missing", m["wrong_or_missing"], 0, False
        )
    load1 = machine.loadavg()
    emulated = str(det.session_info.get("emulation", ""))
    name = "vww_ops_model (armvww's own)" if args.model == "vww-ops" else det.model.name
    route = f", {det.route} route" if det.route else ""
    if "cpu_threads" in det.session_info:
        route += f", CpuAcc threads: {det.session_info['cpu_threads']}"
    head = [
        f"# armvww pipeline benchmark: {platform.machine()}",
        "",
        f"Generated {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} by "
        f"`benchmarks/pipeline_bench.py{' --quick' if args.quick else ''}` on "
        f"{machine.cpu_model()}, {cores} usable cores, Python {platform.python_version()}; "
        f"{name} on {det.backend} ({det.runtime}{route}"
        f"{', EMULATED: ' + emulated + ', ratios only' if emulated else ''}); "
        f"load average {load0} at the start -> {load1} at the end (the bench loads every "
        "core itself; what a hypervisor takes is not in it: see the machine's ceiling below, "
        "and read the figures as ratios only).",
        "",
        "| target | goal | measured | verdict |",
        "|---|---|---|---|",
        *(f"| {n} | {g} | {m:.3f} | {'PASS' if ok else 'MISS'} |" for n, g, m, ok in rep.targets),
    ]
    Path(args.out).write_text("\n".join(head + rep.lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
