"""Faults around the app: model file deleted or replaced mid-run, disk full while writing,
pyarmnn absent / half-installed / defective, LiteRT absent, an OpenCL driver that aborts,
hangs or fails. The app keeps running and says why.

Cases that need the Arm NN backends (``armvww/backends/armnn.py``) skip, with that reason,
until those backends are registered.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import armvww
from armvww import backends
from armvww.model import store

from . import fuzzlib

REPO = Path(__file__).resolve().parents[2]
ARMNN_NAMES = ("GpuAcc", "CpuAcc", "CpuRef")


def _armnn_registered() -> list[str]:
    return [n for n in ARMNN_NAMES if n in backends.names()]


def _need_armnn() -> list[str]:
    names = _armnn_registered()
    if not names:
        pytest.skip("the Arm NN backends are not registered yet (armvww/backends/armnn.py)")
    return names


# -- the model file changes under a running Detector -------------------------------------------


@pytest.mark.litert
def test_model_file_deleted_or_replaced_mid_run(
    vww2_path: Path, vww4_path: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.tflite"
    shutil.copyfile(vww2_path, path)
    pictures = [fuzzlib.base_rgb(60 + i, 50, seed=i) for i in range(6)]
    with armvww.Detector(path, backend="LiteRT") as det:
        want = [det.detect(p).raw.tolist() for p in pictures]
        sha = det.model.sha256
        path.unlink()
        assert [det.detect(p).raw.tolist() for p in pictures] == want
        path.write_bytes(b"\0" * 1000)  # replaced by garbage
        assert [det.detect(p).raw.tolist() for p in pictures] == want
        shutil.copyfile(vww4_path, path)  # replaced by another valid model
        assert [det.detect(p).raw.tolist() for p in pictures] == want
        assert det.input_shape == (1, 50, 50, 1)
        assert det.model.sha256 == sha == hashlib.sha256(vww2_path.read_bytes()).hexdigest()
    # and a new Detector on the replaced path really loads what is there now
    with armvww.Detector(path, backend="LiteRT") as fresh:
        assert fresh.input_shape == (1, 128, 128, 1)
    path.write_bytes(b"\0" * 1000)
    with pytest.raises(armvww.ModelIntegrityError):
        armvww.Detector(path, backend="LiteRT")


# -- disk full while writing ----------------------------------------------------------------------


@pytest.fixture
def full_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A folder with 64 KiB of space: a real tmpfs when we may mount one, else a folder whose
    writes through ``armvww.model.store`` fail with ENOSPC after 64 KiB."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
        )
        mounted = r.returncode == 0
    if not mounted:
        real_fdopen = os.fdopen

        class Full(io.RawIOBase):
            def __init__(self, f: Any) -> None:
                self.f, self.n = f, 0

            def write(self, b: Any) -> int:
                self.n += len(b)
                if self.n > 64 * 1024:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return int(self.f.write(b))

            def fileno(self) -> int:
                return int(self.f.fileno())

            def flush(self) -> None:
                self.f.flush()

            def close(self) -> None:
                self.f.close()

        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    try:
        yield mnt, "tmpfs" if mounted else "simulated"
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=True)


def test_write_atomic_on_a_full_disk_keeps_the_old_file(full_dir: tuple[Path, str]) -> None:
    d, how = full_dir
    dest = d / "tuning.bin"
    old = os.urandom(8 * 1024)
    store.write_atomic(dest, old)
    with pytest.raises(OSError) as info:
        store.write_atomic(dest, os.urandom(200 * 1024))
    assert info.value.errno == errno.ENOSPC, (how, info.value)
    assert dest.read_bytes() == old
    assert sorted(p.name for p in d.iterdir()) == ["tuning.bin"], "temporary file left behind"
    store.write_atomic(dest, b"new")  # the space came back
    assert dest.read_bytes() == b"new"


def test_fetch_on_a_full_disk_is_a_typed_error(
    full_dir: tuple[Path, str], vww2_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, _ = full_dir
    dest = d / "vww2_50_50_INT8.tflite"
    damaged = vww2_bytes[:4096]
    dest.write_bytes(damaged)  # an old, damaged copy: fetch downloads again

    class Response(io.BytesIO):
        def __enter__(self) -> Response:
            return self

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response(vww2_bytes))
    try:
        with pytest.raises(armvww.FetchError):
            store.fetch("vww2", d)
    finally:
        assert dest.read_bytes() == damaged
        assert [p.name for p in d.iterdir()] == [dest.name]


# -- runtimes absent, half-installed or defective (in child processes) ---------------------------

_FAKES: dict[str, dict[str, str]] = {
    "pyarmnn-absent": {},  # the real state of this host, unless pyarmnn is installed
    "pyarmnn-import-error": {
        "pyarmnn/__init__.py": "raise ImportError('libarmnn.so.33: cannot open shared object "
        "file: No such file or directory')\n",
    },
    "pyarmnn-oserror": {"pyarmnn/__init__.py": "raise OSError('undefined symbol: _ZN5armnn')\n"},
    "pyarmnn-half-installed": {"pyarmnn/__init__.py": "# the _pyarmnn extension is missing\n"},
    "pyarmnn-defective": {
        "pyarmnn/__init__.py": textwrap.dedent(
            """
            __version__ = "0.0.1"
            ARMNN_VERSION = "0.0.1"
            def _broken(*a, **k):
                raise RuntimeError("defective pyarmnn: not implemented")
            class _Broken:
                def __init__(self, *a, **k):
                    raise RuntimeError("defective pyarmnn: not implemented")
            IRuntime = CreationOptions = ITfLiteParser = OptimizerOptions = _Broken
            BackendId = Optimize = _broken
            def __getattr__(name):
                raise AttributeError(f"defective pyarmnn has no {name}")
            """
        ),
    },
    "pyarmnn-runtime-abort": {  # imports, then aborts when the runtime is created
        "pyarmnn/__init__.py": textwrap.dedent(
            """
            import os
            __version__ = ARMNN_VERSION = "32.1.0"
            class OptimizerOptions: pass
            class CreationOptions: pass
            class IOptimizedNetwork: pass
            class IRuntime:
                def __init__(self, *a, **k):
                    os.abort()
            """
        ),
    },
}

# "absent" cannot be shown where pyarmnn is really installed: that skip is allowed in CI
_VARIANTS = [
    pytest.param(v, marks=pytest.mark.optional) if v == "pyarmnn-absent" else v for v in _FAKES
]

_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import armvww
    from armvww.backends import available_backends
    rows = [a.as_dict() for a in available_backends()]
    out = {"backends": rows}
    pic = np.asarray(json.loads(sys.argv[1]), dtype=np.uint8)
    for spec in ("auto", "LiteRT"):
        try:
            with armvww.Detector(sys.argv[2], backend=spec) as det:
                d = det.detect(pic)
                out[spec] = {"backend": d.backend, "raw": d.raw.tolist(),
                             "fallback": list(d.fallback)}
        except armvww.ArmvwwError as exc:
            out[spec] = {"error": type(exc).__name__, "message": str(exc)}
    for name in ("GpuAcc", "CpuAcc", "CpuRef"):
        try:
            armvww.Detector(sys.argv[2], backend=name).close()
            out[name] = {"error": None}
        except armvww.ArmvwwError as exc:
            out[name] = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out))
    """
)


