"""Pipelined preparation: decode and preprocess in workers while the caller infers.

:class:`Preparer` is the shared preprocessing of one model (image -> int8 input tensor), a
small picklable object so that worker processes can run it. :func:`prepared` runs a preparer
over a stream of items in workers and yields ``(source, tensor or error)`` **in input order,
each item exactly once**, so the caller (the :class:`~armvww.detector.Detector`) can run
inference on item *k* while the workers decode items *k+1 ... k+window*.

How the workers run is a :class:`Plan`:

* ``"none"``: no workers; each item is prepared when the caller asks for it (sequential).
* ``"thread"``: a thread pool. Pillow's decoders and resize release the GIL, so threads
  overlap with an inference that releases it too (LiteRT's ``invoke`` does); the Python
  parts of preprocessing do not overlap.
* ``"process"``: worker processes (fresh interpreters started with ``sys.executable``; the
  caller's ``__main__`` is never re-imported), each fed chunks of items through its own
  socket; no GIL is shared, at the cost of pickling every item and tensor.

:func:`choose_plan` picks one from the usable cores and the input kind (see its rule, which
comes from ``benchmarks/run_benchmarks.py``); every choice is overridable.

Guarantees, whichever plan runs:

* **Order and exactly-once**: results come out in input order; every item gives one result,
  a tensor or its :class:`~armvww.errors.ArmvwwError` (input rules:
  :func:`armvww.images.expand_inputs`).
* **Bounded memory**: at most ``Plan.window`` items are taken from the input and not yet
  returned (in flight or waiting for their turn); the input is consumed lazily, so a stream
  of a million items uses the memory of ``window`` of them.
* **Interrupts**: ``KeyboardInterrupt`` (or closing the generator) stops the workers: worker
  processes ignore SIGINT themselves, are told to stop, then terminated, then killed, and
  joined before the exception propagates; none is left behind.
* **A worker process that dies** (a crash in a native decoder, ``os._exit``, SIGKILL) is
  replaced; the items it held are prepared again one at a time, and an item whose worker
  dies again gets a :class:`WorkerError` as its result. Nothing hangs.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.context
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import images, machine, preprocess
from .errors import ArmvwwError, ImageDecodeError, InputError

log = logging.getLogger(__name__)

#: How items are prepared: no workers, a thread pool, or worker processes.
Kind = Literal["none", "thread", "process"]
KINDS: tuple[str, ...] = ("none", "thread", "process")

#: What one prepared item is: the int8 tensor, or the error that stopped it.
Outcome = np.ndarray | ArmvwwError


class WorkerError(ArmvwwError):
    """A worker process died (crash, ``os._exit``, a signal) while preparing this item."""

    exit_code = 14


@dataclass(frozen=True)
class Preparer:
    """The shared preprocessing of one model: an image -> its int8 input tensor.

    Picklable (plain numbers), so worker processes run exactly the code the Detector runs.

    Attributes:
        shape: the model's NHWC input shape ``(1, H, W, 1)``.
        scale, zero_point: the input quantisation.
        max_pixels: the decompression-bomb guard (see :mod:`armvww.images`).
        draft: JPEG draft size ``(w, h)`` (``fast_decode``), or None.
        side: the model's larger input side (the aspect-ratio guard of
            :func:`armvww.images.load_image`).
    """

    shape: tuple[int, ...]
    scale: float
    zero_point: int
    max_pixels: int = images.MAX_PIXELS
    draft: tuple[int, int] | None = None
    side: int = 1

    def __call__(self, image: images.ImageInput) -> np.ndarray:
        """``image`` -> int8 array of :attr:`shape`.

        Raises:
            ImageDecodeError: the image cannot be decoded, or is too large once resized.
            InputError: an array of the wrong dtype or shape, or an unsupported input type.
        """
        img = images.load_image(image, self.max_pixels, self.draft, self.side)
        rw, rh = preprocess.resized_size(img.width, img.height, self.shape[2], self.shape[1])
        if rw * rh > self.max_pixels:
            raise ImageDecodeError(
                f"image {images.describe(image)} is {img.width}x{img.height}: resizing its "
                f"shorter side to the model's would need a {rw}x{rh} image, over max_pixels "
                f"({self.max_pixels}); crop it to a saner aspect ratio first"
            )
        return preprocess.image_to_input(img, self.shape, self.scale, self.zero_point)


@dataclass(frozen=True)
class Plan:
    """How :func:`prepared` runs.

    Attributes:
        kind: ``"none"``, ``"thread"`` or ``"process"``.
        workers: worker count (ignored for ``"none"``).
        chunk: items per task sent to a worker (amortises the per-task cost; 1 for frames).
        window: most items taken from the input and not yet returned; the memory bound.
        reason: why this plan (for logs and reports).
    """

    kind: Kind = "none"
    workers: int = 1
    chunk: int = 1
    window: int = 1
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"pipeline kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("workers", "chunk", "window"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096:
                raise InputError(f"pipeline {name} must be an integer in [1, 4096], got {v!r}")

    @classmethod
    def of(
        cls, kind: Kind, workers: int | None = None, chunk: int | None = None, reason: str = ""
    ) -> Plan:
        """A plan of ``kind`` with defaults: workers = usable cores, chunk 16 for processes
        and 1 otherwise, window = 2 chunks per worker (1 item for ``"none"``)."""
        if kind == "none":
            return cls("none", 1, 1, 1, reason or "requested")
        n = workers if workers is not None else machine.usable_cores()
        c = chunk if chunk is not None else (16 if kind == "process" else 1)
        return cls(kind, n, c, max(2, 2 * n) * c, reason or "requested")

    def describe(self) -> str:
        """One line: kind, workers, chunk, window and the reason."""
        if self.kind == "none":
            return f"sequential ({self.reason})"
        return (
            f"{self.workers} {self.kind} workers, {self.chunk} items per task, at most "
            f"{self.window} items held ({self.reason})"
        )


#: Below this many known items, starting worker processes costs more than it saves.
MIN_ITEMS_FOR_PROCESSES = 1000


def choose_plan(
    files: bool,
    count: int | None = None,
    cores: int | None = None,
    inference_holds_gil: bool = False,
) -> Plan:
    """The plan for this input kind and machine (``benchmarks/pipeline_bench.py``; LiteRT on
    x86-64, 2 cores; ``benchmarks/gil_release.py`` for which inference holds the GIL).

    * one usable core: ``"none"`` (any worker only adds its cost);
    * files or bytes (decoding in Python-held Pillow code costs 2-4x the inference): worker
      processes, one per core, chunks of 16 (the per-task cost: chunks of 4 reached 0.55 of
      the CPU bound, chunks of 16 0.76, on 2,600 photo files at load 0.5-1); fewer than
      :data:`MIN_ITEMS_FOR_PROCESSES` known items: one thread (starting two worker
      interpreters costs 0.5-4 s here, depending on the load, against about 0.3 ms saved
      per item);
    * arrays (frames): one preparing thread, items one at a time: pickling a frame to a
      process costs about what preparing it does; but when the inference holds the GIL
      (PyArmNN's ``EnqueueWorkload``, the Arm NN parser route), a thread cannot overlap it,
      so one worker process, items one at a time.
    """
    n = cores if cores is not None else machine.usable_cores()
    if n <= 1:
        return Plan.of("none", reason="one usable core")
    if not files and inference_holds_gil:
        return Plan.of("process", 1, 1, reason="arrays, inference holds the GIL: one process")
    if not files:
        return Plan.of("thread", 1, 1, reason="arrays: one preparing thread")
    if count is not None and count < MIN_ITEMS_FOR_PROCESSES:
        return Plan.of("thread", 1, 1, reason=f"{count} files: too few to start processes")
    return Plan.of("process", n, reason=f"files on {n} cores")


# -- the stream ------------------------------------------------------------------------------
#: An input item tagged with its position and its label (``images.describe``).
_Job = tuple[int, str, Any]


def _jobs(items: object) -> Iterator[_Job]:
    """Number and label the items of :func:`armvww.images.expand_inputs`, lazily."""
    for k, item in enumerate(images.expand_inputs(items)):
        label = item.source if isinstance(item, images.BadItem) else images.describe(item)
        yield (k, label, item)


def _prepare_one(prepare: Callable[[Any], np.ndarray], item: Any) -> Outcome:
    if isinstance(item, images.BadItem):
        return item.error
    try:
        return prepare(item)
    except ArmvwwError as exc:
        return exc


#: A plan, or ``"auto"`` (:func:`choose_plan` on the first items), or a kind with defaults.
PlanSpec = Plan | Literal["auto", "none", "thread", "process"]


def _auto(spec: str, jobs: Iterator[_Job], holds_gil: bool) -> tuple[Plan, Iterator[_Job]]:
    """The plan for ``spec``; for ``"auto"``, look at up to :data:`MIN_ITEMS_FOR_PROCESSES`
    items first (they are kept and come first)."""
    if spec in KINDS:
        return Plan.of(spec), jobs  # type: ignore[arg-type]
    if spec != "auto":
        raise InputError(
            f"workers must be a Plan, 'auto' or one of {', '.join(KINDS)}, got {spec!r}"
        )
    head: list[_Job] = []
    for j in jobs:
        head.append(j)
        if not _is_file_like(j[2]) or len(head) >= MIN_ITEMS_FOR_PROCESSES:
            break
    files = all(_is_file_like(j[2]) for j in head)
    count = len(head) if len(head) < MIN_ITEMS_FOR_PROCESSES else None
    return choose_plan(files, count, None, holds_gil), itertools.chain(head, jobs)


def _is_file_like(item: object) -> bool:
    """A path (cheap to hold while looking ahead); bytes count as arrays (one thread)."""
    return isinstance(item, (str, os.PathLike, images.BadItem))


def prepared(
    prepare: Callable[[Any], np.ndarray],
    items: object,
    plan: PlanSpec = "auto",
    inference_holds_gil: bool = False,
) -> Iterator[tuple[str, Outcome]]:
    """Yield ``(label, tensor or ArmvwwError)`` for every item, in input order.

    ``items`` follows the input rules of :func:`armvww.images.expand_inputs` (one image, or
    an iterable of them; folders expand; an iterable that raises ends with an error item).

    ``prepare`` must be picklable for ``"process"`` plans (a :class:`Preparer` is). Errors
    other than :class:`ArmvwwError` raised by ``prepare`` propagate, as in a plain loop.

    Raises:
        KeyboardInterrupt: after the workers are stopped (see the module docs).
    """
    jobs = _jobs(items)
    if not isinstance(plan, Plan):
        plan, jobs = _auto(plan, jobs, inference_holds_gil)
    log.debug("pipeline: %s", plan.describe())
    if plan.kind == "none":
        for _, label, item in jobs:
            yield label, _prepare_one(prepare, item)
    elif plan.kind == "thread":
        yield from _threaded(prepare, jobs, plan)
    else:
        with _ProcessPool(prepare, plan.workers) as pool:
            yield from pool.run(jobs, plan)


def _chunks(jobs: Iterator[_Job], size: int) -> Iterator[list[_Job]]:
    buf: list[_Job] = []
    for j in jobs:
        buf.append(j)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def _prepare_chunk(prepare: Callable[[Any], np.ndarray], chunk: list[_Job]) -> list[Outcome]:
    return [_prepare_one(prepare, item) for _, _, item in chunk]


def _threaded(
    prepare: Callable[[Any], np.ndarray], jobs: Iterator[_Job], plan: Plan
) -> Iterator[tuple[str, Outcome]]:
    chunks = _chunks(jobs, plan.chunk)
    ahead = max(1, plan.window // plan.chunk)
    pool = ThreadPoolExecutor(plan.workers, thread_name_prefix="armvww-prepare")
    pending: deque[tuple[list[_Job], Future[list[Outcome]]]] = deque()
    try:
        for c in chunks:
            pending.append((c, pool.submit(_prepare_chunk, prepare, c)))
            if len(pending) >= ahead:
                break
        while pending:
            c, fut = pending.popleft()
            outs = fut.result()
            for (_, label, _), out in zip(c, outs, strict=True):
                yield label, out
            nxt = next(chunks, None)  # after the chunk is handed over: the window holds
            if nxt is not None:
                pending.append((nxt, pool.submit(_prepare_chunk, prepare, nxt)))
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# -- worker processes --------------------------------------------------------------------------
def _worker_init() -> None:
    """In each worker process: ignore SIGINT (a Ctrl-C reaches the whole process group;
    the parent decides and stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_chunk_safe(prepare: Callable[[Any], np.ndarray], chunk: list[_Job]) -> list[Outcome]:
    """:func:`_prepare_chunk` for a worker process: every outcome comes back picklable."""
    return [_picklable(o) for o in _prepare_chunk(prepare, chunk)]


def _picklable(out: Outcome) -> Outcome:
    if isinstance(out, np.ndarray):
        return out
    try:
        pickle.dumps(out)
        return out
    except Exception:
        return ImageDecodeError(f"{type(out).__name__}: {out}")


_MAIN_LOCK = threading.Lock()


class _NoMainProcess(multiprocessing.context.SpawnProcess):
    """A ``spawn`` process that does not re-run the caller's ``__main__``.

    ``spawn`` normally re-imports the main script in every child, which re-runs a script
    written without the ``if __name__ == "__main__":`` guard (and then fails). The workers
    need nothing from ``__main__`` (they run :class:`Preparer`), so the main module's file and
    spec are hidden while the child's start-up data is written.
    """

    def start(self) -> None:
        main = sys.modules["__main__"]
        with _MAIN_LOCK:
            saved: dict[str, Any] = {
                k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
            }
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
            try:
                super().start()
            finally:
                main.__dict__.pop("__spec__", None)
                main.__dict__.update(saved)


class _NoMainContext(multiprocessing.context.SpawnContext):
    Process = _NoMainProcess


_CONTEXT = _NoMainContext()


class _ProcessPool:
    """Worker processes (:class:`~concurrent.futures.ProcessPoolExecutor`, ``spawn``): chunks
    of items in, outcomes out, within the plan's window; see :func:`prepared`."""

    def __init__(self, prepare: Any, n: int) -> None:
        self._prepare = prepare
        self._n = n
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self._n, mp_context=_CONTEXT, initializer=_worker_init)

    def __enter__(self) -> _ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what has not started, let the running chunks finish, join every worker."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, jobs: Iterator[_Job], plan: Plan) -> Iterator[tuple[str, Outcome]]:
        chunks = _chunks(jobs, plan.chunk)
        ahead = max(1, plan.window // plan.chunk)
        pending: deque[tuple[list[_Job], Future[list[Outcome]]]] = deque()

        def submit(c: list[_Job]) -> None:
            pending.append((c, self._pool.submit(_prepare_chunk_safe, self._prepare, c)))

        for c in chunks:
            submit(c)
            if len(pending) >= ahead:
                break
        while pending:
            c, fut = pending[0]
            try:
                outs = fut.result()
            except BrokenProcessPool:
                self._broken(pending)
                continue
            pending.popleft()
            for (_, label, _), out in zip(c, outs, strict=True):
                yield label, out
            nxt = next(chunks, None)  # after the chunk is handed over: the window holds
            if nxt is not None:
                submit(nxt)

    def _broken(self, pending: deque[tuple[list[_Job], Future[list[Outcome]]]]) -> None:
        """A worker died, and every unfinished chunk failed with it. Start new workers and
        prepare the unfinished items again, one at a time, alone in the pool: an item whose
        worker dies then gets a :class:`WorkerError`; the others get their results."""
        old = list(pending)
        pending.clear()
        self._restart()
        redo = sum(len(c) for c, f in old if not _finished(f))
        log.warning(
            "a pipeline worker process died; its %d unfinished item(s) are prepared again "
            "one at a time",
            redo,
        )
        for c, fut in old:
            if _finished(fut):
                pending.append((c, fut))  # done before the break: keep it
                continue
            outs: list[Outcome] = []
            for j in c:
                try:
                    outs += self._pool.submit(_prepare_chunk_safe, self._prepare, [j]).result()
                except BrokenProcessPool:
                    self._restart()
                    outs.append(
                        WorkerError(
                            f"the worker process preparing {j[1]} died, also when it prepared "
                            "this item alone: the item is the likely cause"
                        )
                    )
            done: Future[list[Outcome]] = Future()
            done.set_result(outs)
            pending.append((c, done))

    def _restart(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._new()


def _finished(fut: Future[Any]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None
