"""The Arm NN TfLite delegate route of the Arm NN backends (GpuAcc, CpuAcc, CpuRef).

Arm NN removed PyArmNN in 25.02; its supported way into Python is ``libarmnnDelegate.so``,
loaded into LiteRT's interpreter with ``load_delegate(path, options)``. This module finds
that library, proves in a child process that it works here, maps
:class:`~armvww.backends.armnn.ArmNNOptions` onto its option keys and opens sessions.

Finding the library (:func:`find_delegate`), first match wins:

1. ``ArmNNOptions(delegate_path=...)``, then the environment variable
   ``ARMVWW_ARMNN_DELEGATE`` (a file, or a folder holding ``libarmnnDelegate.so``). An
   explicit path that does not exist is a reason; the standard places are not searched.
2. The project's own build output: ``.cache/armnn-delegate/<arch>/`` of the source checkout
   armvww runs from, then ``$XDG_CACHE_HOME/armvww/armnn-delegate/<arch>/`` (``<arch>`` is
   Debian's name, ``amd64`` or ``arm64``).
3. Arm's release tarball unpacked under ``$ARMNN_HOME`` or ``/opt/armnn`` (the library at the
   top, in ``lib/`` or in ``ArmNN-linux-<machine>/``).
4. ``/usr/local/lib``, ``/usr/lib/<triplet>``, ``/usr/lib``.

Availability is proven, never assumed: a delegate built against other TfLite headers than
the interpreter's can crash the process at ``Interpreter(...)``, and a truncated file, a
wrong architecture or a missing symbol fail at load. So a child process
(``python -m armvww.backends.probe --delegate PATH``) loads the delegate on each Arm NN backend,
builds an interpreter around a tiny model of the project's own making, runs it and the PAD
probe, and tries each option key armvww maps; each crash or failure becomes a reason.

Arm NN facts this module works around (23.08):

* Runtime options (GPU tuning level and file, GPU kernel profiling) go to one ``IRuntime``
  made by the *first* delegate of the process; later delegates' runtime options are ignored.
  armvww refuses (:class:`~armvww.errors.OptionError`) a later request that differs.
  The GPU tuning file is written when that runtime is destroyed: at process exit.
* A delegate's subgraph never unloads its network: about 0.6 MB per interpreter
  create/destroy. armvww keeps one delegate per (library, options) and gives an idle
  interpreter of the same (model, library, options) to the next session instead of making a
  new one (:data:`POOL_IDLE_MAX` kept), so creating and closing Detectors does not grow.
* The delegate falls back to LiteRT's kernels for nodes Arm NN cannot run, unless
  ``ArmNNOptions(pure_armnn=True)`` (``disable-tflite-runtime-fallback``); sessions report
  which nodes Arm NN took and which LiteRT kept.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import logging
import os
import platform
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .. import hints
from ..errors import BackendError, BackendUnavailableError, OptionError
from ..model import Model
from .armnn_options import ARMNN_BACKENDS, ArmNNOptions, probe_timeout, publish_cached_network
from .armnn_threads import ThreadClaim
from .base import Session, emulation_info
from .litert import _probe as litert_probe

log = logging.getLogger(__name__)

#: The library's file name.
LIB_NAME = "libarmnnDelegate.so"
#: Environment variable naming the library (a file or a folder).
ENV_PATH = "ARMVWW_ARMNN_DELEGATE"
#: Idle interpreters kept for reuse, over all (model, library, options).
POOL_IDLE_MAX = 4

#: Option keys armvww maps (23.08 has 29); the probe child tries each on the installed
#: library and the session refuses an option whose key is missing.
KEYS: tuple[str, ...] = (
    "backends",
    "logging-severity",
    "number-of-threads",
    "enable-fast-math",
    "gpu-tuning-level",
    "gpu-tuning-file",
    "gpu-mlgo-tuning-file",
    "gpu-kernel-profiling-enabled",
    "save-cached-network",
    "cached-network-filepath",
    "serialize-to-dot",
    "disable-tflite-runtime-fallback",
)
#: Keys that configure the process-wide runtime (only the first delegate's count).
RUNTIME_KEYS: tuple[str, ...] = (
    "gpu-tuning-level",
    "gpu-tuning-file",
    "gpu-kernel-profiling-enabled",
)
#: A harmless value per key for the probe's key trial (no network is loaded by the trial).
TRIAL_VALUES: dict[str, str] = {
    "logging-severity": "fatal",
    "number-of-threads": "1",
    "enable-fast-math": "false",
    "gpu-tuning-level": "0",
    "gpu-tuning-file": "",
    "gpu-mlgo-tuning-file": "",
    "gpu-kernel-profiling-enabled": "false",
    "save-cached-network": "false",
    "cached-network-filepath": "",
    "serialize-to-dot": "",
    "disable-tflite-runtime-fallback": "false",
}

_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "armhf"}
_TRIPLET = {
    "amd64": "x86_64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "armhf": "arm-linux-gnueabihf",
}
_DOT_LAYER = re.compile(r"LayerName : (.*?)\\l.*?BackendID : (\w+)")


# --------------------------------------------------------------------------- finding it


def deb_arch() -> str:
    """Debian's name of this machine's architecture (``amd64``, ``arm64``...)."""
    m = platform.machine()
    return _DEB_ARCH.get(m, m)


#: The source checkout armvww runs from (its ``.cache`` holds the project's build).
REPO = Path(__file__).resolve().parents[2]


def project_build_dirs() -> list[Path]:
    """Where the project's build script leaves the library for this architecture."""
    arch = deb_arch()
    repo = REPO
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return [
        repo / ".cache" / "armnn-delegate" / arch,
        Path(xdg) / "armvww" / "armnn-delegate" / arch,
    ]


