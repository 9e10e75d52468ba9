"""Pipelined detection: decode and preprocess in workers, and infer there or in the caller.

:class:`Preparer` is the shared preprocessing of one model (image -> int8 input tensor), a
small picklable object so that worker processes can run it. :func:`prepared` runs a preparer
over a stream of items in workers and yields ``(source, tensor or error)`` **in input order,
each item exactly once**, so the caller (the :class:`~armvww.detector.Detector`) can run
inference on item *k* while the workers decode items *k+1 ... k+window*.

When the backend's session can be opened again beside itself at full speed (a CPU runtime:
:attr:`armvww.backends.base.Session.replica_options`), a plan may instead run the whole
image -> raw output path in each worker, each with its own inference session
(:attr:`Plan.infer`; the Detector's stage for it is a picklable replica of itself): the
caller then only hands out items and collects results, and every core runs both stages.
:func:`stream` resolves the plan (looking at the first items for ``"auto"``) and
:func:`run` runs a stage over it.

How the workers run is a :class:`Plan`:

* ``"none"``: no workers; each item is prepared when the caller asks for it (sequential).
* ``"thread"``: a thread pool. Pillow's decoders and resize release the GIL, so threads
  overlap with an inference that releases it too (LiteRT's ``invoke`` does); the Python
  parts of preprocessing do not overlap.
* ``"process"``: worker processes (fresh interpreters started with ``sys.executable``; the
  caller's ``__main__`` is never re-imported), fed chunks of items; no GIL is shared, at the
  cost of pickling every item and result, except arrays (frames), which are copied into a
  ring of shared-memory slots (:class:`_FrameRing`) and read there by the workers. The
  stage is sent once, when a worker starts (a large one, such as the Detector's replica
  with its model, through a shared-memory segment: :class:`_StageSegment`), and
  the chunk size adapts to the measured cost of an item (a task of about
  :data:`TASK_SECONDS`, at most ``Plan.chunk`` items): cheap photos go 40-64 at a time,
  large ones one or two. With :attr:`Plan.caller` (worker processes that infer), the
  caller runs chunks too whenever the workers' next result is not back: one worker fewer
  than cores, the caller's core never idle, its own chunks never copied, and it starts
  at once, while the worker starts; it keeps the last items of a batch of known length
  for itself rather than wait for the workers' last tasks.

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
* **Frames in shared memory**: a slot is rewritten only after its item's result is back;
  the segment is unlinked when the run ends, on Ctrl-C and after a worker dies; without
  ``/dev/shm`` (or room in it) arrays are pickled, with the same results.
* **A worker process that dies** (a crash in a native decoder, ``os._exit``, SIGKILL) is
  replaced; the items it held are prepared again one at a time, and an item whose worker
  dies again gets a :class:`WorkerError` as its result. Nothing hangs.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import math
import multiprocessing
import multiprocessing.context
import os
import pickle
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
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
        chunk: items per task sent to a worker (amortises the per-task cost; 1 for frames);
            for processes the most per task (the size adapts, see the module docs).
        window: most items taken from the input and not yet returned; the memory bound.
        reason: why this plan (for logs and reports).
        infer: each worker also runs inference, in a session of its own (only for a
            backend whose sessions can be replicated; see the module docs).
        caller: the caller runs chunks too, of the workers' size, whenever the next result
            is not back yet (worker processes that infer only; the Detector's replica infers
            there on the Detector's own session): its core works instead of waiting, and
            the items it runs cost no copy, pickling or hand-off.
    """

    kind: Kind = "none"
    workers: int = 1
    chunk: int = 1
    window: int = 1
    reason: str = ""
    infer: bool = False
    caller: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"pipeline kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("workers", "chunk", "window"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096:
                raise InputError(f"pipeline {name} must be an integer in [1, 4096], got {v!r}")
        if not isinstance(self.infer, bool):
            raise InputError(f"pipeline infer must be True or False, got {self.infer!r}")
        if self.infer and self.kind == "none":
            raise InputError("a sequential pipeline plan has no workers to infer in")
        if not isinstance(self.caller, bool):
            raise InputError(f"pipeline caller must be True or False, got {self.caller!r}")
        if self.caller and not (self.kind == "process" and self.infer):
            raise InputError(
                "only a plan of worker processes that infer can have the caller run chunks too"
            )

    @classmethod
    def of(
        cls,
        kind: Kind,
        workers: int | None = None,
        chunk: int | None = None,
        reason: str = "",
        infer: bool = False,
        caller: bool = False,
    ) -> Plan:
        """A plan of ``kind`` with defaults: workers = usable cores (one fewer when the
        ``caller`` runs chunks too), chunk :data:`PROCESS_CHUNK` (the most; adaptive) for
        processes and 1 otherwise, window = :data:`PROCESS_TASKS` chunks per worker process
        (and :data:`CALLER_TASKS` more for the caller), 2 per thread (1 item for
        ``"none"``)."""
        if kind == "none":
            return cls("none", 1, 1, 1, reason or "requested")
        if workers is not None:
            n = workers
        else:
            n = max(1, machine.usable_cores() - 1) if caller else machine.usable_cores()
        c = chunk if chunk is not None else (PROCESS_CHUNK if kind == "process" else 1)
        tasks = PROCESS_TASKS * n if kind == "process" else max(2, 2 * n)
        if caller:
            tasks += CALLER_TASKS
        return cls(kind, n, c, min(4096, tasks * c), reason or "requested", infer, caller)

    def describe(self) -> str:
        """One line: kind, workers, chunk, window, where inference runs and the reason."""
        if self.kind == "none":
            return f"sequential ({self.reason})"
        per = "at most " if self.kind == "process" else ""
        where = "each worker infers in its own session" if self.infer else "the caller infers"
        if self.caller:
            where += ", and the caller runs chunks too"
        return (
            f"{self.workers} {self.kind} workers, {per}{self.chunk} items per task, at most "
            f"{self.window} items held, {where} ({self.reason})"
        )


