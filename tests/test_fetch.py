"""The download path (models and sample photos) against a local HTTP server on 127.0.0.1.

The server serves the shared data folder (or the user cache, same layout) the way a mirror
named by ``ARMVWW_FETCH_BASE`` would, and can damage chosen files: a wrong byte (wrong
SHA-1), a truncated body (the connection closes early), a 404. A dead port stands for
"no network".
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from armvww import hints, samples
from armvww.errors import FetchError
from armvww.model import store

from .conftest import SHARED, need_data


@dataclass
class Mirror:
    """A running server: its base URL, the faults to inject, and the paths requested."""

    base: str
    faults: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def _handler(root: Path, mirror: Mirror) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            mirror.requests.append(path)
            fault = mirror.faults.get(path)
            f = root / path
            if fault == "404" or not f.is_file():
                self.send_error(404)
                return
            data = f.read_bytes()
            if fault == "corrupt":
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # truncated: promise every byte, send half, close
            self.wfile.write(data[: len(data) // 2] if fault == "truncate" else data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    need_data()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    m = Mirror(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(SHARED, m)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv(store.FETCH_BASE_ENV, m.base)
    yield m
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_port(monkeypatch: pytest.MonkeyPatch) -> str:
    """A base URL on 127.0.0.1 where nothing listens: no network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(store.FETCH_BASE_ENV, base)
    return base


def _sha1(p: Path) -> str:
    return hashlib.sha1(p.read_bytes()).hexdigest()


def test_model_download_is_verified_and_loads(mirror: Mirror, tmp_path: Path) -> None:
    got = store.fetch("vww2", tmp_path)
    assert got == tmp_path / "vww2_50_50_INT8.tflite"
    assert _sha1(got) == "5d887ca438c0a7feeed3c8c22dce99b55565c8ea"
    assert mirror.requests == ["models/vww2_50_50_INT8.tflite"]
    known = store.load_model(got).known
    assert known is not None and known.name == "vww2"


@pytest.mark.parametrize("fault", ["corrupt", "truncate", "404"])
def test_bad_model_downloads_write_nothing(mirror: Mirror, tmp_path: Path, fault: str) -> None:
    mirror.faults["models/vww4_128_128_INT8.tflite"] = fault
    with pytest.raises(FetchError) as info:
        store.fetch("vww4", tmp_path)
    msg = str(info.value)
    assert list(tmp_path.iterdir()) == []
    if fault == "corrupt":
        assert "is 490336 bytes with SHA-1" in msg and "expected 490336 bytes" in msg
    elif fault == "truncate":
        assert "IncompleteRead" in msg or "is 245168 bytes" in msg
    else:
        assert "HTTP 404" in msg
    # where to put a copy obtained another way, and the command that then verifies it
    assert f"copy it to {tmp_path / 'vww4_128_128_INT8.tflite'}" in msg
    assert "`armvww fetch vww4`" in msg


def test_samples_download_verified_with_labels_and_licence(mirror: Mirror, tmp_path: Path) -> None:
    dest = samples.fetch_samples(tmp_path / "s")
    photos = [f for f in samples.SAMPLES if f.label is not None]
    assert len(photos) == 13 and sum(f.label for f in photos) == 8
    for f in samples.SAMPLES:
        assert _sha1(dest / f.path) == f.sha1 and (dest / f.path).stat().st_size == f.size
        # the same bytes as the shared copy the pinned URL was checked against
        assert (dest / f.path).read_bytes() == (SHARED / samples.SET_PATH / f.path).read_bytes()
    licence = dest / "ml-embedded-evaluation-kit" / "LICENSE_CC_1.0.txt"
    assert licence.read_text().startswith("Creative Commons Attribution 1.0")
    from armvww.labels import read_csv

    assert sorted(
        (p.relative_to(dest).as_posix(), y) for p, y in read_csv(dest / "labels.csv")
    ) == (sorted((f.path, f.label) for f in photos))
    sources = (dest / "SOURCES.md").read_text()
    assert "Apache-2.0" in sources and "CC BY 1.0" in sources
    # a second fetch reuses the verified files: no request at all
    n = len(mirror.requests)
    assert samples.fetch_samples(tmp_path / "s") == dest and len(mirror.requests) == n
    assert samples.find_samples(dest) == dest


@pytest.mark.parametrize("fault", ["corrupt", "truncate"])
def test_a_bad_photo_stops_the_fetch_and_keeps_what_verified(
    mirror: Mirror, tmp_path: Path, fault: str
) -> None:
    bad = samples.SAMPLES[3]
    mirror.faults[f"{samples.SET_PATH}/{bad.path}"] = fault
    with pytest.raises(FetchError, match=r"fetch samples --list") as info:
        samples.fetch_samples(tmp_path)
    assert f"copy it to {tmp_path / bad.path}" in str(info.value)
    assert not (tmp_path / bad.path).exists() and not (tmp_path / "labels.csv").exists()
    assert all(_sha1(tmp_path / f.path) == f.sha1 for f in samples.SAMPLES[:3])
    assert samples.find_samples(tmp_path) is None
    # the mirror heals: the next fetch only asks for what is missing
    mirror.faults.clear()
    before = len(mirror.requests)
    samples.fetch_samples(tmp_path)
    assert len(mirror.requests) - before == len(samples.SAMPLES) - 3


def test_offline_cli_says_where_to_put_the_file_and_how_to_verify(
    dead_port: str, tmp_path: Path
) -> None:
    need_data()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    p = subprocess.run(
        [sys.executable, "-m", "armvww", "fetch", "vww2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 19 and "Traceback" not in p.stderr
    dest = tmp_path / "xdg" / "armvww" / "models" / "vww2_50_50_INT8.tflite"
    assert f"copy it to {dest}" in p.stderr and "Connection refused" in p.stderr
    assert f"`{os.path.abspath(sys.executable)} -m armvww fetch vww2`" in p.stderr  # as run
    # the hint works as printed: a copy put there by hand is verified without network
    dest.parent.mkdir(parents=True)
    dest.write_bytes((SHARED / "models" / dest.name).read_bytes())
    p = subprocess.run(
        [sys.executable, "-m", "armvww", "fetch", "vww2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 0 and p.stdout.strip() == str(dest)


def test_fetch_list_needs_no_network(dead_port: str, tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "armvww", "fetch", "--list", "--dest", str(tmp_path), "samples"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == len(samples.SAMPLES)
    assert lines[0].startswith(f"{dead_port}/data/vww_samples/tflite-micro/person.bmp  10294 bytes")


def test_pinned_urls_are_raw_files_at_fixed_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(store.FETCH_BASE_ENV, raising=False)
    for f in samples.SAMPLES:
        assert f.url.startswith("https://raw.githubusercontent.com/")
        owner_repo_commit = f.url.split("/")[3:6]
        assert len(owner_repo_commit[2]) == 40, f.url
        assert f.url.endswith("/" + f.path.rsplit("/", 1)[1])
    assert samples.planned("vww2")[0].url == samples.manifest.KNOWN_MODELS["vww2"].url


def test_hints_follow_how_armvww_was_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    main = Path(samples.__file__).with_name("__main__.py")
    monkeypatch.setattr(sys, "argv", [str(main)])
    assert hints.command("fetch vww2").endswith(" -m armvww fetch vww2")
    script = tmp_path / ".venv" / "bin" / "armvww"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(sys, "argv", [str(script)])
    assert hints.command("fetch vww2") == ".venv/bin/armvww fetch vww2"
    monkeypatch.setenv("PATH", str(script.parent))
    script.chmod(0o755)
    assert hints.command("fetch vww2") == "armvww fetch vww2"