def standard_places() -> list[Path]:
    """Folders searched for ``libarmnnDelegate.so`` when no explicit path is given."""
    machine = platform.machine()
    tarball = [f"ArmNN-linux-{machine}", "lib", "."]
    homes = [Path(h) for h in (os.environ.get("ARMNN_HOME"), "/opt/armnn") if h]
    out = project_build_dirs()
    for home in homes:
        out += [(home / t) if t != "." else home for t in tarball]
    return out + system_lib_dirs()


def system_lib_dirs() -> list[Path]:
    """The system's library folders searched last (``/usr/local/lib`` first)."""
    triplet = _TRIPLET.get(deb_arch(), f"{platform.machine()}-linux-gnu")
    return [Path("/usr/local/lib"), Path("/usr/lib") / triplet, Path("/usr/lib")]


@dataclass(frozen=True)
class Located:
    """Where the delegate is (``path``), or why it was not found (``reason``)."""

    path: Path | None
    how: str
    reason: str = ""


def find_delegate(explicit: str | os.PathLike[str] | None = None) -> Located:
    """Find ``libarmnnDelegate.so``: ``explicit``, then ``$ARMVWW_ARMNN_DELEGATE``, then the
    standard places (see the module doc). Never raises."""
    for value, how in ((explicit, "delegate_path option"), (os.environ.get(ENV_PATH), ENV_PATH)):
        if value is None or str(value) == "":
            continue
        p = Path(value).expanduser()
        if p.is_dir():
            p = p / LIB_NAME
        if p.is_file():
            return Located(p.resolve(), how)
        return Located(None, how, f"{how} names {p}, which is not a file")
    places = standard_places()
    for d in places:
        for name in (LIB_NAME, f"{LIB_NAME}.29", f"{LIB_NAME}.30", f"{LIB_NAME}.31"):
            p = d / name
            if p.is_file():
                return Located(p.resolve(), f"found in {d}")
    where = ", ".join(str(d) for d in places)
    return Located(
        None,
        "search",
        f"no {LIB_NAME} found (set {ENV_PATH} or ArmNNOptions(delegate_path=...); searched "
        f"{where}); {build_hint()}Arm's release tarballs ship it (unpack one under "
        "$ARMNN_HOME or /opt/armnn)",
    )


