"""Model resolution order, hash verification of known files, offline behaviour, fetch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from armvww.errors import FetchError, ModelIntegrityError, ModelNotFoundError
from armvww.model import store


def test_default_is_vww2_from_the_model_dir(vww2_path: Path) -> None:
    m = store.load_model(None)
    assert m.known is not None and m.known.name == "vww2"


def test_armvww_model_env_file_wins(monkeypatch: pytest.MonkeyPatch, vww4_path: Path) -> None:
    monkeypatch.setenv("ARMVWW_MODEL", str(vww4_path))
    assert store.load_model(None).input_hw == (128, 128)


def test_known_name_is_searched_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, vww2_path: Path
) -> None:
    monkeypatch.delenv("ARMVWW_MODEL_DIR")
    cache = store.cache_dir()
    with pytest.raises(ModelNotFoundError, match="armvww fetch vww2"):
        store.load_model("vww2")
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(vww2_path, cache / vww2_path.name)
    assert store.load_model("vww2").source == str(cache / vww2_path.name)


def test_damaged_known_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, vww2_bytes: bytes
) -> None:
    (tmp_path / "vww2_50_50_INT8.tflite").write_bytes(vww2_bytes[:-10] + b"\0" * 10)
    monkeypatch.setenv("ARMVWW_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelIntegrityError, match="SHA-1"):
        store.load_model("vww2")


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        store.load_model(tmp_path / "nope.tflite")
    with pytest.raises(ModelNotFoundError, match="directory"):
        store.load_model(tmp_path)


def test_bytes_and_model_pass_through(vww2_bytes: bytes) -> None:
    m = store.load_model(vww2_bytes)
    assert store.load_model(m) is m and m.source == "<bytes>"


def test_fetch_reuses_a_verified_copy_without_network(tmp_path: Path, vww2_path: Path) -> None:
    shutil.copy(vww2_path, tmp_path / vww2_path.name)
    assert store.fetch("vww2", tmp_path) == tmp_path / vww2_path.name


def test_fetch_unknown_name() -> None:
    with pytest.raises(FetchError, match="known"):
        store.fetch("vww9")


def test_fetch_failure_is_typed_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(store.urllib.request, "urlopen", refuse)
    with pytest.raises(FetchError, match="unreachable"):
        store.fetch("vww4", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fetch_verifies_the_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Resp:
        def __enter__(self) -> Resp:
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def read(self, n: int) -> bytes:
            return b"<html>not a model</html>"

    monkeypatch.setattr(store.urllib.request, "urlopen", lambda *a, **k: Resp())
    with pytest.raises(FetchError, match="expected 280384 bytes"):
        store.fetch("vww2", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_keeps_old_file_on_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dest = tmp_path / "f.bin"
    store.write_atomic(dest, b"old")

    def full(*a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        store.write_atomic(dest, b"new")
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
