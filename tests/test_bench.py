"""The bench engine and ``backend="fastest"``, on the real vww2 model with LiteRT.

No assertion here is about speed: the tests check the shape and the arithmetic of what the
engine reports (fields, ordering of percentiles, counts, ratios computed from the numbers
it produced), and the selection and caching logic of ``fastest``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from armvww import backends, select
from armvww.analysis import bench, bench_report
from armvww.backends.base import Availability, Backend, BackendOptions, Session
from armvww.cli import main
from armvww.errors import BackendUnavailableError, OptionError
from armvww.model import Model
from armvww.model.store import load_model

pytestmark = pytest.mark.litert


def _litert_or_skip() -> None:
    av = backends.availability("LiteRT")
    if not av.available:
        pytest.skip(f"LiteRT unavailable: {av.reason}")


def _run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    _litert_or_skip()
    code = main(["bench", "--model", "vww2", "--no-progress", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def _check_stats(st: dict[str, Any], n: int) -> None:
    assert set(bench.STAT_FIELDS) <= set(st)
    assert st["n"] == n
    assert st["min_us"] <= st["p50_us"] <= st["p90_us"] <= st["p99_us"] <= st["max_us"]
    assert st["min_us"] <= st["mean_us"] <= st["max_us"]
    assert st["min_us"] > 0 and st["throughput_per_s"] > 0


def test_json_fields_counts_and_ordering(
    vww2_path: Path, samples: list[tuple[Path, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    photos = [str(p) for p, _ in samples[:3]]
    out = _run_cli(
        capsys,
        "-b",
        "LiteRT",
        "-b",
        "LiteRT:xnnpack=false",
        "-n",
        "23",
        "--rounds",
        "4",
        "--warmup",
        "2",
        "--images",
        *photos,
        "--json",
    )
    rep = json.loads(out)
    assert rep["schema"] == bench.SCHEMA
    for key in ("date_utc", "machine", "cpu", "cores_usable", "python", "armvww", "numpy"):
        assert key in rep["meta"]
    assert rep["model"]["name"] == "vww2" and rep["model"]["input"] == [1, 50, 50, 1]
    assert rep["config"]["entries"] == ["LiteRT", "LiteRT:xnnpack=False"]
    assert rep["config"]["images"] == photos
    assert [r["backend"] for r in rep["results"]] == rep["config"]["entries"]
    for r in rep["results"]:
        assert r["ran"] is True
        assert r["runtime"].startswith(("ai-edge-litert", "tflite-runtime", "tensorflow"))
        assert set(r["modes"]) == {"infer", "e2e"}
        for st in r["modes"].values():
            _check_stats(st, 23)  # 23 over 4 rounds (6+6+6+5) is honoured exactly
        cold = r["cold"]
        assert cold["load_s"] == pytest.approx(r["session_info"]["load_s"], abs=1e-6)
        parts = cold["import_s"] + cold["open_s"] + cold["first_inference_s"]
        assert cold["total_s"] == pytest.approx(parts, abs=3e-6)
    assert rep["results"][1]["session_info"]["delegate"].startswith("none")


def test_ratios_are_computed_from_the_reported_numbers(
    vww2_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run_cli(capsys, "-b", "LiteRT,LiteRT:xnnpack=false", "-n", "15", "--json")
    first, second = json.loads(out)["results"]
    assert first["ratios"]["reference"] == "LiteRT"
    assert first["ratios"]["infer"] == {"throughput_ratio": 1.0, "p50_ratio": 1.0}
    a, b = first["modes"]["infer"], second["modes"]["infer"]
    r = second["ratios"]["infer"]
    # ratios are rounded to 3 decimals (+-5e-4) from unrounded figures; the figures shown
    # are rounded to 0.1 (a relative error below 1e-3 each at these magnitudes)
    for got, want in (
        (r["throughput_ratio"], b["throughput_per_s"] / a["throughput_per_s"]),
        (r["p50_ratio"], b["p50_us"] / a["p50_us"]),
    ):
        assert abs(got - want) <= 5e-4 + 2e-3 * want, (got, want)


def test_csv_parses_with_one_row_per_backend_and_mode(
    vww2_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run_cli(capsys, "-b", "LiteRT", "-b", "LiteRT:threads=1", "-n", "10", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["backend"], r["mode"]) for r in rows] == [
        ("LiteRT", "infer"),
        ("LiteRT:threads=1", "infer"),
    ]
    assert list(rows[0]) == list(bench_report.CSV_FIELDS)
    for r in rows:
        assert int(r["n"]) == 10 and r["model"] == "vww2"
        assert float(r["min_us"]) <= float(r["p50_us"]) <= float(r["max_us"])
    assert float(rows[0]["throughput_ratio"]) == 1.0


def test_unknown_backend_and_option_are_errors_naming_the_choices(vww2_path: Path) -> None:
    _litert_or_skip()
    cfg = bench.BenchConfig("vww2", (bench.BackendEntry.parse("NoSuchBackend"),), iterations=2)
    with pytest.raises(BackendUnavailableError, match=r"known backends: .*LiteRT"):
        bench.run_bench(cfg)
    with pytest.raises(OptionError, match=r"has no option 'warp'; it has .*threads"):
        bench.build_options(bench.BackendEntry.parse("LiteRT:warp=9"), bench.BenchConfig())


def test_workers_run_each_worker_its_iterations(vww2_path: Path) -> None:
    _litert_or_skip()
    cfg = bench.BenchConfig("vww2", iterations=12, warmup=1, workers=2, worker_kind="thread")
    model = load_model("vww2")
    q = [np.zeros(model.input.shape, np.int8)]
    res = bench.run_workers(cfg, bench.BackendEntry("LiteRT"), "infer", 2, model, q)
    assert res["workers"] == 2
    _check_stats(res, 24)


def test_percentile_is_nearest_rank() -> None:
    vals = [float(v) for v in range(1, 101)]
    assert bench.percentile(vals, 50) == 50.0
    assert bench.percentile(vals, 99) == 99.0
    assert bench.percentile(vals, 100) == 100.0
    assert bench.percentile([7.0], 90) == 7.0
    st = bench.Stats.from_ns([3000, 1000, 2000, 4000], wall_s=0.01)
    assert (st.min_us, st.p50_us, st.max_us, st.mean_us) == (1.0, 2.0, 4.0, 2.5)
    assert st.throughput_per_s == pytest.approx(400.0)


# -- fastest --------------------------------------------------------------------------------
class _VirtualClock:
    """Stands in for ``time`` in armvww.select: every reading advances 5 ms, and a FakeSlow
    inference advances 100 ms more. The medians the test sees are then fixed (LiteRT 5 ms,
    FakeSlow 105 ms) whatever the machine's load: no assertion depends on real timing."""

    TICK_S = 0.005
    SLOW_S = 0.1

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += self.TICK_S
        return self.now