def build_hint() -> str:
    """The command that builds the project's delegate for this machine, when armvww runs
    from a source checkout (its Makefile and build tool are there), else ``""``."""
    if not (REPO / "Makefile").is_file() or not (REPO / "tools" / "armnn_delegate.py").is_file():
        return ""
    arch = deb_arch()
    cmd = hints.make_command(str(REPO), f"armnn-delegate DELEGATE_ARCH={arch}")
    return f"build it from this checkout, as root: `{cmd}`; "


# --------------------------------------------------------------------------- ELF check

_EM = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
_MACHINE_EM = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "armv7l": 40, "i686": 3}


def elf_problem(path: Path) -> str:
    """Why ``path`` cannot be a shared library for this machine, from its ELF headers alone
    (not ELF, another architecture or word size, shorter than its headers say), or ``""``.
    A truncated library can kill the loading process with SIGBUS, so this is checked before
    any process loads it."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
            if len(head) < 52 or head[:4] != b"\x7fELF":
                return f"{path} is not an ELF shared library ({size} bytes)"
            is64 = head[4] == 2
            end = "<" if head[5] == 1 else ">"
            e_type, e_machine = struct.unpack_from(end + "HH", head, 16)
            if is64:
                phoff, shoff = struct.unpack_from(end + "QQ", head, 32)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", head, 54)
            else:
                phoff, shoff = struct.unpack_from(end + "II", head, 28)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", head, 42)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
    except OSError as exc:
        return f"cannot read {path}: {exc}"
    machine = platform.machine()
    want = _MACHINE_EM.get(machine)
    if want is not None and e_machine != want:
        arch = _EM.get(e_machine, f"machine {e_machine}")
        return f"{path} is built for {arch}; this machine is {machine}"
    if is64 != (struct.calcsize("P") == 8):
        return f"{path} is a {'64' if is64 else '32'}-bit library; this Python is not"
    if e_type != 3:
        return f"{path} is not a shared library (ELF type {e_type})"
    need = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    for i in range(phnum if len(ph) == phentsize * phnum else 0):
        if is64:
            off, _, _, filesz = struct.unpack_from(end + "QQQQ", ph, i * phentsize + 8)
        else:
            off, _, _, filesz = struct.unpack_from(end + "IIII", ph, i * phentsize + 4)
        need = max(need, off + filesz)
    if len(ph) != phentsize * phnum or size < need:
        return f"{path} is truncated: its ELF headers describe {need} bytes, the file has {size}"
    return ""


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class DelegateProbe:
    """What the child found for one library: per backend ok or the reason, option keys,
    Arm NN version; ``error`` when nothing could be tried (the library does not load)."""

    path: str
    litert: str = ""
    version: str = ""
    keys: dict[str, bool] = field(default_factory=dict)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""


_probe_lock = threading.Lock()
_probe_cache: dict[tuple[str, int, int], DelegateProbe] = {}


def probe(path: Path, timeout: float | None = None) -> DelegateProbe:
    """Run (once per process and file version) the child probe of the library at ``path``.

    Never raises: every failure becomes a reason in the result.
    """
    try:
        st = path.stat()
    except OSError as exc:
        return DelegateProbe(str(path), error=f"cannot read {path}: {exc}")
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _probe_lock:
        if key not in _probe_cache:
            problem = elf_problem(path)
            _probe_cache[key] = (
                DelegateProbe(str(path), error=problem) if problem else _run_probe(path, timeout)
            )
        return _probe_cache[key]


def reset_probe() -> None:
    """Forget the cached probes (tests, or after replacing a library in place). A probe
    also judges the library against this machine's architecture, so a cached one outlives
    a change of what the machine reports (a test that fakes another machine)."""
    with _probe_lock:
        _probe_cache.clear()


def _run_probe(path: Path, timeout: float | None) -> DelegateProbe:
    if timeout is None:
        timeout, problem = probe_timeout()
        if problem:
            return DelegateProbe(str(path), error=problem)
    cmd = [sys.executable, "-m", "armvww.backends.probe", "--delegate", str(path)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    timed_out = False
    try:
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout, check=False)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out, err, rc = exc.stdout or b"", exc.stderr or b"", None
        timed_out = True
    except OSError as exc:
        return DelegateProbe(str(path), error=f"could not start the probe process: {exc}")
    log.debug("delegate probe of %s took %.2f s (rc=%s)", path, time.perf_counter() - t0, rc)
    msgs = []
    for line in _text(out).splitlines():
        if line.startswith("ARMVWW_PROBE "):
            with contextlib.suppress(ValueError):
                msgs.append(json.loads(line[len("ARMVWW_PROBE ") :]))
    litert = version = ""
    keys: dict[str, bool] = {}
    backends: dict[str, dict[str, Any]] = {}
    running = None
    error = ""
    for m in msgs:
        stage = m.get("stage")
        if stage == "import":
            litert = str(m.get("litert", ""))
            if not m.get("ok"):
                error = str(m.get("reason", "LiteRT did not import"))
        elif stage == "library":
            version = str(m.get("version", ""))
        elif stage == "start":
            running = m.get("backend")
        elif stage == "done":
            backends[m["backend"]] = m
            running = None
        elif stage == "keys":
            running = "option keys"
            keys = {str(k): bool(v) for k, v in m.get("keys", {}).items()}
            running = None
        elif stage == "keys-start":
            running = "option keys"
        elif stage == "fatal":
            error = str(m.get("reason", ""))
    tail = " | ".join(ln.strip() for ln in _text(err).strip().splitlines()[-3:] if ln.strip())
    if timed_out or rc != 0:
        how = (
            f"timed out after {timeout:.0f}s"
            if timed_out
            else (
                f"was killed by signal {-rc}"
                if rc is not None and rc < 0
                else f"exited with status {rc}"
            )
        )
        what = (
            f" while trying {running}"
            if running == "option keys"
            else f" while loading the delegate and a network on {running}"
            if running
            else ""
        )
        reason = f"the delegate probe process {how}{what}" + (f": {tail}" if tail else "")
        crashed_first = not any(b.get("ok") for b in backends.values())
        if rc is not None and rc < 0 and running and running != "option keys" and crashed_first:
            # the first backend tried crashed inside Interpreter(...): the delegate itself
            reason += (
                " (a delegate built against other TfLite headers than this interpreter's "
                "crashes here; rebuild it against this LiteRT's headers)"
            )
        if running and running != "option keys":
            backends[running] = {"backend": running, "ok": False, "reason": reason}
            for b in ARMNN_BACKENDS:
                backends.setdefault(
                    b, {"backend": b, "ok": False, "reason": f"not tried: {running}: {reason}"}
                )
        elif not backends:
            error = error or reason
    return DelegateProbe(str(path), litert, version, keys, backends, error)


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


def armnn_version_of_loaded() -> str:
    """``"Arm NN 33.0.0"`` for the libarmnn mapped into this process (read from its file:
    the soname's major number, completed by the version string inside it), or ``""``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return ""
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) >= 6 and re.search(r"/libarmnn\.so[.\d]*$", parts[-1]):
            lib = Path(parts[-1])
            m = re.search(r"libarmnn\.so\.(\d+)", lib.name)
            if not m:
                return f"Arm NN (unversioned {lib})"
            major = m.group(1)
            with contextlib.suppress(OSError):
                data = lib.read_bytes()
                full = re.search(rb"\x00(" + major.encode() + rb"\.\d+\.\d+)\x00", data)
                if full:
                    return f"Arm NN {full.group(1).decode()}"
            return f"Arm NN {major}.x"
    return ""


