"""Backend selection logic, tested with a fake backend (named so: FakeBackend*).

The fakes exercise only the registry and fallback rules; real inference is tested elsewhere.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from armvww import backends
from armvww.backends.base import Availability, Backend, BackendOptions, Session
from armvww.errors import BackendError, BackendUnavailableError
from armvww.model import Model, parse_model
from armvww.select import open_session


class FakeSession(Session):
    def __init__(self, name: str) -> None:
        self.backend, self.runtime, self.info = name, "fake 0", {}

    def run(self, q: np.ndarray) -> np.ndarray:
        return np.zeros((1, 2), np.int8)


class FakeBackendUp(Backend):
    name: ClassVar[str] = "FakeUp"

    @classmethod
    def availability(cls) -> Availability:
        return Availability(cls.name, True, runtime="fake 0")

    @classmethod
    def open(cls, model: Model, options: BackendOptions | None = None, fallbacks=()) -> Session:
        return FakeSession(cls.name)


class FakeBackendDown(FakeBackendUp):
    name: ClassVar[str] = "FakeDown"

    @classmethod
    def availability(cls) -> Availability:
        return Availability(cls.name, False, "no such device")


class FakeBackendBroken(FakeBackendUp):
    name: ClassVar[str] = "FakeBroken"

    @classmethod
    def open(cls, model: Model, options: BackendOptions | None = None, fallbacks=()) -> Session:
        raise BackendError("driver said no")


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    backends.get.cache_clear()
    fakes: dict[str, Any] = {
        "FakeDown": FakeBackendDown,
        "FakeBroken": FakeBackendBroken,
        "FakeUp": FakeBackendUp,
    }
    monkeypatch.setattr(backends, "_REGISTRY", {k: f"x:{k}" for k in fakes})
    monkeypatch.setattr(backends, "AUTO_ORDER", ("FakeDown", "FakeBroken", "FakeUp"))
    monkeypatch.setattr(backends, "get", lambda n: _get(fakes, n))


def _get(fakes: dict[str, Any], name: str) -> Any:
    key = backends.canonical(name)
    if key not in fakes:
        raise BackendUnavailableError(f"unknown backend {name!r}")
    return fakes[key]


@pytest.fixture(scope="module")
def model(vww2_bytes: bytes) -> Model:
    return parse_model(vww2_bytes)


def test_auto_falls_through_with_reasons(fake_registry: None, model: Model) -> None:
    session, reasons = open_session(model, "auto")
    assert session.backend == "FakeUp"
    assert reasons == ("FakeDown: no such device", "FakeBroken: driver said no")


def test_list_order_is_respected(fake_registry: None, model: Model) -> None:
    session, reasons = open_session(model, ["FakeUp", "FakeDown"])
    assert session.backend == "FakeUp" and reasons == ()


def test_explicit_unavailable_names_the_available(fake_registry: None, model: Model) -> None:
    with pytest.raises(
        BackendUnavailableError, match=r"no such device.*Available here: FakeBroken, FakeUp"
    ):
        open_session(model, "FakeDown")
    with pytest.raises(BackendUnavailableError, match="driver said no"):
        open_session(model, ["FakeBroken", "FakeDown"])


def test_lister_reports_every_backend(fake_registry: None) -> None:
    rows = {a.name: a for a in backends.available_backends()}
    assert set(rows) == {"FakeUp", "FakeDown", "FakeBroken"}
    assert rows["FakeDown"].available is False and rows["FakeDown"].reason == "no such device"


def test_real_registry_lists_litert() -> None:
    names = backends.names()
    assert "LiteRT" in names
    av = backends.availability("LiteRT")
    assert isinstance(av.available, bool) and (av.available or av.reason)
