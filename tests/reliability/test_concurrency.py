"""Concurrency: one Detector shared by 8 threads gives exactly the serial answers; Detectors on
different backends side by side; a Detector closed while others run.

The 8 x 100,000-call version is ``tools/stress_threads.py``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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

        def one(i: int) -> workload.Tally:
            d, items, ref = work[i]
            return workload.hammer(d, items, ref, 2, 150 if d.input_shape[1] > 64 else 400, seed=i)

        with ThreadPoolExecutor(len(work)) as pool:
            futures = [pool.submit(one, i) for i in range(len(work))]
        results = [f.result() for f in futures]  # re-raises what a thread raised
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
    threads on another Detector are not disturbed.

    Deterministic: the victim is closed only once each of its 4 threads has made a call
    (a barrier) and is closed at once; 20,000 calls per thread are thousands of times more
    than fit between the barrier and the close, so each thread ends on exactly one
    BackendError (a close that does not work ends them with none)."""
    with _detector(vww2_path) as other:
        victim = _detector(vww2_path)
        items = workload.make_items(victim, 12)
        ref = workload.serial_answers(victim, items)
        ref_other = workload.serial_answers(other, items)
        assert ref == ref_other
        used = threading.Barrier(4 + 1)
        with ThreadPoolExecutor(2) as pool:
            fv = pool.submit(workload.hammer, victim, items, ref, 4, 20_000, 7, True, used)
            fo = pool.submit(workload.hammer, other, items, ref, 4, 1200, 7)
            used.wait(timeout=120)  # every victim thread has had its first answer
            victim.close()
            victim.close()  # idempotent
            v, o = fv.result(timeout=600), fo.result(timeout=600)
        with pytest.raises(armvww.BackendError, match="closed"):
            victim.run(items[1][1])
    assert v.untyped_errors == [] and v.mismatches == 0, v
    assert v.calls >= 4 and v.typed_errors == {"BackendError": 4}, v
    assert o.untyped_errors == [] and o.mismatches == 0 and not o.typed_errors, o
    assert o.calls == 4 * 1200


def test_creating_and_closing_detectors_while_another_runs(vww2_bytes: bytes) -> None:
    """A Detector is created before the hammering starts and closed only once it is under
    way (events, not timing), and creation continues until the hammering ends."""
    with _detector(vww2_bytes) as det:  # type: ignore[arg-type]
        items = workload.make_items(det, 8)
        ref = workload.serial_answers(det, items)
        created, stop = threading.Event(), threading.Event()
        hammering = threading.Barrier(4 + 1)  # the hammer's 4 threads and churn()

        def churn() -> int:
            churned = 0
            try:
                while churned == 0 or not stop.is_set():
                    with armvww.Detector(vww2_bytes, backend="LiteRT") as d:
                        created.set()
                        if churned == 0:
                            hammering.wait(timeout=120)  # the other threads are running
                        assert workload.call(d, items[1]) == ref[1]
                    churned += 1
            except BaseException:
                created.set()  # wake the main thread, which re-raises this
                hammering.abort()
                raise
            return churned

        with ThreadPoolExecutor(2) as pool:
            fc = pool.submit(churn)
            assert created.wait(timeout=120)
            if fc.done():
                fc.result()  # churn() failed before the hammering: re-raise its error
            fh = pool.submit(workload.hammer, det, items, ref, 4, 400, 3, True, hammering)
            try:
                tally = fh.result(timeout=600)
            finally:
                stop.set()
            churned = fc.result(timeout=600)  # re-raises a failed assert in the churn thread
    assert churned >= 1
    assert tally.mismatches == 0 and tally.untyped_errors == [] and not tally.typed_errors