# --------------------------------------------------------------------------- placement


def node_placement(it: Any) -> dict[str, Any]:
    """Which nodes of interpreter ``it`` the delegate took and which LiteRT kept.

    A delegate replaces each subset it takes with one ``DELEGATE`` node whose outputs are the
    subset's outputs and whose inputs are everything it reads from outside; the subset is the
    set of original nodes reachable backwards from those outputs without crossing those
    inputs. Returns ``{"delegate_nodes": n, "delegated": [...], "kept": [...]}`` (op
    names with node indices).
    """
    ops = it._get_ops_details()
    producer: dict[int, int] = {}
    for op in ops:
        if op["op_name"] != "DELEGATE":
            for t in op["outputs"]:
                producer[int(t)] = int(op["index"])
    taken: set[int] = set()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    for dnode in delegates:
        stop = {int(t) for t in dnode["inputs"]}
        todo = [int(t) for t in dnode["outputs"]]
        seen: set[int] = set()
        while todo:
            t = todo.pop()
            if t in seen or t in stop or t not in producer:
                continue
            seen.add(t)
            n = producer[t]
            if n not in taken:
                taken.add(n)
                todo.extend(int(i) for i in ops[n]["inputs"] if int(i) >= 0)
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    return {
        "delegate_nodes": len(delegates),
        "delegated": [f"{op['op_name']}#{op['index']}" for op in originals if op["index"] in taken],
        "kept": [f"{op['op_name']}#{op['index']}" for op in originals if op["index"] not in taken],
    }