def _run_child(
    fake: dict[str, str],
    root: Path,
    model: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    for rel, text in fake.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra_env or {})
    pic = fuzzlib.base_rgb(40, 30).tolist()
    return subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(pic), str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


_CHILD_CACHE: dict[str, dict[str, Any]] = {}


def _child_result(
    variant: str, tmp_path_factory: pytest.TempPathFactory, model: Path
) -> dict[str, Any]:
    if variant not in _CHILD_CACHE:
        root = tmp_path_factory.mktemp(variant)
        # pyarmnn's faults are the parser route's; where a delegate is installed (armvww:x86
        # has one in /usr/local/lib) Arm NN rightly works without pyarmnn, so the delegate
        # route is pointed at nothing here (an explicit missing path: a reason, no search)
        no_delegate = {"ARMVWW_ARMNN_DELEGATE": str(root / "no-libarmnnDelegate.so")}
        r = _run_child(_FAKES[variant], root, model, extra_env=no_delegate)
        assert r.returncode == 0, f"{variant}: exit {r.returncode}\n{r.stderr[-3000:]}"
        _CHILD_CACHE[variant] = json.loads(r.stdout.strip().splitlines()[-1])
    return _CHILD_CACHE[variant]


@pytest.fixture(scope="module")
def litert_raw(vww2_path: Path) -> list[int]:
    try:
        with armvww.Detector(vww2_path, backend="LiteRT") as det:
            return list(det.detect(fuzzlib.base_rgb(40, 30)).raw.tolist())
    except armvww.BackendUnavailableError as exc:
        pytest.skip(f"LiteRT is not usable: {exc}")


