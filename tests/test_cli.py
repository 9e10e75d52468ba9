"""The armvww CLI: detect (table and JSON), info, backends, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from armvww import cli


def run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "armvww", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.litert
def test_detect_json_on_the_samples(samples) -> None:
    pytest.importorskip("ai_edge_litert.interpreter")
    folder = samples[0][0].parent.parent
    p = run("detect", "--backend", "LiteRT", "--json", str(folder))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == 13
    by_name = {Path(r["source"]).name: r for r in rows}
    assert by_name["man_in_red_jacket.png"]["label"] == "person"
    assert by_name["st_paul_s_cathedral.png"]["label"] == "no_person"
    assert all(r["backend"] == "LiteRT" and len(r["raw"]) == 2 for r in rows)
    assert all(r["runtime"].startswith("ai-edge-litert") for r in rows)
    truth = {name: 1 if r["truth"] == "person" else 0 for name, r in by_name.items()}
    assert truth == {p.name: y for p, y in samples}  # the labels.csv beside the photos


@pytest.mark.litert
def test_detect_table_shows_truth_summary_and_short_paths(samples) -> None:
    """The demo can be judged: truth column, a right/total line that matches the JSON."""
    pytest.importorskip("ai_edge_litert.interpreter")
    folder = samples[0][0].parent.parent
    p = run("detect", "--backend", "LiteRT", str(folder))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[1].split() == ["image", "truth", "result", "P(person)", "runtime"]
    rows = lines[2 : 2 + len(samples)]
    assert all(not r.startswith(str(folder)) for r in rows)  # relative to the folder given
    assert {r.split()[0] for r in rows} == {str(path.relative_to(folder)) for path, _ in samples}
    j = run("detect", "--backend", "LiteRT", "--json", str(folder))
    decided = [json.loads(line) for line in j.stdout.splitlines()]
    right = sum(1 for d in decided if d["label"] == d["truth"])
    assert lines[2 + len(samples)].startswith(f"{right} of {len(samples)} right")
    assert sum(1 for r in rows if r.endswith("<- wrong")) == len(samples) - right
    assert "raw" not in lines[1]


def test_detect_help_says_json_lines() -> None:
    p = run("detect", "--help")
    assert "JSON Lines" in p.stdout and "labels.csv" in p.stdout


@pytest.mark.litert
def test_detect_table_and_item_errors(samples, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert.interpreter")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 nope")
    p = run("detect", "-b", "LiteRT", str(samples[2][0]), str(bad))
    assert p.returncode == cli.EXIT_ITEM_ERRORS
    assert "backend LiteRT" in p.stdout and "error" in p.stdout and "1 of 2" in p.stderr


def test_info_json(vww4_path: Path) -> None:
    p = run("info", "--json", "--model", str(vww4_path))
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    assert facts["known"] == "vww4" and facts["input"]["shape"] == [1, 128, 128, 1]
    assert facts["sha1"] == "b2d7f5fab21ae0934b76637348041a0aa5113ef6"


def test_errors_have_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    p = run("info", "--model", str(tmp_path / "none.tflite"))
    assert p.returncode == 11 and "Traceback" not in p.stderr
    assert "ModelNotFoundError" in p.stderr
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    p = run("info", "--model", str(junk))
    assert p.returncode == 12 and "not a TFLite flatbuffer" in p.stderr
    p = run("detect", "--backend", "NoSuch", "x.png")
    assert p.returncode == 16 and "unknown backend" in p.stderr
    p = run("frobnicate")
    assert p.returncode == 2


def test_backends_lists_each_with_reason() -> None:
    p = run("backends", "--json")
    assert p.returncode == 0
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert any(r["backend"] == "LiteRT" for r in rows)
    assert all(r["available"] or r["reason"] for r in rows)


def test_offline_model_error_says_how_to_fetch(tmp_path: Path) -> None:
    p = run("info", env_extra={"ARMVWW_MODEL_DIR": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)})
    assert p.returncode == 11 and "armvww fetch vww2" in p.stderr
