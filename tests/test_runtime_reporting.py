"""What ran is reported by behaviour; availability is proven by loading; hints that are true.

* LiteRT's runtime string names the kernels that really ran (XNNPACK only when delegate
  nodes are in the execution plan; tflite-runtime 2.14 asked for XNNPACK runs built-in
  kernels); every Detection carries it.
* A LiteRT runtime that imports but cannot run a model is unavailable, so ``backends`` and
  ``detect`` agree; under numpy 2 the reason says ``numpy<2``.
* The native "INFO: Created TensorFlow Lite XNNPACK delegate" line is quiet unless asked.
* Arm NN hints: no package gives CpuAcc/GpuAcc on x86; a venv hides Debian's pyarmnn;
  CpuRef names its library package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import armvww
from armvww.backends import armnn_delegate, armnn_options, armnn_parser, litert
from armvww.errors import BackendUnavailableError

NOISE = "Created TensorFlow Lite XNNPACK delegate"


def _litert_or_skip() -> None:
    pytest.importorskip("ai_edge_litert.interpreter")


def _photo(tmp_path: Path) -> Path:
    p = tmp_path / "grey.png"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(p)
    return p


def test_litert_runtime_names_the_kernels_that_ran(vww2_path: Path, tmp_path: Path) -> None:
    _litert_or_skip()
    img = _photo(tmp_path)
    with armvww.Detector(vww2_path, backend="LiteRT") as det:
        assert det.runtime.startswith("ai-edge-litert") and det.runtime.endswith(", XNNPACK")
        assert litert._delegated_nodes(det._session.interpreter)  # type: ignore[attr-defined]
        r = det.detect(img)
        assert r.runtime == det.runtime and r.as_dict()["runtime"] == det.runtime
    opts = armvww.LiteRTOptions(xnnpack=False)
    with armvww.Detector(vww2_path, backend="LiteRT", options=opts) as det:
        assert det.runtime.endswith(", built-in kernels")
        assert det.session_info["delegate"].startswith("none")
        assert litert._delegated_nodes(det._session.interpreter) == 0  # type: ignore[attr-defined]


@pytest.mark.optional
def test_tflite_runtime_asked_for_xnnpack_reports_builtin_kernels(vww2_path: Path) -> None:
    """tflite-runtime 2.14 applies no XNNPACK delegate to these int8 models: its outputs
    are bit-identical to xnnpack=False, and the runtime string says built-in kernels.
    (Optional: runs where tflite-runtime is the installed runtime, e.g. its CI lane.)"""
    pytest.importorskip("tflite_runtime.interpreter", reason="tflite-runtime is not installed")
    rng = np.random.default_rng(7)
    qs = [rng.integers(-128, 128, (1, 50, 50, 1), dtype=np.int8) for _ in range(8)]
    outs = []
    for xnn in (True, False):
        opts = armvww.LiteRTOptions(xnnpack=xnn, runtime="tflite_runtime")
        with armvww.Detector(vww2_path, backend="LiteRT", options=opts) as det:
            assert det.runtime.startswith("tflite-runtime 2.14")
            assert det.runtime.endswith(", built-in kernels"), det.runtime
            outs.append([det.run(q).tolist() for q in qs])
    assert outs[0] == outs[1]


class FakeInterpreterModule(types.ModuleType):
    """A stand-in interpreter package (selection logic only): it imports, but every
    Interpreter it constructs fails the way tflite-runtime 2.14 does under numpy 2."""

    def __init__(self) -> None:
        super().__init__("fake_interpreter")

        def interpreter(**_kw: object) -> None:
            try:
                raise AttributeError("_ARRAY_API not found")
            except AttributeError as inner:
                raise SystemError(
                    "<built-in method CreateWrapperFromBuffer> returned a result with an "
                    "exception set"
                ) from inner

        self.Interpreter = interpreter


def test_a_runtime_that_imports_but_cannot_load_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, vww2_path: Path
) -> None:
    fake = FakeInterpreterModule()
    monkeypatch.setitem(litert._CANDIDATES, "fake", ("fake_interpreter", "fake-runtime"))
    monkeypatch.setattr(
        litert, "_import", lambda name: (fake, "fake-runtime 2.14.0") if name == "fake" else ()
    )
    litert._probe.cache_clear()
    try:
        mod, _desc, reason = litert._probe("fake")
        assert mod is None and "imports but cannot run a model" in reason
        if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            assert "pip install 'numpy<2'" in reason
        opts = armvww.LiteRTOptions(runtime="fake")  # type: ignore[arg-type]
        with pytest.raises(BackendUnavailableError, match="cannot run a model"):
            armvww.Detector(vww2_path, backend="LiteRT", options=opts)
    finally:
        litert._probe.cache_clear()


def test_the_probe_really_loads_and_runs() -> None:
    _litert_or_skip()
    calls: list[str] = []
    mod = litert._import("ai_edge_litert")[0]

    class Spy:
        def __init__(self, **kw: object) -> None:
            calls.append("construct")
            self._it = mod.Interpreter(**kw)

        def __getattr__(self, name: str) -> object:
            if name == "invoke":
                calls.append("invoke")
            return getattr(self._it, name)

    litert._trial(types.SimpleNamespace(Interpreter=Spy))  # type: ignore[arg-type]
    assert calls == ["construct", "invoke"]


def _detect(img: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "armvww", *args, "detect", "-b", "LiteRT", str(img)],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
    )


def test_xnnpack_info_line_is_quiet_unless_asked(vww2_path: Path, tmp_path: Path) -> None:
    _litert_or_skip()
    img = _photo(tmp_path)
    quiet = _detect(img)
    assert quiet.returncode == 0, quiet.stderr
    assert NOISE not in quiet.stderr and "grey.png" in quiet.stdout
    assert NOISE in _detect(img, ARMVWW_RUNTIME_LOGS="1").stderr
    assert NOISE in _detect(img, "-vv").stderr


def test_quiet_runtime_logs_keeps_every_other_line(capfd: pytest.CaptureFixture[str]) -> None:
    with litert.quiet_runtime_logs():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: something the user must see\n")
    err = capfd.readouterr().err
    assert NOISE not in err and "ERROR: something the user must see" in err


def _no_pyarmnn(monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    real = armnn_parser.importlib.util.find_spec
    monkeypatch.setattr(
        armnn_parser.importlib.util,
        "find_spec",
        lambda n, *a: None if n == "pyarmnn" else real(n, *a),
    )
    monkeypatch.setattr(armnn_options.platform, "machine", lambda: machine)
    _reset_probes()


def _reset_probes() -> None:
    """Both routes' probes: each is cached per process, and judged on the faked machine."""
    armnn_parser.reset_probe()
    armnn_delegate.reset_probe()


