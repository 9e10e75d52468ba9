"""Writers of a bench report (the dict :func:`armvww.analysis.bench.run_bench` returns):
one JSON document, CSV rows, or a table for people."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .bench import COLD_KEYS, STAT_FIELDS

CSV_FIELDS: tuple[str, ...] = (
    "backend",
    "mode",
    "workers",
    *STAT_FIELDS,
    "throughput_ratio",
    "p50_ratio",
    "cold_total_ms",
    "emulated",
    "runtime",
    "model",
    "machine",
    "cpu",
    "cores",
    "date_utc",
)


def to_json(report: dict[str, Any]) -> str:
    """The report as one JSON document."""
    return json.dumps(report, indent=2)


def to_csv(report: dict[str, Any]) -> str:
    """One row per backend and mode (and per multi-worker run), columns :data:`CSV_FIELDS`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    meta = report["meta"]
    common = {
        "model": report["model"]["name"],
        "machine": meta["machine"],
        "cpu": meta["cpu"],
        "cores": meta["cores_usable"],
        "date_utc": meta["date_utc"],
    }
    for r in report["results"]:
        if not r.get("ran"):
            continue
        base = {
            "backend": r["backend"],
            "cold_total_ms": round(r["cold"]["total_s"] * 1000, 3),
            "emulated": r["emulated"],
            "runtime": r["runtime"],
            **common,
        }
        for mode, st in r["modes"].items():
            ratio = r.get("ratios", {}).get(mode, {})
            w.writerow({**base, "mode": mode, "workers": 1, **st, **ratio})
        for mode, sc in r.get("workers", {}).items():
            w.writerow({**base, "mode": f"{mode}-workers", **sc["multi"]})
    return buf.getvalue()


def to_text(report: dict[str, Any]) -> str:
    """A readable table for people."""
    meta, cfg = report["meta"], report["config"]
    lines = [
        f"armvww bench  model {report['model']['name']} {tuple(report['model']['input'])}  "
        f"{meta['date_utc']}",
        f"machine {meta['machine']}  {meta['cpu']}  {meta['cores_usable']} cores usable  "
        f"python {meta['python']}  load {meta['loadavg_start']} -> {meta['loadavg_end']}",
        f"budget {cfg['duration_s']} s"
        if cfg["duration_s"]
        else f"budget {cfg['iterations']} iterations",
        f"  per backend and mode, {cfg['rounds']} interleaved rounds, warm-up {cfg['warmup']}",
    ]
    for r in report["results"]:
        if not r.get("ran"):
            lines.append(f"{r['backend']}: skipped ({r['error']})")
    ran = [r for r in report["results"] if r.get("ran")]
    if not ran:
        return "\n".join(lines)
    lines.append("")
    lines.append("cold start (ms)")
    keys = ["import_s", "open_s", *COLD_KEYS, "first_inference_s", "total_s"]
    present = [k for k in keys if any(k in r["cold"] for r in ran)]
    width = max(len(_label(r)) for r in ran) + 2
    lines.append(f"{'backend':<{width}}" + "".join(f"{k[:-2]:>16}" for k in present))
    for r in ran:
        cells = "".join(
            f"{r['cold'][k] * 1000:>16.3f}" if k in r["cold"] else f"{'-':>16}" for k in present
        )
        lines.append(f"{_label(r):<{width}}{cells}")
    for mode in cfg["modes"]:
        lines.append("")
        lines.append(f"steady state: {mode} (latency µs; ratios vs {ran[0]['backend']})")
        head = ["min", "p50", "p90", "p99", "max", "mean", "per s", "x thr", "x p50"]
        lines.append(f"{'backend':<{width}}{'n':>7}" + "".join(f"{h:>10}" for h in head))
        for r in ran:
            st = r["modes"][mode]
            ra = r.get("ratios", {}).get(mode, {})
            vals = [st[k] for k in STAT_FIELDS[1:]]
            cells = "".join(f"{v:>10.1f}" for v in vals)
            cells += f"{ra.get('throughput_ratio', 1.0):>10.3f}{ra.get('p50_ratio', 1.0):>10.3f}"
            lines.append(f"{_label(r):<{width}}{st['n']:>7}{cells}")
    if any("workers" in r for r in ran):
        lines.append("")
        lines.append(
            f"multi-worker throughput ({cfg['worker_kind']} workers, own session each; "
            "cpu = CPU µs per iteration per worker)"
        )
        lines.append(
            f"{'backend':<{width}}{'mode':>6}{'workers':>9}{'1 worker/s':>12}"
            f"{'N workers/s':>13}{'scaling':>9}{'cpu 1':>9}{'cpu N':>9}"
        )
        for r in ran:
            for mode, sc in r.get("workers", {}).items():
                lines.append(
                    f"{_label(r):<{width}}{mode:>6}{sc['multi']['workers']:>9}"
                    f"{sc['single']['throughput_per_s']:>12.1f}"
                    f"{sc['multi']['throughput_per_s']:>13.1f}{sc['scaling']:>9.3f}"
                    f"{sc['single']['cpu_us_per_iter']:>9.1f}{sc['multi']['cpu_us_per_iter']:>9.1f}"
                )
    return "\n".join(lines)


def _label(r: dict[str, Any]) -> str:
    return str(r["backend"]) + (" (emulated)" if r.get("emulated") else "")