#: Below this many known items, starting worker processes costs more than it saves.
MIN_ITEMS_FOR_PROCESSES = 1000
#: A batch of frames goes to a worker process (beside the caller: :attr:`Plan.caller`) only
#: when detecting it sequentially would take at least this long (:func:`min_batch_frames`).
#: The caller works while the worker starts (0.2-0.3 s here), so a short batch costs only
#: the worker's spawn and stop (5-7 ms). Measured here (LiteRT, vww2, 2 cores, whole runs
#: with the start, against sequential): 96x96 frames 1.03x at 500, 1.05x at 1,000, 0.92x at
#: 2,000, 0.73x at 4,000; 320x240: 1.13x at 400, 1.0x at 800; 640x480: 0.9x at 400.
BATCH_SECONDS = 0.3
#: A frame's sequential cost (prepare + infer), estimated from its pixels as
#: ``FRAME_SECONDS + pixels * PIXEL_SECONDS``: the pipeline bench's stage costs here (184 µs
#: at 96x96, 466 at 320x240, 1,162 at 640x480; Pillow's resize grows with the pixels).
FRAME_SECONDS = 154e-6
PIXEL_SECONDS = 3.3e-9
#: Most items per task sent to a worker process (the size adapts below it).
PROCESS_CHUNK = 128
#: Chunks of :data:`PROCESS_CHUNK` items the caller may hold beside the workers' when it
#: runs chunks too (:attr:`Plan.caller`): results it made wait there for the workers'
#: earlier ones, in input order.
CALLER_TASKS = 8
#: Tasks held per worker process: a task's round trip (pickling, two pipe hops, waking the
#: worker) costs more than a thread's, and items of very different costs (small and large
#: photos) must not leave a worker waiting for the caller to take a slow task's results.
PROCESS_TASKS = 4
#: The aim for one task's work in a worker process, seconds: long enough that the per-task
#: cost (about 0.5 ms: pickling, two pipe hops, waking a worker) is a few percent, short
#: enough that the last tasks of a run keep both cores busy.
TASK_SECONDS = 0.025
#: How far an item's cost estimate moves toward a cheaper task's per-item cost.
COST_DECAY = 0.25
#: Most bytes of shared memory for the arrays (frames) sent to worker processes
#: (:class:`_FrameRing`; 96x96 RGB frames: 512 slots use 14 MB, 640x480: 72 slots). A
#: container's ``/dev/shm`` is often 64 MB in all: a ring takes at most half of what is free.
RING_BYTES = 64 * 2**20
#: Where POSIX shared memory lives (Linux); without it, arrays are pickled to the workers.
SHM_DIR = "/dev/shm"  # noqa: S108 (only its free space is read: os.statvfs)
#: Slots start at multiples of this many bytes (a cache line): an array of any dtype is
#: aligned in its slot, and copies into it start on a line.
SLOT_ALIGN = 64
#: On Ctrl-C, how long each step of stopping the worker processes may take, seconds.
STOP_SECONDS = 5.0
#: Frames (height x width) below this are run without workers (see :func:`choose_plan`).
SMALL_FRAME_PIXELS = 320 * 240
#: Most frames per task for worker threads that infer (cheap frames only; see above).
FRAME_CHUNK = 8
#: The same for worker threads: a task costs little there (a queue hand-off), but a frame
#: should not wait for others to fill its chunk unless frames are cheap (96x96: 4 a task).
THREAD_TASK_SECONDS = 0.001