@pytest.fixture
def _fresh_probe() -> object:
    yield
    _reset_probes()


@pytest.mark.usefixtures("_fresh_probe")
def test_on_x86_no_package_gives_cpuacc_or_gpuacc(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_pyarmnn(monkeypatch, "x86_64")
    for name in ("CpuAcc", "GpuAcc"):
        reason = armvww.backends.availability(name).reason
        assert "needs an Arm CPU" in reason and "no package gives it" in reason, reason
        assert "apt-get install" not in reason
    assert "Mali GPU" in armvww.backends.availability("GpuAcc").reason


@pytest.mark.usefixtures("_fresh_probe")
def test_a_venv_without_system_site_packages_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_pyarmnn(monkeypatch, "aarch64")
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    reason = armvww.backends.availability("CpuRef").reason
    assert "--system-site-packages" in reason and str(tmp_path) in reason
    (tmp_path / "pyvenv.cfg").write_text("include-system-site-packages = true\n")
    _reset_probes()
    reason = armvww.backends.availability("CpuAcc").reason
    assert f"python3-pyarmnn {armnn_options.cpuref_package()}" in reason


def test_cpuref_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rel = tmp_path / "os-release"
    monkeypatch.setattr(armnn_options, "OS_RELEASE", rel)
    for codename, pkg in (
        ("bookworm", "libarmnn-cpuref-backend22"),
        ("trixie", "libarmnn-cpuref-backend33"),
    ):
        rel.write_text(f'PRETTY_NAME="Debian"\nVERSION_CODENAME={codename}\n')
        assert armnn_options.cpuref_package() == pkg
