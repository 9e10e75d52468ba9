"""Concurrency: one Detector shared by 8 threads gives exactly the serial answers; Detectors on
different backends side by side; a Detector closed while others run.

The 8 x 100,000-call version is ``tools/stress_threads.py``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import armvww
from armvww.backends import available_backends

from . import workload

pytestmark = pytest.mark.litert

THREADS = 8
CALLS = 1000


def _detector(path: Path, backend: str = "LiteRT", **kw: object) -> armvww.Detector:
    try:
        return armvww.Detector(path, backend=backend, **kw)  # type: ignore[arg-type]
    except armvww.BackendUnavailableError as exc:
        pytest.skip(f"{backend} is not usable: {exc}")


def test_shared_detector_gives_the_serial_answers(vww2_path: Path) -> None:
    with _detector(vww2_path) as det:
        items = workload.make_items(det)
        ref = workload.serial_answers(det, items)
        tally = workload.hammer(det, items, ref, THREADS, CALLS, seed=1)
    assert tally.untyped_errors == [] and not tally.typed_errors
    assert tally.calls == THREADS * CALLS
    assert tally.mismatches == 0, tally.first_mismatch


def test_detectors_on_different_backends_side_by_side(vww2_path: Path, vww4_path: Path) -> None:
    """Every available backend (LiteRT with XNNPACK and with its built-in kernels, plus the
    Arm NN backends when present), on both models, all running at once."""
    dets: list[armvww.Detector] = []
    try:
        for path in (vww2_path, vww4_path):
            dets.append(_detector(path))
            dets.append(_detector(path, options=armvww.LiteRTOptions(xnnpack=False)))
            for a in available_backends():
                if a.available and a.name != "LiteRT":
                    dets.append(_detector(path, backend=a.name))
        work = [(d, *_ref(d)) for d in dets]
        results: dict[int, workload.Tally] = {}

        def one(i: int) -> None:
            d, items, ref = work[i]
            results[i] = workload.hammer(
                d, items, ref, 2, 150 if d.input_shape[1] > 64 else 400, seed=i
            )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(work))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for d in dets:
            d.close()
    for i, (d, _, _) in enumerate(work):
        r = results[i]
        assert r.untyped_errors == [] and not r.typed_errors, (d, r)
        assert r.mismatches == 0, (d, r.first_mismatch)


def _ref(d: armvww.Detector) -> tuple[list[tuple[str, object]], list[bytes]]:
    items = workload.make_items(d, 12)
    return items, workload.serial_answers(d, items)


def test_closing_a_detector_while_threads_use_it(vww2_path: Path) -> None:
    """Threads on the closed Detector get BackendError (never a wrong answer, never a crash);
    threads on another Detector are not disturbed."""
    with _detector(vww2_path) as other:
        victim = _detector(vww2_path)
        items = workload.make_items(victim, 12)
        ref = workload.serial_answers(victim, items)
        ref_other = workload.serial_answers(other, items)
        assert ref == ref_other
        out: dict[str, workload.Tally] = {}
        gate = threading.Event()

        def run(name: str, det: armvww.Detector) -> None:
            gate.set()
            out[name] = workload.hammer(det, items, ref, 4, 1200, seed=7)

        tv = threading.Thread(target=run, args=("victim", victim))
        to = threading.Thread(target=run, args=("other", other))
        tv.start()
        to.start()
        gate.wait()
        while True:  # close once the victim has really been used
            try:
                victim.run(np.zeros(victim.input_shape, np.int8))
                break
            except armvww.BackendError:
                pytest.fail("closed before it was closed")
        victim.close()
        victim.close()  # idempotent
        tv.join()
        to.join()
        with pytest.raises(armvww.BackendError, match="closed"):
            victim.run(items[1][1])
    v, o = out["victim"], out["other"]
    assert v.untyped_errors == [] and v.mismatches == 0, v
    assert v.calls < 4 * 1200 and set(v.typed_errors) == {"BackendError"}, v
    assert o.untyped_errors == [] and o.mismatches == 0 and not o.typed_errors, o
    assert o.calls == 4 * 1200


def test_creating_and_closing_detectors_while_another_runs(vww2_bytes: bytes) -> None:
    with _detector(vww2_bytes) as det:  # type: ignore[arg-type]
        items = workload.make_items(det, 8)
        ref = workload.serial_answers(det, items)
        stop = threading.Event()
        churned = [0]

        def churn() -> None:
            while not stop.is_set():
                with armvww.Detector(vww2_bytes, backend="LiteRT") as d:
                    assert workload.call(d, items[1]) == ref[1]
                churned[0] += 1

        t = threading.Thread(target=churn)
        t.start()
        try:
            tally = workload.hammer(det, items, ref, 4, 400, seed=3)
        finally:
            stop.set()
            t.join()
    assert churned[0] > 0
    assert tally.mismatches == 0 and tally.untyped_errors == [] and not tally.typed_errors