def choose_plan(
    files: bool,
    count: int | None = None,
    cores: int | None = None,
    inference_holds_gil: bool = False,
    replicable: bool = False,
    frame_pixels: int | None = None,
    inference_threads: int | None = None,
) -> Plan:
    """The plan for this input kind and machine (``benchmarks/pipeline_bench.py``; LiteRT on
    x86-64, 2 cores; ``benchmarks/gil_release.py`` for which inference holds the GIL).

    ``count``: how many items there are, when known (files: those seen in the look-ahead,
    None when it reached :data:`MIN_ITEMS_FOR_PROCESSES`; frames: the length of a list or
    tuple, None for an iterator such as a camera's).

    * one usable core: ``"none"`` (any worker only adds its cost);
    * files or bytes (decoding in Python-held Pillow code costs 2-4x the inference): worker
      processes, one per core, adaptive chunks of up to :data:`PROCESS_CHUNK` items, up to
      :data:`PROCESS_TASKS` tasks held per worker; when the backend is ``replicable``
      (LiteRT), each worker also infers in its own session (preparing its whole chunk, then
      inferring it) and the caller only collects (photos: 1.9x sequential); fewer than
      :data:`MIN_ITEMS_FOR_PROCESSES` files: one thread (starting two worker interpreters
      costs 0.3-4 s here, depending on the load, against about 0.25 ms saved per item);
    * a batch of frames (a list or tuple of arrays or PIL images, all there already) long
      enough to pay for starting a worker process (:func:`min_batch_frames`: 1,627 frames
      of 96x96, 737 of 320x240, 257 of 640x480) on a ``replicable`` backend: one worker
      process fewer than cores, inferring, and the caller running chunks too
      (:attr:`Plan.caller`), arrays sent to the workers through shared memory (96x96:
      1.87-1.95x sequential, where two worker processes reach 1.77-1.90x; 320x240:
      1.84-2.0x against 1.71-1.81x; 640x480: 1.75-1.86x, where two threads reach
      1.69-1.74x); a shorter batch is planned as a stream of such frames. Files keep
      workers only: their decoders run on untrusted bytes, and a crash there is contained
      in a worker (see the module docs), not in the caller;
    * frames under :data:`SMALL_FRAME_PIXELS` in a stream (an iterator: a camera's frames,
      whose next frame may not exist yet), or on a backend that is not ``replicable``:
      no workers, so no frame waits to fill a chunk (two threads lose there: GIL hand-offs
      cost more than they overlap; 0.8-0.9x sequential; CpuAcc on its default thread count,
      whose inference already runs on every core: a preparing thread 0.83x, emulated); but
      one session whose inference leaves a core free (``inference_threads`` under the
      cores: GpuAcc, whose cores idle while the GPU infers; CpuRef; CpuAcc with
      ``cpu_threads`` under the cores) gets one preparing thread, as for larger frames
      (96x96, emulated, delegate route: GpuAcc on PoCL 1.23x sequential; CpuAcc with
      ``cpu_threads=1`` 1.23-1.25x);
    * larger frames, and a stream's from :data:`SMALL_FRAME_PIXELS` up (a large frame
      costs the caller a copy into few, large slots): on a ``replicable`` backend one
      thread per core, each preparing and inferring in its own
      session (LiteRT's ``invoke`` and Pillow's resize release the GIL), one frame a task
      while a frame costs over :data:`THREAD_TASK_SECONDS` (a camera's frame is not held
      back to fill a chunk; at most 2 frames held per thread), cheap frames up to
      :data:`FRAME_CHUNK` a task (640x480: 1.7x sequential); else one preparing thread while
      the caller infers; but when the inference holds the GIL (PyArmNN's
      ``EnqueueWorkload``, the Arm NN parser route), a thread cannot overlap it, so one
      worker process.
    """
    n = cores if cores is not None else machine.usable_cores()
    if n <= 1:
        return Plan.of("none", reason="one usable core")
    if not files and inference_holds_gil:
        return Plan.of("process", 1, 1, reason="arrays, inference holds the GIL: one process")
    small = not files and frame_pixels is not None and frame_pixels < SMALL_FRAME_PIXELS
    batch = (
        not files
        and count is not None
        and frame_pixels is not None
        and count >= min_batch_frames(frame_pixels)
    )
    if batch and replicable:
        return Plan.of(
            "process",
            n - 1,
            reason=f"{count} frames of {frame_pixels} pixels on {n} cores",
            infer=True,
            caller=True,
        )
    core_free = not replicable and inference_threads is not None and inference_threads < n
    if small and not core_free:
        return Plan.of("none", reason=f"frames of {frame_pixels} pixels: workers cost more")
    if not files and replicable:
        return Plan.of("thread", n, FRAME_CHUNK, reason=f"arrays on {n} cores", infer=True)
    if not files:
        return Plan.of("thread", 1, 1, reason="arrays: one preparing thread")
    if count is not None and count < MIN_ITEMS_FOR_PROCESSES:
        return Plan.of("thread", 1, 1, reason=f"{count} files: too few to start processes")
    if replicable:
        return Plan.of("process", n, reason=f"files on {n} cores", infer=True)
    return Plan.of("process", n, reason=f"files on {n} cores")


def min_batch_frames(pixels: int) -> int:
    """The fewest frames of ``pixels`` (height x width) that a batch needs for a worker
    process: enough for :data:`BATCH_SECONDS` of sequential work at the estimated cost of a
    frame (96x96: 1,627; 320x240: 737; 640x480: 257)."""
    cost = FRAME_SECONDS + max(0, pixels) * PIXEL_SECONDS
    return math.ceil(BATCH_SECONDS / cost)


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


def _auto(
    spec: str,
    jobs: Iterator[_Job],
    holds_gil: bool,
    replicable: bool,
    known: int | None,
    inference_threads: int | None,
) -> tuple[Plan, Iterator[_Job]]:
    """The plan for ``spec``; for ``"auto"``, look at up to :data:`MIN_ITEMS_FOR_PROCESSES`
    items first (they are kept and come first). ``known``: how many items the input holds,
    when it says (a list or tuple; None for an iterator, e.g. a camera's frames)."""
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
    if files:
        count = len(head) if len(head) < MIN_ITEMS_FOR_PROCESSES else None
    else:
        count = known
    pixels = _pixels(head[-1][2]) if head and not files else None
    plan = choose_plan(files, count, None, holds_gil, replicable, pixels, inference_threads)
    return plan, itertools.chain(head, jobs)


def _pixels(item: object) -> int | None:
    """Height x width of an array or PIL image (a frame), else None."""
    if isinstance(item, np.ndarray) and item.ndim >= 2:
        return int(item.shape[0]) * int(item.shape[1])
    size = getattr(item, "size", None)
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]) * int(size[1])
    return None


def _is_file_like(item: object) -> bool:
    """A path (cheap to hold while looking ahead); bytes count as arrays (one thread)."""
    return isinstance(item, (str, os.PathLike, images.BadItem))


@dataclass
class Stream:
    """The items of one pipeline run, numbered and labelled lazily, and the plan that runs
    them (made by :func:`stream`, consumed once by :func:`run`)."""

    plan: Plan
    jobs: Iterator[_Job]
    #: How many items the input holds, when it says (a list or tuple), else None.
    count: int | None = None