def _armnn_layers(dot_path: Path) -> dict[str, str]:
    """Arm NN layer -> backend, from the ``.dot`` the delegate wrote at load."""
    try:
        dot = dot_path.read_text(errors="replace")
    except OSError:
        return {}
    return dict(_DOT_LAYER.findall(dot))


# --------------------------------------------------------------------------- options


def delegate_options(
    prefs: Sequence[str], o: ArmNNOptions, keys: dict[str, bool]
) -> tuple[dict[str, str], list[str]]:
    """The delegate's option dict for ``o`` on backends ``prefs`` (in order), and the notes
    worth reporting.

    Raises:
        OptionError: an option this route or the installed delegate cannot honour.
    """
    d: dict[str, str] = {"backends": ",".join(prefs)}
    d["logging-severity"] = o.log_severity or "fatal"
    notes: list[str] = []
    if o.profiling:
        raise OptionError(
            "profiling=True is a parser-route option: the Arm NN delegate prints its internal "
            "profile to stdout on every invoke instead of returning it; use route='parser'"
        )
    if o.cpu_threads is not None:
        d["number-of-threads"] = str(o.cpu_threads)
    fast = {"CpuAcc": o.cpu_fast_math, "GpuAcc": o.gpu_fast_math}
    asked = {b for b, v in fast.items() if v}
    if asked:
        present = {b for b in fast if b in prefs}
        if present - asked:
            raise OptionError(
                "the Arm NN delegate has one enable-fast-math key for CpuAcc and GpuAcc: set "
                f"cpu_fast_math and gpu_fast_math alike when both are in {list(prefs)}"
            )
        d["enable-fast-math"] = "true"
    if o.gpu_tuning_level is not None:
        d["gpu-tuning-level"] = str(o.gpu_tuning_level)
    if o.gpu_tuning_file:
        d["gpu-tuning-file"] = str(Path(o.gpu_tuning_file).expanduser().resolve())
        if o.gpu_tuning_level:
            notes.append("the GPU tuning file is written when the process exits")
    if o.gpu_mlgo_tuning_file:
        d["gpu-mlgo-tuning-file"] = str(Path(o.gpu_mlgo_tuning_file).expanduser().resolve())
    if o.gpu_kernel_profiling:
        d["gpu-kernel-profiling-enabled"] = "true"
    if o.dot_file:
        d["serialize-to-dot"] = str(Path(o.dot_file).expanduser().resolve())
    if o.pure_armnn:
        d["disable-tflite-runtime-fallback"] = "true"
    missing = [k for k in d if keys and not keys.get(k, False)]
    if missing:
        raise OptionError(
            f"the installed Arm NN delegate does not know the option key(s) {', '.join(missing)}"
            "; remove the options that need them or use a newer delegate"
        )
    return d, notes


