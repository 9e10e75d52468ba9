"""The Arm NN delegate route without Arm NN: finding the library, the child-process probe's
reasons for libraries that cannot work, the option mapping and node placement.

Each broken library is real and made here: a C plugin with an undefined symbol, one whose
``TfLiteDelegate`` is laid out by other headers (the interpreter calls a data pointer:
SIGSEGV inside ``Interpreter(...)``), a truncated copy and a copy marked for another
architecture. The route with a real ``libarmnnDelegate.so`` is tested inside the docker/
images (tests/armnn/test_armnn_delegate.py).
"""

from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import armvww
from armvww import backends
from armvww.backends import armnn, armnn_delegate
from armvww.backends.armnn import ArmNNOptions
from armvww.errors import BackendUnavailableError, OptionError
from armvww.model import tflite_build as tb

_MISSING = r"""
void armvww_symbol_nobody_defines(void);
void *tflite_plugin_create_delegate(char **k, char **v, unsigned long n, void (*e)(const char *))
{ armvww_symbol_nobody_defines(); return 0; }
void tflite_plugin_destroy_delegate(void *d) { (void)d; }
"""
# TfLiteDelegate as headers with one extra leading field would lay it out: the interpreter
# reads Prepare where data_ is (a static buffer, not code) and calls it.
_SHIFTED = r"""
#include <stdint.h>
#include <stdlib.h>
static char not_code[64];
typedef struct { void *extra, *data_, *prepare, *copy_from, *copy_to, *free_;
                 int64_t flags; void *opaque; } Shifted;
void *tflite_plugin_create_delegate(char **k, char **v, unsigned long n, void (*e)(const char *))
{ Shifted *d = calloc(1, sizeof *d); d->extra = not_code; d->data_ = not_code; return d; }
void tflite_plugin_destroy_delegate(void *d) { free(d); }
"""
_NO_ENTRY = "int armvww_not_a_delegate(void) { return 0; }\n"


