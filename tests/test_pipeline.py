"""The pipeline (armvww.pipeline): order, exactly-once, per-item errors, bounded look-ahead,
dying workers, Ctrl-C; and Detector.detect_many / iter_detect on it.

Expectations are the plain sequential loop (the Preparer called item by item in this
process), never the pipeline itself. No timing is asserted here (see benchmarks/)."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import armvww.pipeline as pipeline_module
from armvww import BackendError, Detector, ImageDecodeError, InputError
from armvww.images import iter_image_paths
from armvww.machine import keep_freed_memory
from armvww.pipeline import (
    COST_DECAY,
    KINDS,
    Plan,
    Preparer,
    WorkerError,
    _item_cost,
    _packed,
    choose_plan,
    min_batch_frames,
    prepared,
    stream,
)

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
SAMPLES = SHARED / "data" / "vww_samples"
PREP = Preparer((1, 50, 50, 1), 0.00754918, -72, side=50)


def _photos() -> list[str]:
    if not SAMPLES.is_dir():
        pytest.skip(f"the shared photos are missing ({SAMPLES})")
    return [str(p) for p in iter_image_paths(SAMPLES)]


def _expected(items: list[Any]) -> list[tuple[str, Any]]:
    """The independent expectation: the Preparer in a plain loop, errors as values."""
    out: list[tuple[str, Any]] = []
    for it in items:
        try:
            out.append(("ok", PREP(it)))
        except (ImageDecodeError, InputError) as exc:
            out.append(("err", type(exc)))
    return out


def _same(got: list[tuple[str, Any]], want: list[tuple[str, Any]]) -> None:
    assert len(got) == len(want)
    for k, ((_, g), (kind, w)) in enumerate(zip(got, want, strict=True)):
        if kind == "ok":
            assert isinstance(g, np.ndarray) and np.array_equal(g, w), k
        else:
            assert type(g) is w, (k, g)


@pytest.mark.parametrize("kind", KINDS)
def test_every_item_once_in_order_with_its_error(kind: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    photos = _photos()
    items: list[Any] = [*photos, str(bad), str(tmp_path / "missing.jpg"), *photos[:5]] * 3
    items.append(np.full((96, 128, 3), 200, np.uint8))
    items.append(np.zeros((4, 4), np.float32))  # wrong dtype: InputError
    plan = Plan.of(kind, workers=2, chunk=3) if kind != "none" else Plan.of("none")  # type: ignore[arg-type]
    got = list(prepared(PREP, items, plan))
    _same(got, _expected(items))
    assert [label for label, _ in got][: len(photos)] == photos


@pytest.mark.parametrize("kind", KINDS)
def test_a_raising_iterable_ends_with_one_error_item(kind: str) -> None:
    photos = _photos()

    def gen() -> Any:
        yield from photos[:7]
        raise RuntimeError("camera unplugged")

    got = list(prepared(PREP, gen(), Plan.of(kind)))  # type: ignore[arg-type]
    _same(got[:7], _expected(photos[:7]))
    assert len(got) == 8 and isinstance(got[7][1], InputError)
    assert "camera unplugged" in str(got[7][1])


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_look_ahead_is_bounded_by_the_window(kind: str) -> None:
    """The input is pulled lazily: never more than ``window`` items ahead of the consumer."""
    pulled = 0
    frame = np.full((60, 80), 7, np.uint8)

    def stream() -> Any:
        nonlocal pulled
        while pulled < 400:
            pulled += 1
            yield frame

    plan = Plan.of(kind, workers=2, chunk=2)  # type: ignore[arg-type]
    consumed = 0
    worst = 0
    for _label, q in prepared(PREP, stream(), plan):
        assert isinstance(q, np.ndarray)
        consumed += 1
        worst = max(worst, pulled - consumed)
    assert consumed == 400
    assert worst <= plan.window, (worst, plan.window)


class ExitOn:
    """A picklable stand-in for a decoder that kills its process on one item."""

    def __init__(self, fatal: str) -> None:
        self.fatal = fatal

    def __call__(self, item: Any) -> np.ndarray:
        if item == self.fatal:
            os._exit(3)
        return PREP(item)


def test_a_worker_that_dies_is_an_error_on_its_item_only() -> None:
    photos = _photos()
    fatal = photos[4]
    items = photos * 3
    got = list(prepared(ExitOn(fatal), items, Plan.of("process", workers=2, chunk=4)))
    assert len(got) == len(items)
    for (label, out), item in zip(got, items, strict=True):
        assert label == item
        if item == fatal:
            assert isinstance(out, WorkerError)
        else:
            assert isinstance(out, np.ndarray) and np.array_equal(out, PREP(item))


class WhoRuns:
    """A picklable stage that says which process ran each item: ``[pid, item]``. Until a
    worker has run an item (it leaves ``flag``), the caller takes 10 ms an item, so that a
    worker starting slowly (a loaded machine) still gets items; then both run at full speed."""

    def __init__(self, flag: Path) -> None:
        self.parent = os.getpid()
        self.flag = str(flag)

    def __call__(self, item: Any) -> np.ndarray:
        if os.getpid() != self.parent:
            Path(self.flag).touch()
        elif not os.path.exists(self.flag):
            time.sleep(0.01)
        return np.array([os.getpid(), item], np.int64)


def test_the_caller_runs_chunks_beside_its_workers_in_order_each_once(tmp_path: Path) -> None:
    """Plan.caller: the caller runs chunks itself while the workers' results are not back,
    and the results still come in input order, each item once, within the window; the
    caller ran some and a worker others (the stage reports its process)."""
    n = 6000
    pulled = 0

    def numbers() -> Any:
        nonlocal pulled
        for k in range(n):
            pulled += 1
            yield k

    plan = Plan("process", 1, 8, 64, "test", infer=True, caller=True)
    s = pipeline_module.Stream(plan, pipeline_module._jobs(numbers()))
    got: list[np.ndarray] = []
    worst = 0
    for label, out in pipeline_module.run(WhoRuns(tmp_path / "worker-ran"), s):
        assert label == "<int>" and isinstance(out, np.ndarray), out
        got.append(out)
        worst = max(worst, pulled - len(got))
    assert [int(o[1]) for o in got] == list(range(n))
    pids = {int(o[0]) for o in got}
    assert os.getpid() in pids and len(pids) == 2, pids
    assert worst <= plan.window, (worst, plan.window)


class Slow:
    """The Preparer, 20 ms slower per item (time to kill a worker in the middle)."""

    def __call__(self, item: Any) -> np.ndarray:
        time.sleep(0.02)
        return PREP(item)


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids.update(int(k) for k in text)
    return kids


def _workers(pid: int) -> set[int]:
    """The pipeline's worker processes among the children (not the resource tracker)."""
    return {k for k in _children(pid) if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()}