def _cache_options(
    d: dict[str, str], o: ArmNNOptions, keys: dict[str, bool]
) -> tuple[dict[str, str], Path | None, str]:
    """Add the cached-network keys; returns (options, temp file to publish, note)."""
    if not o.gpu_cached_network:
        return d, None, ""
    for k in ("save-cached-network", "cached-network-filepath"):
        if keys and not keys.get(k, False):
            raise OptionError(f"the installed Arm NN delegate does not know the option key {k}")
    path = Path(o.gpu_cached_network).expanduser().resolve()
    if path.is_file() and path.stat().st_size > 0:
        return (
            {**d, "save-cached-network": "false", "cached-network-filepath": str(path)},
            None,
            f"read {path}",
        )
    if not o.gpu_save_cached_network:
        return d, None, f"{path} does not exist and gpu_save_cached_network is false"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.touch()  # Arm NN 23.08 only writes into a file that exists
    return (
        {**d, "save-cached-network": "true", "cached-network-filepath": str(tmp)},
        tmp,
        f"write {path}",
    )


# --------------------------------------------------------------------------- sharing


_lock = threading.RLock()
#: library path -> the runtime options of the first delegate made from it in this process.
_runtime_options: dict[str, dict[str, str]] = {}


@dataclass
class _SharedDelegate:
    """One loaded delegate, shared by every session with the same library and options."""

    key: tuple[str, tuple[tuple[str, str], ...]]
    delegate: Any
    dot: Path | None
    refs: int = 0


_delegates: dict[tuple[str, tuple[tuple[str, str], ...]], _SharedDelegate] = {}


@dataclass
class _Pooled:
    interp: Any
    shared: _SharedDelegate
    placement: dict[str, Any]
    layers: dict[str, str]


#: (model sha1, delegate key) -> idle interpreters, oldest first.
_idle: OrderedDict[tuple[str, tuple[str, tuple[tuple[str, str], ...]]], list[_Pooled]] = (
    OrderedDict()
)
#: Counters for tests and reports: interpreters made, reused, destroyed.
stats: Counter[str] = Counter()


