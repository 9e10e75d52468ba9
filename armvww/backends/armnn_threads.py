"""CpuAcc's thread count, which is one per process.

Arm NN's CpuAcc gives ``NumberOfThreads`` (``ArmNNOptions.cpu_threads``) to the Arm Compute
Library's scheduler, a process-wide singleton, when it loads a network; a network loaded
without it leaves the scheduler as it is (its default: one thread per CPU). So every CpuAcc
network of a process runs on the count the latest load set, whichever session asked for it,
on both routes (they share ``libarmnn``). Measured in armvww:arm64 under qemu (a one-off
probe, delegate route, vww2, 2026-12-05): a session opened with the default ran on 2 threads
(wall 12.6 ms, 14.4 ms of CPU an inference), then on 1 thread (8.1 ms, 8.1 ms of CPU) once a
second session with ``cpu_threads=1`` had loaded; a third with ``cpu_threads=2`` moved both
earlier ones back to 2. ``tests/armnn/test_armnn_backend.py::
test_cpu_threads_are_one_count_per_process`` checks the books against the scheduler's worker
threads in ``/proc/self/task``.

This module keeps the books so that a session never runs on a count other than the one it
reports: :func:`claim` before a load that may involve CpuAcc, :meth:`ThreadClaim.release`
when the session closes. A session whose count would differ from that of an open session is
refused (:class:`~armvww.errors.OptionError`) rather than silently changing the other's.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from ..errors import OptionError

#: What the scheduler runs on when no CpuAcc load in this process set a count.
DEFAULT = "the Arm Compute Library's default (one thread per CPU)"

_lock = threading.Lock()
#: The count the latest CpuAcc load of this process set (None: none set one).
_current: int | None = None
#: Open sessions' counts, by claim token (None: the scheduler's default).
_live: dict[int, int | None] = {}
_tokens = itertools.count(1)


def describe(threads: int | None) -> str:
    """``threads`` for a report (None: the scheduler's default)."""
    return DEFAULT if threads is None else f"{threads}"


@dataclass
class ThreadClaim:
    """The CpuAcc thread count one session runs on, held until :meth:`release`."""

    token: int
    #: The count the session runs on (None: the scheduler's default).
    threads: int | None
    #: The session's load sets the count, and must happen even where a loaded network could
    #: be reused (an idle delegate interpreter loaded when the count was another).
    must_load: bool
    #: Why the count is not the one asked for (``cpu_threads=None`` after another session of
    #: this process set one), else empty.
    note: str = ""
    released: bool = False

    def release(self) -> None:
        """The session closed (idempotent). The scheduler keeps its count."""
        with _lock:
            if not self.released:
                self.released = True
                _live.pop(self.token, None)


def claim(asked: int | None) -> ThreadClaim:
    """Book a CpuAcc session that asks for ``asked`` threads (``ArmNNOptions.cpu_threads``;
    None: whatever the process's scheduler has).

    Raises:
        OptionError: an open CpuAcc session of this process runs on another count, which this
            session's load would change.
    """
    global _current
    with _lock:
        threads = asked if asked is not None else _current
        others = sorted({describe(v) for v in _live.values() if v != threads})
        if others:
            raise OptionError(
                f"CpuAcc's thread count is one for the whole process (Arm Compute Library's "
                f"scheduler): an open CpuAcc Detector runs on {', '.join(others)} thread(s), and "
                f"loading this one with cpu_threads={asked} would move it to {asked}. Give every "
                "CpuAcc Detector of a process the same cpu_threads, close the other first, or "
                "use another process"
            )
        must_load = asked is not None and asked != _current
        note = ""
        if asked is None and _current is not None:
            note = (
                f"runs on {_current} thread(s), the count of the open CpuAcc session(s) (one "
                "count per process)"
                if _live
                else f"runs on {_current} thread(s): an earlier CpuAcc session of this process "
                "set that count, and Arm NN cannot restore the scheduler's default"
            )
        if asked is not None:
            _current = asked
        token = next(_tokens)
        _live[token] = threads
        return ThreadClaim(token, threads, must_load, note)


def current() -> int | None:
    """The count the latest CpuAcc load of this process set (None: none did)."""
    with _lock:
        return _current