def test_a_killed_worker_neither_hangs_nor_loses_items() -> None:
    photos = _photos()
    items = photos * 8
    gen = prepared(Slow(), items, Plan.of("process", workers=2, chunk=2))
    got = [next(gen)]  # workers are up and busy
    victims = _workers(os.getpid())
    assert len(victims) == 2, victims
    os.kill(min(victims), signal.SIGKILL)
    got += list(gen)
    assert len(got) == len(items)
    for (label, out), item in zip(got, items, strict=True):
        assert label == item
        # prepared again alone after the kill: its result, or (if it was the one running
        # in the killed worker and died again) a WorkerError; never lost, never a hang
        assert isinstance(out, WorkerError) or np.array_equal(out, PREP(item))
    assert not (_children(os.getpid()) & victims)


CHILD = textwrap.dedent(
    """
    import faulthandler, signal, sys, time, numpy as np
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test's hang report
    # a terminal's Python: started as a background job of a shell (as CI's parallel lanes
    # run), SIGINT is inherited ignored and Python installs no KeyboardInterrupt handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from armvww.pipeline import Plan, Stream, _jobs, run
    sys.path.insert(0, sys.argv[1])
    from tests.test_pipeline import Slow
    caller = sys.argv[2] == "caller"
    plan = Plan.of("process", workers=2 - caller, chunk=1, infer=caller, caller=caller)
    frames = (np.full((96, 96), k % 256, np.uint8) for k in range(10**9))
    for k, _ in enumerate(run(Slow(), Stream(plan, _jobs(frames)))):
        if k == 3 + 100 * caller:  # the caller's plan: past its worker's start
            print("running", flush=True)
    """
)


@pytest.mark.parametrize("plan", ["workers", "caller"])
def test_ctrl_c_stops_the_pipeline_and_leaves_no_worker(plan: str) -> None:
    """Ctrl-C stops two worker processes; or one, with the caller running chunks too (the
    interrupt may land in the caller's own chunk)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(REPO), plan],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        workers = _children(proc.pid)
        want = 1 if plan == "caller" else 2
        assert len(_workers(proc.pid)) == want, workers  # plus multiprocessing's resource tracker
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # a hang: fail with every thread's stack
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            for pid in workers:  # they hold the child's stderr open: kill them first
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"Ctrl-C did not stop the pipeline within 60 s; its threads:\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (-signal.SIGINT, 1, 130) and "KeyboardInterrupt" in err, err[-2000:]
    deadline = time.monotonic() + 10
    alive = {p for p in workers if Path(f"/proc/{p}").exists()}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {p for p in workers if Path(f"/proc/{p}").exists()}
    assert not alive, f"orphaned worker processes: {alive}"
    assert _segments(proc.pid) == {}, "the frames' shared memory was left behind"


#: Tests of the ring itself: without shared memory the frames are pickled (tested apart).
needs_shm = pytest.mark.skipif(
    not Path(pipeline_module.SHM_DIR).is_dir(), reason=f"no {pipeline_module.SHM_DIR} here"
)


def _segments(pid: int) -> dict[str, int]:
    """The shared-memory segments of process ``pid``'s pipeline rings, with their sizes."""
    shm = Path(pipeline_module.SHM_DIR)
    return {p.name: p.stat().st_size for p in shm.glob(f"armvww-{pid}-*")} if shm.is_dir() else {}


