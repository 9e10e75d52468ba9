"""Produce ``benchmarks/results-<machine>.md``: the bench table and the performance targets.

    ARMVWW_MODEL_DIR=/path/to/models python benchmarks/run_benchmarks.py [--quick] [--out F]

Every target is a ratio of two things measured *in this run*, interleaved round by round so
machine noise hits both sides alike; each prints PASS or MISS with the ratio. No image is
committed: the large JPEGs are generated into a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from armvww import Detector, LiteRTOptions, backends, images, machine, select  # noqa: E402
from armvww.analysis import bench  # noqa: E402
from armvww.model.store import load_model  # noqa: E402

SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
SAMPLES = SHARED / "data" / "vww_samples"


def sample_paths() -> list[str]:
    with (SAMPLES / "labels.csv").open() as f:
        return [str(SAMPLES / row["path"]) for row in csv.DictReader(f)]


def interleaved(fns: dict[str, Callable[[], int]], rounds: int) -> dict[str, list[float]]:
    """Per round, each fn runs once (it returns its item count); seconds per item per round."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            n = fn()
            out[k].append((time.perf_counter() - t0) / n)
    return out


def ratio_of_medians(per_item: dict[str, list[float]], num: str, den: str) -> float:
    """Per-round ratio num/den (time per item), median over rounds."""
    return statistics.median(a / b for a, b in zip(per_item[num], per_item[den], strict=True))


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.targets: list[tuple[str, str, float, float, bool, str]] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        for line in lines:
            print(line, flush=True)

    def target(self, name: str, measured: float, goal: float, higher: bool, how: str) -> None:
        ok = measured >= goal if higher else measured <= goal
        rel = ">=" if higher else "<="
        self.targets.append((name, f"{rel} {goal}", measured, goal, ok, how))
        print(f"{'PASS' if ok else 'MISS'}  {name}: {measured:.3f} (goal {rel} {goal})", flush=True)


# -- targets ---------------------------------------------------------------------------------
def target_overhead(rep: Report, model_path: str, rounds: int) -> None:
    """Detector.run vs a bare set_tensor/invoke/get_tensor loop, same model, 1 thread."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=model_path, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    det = Detector(model_path, backend="LiteRT", options=LiteRTOptions(threads=1))
    q = det.quantize(sample_paths()[0])
    n = 400

    def bare() -> int:
        for _ in range(n):
            it.set_tensor(i, q)
            it.invoke()
            it.get_tensor(o)
        return n

    def api() -> int:
        run = det.run
        for _ in range(n):
            run(q)
        return n

    bare(), api()
    t = interleaved({"bare": bare, "detector": api}, rounds)
    r = ratio_of_medians(t, "detector", "bare")
    rep.add(
        "",
        "### Detector.run vs a bare LiteRT loop (1 thread, vww2, pre-quantised input)",
        f"median per-round time per call: bare {statistics.median(t['bare']) * 1e6:.1f} µs, "
        f"Detector.run {statistics.median(t['detector']) * 1e6:.1f} µs; "
        f"{rounds} interleaved rounds x {n} calls",
    )
    rep.target("Detector.run / bare loop", r, 1.05, False, f"{rounds} rounds x {n} calls")


def naive_loop(model_path: str, paths: list[str], fresh_interpreter: bool) -> Callable[[], int]:
    """The loop a user writes first (PIL convert('L'), resize, float maths, invoke)."""
    from ai_edge_litert.interpreter import Interpreter

    shared = Interpreter(model_path=model_path)
    shared.allocate_tensors()

    def run() -> int:
        for p in paths:
            it = shared
            if fresh_interpreter:
                it = Interpreter(model_path=model_path)
                it.allocate_tensors()
            d = it.get_input_details()[0]
            _, h, w, _ = d["shape"]
            scale, zp = d["quantization"]
            img = Image.open(p).convert("L").resize((w, h))
            x = np.asarray(img, np.float32) / 255.0 / scale + zp
            it.set_tensor(d["index"], x.astype(np.int8).reshape(d["shape"]))
            it.invoke()
            it.get_tensor(it.get_output_details()[0]["index"])
        return len(paths)

    return run


def target_naive(rep: Report, model_path: str, rounds: int, workers_e2e: float) -> None:
    paths = sample_paths() * 8
    det = Detector(model_path, backend="LiteRT")

    def armvww_loop() -> int:
        for p in paths:
            det.detect(p)
        return len(paths)

    fns = {
        "naive (Interpreter per image)": naive_loop(model_path, paths, True),
        "naive (one Interpreter)": naive_loop(model_path, paths, False),
        "armvww Detector.detect, 1 worker": armvww_loop,
    }
    for fn in fns.values():
        fn()
    t = interleaved(fns, rounds)
    rate = {k: 1.0 / statistics.median(v) for k, v in t.items()}
    rep.add(
        "",
        "### End-to-end on the 13 shared photos (decode + preprocess + inference)",
        "| loop | images/s |",
        "|---|---|",
        *(f"| {k} | {v:.0f} |" for k, v in rate.items()),
        f"| armvww, {machine.usable_cores()} process workers (bench, same photos) | "
        f"{workers_e2e:.0f} |",
    )
    best = max(rate["armvww Detector.detect, 1 worker"], workers_e2e)
    rep.target(
        "fastest armvww e2e / naive loop (Interpreter per image)",
        best / rate["naive (Interpreter per image)"],
        1.5,
        True,
        "13 photos x 8",
    )
    rep.target(
        "fastest armvww e2e / naive loop (one Interpreter)",
        best / rate["naive (one Interpreter)"],
        1.5,
        True,
        "13 photos x 8",
    )


def make_jpegs(folder: Path, n: int) -> list[str]:
    """Photo-like 1920x1080 JPEGs: gradients, shapes, blur and noise (seeded)."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(n):
        yy, xx = np.mgrid[0:1080, 0:1920].astype(np.float32)
        base = np.stack(
            [
                128 + 100 * np.sin(xx / (90 + 20 * k) + k),
                128 + 100 * np.cos(yy / (70 + 10 * k)),
                128 + 80 * np.sin((xx + yy) / 150),
            ],
            -1,
        )
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
        d = ImageDraw.Draw(img)
        for _ in range(40):
            x0, y0 = int(rng.integers(0, 1800)), int(rng.integers(0, 1000))
            x1, y1 = x0 + int(rng.integers(20, 400)), y0 + int(rng.integers(20, 300))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=colour)
        img = img.filter(ImageFilter.GaussianBlur(2))
        noise = rng.normal(0, 8, (1080, 1920, 3))
        arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
        p = folder / f"large_{k}.jpg"
        Image.fromarray(arr, "RGB").save(p, quality=90)
        out.append(str(p))
    return out


