"""``armvww eval`` on the 13 shared photos: every available backend, the confusion matrix
checked against labels.csv read here and decisions made here through Detector.detect."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import armvww
from armvww import backends
from armvww.analysis.common import BackendEntry
from armvww.analysis.evaluate import evaluate, read_labelled
from armvww.model import store

from ..conftest import REPO, SAMPLES, report_line


def _available() -> list[str]:
    names = [n for n in backends.names() if backends.availability(n).available]
    if "LiteRT" not in names:
        pytest.skip("LiteRT is not installed here")
    # CpuRef under qemu takes seconds per vww4 inference; the amd64 tree covers it natively
    slow = {"CpuRef"} if os.environ.get("ARMVWW_EMULATION") else set()
    return [
        n
        for n in names
        if n not in slow and not backends.availability(n).details.get("defective_pad")
    ]


def _truth() -> dict[str, int]:
    with (SAMPLES / "labels.csv").open() as f:
        return {str(SAMPLES / r["path"]): int(r["label"]) for r in csv.DictReader(f)}


@pytest.mark.litert
@pytest.mark.parametrize("model_name", ["vww2", "vww4"])
def test_eval_confusion_matches_independent_counts(model_name: str, samples) -> None:
    names = _available()
    model = store.load_model(model_name)
    items = read_labelled(SAMPLES / "labels.csv")
    truth = _truth()
    assert {str(p): y for p, y in items} == truth
    rep = evaluate(items, [BackendEntry(n) for n in names], model)
    assert rep["image_errors"] == []
    assert [r["backend"] for r in rep["results"]] == names
    for r in rep["results"]:
        assert r["error"] is None, r["error"]
        with armvww.Detector(model, backend=r["backend"]) as det:
            mine = {p: int(det.detect(p).person) for p in truth}
        tp = sum(1 for p, y in truth.items() if y == 1 and mine[p] == 1)
        fp = sum(1 for p, y in truth.items() if y == 0 and mine[p] == 1)
        tn = sum(1 for p, y in truth.items() if y == 0 and mine[p] == 0)
        fn = sum(1 for p, y in truth.items() if y == 1 and mine[p] == 0)
        assert r["matrix"] == [[tn, fp], [fn, tp]]
        assert r["accuracy"] == pytest.approx((tp + tn) / len(truth), abs=1e-6)
        assert r["precision"] == pytest.approx(tp / (tp + fp), abs=1e-6)
        assert r["recall"] == pytest.approx(tp / (tp + fn), abs=1e-6)
        report_line(
            f"eval {model_name} {r['backend']}: accuracy {r['accuracy']:.3f} precision "
            f"{r['precision']:.3f} recall {r['recall']:.3f} confusion {r['matrix']}"
        )


@pytest.mark.litert
def test_eval_cli_folder_and_csv_agree(tmp_path: Path, samples) -> None:
    _available()
    root = tmp_path / "set"
    for path, label in samples:
        d = root / ("person" if label else "no_person")
        d.mkdir(parents=True, exist_ok=True)
        (d / path.name).symlink_to(path)
    runs = {}
    for src in (root, SAMPLES / "labels.csv"):
        proc = subprocess.run(
            [sys.executable, "-m", "armvww", "eval", str(src), "-b", "LiteRT", "--json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        rep = json.loads(proc.stdout)
        runs[src] = rep
    a, b = (r["results"][0] for r in runs.values())
    assert a["matrix"] == b["matrix"] and a["n"] == b["n"] == len(samples)
    text = subprocess.run(
        [sys.executable, "-m", "armvww", "eval", str(SAMPLES / "labels.csv"), "-b", "LiteRT"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert text.returncode == 0
    assert "confusion" in text.stdout and "man_in_red_jacket.png" in text.stdout


def test_eval_cli_reports_an_unknown_backend(tmp_path: Path) -> None:
    csv_path = tmp_path / "l.csv"
    csv_path.write_text(f"{SAMPLES / 'tflite-micro' / 'person.bmp'},1\n")
    if not (SAMPLES / "tflite-micro" / "person.bmp").exists():
        pytest.skip("the shared photos are absent")
    proc = subprocess.run(
        [sys.executable, "-m", "armvww", "eval", str(csv_path), "-b", "NoSuchBackend"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 16