def _check_runtime_options(path: str, d: dict[str, str]) -> None:
    mine = {k: v for k, v in d.items() if k in RUNTIME_KEYS}
    first = _runtime_options.setdefault(path, mine)
    if first != mine:
        raise OptionError(
            f"the Arm NN delegate's runtime options are process-wide and fixed by the first "
            f"delegate made in this process ({first or 'none'}); this session asks for "
            f"{mine or 'none'}, which Arm NN would silently ignore. Use the same GPU tuning "
            "and kernel-profiling options in every Detector of a process, or another process"
        )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Route what the delegate's TfLite logger prints to fd 2 into this module's log."""
    try:
        saved = os.dup(2)
        tmp = tempfile.TemporaryFile()
    except OSError:
        yield
        return
    sys.stderr.flush()
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
        tmp.close()
        for line in text.splitlines():
            if line.startswith(("INFO: ", "VERBOSE: ")):
                log.debug("delegate: %s", line)
            elif line.strip():
                log.warning("delegate: %s", line)


def _acquire(
    model: Model, path: str, d: dict[str, str], mod: ModuleType, reuse: bool = True
) -> tuple[_Pooled, bool]:
    """An interpreter of ``model`` with the shared delegate (reused when one is idle and
    ``reuse``)."""
    dkey = (path, tuple(sorted(d.items())))
    with _lock:
        idle = _idle.get((model.sha1, dkey))
        if idle and reuse:
            pooled = idle.pop()
            if not idle:
                del _idle[(model.sha1, dkey)]
            stats["reused"] += 1
            return pooled, True
        _check_runtime_options(path, d)
        shared = _delegates.get(dkey)
        if shared is None:
            dot: Path | None = None
            opts = dict(d)
            if "serialize-to-dot" not in opts:
                fd, name = tempfile.mkstemp(prefix="armvww-delegate-", suffix=".dot")
                os.close(fd)
                dot = Path(name)
                opts["serialize-to-dot"] = name
            else:
                dot = Path(opts["serialize-to-dot"])
            try:
                with _quiet_stderr():
                    delegate = mod.load_delegate(path, opts)
            except (ValueError, OSError, AttributeError) as exc:
                raise BackendError(
                    f"the Arm NN delegate {path} refused {d}: {' '.join(str(exc).split())}"
                ) from exc
            shared = _SharedDelegate(dkey, delegate, dot)
            _delegates[dkey] = shared
        try:
            with _quiet_stderr():
                it = mod.Interpreter(
                    model_content=model.data,
                    experimental_delegates=[shared.delegate],
                    experimental_op_resolver_type=(
                        mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                    ),
                )
                it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            if shared.refs == 0:
                _delegates.pop(dkey, None)
            raise BackendError(
                f"LiteRT with the Arm NN delegate could not load {model.name}: "
                f"{' '.join(str(exc).split())}"
            ) from exc
        shared.refs += 1
        stats["created"] += 1
        layers = _armnn_layers(shared.dot) if shared.dot else {}
        return _Pooled(it, shared, node_placement(it), layers), False


def _release(model_sha1: str, pooled: _Pooled) -> None:
    with _lock:
        key = (model_sha1, pooled.shared.key)
        _idle.setdefault(key, []).append(pooled)
        _idle.move_to_end(key)
        while sum(len(v) for v in _idle.values()) > POOL_IDLE_MAX:
            old_key, olds = next(iter(_idle.items()))
            victim = olds.pop(0)
            if not olds:
                del _idle[old_key]
            _destroy(victim)


def _destroy(pooled: _Pooled) -> None:
    shared = pooled.shared
    pooled.interp = None
    stats["destroyed"] += 1
    shared.refs -= 1
    if shared.refs == 0:
        _forget(shared)


def _forget(shared: _SharedDelegate) -> None:
    """Drop the delegate (LiteRT destroys it when its last interpreter is gone) and its
    graph file."""
    _delegates.pop(shared.key, None)
    if shared.dot is not None and shared.dot.name.startswith("armvww-delegate-"):
        with contextlib.suppress(OSError):
            shared.dot.unlink()


def clear_pool() -> None:
    """Destroy every idle interpreter (their networks stay loaded in Arm NN 23.08)."""
    with _lock:
        while _idle:
            _, olds = _idle.popitem(last=False)
            for p in olds:
                _destroy(p)


#: Sessions not closed yet (closed at exit, before Python tears its modules down).
_open: weakref.WeakSet[DelegateSession] = weakref.WeakSet()
_pid = os.getpid()


@atexit.register
def _close_at_exit() -> None:
    """Close the open sessions and destroy every interpreter and delegate while Python's
    modules still work. Left to interpreter shutdown, LiteRT's ``Delegate.__del__`` runs after
    its module's globals were cleared and prints "Exception ignored in: <function
    Delegate.__del__ ...> AttributeError: 'NoneType' object has no attribute 'c_void_p'"
    (its ``ctypes`` is gone); the delegate was never destroyed then. Not in a forked child
    that exits normally: Arm NN's state there is a copy without its threads."""
    if os.getpid() != _pid:
        return
    for session in list(_open):
        session.close()
    clear_pool()
    # a session dropped without close() (a Detector that went out of scope) left its delegate
    # counted in use: let it go too, while ctypes still works (seen in
    # benchmarks/pipeline_bench.py, whose Detector is a local of main())
    with _lock:
        for shared in list(_delegates.values()):
            _forget(shared)
    gc.collect()


def import_litert() -> tuple[ModuleType, str]:
    mod, desc, reason = litert_probe("auto")
    if mod is None:
        raise BackendUnavailableError(f"the delegate route needs LiteRT: {reason}")
    if not hasattr(mod, "load_delegate"):
        raise BackendUnavailableError(f"{desc} has no load_delegate")
    return mod, desc


# --------------------------------------------------------------------------- the session