def _distinct_frames(n: int, shape: tuple[int, ...] = (96, 96, 3)) -> list[np.ndarray]:
    """``n`` frames whose contents all differ (a slot rewritten too early shows)."""
    rng = np.random.default_rng(n)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@needs_shm
@pytest.mark.parametrize("slots", [None, 5])
def test_frames_go_through_shared_memory_and_each_gets_its_own_result(
    slots: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames to worker processes travel through the ring's slots (a segment exists while
    they run), a slot is reused only when its item is done (300 distinct frames through a
    window of 16, and through a ring of 5 slots for those 16: each result is its own
    frame's), frames that do not fit a slot or find none free and bad arrays still get
    their results, and the segment is gone once the run ends."""
    if slots is not None:
        monkeypatch.setattr(pipeline_module, "RING_BYTES", slots * 96 * 96 * 3)
    frames: list[Any] = _distinct_frames(300)
    frames[5] = np.zeros((4, 4), np.float32)  # wrong dtype: InputError (not in the ring)
    frames[9] = _distinct_frames(1, (120, 160, 3))[0]  # larger than a slot: pickled
    frames[12] = frames[12][::2, ::2]  # not contiguous: copied into its slot
    frames[13] = np.empty((0, 5, 3), np.uint8)  # no pixels: InputError
    plan = Plan.of("process", workers=2, chunk=2)
    seen: dict[str, int] = {}
    got = []
    for out in prepared(Slow(), frames, plan):
        got.append(out)
        if len(got) == 20:
            seen = _segments(os.getpid())
    assert len(seen) == 1, seen  # the frames went through a ring...
    (size,) = seen.values()
    assert size <= plan.window * 96 * 96 * 3  # ...of at most one slot per item held
    _same(got, _expected(frames))
    assert _segments(os.getpid()) == {}


@needs_shm
def test_a_small_first_frame_does_not_send_the_rest_the_slow_way() -> None:
    """A tiny first frame makes small slots; the larger frames after it get a new ring with
    slots that fit them once the old ring's are free (and the results stay right)."""
    frames: list[Any] = [np.full((8, 8), 3, np.uint8), *_distinct_frames(200)]
    sizes: list[int] = []
    got = []
    for out in prepared(PREP, frames, Plan.of("process", workers=2, chunk=4)):
        got.append(out)
        if len(got) == 150:
            sizes = list(_segments(os.getpid()).values())
    assert len(sizes) == 1 and sizes[0] >= 96 * 96 * 3, sizes
    _same(got, _expected(frames))
    assert _segments(os.getpid()) == {}


@needs_shm
@pytest.mark.parametrize("slots", [None, 3])
def test_frames_of_several_shapes_and_dtypes_share_the_slots(
    slots: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot keeps a view shaped as its last frame: frames of other shapes and dtypes that
    fit the slot (grey, smaller colour, a column-major copy; 16-bit, byte-swapped 16-bit
    and float arrays, which are refused with an InputError) take it in turn, through a full
    ring and through one of 3 slots, and each still gets its own frame's result."""
    if slots is not None:
        monkeypatch.setattr(pipeline_module, "RING_BYTES", slots * 96 * 96 * 3)
    rng = np.random.default_rng(11)
    kinds = [
        lambda: rng.integers(0, 256, (96, 96, 3), dtype=np.uint8),
        lambda: rng.integers(0, 256, (60, 50), dtype=np.uint8),
        lambda: rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
        lambda: rng.integers(0, 65536, (70, 80), dtype=np.uint16),
        lambda: rng.integers(0, 65536, (70, 80), dtype=np.uint16).astype(">u2"),
        lambda: np.asfortranarray(rng.integers(0, 256, (96, 90, 3), dtype=np.uint8)),
        lambda: rng.random((60, 50), dtype=np.float32),  # the grey frames' shape, 4x the bytes
    ]
    frames = [kinds[k % len(kinds)]() for k in range(120)]
    got = list(prepared(PREP, frames, Plan.of("process", workers=2, chunk=4)))
    want = _expected(frames)
    assert sum(kind == "ok" for kind, _ in want) == sum(f.dtype == np.uint8 for f in frames)
    _same(got, want)
    assert _segments(os.getpid()) == {}


@needs_shm
def test_a_slot_reused_by_another_shape_or_dtype_holds_the_new_array() -> None:
    """One slot, reused in turn by arrays of one shape and other dtypes, other shapes and
    strides: what a worker reads there is each time the array just put."""
    rng = np.random.default_rng(12)
    ring = pipeline_module._FrameRing.sized_for(96 * 96 * 3, 1)
    assert ring is not None and ring.slots == 1
    try:
        arrays = [
            rng.random((60, 50), dtype=np.float32),
            rng.integers(0, 256, (60, 50), dtype=np.uint8),  # same shape, other dtype
            rng.integers(-128, 128, (60, 50), dtype=np.int8),
            rng.integers(0, 256, (50, 60), dtype=np.uint8),  # same bytes, other shape
            rng.integers(0, 65536, (60, 50), dtype=np.uint16).astype(">u2"),
            rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)[:, ::-1],  # strided
            rng.integers(0, 256, (60, 50), dtype=np.uint8),
        ]
        for a in arrays:
            slot = ring.put(a)
            assert slot == 0
            got = pipeline_module._read_slot(ring.name, slot * ring.slot_bytes, a.shape, a.dtype)
            assert got.dtype == a.dtype and np.array_equal(got, a)
            del got
            ring.release(ring.name, [slot])
    finally:
        for shm in pipeline_module._ATTACHED.values():
            shm.close()
        pipeline_module._ATTACHED.clear()
        ring.close()
    assert _segments(os.getpid()) == {}


def test_without_shared_memory_frames_are_pickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No shared memory on the system (here: its folder is missing): the frames are pickled
    to the workers instead, with the same results."""
    real = Path(pipeline_module.SHM_DIR)
    monkeypatch.setattr(pipeline_module, "SHM_DIR", str(tmp_path / "no-shm"))
    frames = _distinct_frames(60)
    got = list(prepared(PREP, frames, Plan.of("process", workers=2, chunk=4)))
    _same(got, _expected(frames))
    assert list(real.glob(f"armvww-{os.getpid()}-*")) == []


@needs_shm
def test_a_killed_worker_reading_frames_loses_nothing() -> None:
    frames = _distinct_frames(120)
    gen = prepared(Slow(), frames, Plan.of("process", workers=2, chunk=2))
    got = [next(gen)]
    victims = _workers(os.getpid())
    assert len(victims) == 2, victims
    os.kill(min(victims), signal.SIGKILL)
    got += list(gen)
    assert len(got) == len(frames)
    for k, ((_, out), frame) in enumerate(zip(got, frames, strict=True)):
        assert isinstance(out, WorkerError) or np.array_equal(out, PREP(frame)), k
    assert _segments(os.getpid()) == {}


EXIT_CLEAN = textwrap.dedent(
    """
    import sys, numpy as np
    from armvww.pipeline import Plan, Preparer, prepared
    prep = Preparer((1, 50, 50, 1), 0.00754918, -72, side=50)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(200)]
    n = sum(1 for _ in prepared(prep, frames, Plan.of("process", workers=2, chunk=4)))
    print(n)
    """
)


@needs_shm
def test_a_process_that_used_the_ring_exits_without_warnings() -> None:
    """Nothing at exit: no 'leaked shared_memory' from the resource tracker, no KeyError
    from a segment un-registered twice, no 'Exception ignored'."""
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", EXIT_CLEAN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "200"
    assert proc.stderr == "", proc.stderr[-2000:]


EXIT_CLEAN_CALLER = textwrap.dedent(
    """
    import glob, os, sys, numpy as np
    from armvww import Detector
    from armvww.pipeline import Plan
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(64)] * 60
    with Detector(sys.argv[1], backend="LiteRT") as det:
        plan = Plan.of("process", 1, infer=True, caller=True)
        n = sum(1 for r in det.iter_detect(frames, workers=plan) if r.ok)
    print(n, len(glob.glob(f"/dev/shm/armvww-{os.getpid()}-*")))
    """
)


@needs_shm
@pytest.mark.litert
def test_a_caller_plan_leaves_no_shared_memory_and_no_warning(vww2_path: Path) -> None:
    """The caller's plan (a worker process that gets the Detector's replica, model and all,
    through a shared-memory segment, and frames through the ring) ends with both segments
    unlinked and nothing on stderr under ``-X dev`` (no leaked-segment warning, no
    'Exception ignored')."""
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", EXIT_CLEAN_CALLER, str(vww2_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3840", "0"]
    assert proc.stderr == "", proc.stderr[-2000:]


class Says:
    """A stage that writes to the worker's stdout without a newline (block-buffered in a
    pipe): lost if the worker's quick exit came before its streams were flushed."""

    def __call__(self, item: Any) -> np.ndarray:
        sys.stdout.write(f"<said {item}>")
        return np.zeros(1, np.int8)


