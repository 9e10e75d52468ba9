"""Shared fixtures: the real models and labelled photos from ../shared, and strict mode.

``ARMVWW_SHARED`` points at the shared data folder (default: ``<repo>/../shared``). Without
one (a clone from a public git host), the data comes from the user cache
(``~/.cache/armvww``, the same layout), fetched once per session with ``armvww fetch``'s code
(pinned URLs, verified; ``ARMVWW_FETCH_BASE`` for a mirror); offline, the tests that need it
skip with the reason. With ``ARMVWW_STRICT=1`` (CI) a skipped test is a failure unless it is
marked ``optional``: in CI nothing the README promises may be skipped.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from armvww import samples as _samples
from armvww.errors import FetchError
from armvww.model import store as _store

REPO = Path(__file__).resolve().parent.parent
#: The shared data folder asked for (it may not exist).
SHARED_GIVEN = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared"))
#: The user's own cache (read before the tests isolate XDG_CACHE_HOME).
USER_CACHE = _store.cache_root()
#: Where the tests read models and photos: the shared folder, else the user cache.
SHARED = SHARED_GIVEN if (SHARED_GIVEN / "models").is_dir() else USER_CACHE
MODELS = SHARED / "models"
SAMPLES = SHARED / "data" / "vww_samples"
VWW2 = MODELS / "vww2_50_50_INT8.tflite"
VWW4 = MODELS / "vww4_128_128_INT8.tflite"


_REPORT: list[str] = []


def report_line(text: str) -> None:
    """Record a measured figure; printed in the terminal summary and, when
    ``ARMVWW_REPORT_FILE`` is set, appended to that file (the image lanes collect them)."""
    _REPORT.append(text)
    dest = os.environ.get("ARMVWW_REPORT_FILE")
    if dest:
        with open(dest, "a") as f:
            f.write(text + "\n")


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _REPORT:
        terminalreporter.section("armvww measurements")
        for line in _REPORT:
            terminalreporter.write_line(line)


_FETCH_FAILED: list[str] = []


def _fetch_test_data() -> None:
    """Without a shared folder: fetch the models and photos into the user cache, once."""
    try:
        for name in ("vww2", "vww4"):
            _store.fetch(name, MODELS, timeout=30)
        _samples.fetch_samples(SAMPLES, timeout=30)
    except FetchError as exc:
        _FETCH_FAILED.append(str(exc))


def pytest_sessionstart(session: pytest.Session) -> None:
    if SHARED == USER_CACHE and not all(p.exists() for p in (VWW2, VWW4, SAMPLES / "labels.csv")):
        _fetch_test_data()


def _need(path: Path) -> Path:
    if not path.exists():
        why = (
            f"no shared data folder at {SHARED_GIVEN}, and fetching into {USER_CACHE} failed: "
            f"{_FETCH_FAILED[0].split('. Without network')[0]}; run `make fetch` when online"
            if _FETCH_FAILED
            else "set ARMVWW_SHARED to the shared data folder, or run `make fetch`"
        )
        pytest.skip(f"{path} is absent ({why})")
    return path


def need_data() -> None:
    """Skip (with the reason) unless both models and the labelled photos are present."""
    for p in (VWW2, VWW4, SAMPLES / "labels.csv"):
        _need(p)


@pytest.fixture(scope="session")
def vww2_path() -> Path:
    return _need(VWW2)


@pytest.fixture(scope="session")
def vww4_path() -> Path:
    return _need(VWW4)


@pytest.fixture(scope="session")
def vww2_bytes(vww2_path: Path) -> bytes:
    return vww2_path.read_bytes()


@pytest.fixture(scope="session")
def vww4_bytes(vww4_path: Path) -> bytes:
    return vww4_path.read_bytes()


@pytest.fixture(scope="session")
def samples() -> list[tuple[Path, int]]:
    """(path, label) of the 13 labelled photos; label 1 = person."""
    labels = _need(SAMPLES / "labels.csv")
    with labels.open() as f:
        return [(SAMPLES / row["path"], int(row["label"])) for row in csv.DictReader(f)]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Tests see the shared models by name, and a private empty user cache."""
    monkeypatch.delenv("ARMVWW_MODEL", raising=False)
    if MODELS.is_dir():
        monkeypatch.setenv("ARMVWW_MODEL_DIR", str(MODELS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def _strict() -> bool:
    return os.environ.get("ARMVWW_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Strict mode: a skip, an xfail or an xpass of a test not marked ``optional`` fails."""
    outcome = yield
    report = outcome.get_result()
    if not _strict() or item.get_closest_marker("optional") is not None:
        return
    if hasattr(report, "wasxfail"):  # xfailed (outcome "skipped") or xpassed ("passed")
        report.outcome = "failed"
        report.longrepr = f"xfail in strict mode (ARMVWW_STRICT=1): {report.wasxfail}"
        del report.wasxfail  # else pytest still counts it as xfailed / xpassed
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in strict mode (ARMVWW_STRICT=1): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    """Strict mode: a module that skips itself at collection (``pytest.skip(...,
    allow_module_level=True)``, a module-level ``importorskip``) fails: its tests would
    otherwise vanish without a test report."""
    outcome = yield
    report = outcome.get_result()
    if _strict() and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"module skipped at collection in strict mode (ARMVWW_STRICT=1): {reason}"