@pytest.mark.litert
@pytest.mark.parametrize("variant", _VARIANTS)
def test_litert_keeps_working_whatever_pyarmnn_does(
    variant: str,
    tmp_path_factory: pytest.TempPathFactory,
    vww2_path: Path,
    litert_raw: list[int],
) -> None:
    if variant == "pyarmnn-absent" and _pyarmnn_installed():
        pytest.skip("pyarmnn is installed here; 'absent' cannot be shown")
    out = _child_result(variant, tmp_path_factory, vww2_path)
    rows = {r["backend"]: r for r in out["backends"]}
    assert rows["LiteRT"]["available"] is True
    assert out["LiteRT"]["raw"] == litert_raw
    assert out["auto"]["raw"] == litert_raw and out["auto"]["backend"] == "LiteRT"
    for name in ARMNN_NAMES:  # asking for Arm NN gives a typed, explained refusal
        assert out[name]["error"] == "BackendUnavailableError", out[name]
        assert name in out[name]["message"] and "LiteRT" in out[name]["message"]


@pytest.mark.armnn
@pytest.mark.parametrize("variant", _VARIANTS)
def test_armnn_backends_report_why_pyarmnn_is_unusable(
    variant: str, tmp_path_factory: pytest.TempPathFactory, vww2_path: Path
) -> None:
    names = _need_armnn()
    if variant == "pyarmnn-absent" and _pyarmnn_installed():
        pytest.skip("pyarmnn is installed here; 'absent' cannot be shown")
    out = _child_result(variant, tmp_path_factory, vww2_path)
    rows = {r["backend"]: r for r in out["backends"]}
    cause = _CAUSES[variant]
    for name in names:
        assert rows[name]["available"] is False, rows[name]
        assert cause in rows[name]["reason"], (cause, rows[name])
        assert out[name]["error"] == "BackendUnavailableError" and cause in out[name]["message"]
    tried_before_litert = [n for n in backends.AUTO_ORDER if n in names][
        : backends.AUTO_ORDER.index("LiteRT")
    ]
    for name in tried_before_litert:
        assert any(f.startswith(f"{name}: ") and cause in f for f in out["auto"]["fallback"])


#: What each broken pyarmnn must be reported as (a substring of the reason).
_CAUSES = {
    "pyarmnn-absent": "pyarmnn is not importable by this Python",
    "pyarmnn-import-error": "libarmnn.so.33: cannot open shared object file",
    "pyarmnn-oserror": "undefined symbol",
    "pyarmnn-half-installed": "OptimizerOptions",
    "pyarmnn-defective": "defective pyarmnn: not implemented",
    "pyarmnn-runtime-abort": "killed by signal 6",
}


def _pyarmnn_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarmnn") is not None