SAYS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from armvww.pipeline import Plan, Stream, _jobs, run
    from tests.test_pipeline import Says
    plan = Plan.of("process", workers=1, chunk=1)
    n = sum(1 for _ in run(Says(), Stream(plan, _jobs(["a", "b", "c"]))))
    print(f"<done {n}>")
    """
)


def test_a_worker_process_flushes_its_output_when_it_exits() -> None:
    """Worker processes end without the interpreter's teardown (a pool closes in ms), but
    what they wrote still comes out. Run with buffered streams (PYTHONUNBUFFERED unset):
    then a spawned process that calls ``os._exit`` before its streams are flushed loses
    what it wrote (checked by hand)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run(
        [sys.executable, "-c", SAYS, str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for said in ("<said a>", "<said b>", "<said c>", "<done 3>"):
        assert said in proc.stdout, proc.stdout


@needs_shm
def test_a_large_stage_travels_through_shared_memory() -> None:
    """A stage pickled to many bytes (a model inside) goes to worker processes through a
    segment that loads back equal; a small one travels as it is; unlink removes it."""
    assert pipeline_module._StageSegment.share(PREP) is None
    big = Preparer((1, 50, 50, 1), 0.00754918, -72, side=50), b"m" * 300_000
    seg = pipeline_module._StageSegment.share(big)
    assert seg is not None and seg.name.startswith(f"armvww-{os.getpid()}-")
    assert seg.load() == big
    seg.unlink()
    assert _segments(os.getpid()) == {}
    seg.unlink()  # twice: nothing left to remove, no error


def _sigint_blocked_in(native_id: int) -> bool:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    blocked = int(next(ln for ln in status.splitlines() if ln.startswith("SigBlk:")).split()[1], 16)
    return bool(blocked & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc/self/task")
@pytest.mark.parametrize("kind", ["thread", "process"])
def test_the_pipelines_helper_threads_never_take_a_ctrl_c(kind: str) -> None:
    """Every thread a pool starts (the executor's manager and feeder threads, worker
    threads) blocks SIGINT, so the kernel hands a Ctrl-C to the main thread, the only one
    whose signal CPython acts on at once; the main thread's own mask is as it was."""
    before = {t.ident for t in threading.enumerate()}
    assert not _sigint_blocked_in(threading.main_thread().native_id or 0)
    plan = Plan.of(kind, workers=2, chunk=2)  # type: ignore[arg-type]
    gen = prepared(PREP, [np.full((60, 80), k, np.uint8) for k in range(40)], plan)
    next(gen)  # the pool, its workers and its helper threads are up
    helpers = [t for t in threading.enumerate() if t.ident not in before]
    assert helpers, "the pool started no thread"
    for t in helpers:
        assert t.native_id is not None and _sigint_blocked_in(t.native_id), t.name
    assert not _sigint_blocked_in(threading.main_thread().native_id or 0)
    assert len(list(gen)) == 39


def test_plan_validation_and_choice() -> None:
    with pytest.raises(InputError):
        Plan("fork")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        Plan("thread", workers=0)
    with pytest.raises(InputError):
        list(prepared(PREP, [], "sometimes"))  # type: ignore[arg-type]
    assert choose_plan(True, None, cores=1).kind == "none"
    assert choose_plan(True, None, cores=2).kind == "process"
    assert choose_plan(True, 13, cores=2).kind == "thread"
    assert choose_plan(False, None, cores=2).kind == "thread"
    assert choose_plan(False, None, cores=2, inference_holds_gil=True).kind == "process"
    with pytest.raises(InputError):
        Plan("none", infer=True)
    with pytest.raises(InputError):  # the caller runs chunks only beside processes that infer
        Plan("thread", 2, infer=True, caller=True)
    with pytest.raises(InputError):
        Plan("process", 1, caller=True)
    with pytest.raises(InputError):
        Plan("process", 1, infer=True, caller=1)  # type: ignore[arg-type]
    caller = Plan.of("process", 3, chunk=16, infer=True, caller=True)
    # the caller's chunks are held beside the workers' (their results wait their turn)
    assert caller.window == (pipeline_module.PROCESS_TASKS * 3 + pipeline_module.CALLER_TASKS) * 16
    assert "the caller runs chunks too" in caller.describe()
    with pytest.raises(InputError):  # prepared() is preparation only: the caller infers
        list(prepared(PREP, [], Plan.of("thread", infer=True)))
    # a backend whose sessions replicate (LiteRT): its workers infer too; never on one core,
    # never for a backend that runs one session, never for a handful of files
    files = choose_plan(True, None, cores=2, replicable=True)
    assert (files.kind, files.workers, files.infer, files.caller) == ("process", 2, True, False)
    frames = choose_plan(False, None, cores=2, replicable=True)
    assert (frames.kind, frames.workers, frames.infer) == ("thread", 2, True)
    assert not choose_plan(True, None, cores=2).infer
    small = choose_plan(False, None, cores=2, replicable=True, frame_pixels=96 * 96)
    assert small.kind == "none"  # small frames: workers cost more than they overlap
    vga = choose_plan(False, None, cores=2, replicable=True, frame_pixels=640 * 480)
    assert (vga.kind, vga.infer) == ("thread", True)
    assert not choose_plan(True, 13, cores=2, replicable=True).infer
    assert choose_plan(True, None, cores=1, replicable=True).kind == "none"
    # a list of frames long enough to pay for starting a worker process (a batch: its items
    # are all there) goes to one worker process and the caller, both inferring; the same
    # frames from an iterator (a camera: count unknown), or too few of them, run with no
    # workers (small frames) or on threads (large ones)
    batch = choose_plan(False, 4800, cores=2, replicable=True, frame_pixels=96 * 96)
    assert (batch.kind, batch.workers, batch.infer, batch.caller) == ("process", 1, True, True)
    four = choose_plan(False, 4800, cores=4, replicable=True, frame_pixels=96 * 96)
    assert (four.workers, four.caller) == (3, True)  # one worker fewer than cores: the caller
    assert choose_plan(False, None, cores=2, replicable=True, frame_pixels=96 * 96).kind == "none"
    n = min_batch_frames(96 * 96)
    # a worker starts in 0.2-0.3 s here, while the caller works: 1,000 such frames (0.2 s)
    # took 1.05x as long as sequentially, 2,000 0.92x
    assert 1000 <= n <= 2000
    assert choose_plan(False, n, cores=2, replicable=True, frame_pixels=96 * 96).kind == "process"
    assert choose_plan(False, n - 1, cores=2, replicable=True, frame_pixels=96 * 96).kind == "none"
    # larger frames cost more each: fewer of them pay for the start
    assert 100 <= min_batch_frames(640 * 480) < min_batch_frames(320 * 240) < n
    assert min_batch_frames(8 * 8) > n
    vga_batch = choose_plan(False, 400, cores=2, replicable=True, frame_pixels=640 * 480)
    assert (vga_batch.kind, vga_batch.caller) == ("process", True)
    # one session whose inference runs on every core (CpuAcc's default): no workers; one
    # that leaves a core free (a GPU, whose cores idle while it infers; CpuAcc on fewer
    # threads than cores; CpuRef): one thread prepares while it infers
    assert choose_plan(False, 4800, cores=2, frame_pixels=96 * 96).kind == "none"
    every = choose_plan(False, 4800, cores=2, frame_pixels=96 * 96, inference_threads=2)
    assert every.kind == "none"
    for threads in (0, 1):
        free = choose_plan(False, None, cores=2, frame_pixels=96 * 96, inference_threads=threads)
        assert (free.kind, free.workers, free.infer) == ("thread", 1, False)
    # a replicable session (LiteRT, one thread) keeps the measured rule for small frames
    litert = choose_plan(
        False, None, cores=2, replicable=True, frame_pixels=96 * 96, inference_threads=1
    )
    assert litert.kind == "none"
    big = choose_plan(False, 200, cores=2, replicable=True, frame_pixels=640 * 480)
    assert (big.kind, big.infer) == ("thread", True)  # too few to start a process: threads
    # 320x240: a batch goes to processes (frames through shared memory), a stream to threads
    qvga = choose_plan(False, 4800, cores=2, replicable=True, frame_pixels=320 * 240)
    assert (qvga.kind, qvga.infer) == ("process", True)
    qvga = choose_plan(False, None, cores=2, replicable=True, frame_pixels=320 * 240)
    assert (qvga.kind, qvga.infer) == ("thread", True)


def test_auto_tells_a_batch_of_frames_from_a_stream() -> None:
    """``"auto"`` knows a list's or a tuple's length, not an iterator's: the same small
    frames are a batch (worker processes) as a list and a stream as a generator."""
    n = min_batch_frames(96 * 96)
    frame = np.full((96, 96, 3), 7, np.uint8)
    frames = [frame] * n
    assert stream(frames, replicable=True).plan.kind == "process"
    assert stream(tuple(frames), replicable=True).plan.kind == "process"
    assert stream(iter(frames), replicable=True).plan.kind == "none"
    assert stream(frames[:-1], replicable=True).plan.kind == "none"


def test_an_items_cost_estimate_rises_at_once_and_falls_slowly() -> None:
    """Task sizes follow the costliest recent items: a cheap run after costly items shrinks
    the estimate by COST_DECAY of the gap per task, a costly task raises it at once."""
    assert _item_cost(0.0, 0.002) == 0.002  # the first measurement
    assert _item_cost(0.001, 0.04) == 0.04  # a costly task: at once
    assert _item_cost(0.04, 0.0) == pytest.approx(0.04 * (1 - COST_DECAY))
    est = 0.04
    for _ in range(3):
        est = _item_cost(est, 0.001)
    assert 0.001 < est < 0.04 and est == pytest.approx(0.001 + 0.039 * (1 - COST_DECAY) ** 3)


def test_a_chunks_results_travel_as_one_array_when_they_can() -> None:
    """Outcomes of one shape and dtype are packed into one array (one pickle); a chunk with
    an error or mixed shapes stays a list. Either way each item keeps its own outcome."""
    outs: list[Any] = [np.array([k, -k], np.int8) for k in range(5)]
    packed = _packed(outs)
    assert isinstance(packed, np.ndarray) and packed.shape == (5, 2)
    assert all(np.array_equal(a, b) for a, b in zip(packed, outs, strict=True))
    err = InputError("bad frame")
    assert _packed([*outs[:2], err]) == [*outs[:2], err]
    mixed = [outs[0], np.zeros(3, np.int8)]
    assert _packed(mixed) is mixed
    assert _packed([]) == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_worker_processes_keep_freed_image_memory() -> None:
    """keep_freed_memory() takes on glibc (both mallopt calls succeed); it is what every
    worker process runs at start (its effect, 11.7 -> 9.3 ms per large file, is measured in
    benchmarks/pipeline_bench.py, not here)."""
    assert keep_freed_memory() is True


#: Plans whose workers infer too, each in its own LiteRT session.
INFER_PLANS = {
    "process-infer": Plan("process", 2, 3, 12, "test", infer=True),
    "process-caller": Plan("process", 1, 3, 24, "test", infer=True, caller=True),
    "thread-infer": Plan("thread", 2, 1, 4, "test", infer=True),
}


@pytest.mark.litert
@pytest.mark.parametrize("workers", ["auto", *KINDS, *INFER_PLANS])
def test_detect_many_on_the_pipeline_equals_detect(workers: str, vww2_path: Path) -> None:
    photos = _photos()
    items: list[Any] = [*photos, "/nonexistent.png", SAMPLES]
    plan = INFER_PLANS.get(workers, workers)
    with Detector(vww2_path, backend="LiteRT") as det:
        want = [det.detect(p) for p in photos]
        got = det.detect_many(items, workers=plan)  # type: ignore[arg-type]
    assert len(got) == 2 * len(photos) + 1
    for r, w in zip(got[: len(photos)] + got[len(photos) + 1 :], want + want, strict=True):
        # the whole record: decision, score, raw output, backend, runtime, route, selection
        assert r.as_dict() == w.as_dict()
    assert isinstance(got[len(photos)].error, ImageDecodeError)


@pytest.mark.litert
@pytest.mark.parametrize("workers", ["auto", *INFER_PLANS])
def test_frames_inferred_in_workers_equal_detect(workers: str, vww2_path: Path) -> None:
    """Frames (arrays) through plans whose workers infer: the records of ``detect``, in
    order, each once; a frame of the wrong dtype is an error on that frame only."""
    rng = np.random.default_rng(5)
    frames: list[Any] = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(30)]
    frames[7] = frames[7].astype(np.float32)
    plan = INFER_PLANS.get(workers, workers)
    with Detector(vww2_path, backend="LiteRT") as det:
        got = det.detect_many(iter(frames), workers=plan)  # type: ignore[arg-type]
        assert len(got) == len(frames)
        for k, (r, f) in enumerate(zip(got, frames, strict=True)):
            if k == 7:
                assert isinstance(r.error, InputError)
                continue
            assert r.as_dict() == det.detect(f).as_dict(), k


@pytest.mark.litert
def test_a_batch_of_small_frames_in_worker_processes_equals_detect(vww2_path: Path) -> None:
    """A list of small frames long enough for worker processes (``min_batch_frames``):
    ``auto`` starts worker processes that infer, and every frame's record is ``detect``'s,
    in order, each once; a frame of the wrong dtype is an error on that frame only."""
    rng = np.random.default_rng(8)
    distinct = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(40)]
    n = min_batch_frames(96 * 96)
    frames: list[Any] = [distinct[k % 40] for k in range(n)]
    frames[601] = frames[601].astype(np.float32)
    with Detector(vww2_path, backend="LiteRT") as det:
        assert stream(frames, replicable=det.replicable).plan.kind == "process"
        want = [det.detect(f).as_dict() for f in distinct]
        got = det.detect_many(frames)
    assert len(got) == n
    for k, r in enumerate(got):
        if k == 601:
            assert isinstance(r.error, InputError) and r.source == "<ndarray float32 (96, 96, 3)>"
        else:
            assert r.as_dict() == want[k % 40], k


@pytest.mark.litert
def test_workers_infer_only_in_a_session_like_the_detectors(vww2_path: Path) -> None:
    """A worker session that runs another runtime than the Detector's is an error on each
    item (never mixed results); a backend that runs one session refuses a plan that infers
    in workers (here LiteRT's session made to look like one: the selection logic only)."""
    from armvww.detector import _Replica

    with Detector(vww2_path, backend="LiteRT") as det:
        options = det._session.replica_options
        assert options is not None
        other = _Replica(det.model.data, "LiteRT", options, det.quantize_stage, "not this one")
        frame = np.zeros((50, 50, 3), np.uint8)
        for _ in range(2):  # the refusal is kept, not retried
            with pytest.raises(BackendError, match="not the Detector's not this one"):
                other(frame)
        assert det.replicable
        det._session.replica_options = None  # stands for a GPU backend's single session
        assert not det.replicable
        with pytest.raises(InputError, match="runs one session only"):
            det.detect_many([frame], workers=INFER_PLANS["thread-infer"])
        assert det.detect_many([frame], workers="auto")[0].ok  # auto: the caller infers


@pytest.mark.litert
@pytest.mark.parametrize("command", ["eval", "parity"])
def test_eval_and_parity_take_the_workers_choice(command: str, samples, tmp_path: Path) -> None:
    """``armvww eval|parity --workers K`` decodes with plan K (its debug line says so) and
    gives the report of the sequential run, figure for figure."""
    folder = samples[0][0].parent.parent
    csv_file = tmp_path / "labelled.csv"
    csv_file.write_text(
        "path,label\n" + "".join(f"{p},{'person' if y else 'no_person'}\n" for p, y in samples)
    )
    reports = {}
    for kind in ("none", "process"):
        if command == "eval":
            args = ["eval", str(csv_file), "-b", "LiteRT", "--json"]
        else:
            args = ["parity", "-b", "LiteRT:xnnpack=false", "--images", str(folder), "--json"]
        p = subprocess.run(
            [sys.executable, "-m", "armvww", "-vv", *args, "--workers", kind],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
        plan_lines = [line for line in p.stderr.splitlines() if "pipeline: " in line]
        assert plan_lines, p.stderr
        assert ("process workers" in plan_lines[0]) == (kind == "process"), plan_lines
        reports[kind] = json.loads(p.stdout)  # no timings in these reports
    assert reports["none"] == reports["process"]


def test_costly_frames_are_not_queued_behind_the_window() -> None:
    """Thread chunks adapt to the cost of an item: frames of >= 20 ms each (a camera's large
    frames) go one at a time, at most 2 per thread held, whatever the plan's chunk and
    window allow (here 8 and 32); every frame once, in order."""
    frames = [np.full((8, 8), k, np.uint8) for k in range(40)]
    pulled = done = most = 0

    def gen() -> Any:
        nonlocal pulled, most
        for f in frames:
            pulled += 1
            most = max(most, pulled - done)
            yield f

    for k, (_, out) in enumerate(prepared(Slow(), gen(), Plan("thread", 2, 8, 32, "test"))):
        assert isinstance(out, np.ndarray) and np.array_equal(out, PREP(frames[k])), k
        done += 1
    assert done == 40
    assert most <= 2 * 2 + 1, most  # + the frame being pulled


@pytest.mark.litert
def test_the_callers_own_chunks_run_on_the_detectors_session(vww2_path: Path) -> None:
    """A replica made with ``here`` (the caller of Plan.caller) infers in that thread through
    it (the Detector's own session: no second one to open), elsewhere in a session of its
    own, with equal results; ``here`` never travels to a worker process."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from armvww.detector import _Replica

    frame = np.random.default_rng(4).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    with Detector(vww2_path, backend="LiteRT") as det:
        calls: list[int] = []

        def here(q: np.ndarray) -> np.ndarray:  # the Detector's run, counted
            calls.append(1)
            return det.run(q)

        options = det._session.replica_options
        assert options is not None
        rep = _Replica(det.model.data, det.backend, options, det._prep, det.runtime, here)
        want = det.run(det.quantize(frame)).reshape(-1)
        assert np.array_equal(rep(frame), want) and calls == [1]
        with ThreadPoolExecutor(1) as pool:
            assert np.array_equal(pool.submit(rep, frame).result(), want)
        assert calls == [1]  # the other thread used a session of its own
        assert pickle.loads(pickle.dumps(rep))._here is None