def target_draft(rep: Report, model_name: str, rounds: int, folder: Path) -> None:
    paths = make_jpegs(folder, 6)
    full = Detector(model_name, backend="LiteRT")
    fast = Detector(model_name, backend="LiteRT", fast_decode=True)
    rows = []
    flips = 0
    for p in paths:
        qa, qb = full.quantize(p), fast.quantize(p)
        diff = np.abs(qa.astype(np.int16) - qb.astype(np.int16))
        ra, rb = full.detect(p), fast.detect(p)
        flips += int(ra.person != rb.person)
        draft_size = images.load_image(p, draft=fast._draft).size
        rows.append(
            f"| {Path(p).name} | {draft_size[0]}x{draft_size[1]} | {int(diff.max())} | "
            f"{int((diff > 0).sum())}/{diff.size} | {float(diff.mean()):.3f} | "
            f"{[int(v) for v in ra.raw]} -> {[int(v) for v in rb.raw]} | "
            f"{ra.score:.4f} -> {rb.score:.4f} |"
        )

    def loop(det: Detector) -> Callable[[], int]:
        def run() -> int:
            for p in paths:
                det.detect(p)
            return len(paths)

        return run

    t = interleaved({"full": loop(full), "draft": loop(fast)}, rounds)
    speed = ratio_of_medians(t, "full", "draft")
    h, w = full.model.input_hw
    rep.add(
        "",
        f"### Large JPEGs (1920x1080, generated), model input {w}x{h}: fast_decode (draft)",
        f"full decode {1 / statistics.median(t['full']):.1f} images/s, draft "
        f"{1 / statistics.median(t['draft']):.1f} images/s: **{speed:.2f}x**",
        "",
        "| image | decoded size (draft) | max diff (LSB) | pixels differing | mean |diff| "
        "| raw full -> draft | P(person) full -> draft |",
        "|---|---|---|---|---|---|---|",
        *rows,
        f"decisions changed: {flips} of {len(paths)}",
    )
    rep.target(
        f"draft / full decode speed, 1920x1080 JPEG ({model_name})", speed, 1.0, True, "6 JPEGs"
    )


