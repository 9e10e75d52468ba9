"""Fixtures shared by the reliability tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import armvww


@pytest.fixture(scope="module")
def det(vww2_path: Path) -> Iterator[armvww.Detector]:
    """A LiteRT Detector on the real vww2, shared by a module's tests."""
    try:
        d = armvww.Detector(vww2_path, backend="LiteRT")
    except armvww.BackendUnavailableError as exc:
        pytest.skip(f"LiteRT is not usable: {exc}")
    with d:
        yield d