def stream(
    items: object,
    plan: PlanSpec = "auto",
    inference_holds_gil: bool = False,
    replicable: bool = False,
    inference_threads: int | None = None,
) -> Stream:
    """Resolve ``plan`` for ``items``: ``"auto"`` looks at the first items (up to
    :data:`MIN_ITEMS_FOR_PROCESSES` paths, kept and run first) and asks :func:`choose_plan`,
    with whether inference holds the GIL, whether the backend's session is ``replicable``
    (then the plan may infer in the workers: :attr:`Plan.infer`) and how many CPU threads
    one inference keeps busy (``inference_threads``: :attr:`armvww.backends.base.Session.
    inference_threads`; fewer than the cores leave a core to prepare on meanwhile).

    ``items`` follows the input rules of :func:`armvww.images.expand_inputs` (one image, or
    an iterable of them; folders expand; an iterable that raises ends with an error item).

    Raises:
        InputError: ``plan`` is not a Plan, ``"auto"`` or a kind.
    """
    jobs = _jobs(items)
    known = len(items) if isinstance(items, (list, tuple)) else None
    if isinstance(plan, Plan):
        return Stream(plan, jobs, known)
    resolved, jobs = _auto(plan, jobs, inference_holds_gil, replicable, known, inference_threads)
    return Stream(resolved, jobs, known)


def run(stage: Callable[[Any], np.ndarray], s: Stream) -> Iterator[tuple[str, Outcome]]:
    """Yield ``(label, stage(item) or ArmvwwError)`` for every item of ``s``, in input order.

    ``stage`` must be picklable for ``"process"`` plans (a :class:`Preparer` is; so is the
    Detector's replica for :attr:`Plan.infer`). Errors other than :class:`ArmvwwError`
    raised by ``stage`` propagate, as in a plain loop.

    Raises:
        KeyboardInterrupt: after the workers are stopped (see the module docs).
    """
    plan, jobs = s.plan, s.jobs
    log.debug("pipeline: %s", plan.describe())
    if plan.kind == "none":
        for _, label, item in jobs:
            yield label, _prepare_one(stage, item)
    else:
        pool_type = _ThreadPool if plan.kind == "thread" else _ProcessPool
        with pool_type(stage, plan.workers) as pool:
            yield from pool.run(jobs, plan, s.count)


def prepared(
    prepare: Callable[[Any], np.ndarray],
    items: object,
    plan: PlanSpec = "auto",
    inference_holds_gil: bool = False,
) -> Iterator[tuple[str, Outcome]]:
    """Yield ``(label, tensor or ArmvwwError)`` for every item, in input order: ``prepare``
    (a :class:`Preparer`) run by :func:`run` over :func:`stream` ``(items, plan)``; the
    caller infers (a plan with :attr:`Plan.infer` is refused).

    Raises:
        InputError: a bad ``plan``, or one that infers in the workers.
        KeyboardInterrupt: after the workers are stopped (see the module docs).
    """
    s = stream(items, plan, inference_holds_gil)
    if s.plan.infer:
        raise InputError("prepared() runs preparation only: its plan cannot infer in workers")
    yield from run(prepare, s)


#: What a task gives back: each item's outcome (a list, or from a worker process maybe one
#: array of them all: :func:`_packed`), and the seconds the task took.
_Done = tuple[Any, float]
_Pending = deque[tuple[list[_Job], "Future[_Done]"]]


def _run_items(stage: Callable[[Any], np.ndarray], items: list[Any]) -> _Done:
    """The stage on each item, errors as outcomes. A stage with ``prepare`` and ``infer``
    (the Detector's replica) runs them one after the other over the whole chunk: each
    stage's code and data then stay in the core's caches (measured on the shared photos:
    467-479 µs per photo instead of 490-502 when the two alternate item by item)."""
    t0 = time.perf_counter()
    infer = getattr(stage, "infer", None)
    if infer is None:
        outs = [_prepare_one(stage, item) for item in items]
    else:
        outs = [_prepare_one(stage.prepare, item) for item in items]  # type: ignore[attr-defined]
        outs = [_prepare_one(infer, o) if isinstance(o, np.ndarray) else o for o in outs]
    return outs, time.perf_counter() - t0


