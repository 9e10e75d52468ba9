"""Shared workload of the concurrency tests and ``tools/stress_threads.py``.

A fixed set of distinct inputs (pictures of several sizes, colour and grey, and ready int8
tensors) is run once serially to record the reference answers; then threads call the same
Detector with a seeded random choice of those inputs and compare every answer, byte for byte.
Pictures go through :meth:`Detector.detect` (decoding and preprocessing run in parallel),
tensors through :meth:`Detector.run`.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import armvww

from .fuzzlib import base_rgb


def make_items(det: armvww.Detector, n: int = 32) -> list[tuple[str, Any]]:
    """``n`` distinct inputs: ("detect", uint8 picture) and ("run", int8 tensor) pairs."""
    items: list[tuple[str, Any]] = []
    for i in range(n):
        w, h = 40 + 7 * i, 90 - 2 * i
        pic = base_rgb(w, h, seed=i)
        if i % 4 == 1:
            pic = np.ascontiguousarray(pic[..., 1])
        if i % 2:
            items.append(("run", det.quantize(pic)))
        else:
            items.append(("detect", pic))
    return items


def call(det: armvww.Detector, item: tuple[str, Any]) -> bytes:
    kind, x = item
    if kind == "run":
        return det.run(x).tobytes()
    return det.detect(x).raw.tobytes()


def serial_answers(
    det: armvww.Detector, items: list[tuple[str, Any]], passes: int = 2
) -> list[bytes]:
    """Reference answers; every item is run ``passes`` times and must agree with itself."""
    ref = [call(det, it) for it in items]
    for _ in range(passes - 1):
        again = [call(det, it) for it in items]
        if again != ref:
            raise AssertionError("the serial run is not deterministic")
    if len(set(ref)) < 2:
        raise AssertionError("the workload is degenerate: every input gives the same answer")
    return ref


@dataclass
class Tally:
    """What the threads saw."""

    calls: int = 0
    mismatches: int = 0
    typed_errors: Counter[str] = field(default_factory=Counter)
    untyped_errors: list[str] = field(default_factory=list)
    first_mismatch: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, other: Tally) -> None:
        with self.lock:
            self.calls += other.calls
            self.mismatches += other.mismatches
            self.typed_errors.update(other.typed_errors)
            self.untyped_errors += other.untyped_errors
            self.first_mismatch = self.first_mismatch or other.first_mismatch


def hammer(
    det: armvww.Detector,
    items: list[tuple[str, Any]],
    ref: list[bytes],
    threads: int,
    calls_per_thread: int,
    seed: int = 0,
    stop_on_error: bool = True,
    used: threading.Barrier | None = None,
) -> Tally:
    """``threads`` threads x ``calls_per_thread`` calls of ``det``, checked against ``ref``.

    With ``stop_on_error`` a thread stops at its first ArmvwwError (e.g. the Detector was
    closed); the error is counted, not raised. ``used``, when given, is waited on by every
    thread after its first successful call (a test can then act while all of them run).
    Anything else a thread raises is re-raised here.
    """
    total = Tally()
    barrier = threading.Barrier(threads)

    def body(t: int) -> None:
        mine = Tally()
        rng = random.Random(f"{seed}:{t}")
        barrier.wait(timeout=120)
        for n in range(calls_per_thread):
            if n == 1 and used is not None:
                used.wait(timeout=120)
            k = rng.randrange(len(items))
            try:
                got = call(det, items[k])
            except armvww.ArmvwwError as exc:
                mine.typed_errors[type(exc).__name__] += 1
                if stop_on_error:
                    break
                continue
            except Exception as exc:
                mine.untyped_errors.append(f"{type(exc).__name__}: {exc}")
                break
            mine.calls += 1
            if got != ref[k]:
                mine.mismatches += 1
                if not mine.first_mismatch:
                    mine.first_mismatch = f"item {k}: {got!r} != {ref[k]!r}"
        total.add(mine)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(body, t) for t in range(threads)]
    for f in futures:
        f.result()  # re-raises what a thread raised
    return total