def _litert() -> None:
    if not backends.availability("LiteRT").available:
        pytest.skip("LiteRT is not installed here (the delegate route loads into it)")


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The broken libraries, built with the host's C compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("needs a C compiler (make host-deps installs gcc)")
    d = tmp_path_factory.mktemp("delegates")
    out = {}
    for name, src in (("missing", _MISSING), ("shifted", _SHIFTED), ("noentry", _NO_ENTRY)):
        c = d / f"{name}.c"
        c.write_text(src)
        out[name] = d / f"lib{name}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(out[name]), str(c)], check=True)
    data = out["shifted"].read_bytes()
    out["truncated"] = d / "libtruncated.so"
    out["truncated"].write_bytes(data[: len(data) // 3])
    other = {"x86_64": 183, "aarch64": 62}.get(platform.machine(), 183)
    wrong = bytearray(data)
    struct.pack_into("<H", wrong, 18, other)
    out["wrongarch"] = d / "libwrongarch.so"
    out["wrongarch"].write_bytes(bytes(wrong))
    return out


def _route(lib: Path) -> dict[str, object]:
    return armnn.delegate_route("CpuRef", str(lib))


def _refused(lib: Path) -> str:
    """The Detector's error for CpuRef on the delegate route with ``lib``; the app lives."""
    model = tb.tiny_vww_model()
    with pytest.raises(BackendUnavailableError) as ei:
        armvww.Detector(
            model, backend="CpuRef", options=ArmNNOptions(route="delegate", delegate_path=str(lib))
        )
    return str(ei.value)


def test_missing_symbol_is_a_reason(libs: dict[str, Path]) -> None:
    _litert()
    r = _route(libs["missing"])
    assert r["available"] is False
    assert "undefined symbol: armvww_symbol_nobody_defines" in str(r["reason"]), r
    assert "undefined symbol" in _refused(libs["missing"])


def test_library_without_the_plugin_entry_points_is_a_reason(libs: dict[str, Path]) -> None:
    _litert()
    r = _route(libs["noentry"])
    assert r["available"] is False
    assert "tflite_plugin_create_delegate" in str(r["reason"]), r


def test_abi_mismatch_crash_at_interpreter_is_a_reason(libs: dict[str, Path]) -> None:
    _litert()
    r = _route(libs["shifted"])
    assert r["available"] is False
    reason = str(r["reason"])
    assert "killed by signal 11" in reason and "on CpuRef" in reason, reason
    assert "other TfLite headers" in reason
    # the backends the crash kept the probe from trying say why
    other = armnn.delegate_route("CpuAcc", str(libs["shifted"]))
    assert "not tried" in str(other["reason"]), other
    assert "killed by signal 11" in _refused(libs["shifted"])


def test_truncated_library_is_a_reason_before_any_process_loads_it(
    libs: dict[str, Path],
) -> None:
    size = libs["truncated"].stat().st_size
    problem = armnn_delegate.elf_problem(libs["truncated"])
    assert "truncated" in problem and f"the file has {size}" in problem
    r = _route(libs["truncated"])
    assert r["available"] is False and "truncated" in str(r["reason"])
    assert "truncated" in _refused(libs["truncated"])


def test_wrong_architecture_is_a_reason(libs: dict[str, Path]) -> None:
    problem = armnn_delegate.elf_problem(libs["wrongarch"])
    assert f"this machine is {platform.machine()}" in problem, problem
    assert "built for" in _refused(libs["wrongarch"])
    # the real thing when the project's build for the other architecture is here
    other = {"x86_64": "arm64", "aarch64": "amd64"}.get(platform.machine())
    real = armnn_delegate.REPO / ".cache" / "armnn-delegate" / str(other) / armnn_delegate.LIB_NAME
    if real.is_file():
        assert "built for" in armnn_delegate.elf_problem(real)


def test_not_elf_is_a_reason(tmp_path: Path) -> None:
    f = tmp_path / armnn_delegate.LIB_NAME
    f.write_text("not a library\n")
    assert "not an ELF shared library" in armnn_delegate.elf_problem(f)


def test_finding_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(armnn_delegate.ENV_PATH, raising=False)
    monkeypatch.delenv("ARMNN_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(armnn_delegate, "REPO", tmp_path / "checkout")
    # the system folders stand in empty (armvww:x86 has a delegate in /usr/local/lib)
    monkeypatch.setattr(armnn_delegate, "system_lib_dirs", lambda: [tmp_path / "usr-lib"])
    if Path("/opt/armnn").exists():
        pytest.skip("this machine has Arm's release tarball in /opt/armnn")
    # nothing anywhere
    loc = armnn_delegate.find_delegate()
    assert loc.path is None and armnn_delegate.ENV_PATH in loc.reason
    # the project's build output
    built = tmp_path / "checkout" / ".cache" / "armnn-delegate" / armnn_delegate.deb_arch()
    built.mkdir(parents=True)
    (built / armnn_delegate.LIB_NAME).write_bytes(b"x")
    assert armnn_delegate.find_delegate().path == (built / armnn_delegate.LIB_NAME).resolve()
    # Arm's release tarball under $ARMNN_HOME comes after the project's build
    home = tmp_path / "armnn" / f"ArmNN-linux-{platform.machine()}"
    home.mkdir(parents=True)
    (home / armnn_delegate.LIB_NAME).write_bytes(b"y")
    monkeypatch.setenv("ARMNN_HOME", str(tmp_path / "armnn"))
    assert armnn_delegate.find_delegate().path == (built / armnn_delegate.LIB_NAME).resolve()
    (built / armnn_delegate.LIB_NAME).unlink()
    assert armnn_delegate.find_delegate().path == (home / armnn_delegate.LIB_NAME).resolve()
    # the environment variable (a folder) beats the standard places
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / armnn_delegate.LIB_NAME).write_bytes(b"z")
    monkeypatch.setenv(armnn_delegate.ENV_PATH, str(env_dir))
    loc = armnn_delegate.find_delegate()
    assert loc.path == (env_dir / armnn_delegate.LIB_NAME).resolve()
    assert loc.how == armnn_delegate.ENV_PATH
    # the option beats the environment; an explicit path that is not there is a reason
    opt = tmp_path / "opt.so"
    opt.write_bytes(b"o")
    assert armnn_delegate.find_delegate(str(opt)).path == opt.resolve()
    gone = armnn_delegate.find_delegate(str(tmp_path / "nope.so"))
    assert gone.path is None and "not a file" in gone.reason and "nope.so" in gone.reason


def test_options_map_onto_delegate_keys() -> None:
    keys = dict.fromkeys(armnn_delegate.KEYS, True)
    o = ArmNNOptions(
        route="delegate",
        cpu_threads=3,
        cpu_fast_math=True,
        gpu_fast_math=True,
        gpu_tuning_level=1,
        gpu_tuning_file="/tmp/t.bin",
        gpu_mlgo_tuning_file="/tmp/m.mlgo",
        gpu_kernel_profiling=True,
        dot_file="/tmp/n.dot",
        pure_armnn=True,
    )
    d, notes = armnn_delegate.delegate_options(["GpuAcc", "CpuAcc"], o, keys)
    assert d == {
        "backends": "GpuAcc,CpuAcc",
        "logging-severity": "fatal",
        "number-of-threads": "3",
        "enable-fast-math": "true",
        "gpu-tuning-level": "1",
        "gpu-tuning-file": "/tmp/t.bin",
        "gpu-mlgo-tuning-file": "/tmp/m.mlgo",
        "gpu-kernel-profiling-enabled": "true",
        "serialize-to-dot": "/tmp/n.dot",
        "disable-tflite-runtime-fallback": "true",
    }
    assert any("written when the process exits" in n for n in notes)
    # quiet by default; a chosen level is passed on
    d, _ = armnn_delegate.delegate_options(["CpuRef"], ArmNNOptions(log_severity="info"), keys)
    assert d == {"backends": "CpuRef", "logging-severity": "info"}


def test_options_the_delegate_cannot_honour_are_refused() -> None:
    keys = dict.fromkeys(armnn_delegate.KEYS, True)
    keys["gpu-mlgo-tuning-file"] = False  # an older delegate without the key
    with pytest.raises(OptionError, match="gpu-mlgo-tuning-file"):
        armnn_delegate.delegate_options(
            ["GpuAcc"], ArmNNOptions(gpu_mlgo_tuning_file="/tmp/m"), keys
        )
    with pytest.raises(OptionError, match="one enable-fast-math key"):
        armnn_delegate.delegate_options(
            ["GpuAcc", "CpuAcc"], ArmNNOptions(cpu_fast_math=True), keys
        )
    with pytest.raises(OptionError, match="parser-route option"):
        armnn_delegate.delegate_options(["CpuRef"], ArmNNOptions(profiling=True), keys)
    with pytest.raises(OptionError, match="route must be one of"):
        ArmNNOptions(route="ffi")
    with pytest.raises(OptionError, match="log_severity"):
        ArmNNOptions(log_severity="loud")


def test_parser_route_refuses_delegate_options() -> None:
    with pytest.raises(OptionError, match="delegate-route option"):
        armnn.CpuRefBackend.choose_route(ArmNNOptions(route="parser", dot_file="/tmp/x.dot"))


def test_later_runtime_options_that_differ_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(armnn_delegate, "_runtime_options", {})
    base = {"backends": "GpuAcc"}
    armnn_delegate._check_runtime_options("/lib.so", {**base, "gpu-tuning-level": "1"})
    armnn_delegate._check_runtime_options("/lib.so", {**base, "gpu-tuning-level": "1"})
    with pytest.raises(OptionError, match="process-wide"):
        armnn_delegate._check_runtime_options("/lib.so", base)
    with pytest.raises(OptionError, match="process-wide"):
        armnn_delegate._check_runtime_options("/lib.so", {**base, "gpu-tuning-level": "2"})


def test_node_placement_with_a_real_delegate() -> None:
    """The placement walk on LiteRT's own XNNPACK delegate (ai-edge-litert 2.3.0), which
    takes the float tiny graph whole and the int8 one in two pieces around the int8
    AVERAGE_POOL_2D it leaves to LiteRT's kernels."""
    _litert()
    from ai_edge_litert import interpreter as lit  # type: ignore[import-untyped]

    it = lit.Interpreter(model_content=tb.float_model())
    it.allocate_tensors()
    p = armnn_delegate.node_placement(it)
    assert p["delegate_nodes"] == 1 and p["kept"] == [], p
    assert p["delegated"] == ["CONV_2D#0", "AVERAGE_POOL_2D#1", "RESHAPE#2", "FULLY_CONNECTED#3"]
    it = lit.Interpreter(model_content=tb.tiny_vww_model())
    it.allocate_tensors()
    p = armnn_delegate.node_placement(it)
    assert p["delegate_nodes"] == 2, p
    assert p["delegated"] == ["CONV_2D#0", "RESHAPE#2", "FULLY_CONNECTED#3"]
    assert p["kept"] == ["AVERAGE_POOL_2D#1"]


def test_backends_lists_both_routes_with_reasons(
    libs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _litert()
    monkeypatch.setenv(armnn_delegate.ENV_PATH, str(libs["missing"]))
    av = armnn.CpuRefBackend.availability()
    routes = av.details["routes"]
    assert set(routes) == {"parser", "delegate"}
    assert routes["delegate"]["library"] == str(libs["missing"].resolve())
    assert "undefined symbol" in routes["delegate"]["reason"]
    out = subprocess.run(
        [os.sys.executable, "-m", "armvww", "backends"],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "delegate" in out and str(libs["missing"].resolve()) in out, out


def test_not_found_names_the_build_command_and_it_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a source checkout the reason names `make ... armnn-delegate`, spelled to run from
    the working directory; a copy of armvww outside a checkout names no make command."""
    monkeypatch.delenv(armnn_delegate.ENV_PATH, raising=False)
    monkeypatch.delenv("ARMNN_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    arch = armnn_delegate.deb_arch()
    # the real checkout, with its build output hidden (an empty copy of the search order)
    real = armnn_delegate.REPO
    monkeypatch.setattr(armnn_delegate, "project_build_dirs", lambda: [tmp_path / "none" / arch])
    if any((d / armnn_delegate.LIB_NAME).exists() for d in armnn_delegate.standard_places()):
        pytest.skip("this machine has a delegate in a standard place")
    monkeypatch.chdir(tmp_path)
    reason = armnn_delegate.find_delegate().reason
    if not (real / "Makefile").is_file() or not (real / "tools" / "armnn_delegate.py").is_file():
        # armvww installed from a wheel or run from an unpacked sdist: no build tool here
        assert "make" not in reason, reason
        return
    want = f"make -C {real} armnn-delegate DELEGATE_ARCH={arch}"
    assert f"`{want}`" in reason, reason
    monkeypatch.chdir(real)
    assert f"`make armnn-delegate DELEGATE_ARCH={arch}`" in armnn_delegate.find_delegate().reason
    # outside a checkout (a wheel): no make command to offer
    monkeypatch.setattr(armnn_delegate, "REPO", tmp_path / "site-packages")
    assert "make" not in armnn_delegate.find_delegate().reason
    # run as printed, from another folder, as make's dry run (the real one builds the image
    # stage with buildah: minutes): the target exists there and runs the image recipe
    proc = subprocess.run([*want.split(), "-n"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tools/images.sh delegate" in proc.stdout, proc.stdout