class DelegateSession(Session):
    """One model in LiteRT's interpreter with the Arm NN delegate on ``prefs`` (in order)."""

    route = "delegate"
    #: The CpuAcc thread count this session holds (released at close).
    threads_claim: ThreadClaim | None = None

    def __init__(
        self,
        model: Model,
        prefs: Sequence[str],
        opts: ArmNNOptions,
        path: Path,
        found: DelegateProbe,
        defective: bool,
        fresh: bool = False,
    ) -> None:
        """``fresh``: load a new interpreter even where an idle one of the same model and
        options could be reused (CpuAcc: the load sets the process's thread count, which a
        later load may have changed since; :mod:`armvww.backends.armnn_threads`)."""
        mod, litert = import_litert()
        self.backend = prefs[0]
        version = found.version or "Arm NN (version unknown)"
        self.runtime = f"{version} (TfLite delegate {path}; {litert})"
        d, notes = delegate_options(prefs, opts, found.keys)
        d, cache_tmp, cache_note = _cache_options(d, opts, found.keys)
        self._sha1 = model.sha1
        self.info: dict[str, Any] = {
            "runtime": self.runtime,
            "route": "delegate",
            "library": str(path),
            "armnn_version": version,
            "litert": litert,
            "preferences": list(prefs),
            "options": {k: v for k, v in opts.__dict__.items() if v not in (None, False)},
            "delegate_options": {k: v for k, v in d.items() if not k.endswith(".tmp")},
            **emulation_info(),
        }
        if notes:
            self.info["notes"] = notes
        if cache_note:
            self.info["cached_network"] = cache_note
        if defective:
            self.info["defective_pad"] = True
        t0 = time.perf_counter()
        try:
            pooled, reused = _acquire(model, str(path), d, mod, reuse=not fresh)
        except BaseException:
            if cache_tmp is not None:
                with contextlib.suppress(OSError):
                    cache_tmp.unlink()
            raise
        self.info["load_s"] = time.perf_counter() - t0
        self.info["interpreter"] = (
            "reused an idle one (same model and options)" if reused else "new"
        )
        if cache_tmp is not None and opts.gpu_cached_network:
            publish_cached_network(
                self.info, cache_tmp, Path(opts.gpu_cached_network).expanduser().resolve()
            )
        self._pooled: _Pooled | None = pooled
        _open.add(self)
        it = pooled.interp
        self._report_placement(pooled, prefs)
        self._in = it.get_input_details()[0]["index"]
        self._out = it.get_output_details()[0]["index"]
        self._set, self._invoke, self._get = it.set_tensor, it.invoke, it.get_tensor

    def _report_placement(self, pooled: _Pooled, prefs: Sequence[str]) -> None:
        p = pooled.placement
        armnn_ops, litert_ops = p["delegated"], p["kept"]
        self.info["placement"] = {
            "armnn_nodes": len(armnn_ops),
            "litert_nodes": len(litert_ops),
            "delegate_nodes": p["delegate_nodes"],
        }
        if litert_ops:
            self.info["litert_kept"] = list(litert_ops)
            log.warning(
                "the Arm NN delegate took %d of %d nodes; LiteRT's kernels run %s",
                len(armnn_ops),
                len(armnn_ops) + len(litert_ops),
                ", ".join(litert_ops[:5]) + (" ..." if len(litert_ops) > 5 else ""),
            )
        if pooled.layers:
            counts = Counter(pooled.layers.values())
            self.info["armnn_placement"] = dict(counts)
            others = sorted(n for n, b in pooled.layers.items() if b != prefs[0])
            if others:
                self.info["offloaded_layers"] = others
                log.warning(
                    "Arm NN placed %d of %d layers on %s instead of %s",
                    len(others),
                    len(pooled.layers),
                    ", ".join(sorted(set(counts) - {prefs[0]})),
                    prefs[0],
                )

    @property
    def interpreter(self) -> Any:
        """The LiteRT interpreter holding the delegate (for inspection)."""
        return self._pooled.interp if self._pooled else None

    def run(self, q: np.ndarray) -> np.ndarray:
        try:
            self._set(self._in, q)
            self._invoke()
            out: np.ndarray = self._get(self._out)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(
                f"the Arm NN delegate failed to run on {self.backend}: {exc}"
            ) from exc
        return out

    def close(self) -> None:
        pooled, self._pooled = self._pooled, None
        self._set = self._invoke = self._get = _closed
        _open.discard(self)
        if pooled is not None:
            _release(self._sha1, pooled)
        if self.threads_claim is not None:
            self.threads_claim.release()


def _closed(*_a: object) -> Any:
    raise BackendError("this Arm NN delegate session is closed")