def test_litert_absent_is_reported_not_raised(tmp_path: Path, vww2_path: Path) -> None:
    fake = {
        f"{m}/__init__.py": f"raise ImportError('{m} is not installed (fake)')\n"
        for m in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    }
    r = _run_child(fake, tmp_path, vww2_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    rows = {x["backend"]: x for x in out["backends"]}
    assert rows["LiteRT"]["available"] is False
    assert "ai_edge_litert" in rows["LiteRT"]["reason"]
    assert "pip install" in rows["LiteRT"]["reason"]
    assert out["LiteRT"]["error"] == "BackendUnavailableError"
    # the CLI: `backends` lists the reason and exits 0; `detect` exits with the family's code
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    b = subprocess.run(
        [sys.executable, "-m", "armvww", "backends"], capture_output=True, text=True, env=env
    )
    assert b.returncode == 0 and "LiteRT" in b.stdout and "unavailable" in b.stdout
    pic = tmp_path / "p.png"
    pic.write_bytes(fuzzlib.encode(__import__("PIL.Image").Image.new("L", (9, 9)), "PNG"))
    d = subprocess.run(
        [sys.executable, "-m", "armvww", "detect", "-m", str(vww2_path), "-b", "LiteRT", str(pic)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert d.returncode == armvww.BackendUnavailableError.exit_code, d.stderr
    assert "Traceback" not in d.stderr and "LiteRT" in d.stderr


# -- an OpenCL driver that aborts, hangs or fails --------------------------------------------------

_FAKE_CL = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
typedef int32_t cl_int;
typedef uint32_t cl_uint;
#define CL_OUT_OF_HOST_MEMORY -6
static cl_int fault(void) {
    const char *m = getenv("ARMVWW_FAKE_CL");
    if (m && !strcmp(m, "abort")) abort();
    if (m && !strcmp(m, "hang")) for (;;) pause();
    if (m && !strcmp(m, "segv")) { volatile int *p = 0; *p = 1; }
    return CL_OUT_OF_HOST_MEMORY;
}
cl_int clGetPlatformIDs(cl_uint n, void **p, cl_uint *np) { return fault(); }
cl_int clGetPlatformInfo(void *p, cl_uint n, size_t s, void *v, size_t *r) { return fault(); }
cl_int clGetDeviceIDs(void *p, uint64_t t, cl_uint n, void **d, cl_uint *nd) { return fault(); }
cl_int clGetDeviceInfo(void *d, cl_uint n, size_t s, void *v, size_t *r) { return fault(); }
void *clCreateContext(const void *p, cl_uint n, void **d, void *f, void *u, cl_int *e) {
    cl_int r = fault(); if (e) *e = r; return 0; }
void *clCreateContextFromType(const void *p, uint64_t t, void *f, void *u, cl_int *e) {
    cl_int r = fault(); if (e) *e = r; return 0; }
void *clCreateCommandQueue(void *c, void *d, uint64_t p, cl_int *e) {
    cl_int r = fault(); if (e) *e = r; return 0; }
void *clCreateCommandQueueWithProperties(void *c, void *d, const void *p, cl_int *e) {
    cl_int r = fault(); if (e) *e = r; return 0; }
cl_int clBuildProgram(void *p, cl_uint n, void **d, const char *o, void *f, void *u) {
    return fault(); }
cl_int clFinish(void *q) { return fault(); }
"""

CL_MODES = ("abort", "hang", "segv", "error")

#: A stand-in pyarmnn, enough for armvww's probe, whose GpuAcc LoadNetwork calls into the
#: OpenCL driver as Arm NN does (CpuRef refuses, CpuAcc is not listed): with the fake driver
#: it reproduces "the driver aborts / hangs / segfaults / errors while GpuAcc loads".
_PYARMNN_OVER_OPENCL = textwrap.dedent(
    """
    import ctypes
    __version__ = ARMNN_VERSION = "33.0.0"
    class OptimizerOptions: pass
    class CreationOptions: pass
    class IOptimizedNetwork: pass
    class BackendId:
        def __init__(self, name): self.name = name
        def __str__(self): return self.name
    class _Spec:
        def GetSupportedBackends(self): return [BackendId("CpuRef"), BackendId("GpuAcc")]
    class ITfLiteParser:
        def CreateNetworkFromBinaryFile(self, path): return path
        def GetSubgraphInputTensorNames(self, i): return ["input"]
        def GetSubgraphOutputTensorNames(self, i): return ["output"]
        def GetNetworkInputBindingInfo(self, i, n): return (0, None)
        def GetNetworkOutputBindingInfo(self, i, n): return (0, None)
    def Optimize(net, prefs, spec, opts): return (str(prefs[0]), [])
    class IRuntime:
        def __init__(self, opts): pass
        def GetDeviceSpec(self): return _Spec()
        def LoadNetwork(self, opt):
            if opt != "GpuAcc":
                raise RuntimeError(f"fake pyarmnn: {opt} cannot load networks")
            rc = ctypes.CDLL("libOpenCL.so").clGetPlatformIDs(0, None, None)
            raise RuntimeError(f"clGetPlatformIDs failed with OpenCL error {rc}")
    """
)


@pytest.fixture(scope="module")
def fake_opencl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build the fake OpenCL driver")
    d = tmp_path_factory.mktemp("fake-opencl")
    src = d / "fake_cl.c"
    src.write_text(_FAKE_CL)
    lib = d / "libOpenCL.so.1"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O0", "-o", str(lib), str(src)], check=True, capture_output=True
    )
    for alias in ("libOpenCL.so", "libGLES_mali.so", "libmali.so"):
        (d / alias).symlink_to(lib.name)
    return d


@pytest.mark.parametrize("mode", CL_MODES)
def test_the_fake_opencl_driver_really_faults(fake_opencl: Path, mode: str) -> None:
    """The fault injection is real: a process calling clGetPlatformIDs dies, hangs or gets
    CL_OUT_OF_HOST_MEMORY. (Guards the GpuAcc tests below against a stub that does nothing.)"""
    code = (
        "import ctypes, sys; lib = ctypes.CDLL('libOpenCL.so'); "
        "print(lib.clGetPlatformIDs(0, None, None)); sys.stdout.flush()"
    )
    env = dict(os.environ, LD_LIBRARY_PATH=str(fake_opencl), ARMVWW_FAKE_CL=mode)
    if mode == "hang":
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=3)
        return
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    expected = {"abort": (-6, ""), "segv": (-11, ""), "error": (0, "-6\n")}[mode]
    assert (r.returncode, r.stdout) == expected


@pytest.mark.armnn
@pytest.mark.parametrize("pyarmnn", ["stand-in", pytest.param("real", marks=pytest.mark.optional)])
@pytest.mark.parametrize("mode", CL_MODES)
def test_gpuacc_probe_survives_a_faulty_opencl_driver(
    fake_opencl: Path,
    mode: str,
    pyarmnn: str,
    vww2_path: Path,
    tmp_path: Path,
    litert_raw: list[int],
) -> None:
    """The GpuAcc probe must run where a dying or hanging driver cannot take the app down (a
    child process with a time limit): GpuAcc is reported unavailable with the reason, and
    ``auto`` falls through to a working backend."""
    _need_armnn()
    if "GpuAcc" not in backends.names():
        pytest.skip("the GpuAcc backend is not registered yet (armvww/backends/armnn.py)")
    if pyarmnn == "real" and not _pyarmnn_installed():
        pytest.skip("no real pyarmnn here to load the OpenCL driver (the stand-in case ran)")
    fake = {"pyarmnn/__init__.py": _PYARMNN_OVER_OPENCL} if pyarmnn == "stand-in" else {}
    env = {
        "LD_LIBRARY_PATH": str(fake_opencl),
        "ARMVWW_FAKE_CL": mode,
        "ARMVWW_PROBE_TIMEOUT": "5" if mode == "hang" else "300",
    }
    r = _run_child(fake, tmp_path, vww2_path, extra_env=env, timeout=600)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    rows = {x["backend"]: x for x in out["backends"]}
    reason = rows["GpuAcc"]["reason"]
    assert rows["GpuAcc"]["available"] is False and reason, rows["GpuAcc"]
    assert out["GpuAcc"]["error"] == "BackendUnavailableError"
    assert reason in out["GpuAcc"]["message"]
    assert out["auto"]["backend"] != "GpuAcc" and "raw" in out["auto"]
    assert any(f.startswith("GpuAcc") for f in out["auto"]["fallback"]), out["auto"]
    assert out["LiteRT"]["raw"] == litert_raw
    if pyarmnn == "stand-in":
        expected = {
            "abort": "killed by signal 6 while loading a network on GpuAcc",
            "segv": "killed by signal 11 while loading a network on GpuAcc",
            "hang": "timed out after 5s",
            "error": "OpenCL error -6",
        }[mode]
        assert expected in reason, reason


def test_armnn_session_on_a_full_temp_dir_is_a_typed_error(
    full_dir: tuple[Path, str], vww2_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    armnn = pytest.importorskip(
        "armvww.backends.armnn_parser", reason="no Arm NN backend module yet"
    )
    import tempfile
    import types

    d, how = full_dir
    if how != "tmpfs":
        pytest.skip("needs a real small tmpfs (root with mount)")

    class Parser:
        def CreateNetworkFromBinaryFile(self, path: str) -> None:
            raise AssertionError("the write should have failed first")

    ann = types.SimpleNamespace(ITfLiteParser=Parser, ARMNN_VERSION="33.0.0", __version__="33")
    monkeypatch.setattr(armnn, "import_pyarmnn", lambda: ann)
    monkeypatch.setattr(armnn, "features", lambda a: dict.fromkeys(("model_options",), False))
    monkeypatch.setattr(armnn, "runtime", lambda: object())
    monkeypatch.setattr(armnn.ArmNNSession, "_model_options", lambda *a: ([], None))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    model = armvww.parse_model(vww2_bytes)
    with pytest.raises(armvww.BackendError):
        armnn.ArmNNSession(model, ["CpuRef"], armnn.ArmNNOptions(), False)
    assert list(d.iterdir()) == [], "temporary model file left behind"
