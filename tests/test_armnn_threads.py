"""The books of CpuAcc's one-per-process thread count (``armvww.backends.armnn_threads``):
pure logic, no Arm NN needed. The effect on a real CpuAcc (the scheduler's threads in
``/proc/self/task``) is ``tests/armnn/test_armnn_backend.py::
test_cpu_threads_are_one_count_per_process``, run in armvww:arm64."""

from __future__ import annotations

import pytest

from armvww.backends import armnn_threads as at
from armvww.errors import OptionError


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a process in which no CpuAcc network was loaded."""
    monkeypatch.setattr(at, "_current", None)
    monkeypatch.setattr(at, "_live", {})


def test_the_default_is_kept_until_a_count_is_asked_for() -> None:
    a = at.claim(None)
    assert (a.threads, a.must_load, a.note) == (None, False, "")
    assert at.describe(a.threads) == at.DEFAULT
    b = at.claim(None)  # two sessions on the default agree
    assert b.threads is None
    with pytest.raises(OptionError, match=r"one for the whole process.*cpu_threads=2"):
        at.claim(2)  # would move the open ones off the default
    a.release()
    b.release()
    c = at.claim(2)
    assert (c.threads, c.must_load) == (2, True)
    assert at.current() == 2


def test_an_open_count_is_shared_and_defended() -> None:
    a = at.claim(1)
    assert (a.threads, a.must_load) == (1, True)
    same = at.claim(1)
    assert (same.threads, same.must_load) == (1, False)  # nothing to change: reuse is fine
    follower = at.claim(None)
    assert follower.threads == 1 and "open CpuAcc session" in follower.note
    with pytest.raises(OptionError, match="an open CpuAcc Detector runs on 1 thread"):
        at.claim(3)
    assert at.current() == 1  # the refusal changed nothing
    for c in (a, same, follower):
        c.release()
        c.release()  # idempotent
    assert at._live == {}


def test_after_the_last_session_the_count_stays_and_is_reported() -> None:
    at.claim(3).release()
    later = at.claim(None)
    assert later.threads == 3 and "cannot restore" in later.note
    later.release()
    back = at.claim(1)  # another count: its load must happen (no reused network)
    assert (back.threads, back.must_load) == (1, True)