# -- main -------------------------------------------------------------------------------------
def bench_table(report: dict[str, Any]) -> list[str]:
    out = [
        "| backend | mode | n | min µs | p50 µs | p90 µs | p99 µs | max µs | mean µs | per s "
        "| x thr vs first | cold start ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if not r.get("ran"):
            out.append(f"| {r['backend']} | skipped: {r['error']} |||||||||||")
            continue
        label = r["backend"] + (" (emulated)" if r["emulated"] else " (native)")
        for mode, st in r["modes"].items():
            ratio = r["ratios"].get(mode, {}).get("throughput_ratio", 1.0)
            out.append(
                f"| {label} | {mode} | {st['n']} | {st['min_us']:.1f} | {st['p50_us']:.1f} | "
                f"{st['p90_us']:.1f} | {st['p99_us']:.1f} | {st['max_us']:.1f} | "
                f"{st['mean_us']:.1f} | {st['throughput_per_s']:.0f} | {ratio:.3f} | "
                f"{r['cold']['total_s'] * 1000:.2f} |"
            )
        for mode, sc in r.get("workers", {}).items():
            out.append(
                f"| {label} | {mode}, {sc['multi']['workers']} {sc['kind']} workers | "
                f"{sc['multi']['n']} | {sc['multi']['min_us']:.1f} | {sc['multi']['p50_us']:.1f} "
                f"| {sc['multi']['p90_us']:.1f} | {sc['multi']['p99_us']:.1f} | "
                f"{sc['multi']['max_us']:.1f} | {sc['multi']['mean_us']:.1f} | "
                f"{sc['multi']['throughput_per_s']:.0f} | scaling {sc['scaling']:.3f} | |"
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short budgets (a smoke run)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / f"results-{platform.machine()}.md"))
    args = ap.parse_args()
    quick = args.quick
    rounds = 5 if quick else 15
    dur = 0.5 if quick else 2.0
    model = load_model("vww2")
    model_path = model.source
    photos = sample_paths()
    small = [p for p in photos if Image.open(p).size == (96, 96)]
    rep = Report()
    rep.add("## Targets", "")

    entries = [bench.BackendEntry(n) for n in backends.names()]
    entries += [
        bench.BackendEntry.parse("LiteRT:threads=1"),
        bench.BackendEntry.parse("LiteRT:xnnpack=false"),
    ]
    cfg = bench.BenchConfig(
        "vww2",
        tuple(entries),
        ("infer", "e2e"),
        tuple(photos),
        duration_s=dur,
        rounds=5,
        warmup=20,
        workers=machine.usable_cores(),
    )
    print("running the bench table ...", flush=True)
    with tqdm(disable=None, file=sys.stderr, leave=False) as bar:  # None: on a terminal only
        table = bench.run_bench(cfg, bar)
    first = next(r for r in table["results"] if r.get("ran"))

    target_overhead(rep, model_path, rounds * 2)

    sc = first["workers"]["infer"]
    rep.add(
        "",
        f"### Multi-worker throughput ({sc['kind']}es, each its own interpreter, infer)",
        f"1 worker {sc['single']['throughput_per_s']:.0f}/s (runs "
        f"{sc['all_single_per_s']}), {sc['multi']['workers']} workers "
        f"{sc['multi']['throughput_per_s']:.0f}/s (runs {sc['all_multi_per_s']}); CPU µs per "
        f"inference {sc['single']['cpu_us_per_iter']} (1) vs {sc['multi']['cpu_us_per_iter']} "
        f"(N); load average {table['meta']['loadavg_start']} -> {table['meta']['loadavg_end']}",
    )
    threads_cfg = bench.BenchConfig(
        "vww2",
        iterations=2000 if not quick else 500,
        warmup=20,
        workers=machine.usable_cores(),
        worker_kind="thread",
    )
    m = load_model("vww2")
    q = [np.zeros(m.input.shape, np.int8)]
    first_entry = next(e for e in entries if e.label == first["backend"])
    t1 = bench.run_workers(threads_cfg, first_entry, "infer", 1, m, q)
    tn = bench.run_workers(threads_cfg, first_entry, "infer", threads_cfg.workers, m, q)
    rep.add(
        f"threads instead, same run: 1 worker {t1['throughput_per_s']:.0f}/s, "
        f"{threads_cfg.workers} workers {tn['throughput_per_s']:.0f}/s "
        f"(x{tn['throughput_per_s'] / t1['throughput_per_s']:.2f}; CPU µs/inference "
        f"{t1['cpu_us_per_iter']} vs {tn['cpu_us_per_iter']})"
    )
    rep.target(
        f"{sc['multi']['workers']}-worker / 1-worker throughput ({sc['kind']}es)",
        sc["scaling"],
        1.8,
        True,
        "bench workers",
    )

    # e2e on 96x96 photos vs inference-only, same run, same worker count
    cfg96 = bench.BenchConfig(
        "vww2",
        (bench.BackendEntry("LiteRT"),),
        ("infer", "e2e"),
        tuple(small),
        duration_s=dur,
        rounds=rounds,
        workers=machine.usable_cores(),
    )
    r96 = bench.run_bench(cfg96)["results"][0]
    e2e1 = r96["modes"]["e2e"]["throughput_per_s"] / r96["modes"]["infer"]["throughput_per_s"]
    w = r96["workers"]
    e2en = w["e2e"]["multi"]["throughput_per_s"] / w["infer"]["multi"]["throughput_per_s"]
    rep.add(
        "",
        f"### End-to-end vs inference-only on the {len(small)} 96x96 photos",
        f"1 worker: infer {r96['modes']['infer']['throughput_per_s']:.0f}/s (p50 "
        f"{r96['modes']['infer']['p50_us']:.0f} µs), "
        f"e2e {r96['modes']['e2e']['throughput_per_s']:.0f}/s "
        f"(p50 {r96['modes']['e2e']['p50_us']:.0f} µs); {w['e2e']['multi']['workers']} workers: "
        f"infer {w['infer']['multi']['throughput_per_s']:.0f}/s, e2e "
        f"{w['e2e']['multi']['throughput_per_s']:.0f}/s",
    )
    rep.target("e2e / infer rate, 96x96 photos, 1 worker", e2e1, 0.7, True, "bench")
    rep.target("e2e / infer rate, 96x96 photos, N workers each", e2en, 0.7, True, "bench")

    e2e_workers = first["workers"]["e2e"]["multi"]["throughput_per_s"]
    target_naive(rep, model_path, rounds, e2e_workers)

    with tempfile.TemporaryDirectory() as tmp:
        target_draft(rep, "vww2", rounds, Path(tmp))
        target_draft(rep, "vww4", max(3, rounds // 3), Path(tmp))

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp
        with Detector("vww2", backend="fastest") as det:
            choice = select.last_choice(det.model)
            rep.add(
                "", '### backend="fastest"', f"{det.backend}: {choice.explain() if choice else '?'}"
            )

    meta = table["meta"]
    emul = [r["backend"] for r in table["results"] if r.get("ran") and r["emulated"]]
    head = [
        f"# armvww benchmark results: {meta['machine']}",
        "",
        f"Generated {meta['date_utc']} by `benchmarks/run_benchmarks.py"
        f"{' --quick' if quick else ''}` on {meta['cpu']}, {meta['cores_usable']} usable cores, "
        f"{meta['platform']}, Python {meta['python']}, numpy {meta['numpy']}, Pillow "
        f"{meta['pillow']}, armvww {meta['armvww']}; load average {meta['loadavg_start']} -> "
        f"{meta['loadavg_end']} (a shared, noisy machine: compare ratios, not absolute "
        "numbers).",
        "",
        "x86-64, LiteRT native; Arm NN CpuRef native; CpuAcc/GpuAcc emulated under qemu if "
        f"present. Emulated rows in this run: {', '.join(emul) or 'none'}. Backends registered: "
        f"{', '.join(backends.names())}; not available: "
        + (
            ", ".join(
                f"{r['backend']} ({r['error']})" for r in table["results"] if not r.get("ran")
            )
            or "none"
        )
        + ".",
        "",
        "## Bench table (`armvww bench`, vww2 50x50, the 13 shared photos; "
        f"{dur} s per backend and mode, 5 interleaved rounds)",
        "",
        *bench_table(table),
        "",
        "Runtimes: "
        + "; ".join(f"{r['backend']}: {r['runtime']}" for r in table["results"] if r.get("ran")),
        "",
        "## Target summary",
        "",
        "| target | goal | measured | verdict |",
        "|---|---|---|---|",
        *(
            f"| {n} | {g} | {m:.3f} | {'PASS' if ok else 'MISS'} |"
            for n, g, m, _, ok, _ in rep.targets
        ),
        "",
    ]
    Path(args.out).write_text("\n".join(head + rep.lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