class _FakeSession(Session):
    def __init__(self, model: Model, clock: _VirtualClock) -> None:
        self.backend = "FakeSlow"
        self.runtime = "fake 0"
        self.info = {}
        self._out = np.zeros(model.output.shape, np.int8)
        self._clock = clock

    def run(self, q: np.ndarray) -> np.ndarray:
        self._clock.now += self._clock.SLOW_S
        return self._out


class FakeSlowBackend(Backend):
    """Test-only backend: available, and (on the virtual clock) slower than LiteRT."""

    name: ClassVar[str] = "FakeSlow"
    opened: ClassVar[int] = 0
    clock: ClassVar[_VirtualClock] = _VirtualClock()

    @classmethod
    def availability(cls) -> Availability:
        return Availability(cls.name, True, "", "fake 0")

    @classmethod
    def open(cls, model: Model, options: BackendOptions | None = None, fallbacks=()) -> Session:
        cls.opened += 1
        return _FakeSession(model, cls.clock)


@pytest.fixture()
def with_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    _litert_or_skip()
    # LiteRT and the fake only: the expectations must not depend on which other backends
    # this machine has (armvww:x86 has CpuRef, by two routes; the host has none)
    reg = {"LiteRT": backends._REGISTRY["LiteRT"], "FakeSlow": f"{__name__}:FakeSlowBackend"}
    monkeypatch.setattr(backends, "_REGISTRY", reg)
    monkeypatch.setattr(backends, "get", _uncached_get(backends.get))
    FakeSlowBackend.opened = 0
    FakeSlowBackend.clock = _VirtualClock()
    monkeypatch.setattr(select, "time", FakeSlowBackend.clock)


def _uncached_get(real: Any) -> Any:
    def get(name: str) -> type[Backend]:
        if backends.canonical(name) == "FakeSlow":
            return FakeSlowBackend
        cls: type[Backend] = real(name)
        return cls

    return get


def test_fastest_measures_picks_caches_and_reuses(with_fake: None, vww2_path: Path) -> None:
    from armvww import Detector

    model = load_model("vww2")
    choice = select.fastest_choice(model)
    assert choice.order == ("LiteRT", "FakeSlow")
    tick, slow = _VirtualClock.TICK_S * 1e6, _VirtualClock.SLOW_S * 1e6
    assert choice.median_us == pytest.approx({"LiteRT": tick, "FakeSlow": tick + slow})
    assert not choice.cached and "picked LiteRT" in choice.explain()
    path = Path(choice.path)
    assert path.parent == select.cache_dir() and path.name.startswith(model.sha1)
    doc = json.loads(path.read_text())
    assert doc["order"] == ["LiteRT", "FakeSlow"] and doc["model_sha1"] == model.sha1
    opened = FakeSlowBackend.opened

    with Detector(model, backend="fastest") as det:  # served from the cache file
        assert det.backend == "LiteRT"
    again = select.last_choice(model)
    assert again is not None and again.cached and again.order == choice.order
    assert FakeSlowBackend.opened == opened  # nothing was measured again

    # a cache written for other medians is believed as written: the file decides
    doc["order"], doc["median_us"] = ["FakeSlow", "LiteRT"], {"FakeSlow": 1.0, "LiteRT": 2.0}
    path.write_text(json.dumps(doc))
    assert select.fastest_order(model) == ["FakeSlow", "LiteRT"]
    # refresh measures again and rewrites the file
    fresh = select.fastest_choice(model, refresh=True)
    assert fresh.order == ("LiteRT", "FakeSlow") and not fresh.cached
    assert json.loads(path.read_text())["order"] == ["LiteRT", "FakeSlow"]


def test_fastest_cache_is_per_backend_set(with_fake: None, vww2_path: Path) -> None:
    model = load_model("vww2")
    with_fake_path = select.cache_path(model)
    only_litert = select.cache_path(model, {"LiteRT": backends.availability("LiteRT").runtime})
    assert with_fake_path != only_litert