class _Pool:
    """Workers fed chunks of items in input order; results handed back in that order.

    Chunks are sized to about ``task_seconds`` of work by the measured cost of an item
    (starting at ``first`` items: nothing is known yet), at most ``plan.chunk`` items; at
    most ``plan.window`` items are held (and, for worker processes sent frames, at most
    one per slot of the shared-memory ring: :meth:`_capacity`), and at most
    ``tasks_per_worker`` chunks of the current size per worker, so expensive items (a
    camera's large frames) are not queued up behind cheap ones' window."""

    task_seconds: float = TASK_SECONDS
    first: int = 4
    tasks_per_worker: int = 2

    _pool: ThreadPoolExecutor | ProcessPoolExecutor

    def __init__(self, stage: Any, n: int) -> None:
        self._stage = stage
        self._n = n

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what has not started, let the running chunks finish, join every worker."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, items: list[Any]) -> Future[_Done]:
        raise NotImplementedError

    def _broken(self, pending: _Pending) -> None:
        raise NotImplementedError

    def _done(self, fut: Future[_Done]) -> None:
        """A task's results have been read (nothing to do for threads)."""

    def _capacity(self) -> int | None:
        """The most items the workers can be handed at once, beside the plan's window
        (None: no other limit)."""
        return None

    def _ready(self) -> bool:
        """The workers can take tasks (worker processes: one has started)."""
        return True

    def run(
        self, jobs: Iterator[_Job], plan: Plan, count: int | None = None
    ) -> Iterator[tuple[str, Outcome]]:
        """Yield ``(label, outcome)`` for every job, in order. ``count``: how many jobs there
        are, when known: a caller that runs chunks too (:attr:`Plan.caller`) then keeps
        the last items for itself once the workers hold as many as remain, so that it does
        not wait, idle, for their last tasks."""
        pending: _Pending = deque()
        mine: set[Future[_Done]] = set()  # the chunks the caller ran (Plan.caller)
        size = min(plan.chunk, self.first)
        cost = 0.0  # the estimate of an item's seconds (0: nothing measured yet)
        held = 0  # items taken from the input and not yet handed back
        sent = 0  # of those, the items given to the workers
        taken = 0  # items taken from the input so far
        ended = False

        def top_up() -> None:
            nonlocal held, sent, taken, ended
            if plan.caller and not self._ready():
                return  # the caller runs every chunk until a worker has started
            quota = self.tasks_per_worker * self._n * size
            while not ended and (
                not pending or (sent + size <= quota and held + size <= plan.window)
            ):
                if plan.caller and count is not None and count - taken <= sent:
                    return  # the end game: the caller runs the rest meanwhile
                c = list(itertools.islice(jobs, size))
                if not c:
                    ended = True
                    return
                pending.append((c, self._submit([j[2] for j in c])))
                held += len(c)
                sent += len(c)
                taken += len(c)

        def run_here() -> bool:
            """The caller runs the next chunk itself (:attr:`Plan.caller`); False when the
            window is full or the input has ended."""
            nonlocal held, taken, ended
            n = size
            if pending and held + n > plan.window:
                return False
            c = list(itertools.islice(jobs, n))
            if not c:
                ended = True
                return False
            taken += len(c)
            outs, seconds = _run_items(self._stage, [j[2] for j in c])
            done: Future[_Done] = Future()
            done.set_result((outs, seconds))
            pending.append((c, done))
            mine.add(done)
            held += len(c)
            return True

        top_up()
        while True:
            if (
                plan.caller
                and not ended
                and (not pending or not pending[0][1].done())
                and run_here()
            ):
                top_up()  # a worker may have started meanwhile
                continue
            if not pending:
                return
            c, fut = pending[0]
            try:
                outs, seconds = fut.result()
            except BrokenProcessPool:
                self._broken(pending)
                continue
            pending.popleft()
            self._done(fut)
            held -= len(c)
            if fut in mine:
                mine.discard(fut)
            else:
                sent -= len(c)
            cost = _item_cost(cost, seconds / len(c))
            fit = int(self.task_seconds / cost) if cost > 0 else plan.chunk
            cap = self._capacity()
            if cap is not None:  # every task held fits the ring's slots
                fit = min(fit, cap // (self.tasks_per_worker * self._n))
            size = max(1, min(plan.chunk, fit))
            for (_, label, _), out in zip(c, outs, strict=True):
                yield label, out
            top_up()  # after the chunk is handed over: the window holds


def _item_cost(estimate: float, measured: float) -> float:
    """The next estimate of an item's cost: up at once to a costlier task's per-item cost,
    down by :data:`COST_DECAY` of the gap after a cheaper one. A mixed stream (small and
    large photos in turn) is then sized by its costly items, so that a cheap run does not
    grow one task into the costly items that follow it while the other workers wait."""
    if measured >= estimate:
        return measured
    return estimate + COST_DECAY * (measured - estimate)


class _ThreadPool(_Pool):
    """Worker threads (the stage is shared; a replica keeps a session per thread). Chunks
    start at one item and aim at :data:`THREAD_TASK_SECONDS`: a frame is not held back to
    fill a chunk unless frames are cheap."""

    task_seconds = THREAD_TASK_SECONDS
    first = 1

    def __init__(self, stage: Any, n: int) -> None:
        super().__init__(stage, n)
        self._pool = ThreadPoolExecutor(
            n, thread_name_prefix="armvww-pipeline", initializer=_block_sigint
        )

    def _submit(self, items: list[Any]) -> Future[_Done]:
        return self._pool.submit(_run_items, self._stage, items)


# -- worker processes --------------------------------------------------------------------------
#: The stage a worker process runs (set once, when the worker starts: :func:`_worker_init`).
_STAGE: Callable[[Any], np.ndarray] | None = None


def _worker_init(stage: Any) -> None:
    """In each worker process: keep the stage (or read it from its shared-memory segment:
    :class:`_StageSegment`), ignore SIGINT (a Ctrl-C reaches the whole process group; the
    parent decides and stops the workers), and let malloc reuse freed image-sized blocks
    (:func:`armvww.machine.keep_freed_memory`)."""
    global _STAGE
    if isinstance(stage, _StageSegment):
        stage = stage.load()
    _STAGE = stage
    warm = getattr(stage, "warm", None)
    if callable(warm):  # e.g. open the worker's inference session before its first task
        warm()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    machine.keep_freed_memory()
    atexit.register(_exit_quickly)


def _exit_quickly() -> None:
    """A worker process's last exit handler (registered last, so run first): end without
    the interpreter's teardown. multiprocessing has flushed the standard streams by then,
    results went back synchronously and the caller unlinks the shared memory, so a worker
    has nothing left to release; the teardown (unloading numpy, Pillow, the inference
    runtime) took 30-60 ms a worker here, measured, and a pool's close waited for it (5 ms
    without it)."""
    os._exit(0)


def _run_chunk(items: list[Any], in_ring: _InRing | None = None) -> _Done:
    """In a worker process: the stage on each item (the arrays sent through shared memory,
    ``in_ring``, are read in place: :func:`_read_slot`), every outcome picklable, and the
    seconds the chunk took (the parent sizes the next chunks by it)."""
    assert _STAGE is not None, "worker started without a stage"
    if in_ring is not None:
        items = list(items)
        for pos, slot, shape, dtype in in_ring.arrays:
            items[pos] = _read_slot(in_ring.ring, slot * in_ring.slot_bytes, shape, dtype)
    outs, seconds = _run_items(_STAGE, items)
    return _packed([_picklable(o) for o in outs]), seconds


def _packed(outs: list[Outcome]) -> Any:
    """A chunk's outcomes as one array (items along its first axis) when they are all arrays
    of one shape and dtype: one object to pickle and unpickle instead of one per item (a
    cost paid in the caller's process, beside the workers); else the list."""
    first = outs[0] if outs else None
    if isinstance(first, np.ndarray) and all(
        isinstance(o, np.ndarray) and o.shape == first.shape and o.dtype == first.dtype
        for o in outs
    ):
        return np.stack(outs)  # type: ignore[arg-type]
    return outs


def _picklable(out: Outcome) -> Outcome:
    if isinstance(out, np.ndarray):
        return out
    try:
        pickle.dumps(out)
        return out
    except Exception:
        return ImageDecodeError(f"{type(out).__name__}: {out}")


@dataclass(frozen=True)
class _InRing:
    """The arrays of one task that travel through shared memory (:class:`_FrameRing`): the
    segment's name, its slot size, and for each such array its position in the task, its
    slot, shape and dtype (plain tuples: one small object to pickle per task, not one per
    frame). The task's list holds None at those positions."""

    ring: str
    slot_bytes: int
    arrays: tuple[tuple[int, int, tuple[int, ...], np.dtype[Any]], ...]


#: In a worker process: the shared-memory segments it has opened, by name.
_ATTACHED: dict[str, shared_memory.SharedMemory] = {}


def _read_slot(ring: str, offset: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """In a worker process: the array at ``offset`` in segment ``ring``, read-only, in place
    (no copy). The caller does not reuse the slot until this chunk's results are back. A
    segment is opened once per worker (until the caller replaces its ring) and stays
    registered with the resource tracker the caller shares: the caller unlinks it
    (un-registering it here too would make the tracker complain at exit)."""
    shm = _ATTACHED.get(ring)
    if shm is None:
        for old in _ATTACHED.values():  # a ring the caller replaced (it waits for no task)
            try:
                old.close()
            except BufferError:
                pass
        _ATTACHED.clear()
        shm = _ATTACHED[ring] = shared_memory.SharedMemory(name=ring)
    a: np.ndarray = np.ndarray(shape, dtype, buffer=shm.buf, offset=offset)
    a.flags.writeable = False
    return a


class _FrameRing:
    """Shared-memory slots for the arrays (frames) sent to worker processes.

    Pickling a frame to a worker costs the caller more than preparing it costs a worker
    (96x96 frames: 62-66 µs of the caller's time per frame pickled, 20-21 through a slot;
    ``benchmarks/results-pipeline-x86_64.md``). Through a slot the caller copies it once and
    the worker reads it in place. A slot is taken when its item is sent and given back when
    its chunk's results have been read (the worker is done with it), so a slot is never
    rewritten while a worker may read it. An array that does not fit a slot, or finds none
    free, is pickled as before. Slots are the size of the first array (a larger one:
    :meth:`_ProcessPool._put`); the segment has at most one slot per item the plan holds,
    at most :data:`RING_BYTES` and at most half of the free space in :data:`SHM_DIR` (a
    write to a full tmpfs page is a SIGBUS, not an error); it is unlinked when the pool
    closes, also on Ctrl-C.
    """

    def __init__(self, slot_bytes: int, slots: int) -> None:
        name = f"armvww-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._shm = shared_memory.SharedMemory(name=name, create=True, size=slot_bytes * slots)
        self.name = self._shm.name
        self.slot_bytes = slot_bytes
        self.slots = slots
        self._free: deque[int] = deque(range(slots))
        # one view of the whole segment, and per slot a view shaped as its last array (the
        # next frame of that shape is copied with one call: a new ndarray over the mmap's
        # buffer for every frame cost more than the copy); dropped before the segment closes
        self._bytes: np.ndarray | None = np.ndarray((slot_bytes * slots,), np.uint8, self._shm.buf)
        self._views: dict[int, np.ndarray] = {}

    @classmethod
    def sized_for(cls, slot_bytes: int, slots: int) -> _FrameRing | None:
        """A ring of up to ``slots`` slots of ``slot_bytes``, or None (no room, or no shared
        memory on this system: arrays are then pickled)."""
        slot_bytes = -(-slot_bytes // SLOT_ALIGN) * SLOT_ALIGN
        n = min(slots, RING_BYTES // slot_bytes)
        if n < 1:
            return None
        try:
            st = os.statvfs(SHM_DIR)
            free = st.f_bavail * st.f_frsize
            n = min(n, free // 2 // slot_bytes)
            if n < 1:
                log.debug("pipeline: %s has %d bytes free: frames are pickled", SHM_DIR, free)
                return None
            return cls(slot_bytes, n)
        except OSError as exc:
            log.debug("pipeline: no shared memory (%s): frames are pickled", exc)
            return None

    @property
    def idle(self) -> bool:
        """No slot is in use."""
        return len(self._free) == self.slots

    @staticmethod
    def fits(item: object) -> bool:
        """An array a slot can carry (plain data, not empty)."""
        return isinstance(item, np.ndarray) and item.nbytes > 0 and not item.dtype.hasobject

    def put(self, a: np.ndarray) -> int | None:
        """Copy ``a`` into a free slot and return the slot; None when it does not fit or
        none is free."""
        if not self._free or a.nbytes > self.slot_bytes or self._bytes is None:
            return None
        slot = self._free.popleft()
        view = self._views.get(slot)
        if view is None or view.shape != a.shape or view.dtype != a.dtype:
            offset = slot * self.slot_bytes
            view = self._bytes[offset : offset + a.nbytes].view(a.dtype).reshape(a.shape)
            self._views[slot] = view
        view[...] = a
        return slot

    def release(self, ring: str, slots: list[int]) -> None:
        """Give the slots back (their chunk's results are in: no worker reads them now);
        slots of another (replaced) ring are ignored."""
        if ring == self.name:
            self._free.extend(slots)

    def close(self) -> None:
        """Unmap and unlink the segment (workers that still map it keep their mapping)."""
        self._bytes = None
        self._views.clear()
        try:
            self._shm.close()
        except BufferError:  # a view still exported in this process; unlinking is what counts
            log.debug("pipeline: shared memory %s still has views; unlinking it", self.name)
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class _StageSegment:
    """A worker's stage, pickled into a shared-memory segment that the worker reads at its
    start. A stage that carries a model (the Detector's replica: 280-490 KB) would
    otherwise travel in the process's start-up data, whose write blocks the caller until
    the new interpreter has imported what unpickling it needs (0.17 s a worker here, measured;
    the pipe holds 64 KB). Made by :meth:`share`; the caller unlinks the segment when the
    pool closes (:meth:`unlink`)."""

    name: str
    size: int

    #: Stages pickled to fewer bytes than this travel in the start-up data as they are.
    MIN_BYTES = 16 * 1024

    @classmethod
    def share(cls, stage: Any) -> _StageSegment | None:
        """``stage`` in a new segment, or None (small, or no shared memory here)."""
        blob = pickle.dumps(stage, protocol=pickle.HIGHEST_PROTOCOL)
        if len(blob) < cls.MIN_BYTES:
            return None
        name = f"armvww-{os.getpid()}-stage-{uuid.uuid4().hex[:12]}"
        try:
            shm = shared_memory.SharedMemory(name=name, create=True, size=len(blob))
        except OSError as exc:
            log.debug("pipeline: no shared memory for the stage (%s): it is pickled", exc)
            return None
        try:
            buf = shm.buf
            assert buf is not None
            buf[: len(blob)] = blob
            del buf
        finally:
            shm.close()
        return cls(name, len(blob))

    def load(self) -> Any:
        """In a worker: the stage (the segment stays registered with the resource tracker
        the caller shares; the caller unlinks it)."""
        shm = shared_memory.SharedMemory(name=self.name)
        try:
            buf = shm.buf
            assert buf is not None
            blob = bytes(buf[: self.size])
            del buf
        finally:
            shm.close()
        return pickle.loads(blob)  # noqa: S301 (the caller's own bytes)

    def unlink(self) -> None:
        """Remove the segment (workers that started have read it)."""
        try:
            shm = shared_memory.SharedMemory(name=self.name)
        except FileNotFoundError:
            return
        shm.close()
        shm.unlink()


def _block_sigint() -> None:
    """In a helper thread of the pipeline: never take delivery of SIGINT (see
    :func:`_sigint_blocked`)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while the executor starts its helper threads (its
    manager thread, its call queue's feeder thread), which inherit the mask: a Ctrl-C then
    always reaches the main thread. CPython (3.11 measured, as late as 3.12) only marks a
    signal for the main thread's attention when the signal lands on the main thread; one
    that the kernel hands to a helper thread may wait, unhandled, while the main thread
    sleeps on a result (seen twice in CI: Ctrl-C ignored for over 60 s, the main thread
    waiting on a chunk's result, the workers busy). Restores the mask after.

    multiprocessing's resource tracker is started first: starting it *unblocks* SIGINT in
    the calling thread (``resource_tracker.ensure_running``), which would undo the block
    for the threads started after it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


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


class _ProcessPool(_Pool):
    """Worker processes (:class:`~concurrent.futures.ProcessPoolExecutor`, ``spawn``), each
    given the stage once; see :func:`run`."""

    tasks_per_worker = PROCESS_TASKS

    def __init__(self, stage: Any, n: int) -> None:
        super().__init__(stage, n)
        self._shared_stage = _StageSegment.share(stage)
        self._pool, self._warm = self._start()
        self._ring: _FrameRing | None = None
        self._window = 1  # the most items held (the plan's): a ring has up to one slot each
        self._no_ring_from = sys.maxsize  # arrays this large found no shared memory
        self._slots: dict[Future[_Done], tuple[str, list[int]]] = {}

    def run(
        self, jobs: Iterator[_Job], plan: Plan, count: int | None = None
    ) -> Iterator[tuple[str, Outcome]]:
        # a slot for each item the workers can hold (not those the caller runs)
        self._window = min(plan.window, self.tasks_per_worker * self._n * plan.chunk)
        yield from super().run(jobs, plan, count)

    def _ready(self) -> bool:
        return self._warm.done()

    def close(self) -> None:
        if not self._warm.done():
            # no worker has started yet (a short run that the caller finished alone): stop
            # them now rather than wait out their start (0.2-0.4 s) only to tell them to exit
            self._stop_now(started=False)
            return
        try:
            super().close()
        finally:
            self._close_ring()

    def _close_ring(self) -> None:
        """Unlink the frames' ring and the stage's segment (no worker reads them now)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        self._slots.clear()
        if self._shared_stage is not None:
            self._shared_stage.unlink()
            self._shared_stage = None

    def _start(self) -> tuple[ProcessPoolExecutor, Future[int]]:
        """A new executor and its first task, which starts its workers and helper threads
        (with SIGINT blocked: :func:`_sigint_blocked`) and is done once a worker has
        started."""
        with _sigint_blocked():
            pool = self._new()
            return pool, pool.submit(os.getpid)

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._n,
            mp_context=_CONTEXT,
            initializer=_worker_init,
            initargs=(self._shared_stage or self._stage,),
        )

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] in (KeyboardInterrupt, SystemExit):
            self._stop_now()
        else:
            self.close()

    def _stop_now(self, started: bool = True) -> None:
        """On Ctrl-C: cancel what has not started, then stop the workers, each within a
        bounded time: told to stop (the executor's shutdown, in a helper thread so that a
        shutdown stuck on the executor's own locks cannot hang the caller), then terminated
        (SIGTERM: workers ignore only SIGINT), then killed, and joined. Workers that have
        not ``started`` (none has taken a task) are terminated first: they have nothing to
        finish."""
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        stopper = threading.Thread(
            target=self._pool.shutdown,
            kwargs={"wait": True, "cancel_futures": True},
            name="armvww-pipeline-stop",
            daemon=True,
        )
        if started:
            with _sigint_blocked():
                stopper.start()
            stopper.join(STOP_SECONDS)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(STOP_SECONDS)
            if p.is_alive():
                p.kill()
                p.join(STOP_SECONDS)
        if not started:
            with _sigint_blocked():
                stopper.start()
        stopper.join(STOP_SECONDS)
        if stopper.is_alive():
            log.warning("the pipeline's process pool did not shut down; its workers are stopped")
        self._close_ring()

    def _submit(self, items: list[Any]) -> Future[_Done]:
        """A task, its arrays sent through shared memory where they fit (:class:`_FrameRing`);
        on a pool already broken (a worker died since the last result), a future holding that
        error, handled where results are read (:meth:`_broken`)."""
        sent, in_ring = self._shared(items)
        try:
            fut = self._pool.submit(_run_chunk, sent, in_ring)
        except BrokenProcessPool as exc:
            fut = Future()
            fut.set_exception(exc)
        if in_ring is not None:
            self._slots[fut] = (in_ring.ring, [slot for _, slot, _, _ in in_ring.arrays])
        return fut

    def _shared(self, items: list[Any]) -> tuple[list[Any], _InRing | None]:
        """``items`` with each array that finds a free slot replaced by None, and where they
        are (:class:`_InRing`; None when no array went through shared memory). The ring is
        made at the first array; all the slots a task takes are of one ring (a ring is
        replaced only while no slot of it is in use)."""
        sent: list[Any] = []
        arrays: list[tuple[int, int, tuple[int, ...], np.dtype[Any]]] = []
        for pos, item in enumerate(items):
            slot = self._put(item) if _FrameRing.fits(item) else None
            if slot is None:
                sent.append(item)
            else:
                sent.append(None)
                arrays.append((pos, slot, item.shape, item.dtype))
        if not arrays:
            return sent, None
        assert self._ring is not None
        return sent, _InRing(self._ring.name, self._ring.slot_bytes, tuple(arrays))

    def _put(self, a: np.ndarray) -> int | None:
        """``a`` in a slot of the ring (its slot), or None (pickled). The ring is made at
        the first array, with slots of its size; an array too large for them makes a new
        ring with slots of at least twice the size, once no slot of the old one is in use
        (so a small first frame does not send every later one the slow way)."""
        ring = self._ring
        if ring is not None and a.nbytes <= ring.slot_bytes:
            return ring.put(a)
        if a.nbytes >= self._no_ring_from or (ring is not None and not ring.idle):
            return None
        want = a.nbytes if ring is None else max(a.nbytes, 2 * ring.slot_bytes)
        new = _FrameRing.sized_for(want, self._window)
        if new is None:
            self._no_ring_from = a.nbytes
            return None
        if ring is not None:
            ring.close()
        self._ring = new
        return new.put(a)

    def _capacity(self) -> int | None:
        """The ring's slots, once there is a ring: tasks are sized so that every item held
        has a slot (large frames: fewer per task) rather than overflow into pickling."""
        return self._ring.slots if self._ring is not None else None

    def _done(self, fut: Future[_Done]) -> None:
        """The task's results are in: its slots are free again."""
        taken = self._slots.pop(fut, None)
        if taken is not None and self._ring is not None:
            self._ring.release(*taken)

    def _broken(self, pending: _Pending) -> None:
        """A worker died, and every unfinished chunk failed with it. Start new workers and
        run the unfinished items again, one at a time, alone in the pool: an item whose
        worker dies then gets a :class:`WorkerError`; the others get their results."""
        old = list(pending)
        pending.clear()
        self._restart()  # the old workers are joined: none reads a slot any more
        for _, fut in old:
            if not _finished(fut):
                self._done(fut)  # its items are sent again below, pickled
        redo = sum(len(c) for c, f in old if not _finished(f))
        log.warning(
            "a pipeline worker process died; its %d unfinished item(s) are run again one at a time",
            redo,
        )
        for c, fut in old:
            if _finished(fut):
                pending.append((c, fut))  # done before the break: keep it
                continue
            outs: list[Outcome] = []
            seconds = 0.0
            for j in c:
                try:
                    o, t = self._pool.submit(_run_chunk, [j[2]]).result()
                    outs.extend(o)
                    seconds += t
                except BrokenProcessPool:
                    self._restart()
                    outs.append(
                        WorkerError(
                            f"the worker process preparing {j[1]} died, also when it prepared "
                            "this item alone: the item is the likely cause"
                        )
                    )
            done: Future[_Done] = Future()
            done.set_result((outs, seconds))
            pending.append((c, done))

    def _restart(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._warm = self._start()


def _finished(fut: Future[Any]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None
