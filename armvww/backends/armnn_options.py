"""Options of the Arm NN backend family, shared by both routes (PyArmNN's TfLite parser,
:mod:`armvww.backends.armnn_parser`, and the TfLite delegate,
:mod:`armvww.backends.armnn_delegate`), and the names both use."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import files
from ..errors import OptionError
from .base import BackendOptions

log = logging.getLogger(__name__)

#: Seconds an Arm NN probe child may take (importing pyarmnn and loading three tiny networks,
#: or loading the delegate). Under qemu, or with PoCL compiling OpenCL kernels cold, it can
#: take minutes. ``ARMVWW_PROBE_TIMEOUT`` overrides it.
DEFAULT_PROBE_TIMEOUT = 300.0
#: Longest probe timeout ``ARMVWW_PROBE_TIMEOUT`` may ask for (seconds; a day).
MAX_PROBE_TIMEOUT = 86400.0


def probe_timeout() -> tuple[float, str]:
    """The probe timeout from ``ARMVWW_PROBE_TIMEOUT`` (default :data:`DEFAULT_PROBE_TIMEOUT`)
    and, when the variable is not a number of seconds in (0, :data:`MAX_PROBE_TIMEOUT`],
    the message to report instead of probing (every Arm NN backend of that route is then
    unavailable with that reason)."""
    raw = os.environ.get("ARMVWW_PROBE_TIMEOUT")
    if raw is None or not raw.strip():
        return DEFAULT_PROBE_TIMEOUT, ""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_PROBE_TIMEOUT):
        return DEFAULT_PROBE_TIMEOUT, (
            f"ARMVWW_PROBE_TIMEOUT={raw[:40]!r} is not valid: it must be a number of seconds "
            f"in (0, {MAX_PROBE_TIMEOUT:g}], e.g. `export ARMVWW_PROBE_TIMEOUT=300` (the "
            "default when unset)"
        )
    return value, ""


#: Arm NN backend names armvww knows, in the order the probe tries them (GpuAcc last: it is
#: the one that can abort the probe process).
ARMNN_BACKENDS: tuple[str, ...] = ("CpuRef", "CpuAcc", "GpuAcc")

#: The routes into Arm NN (``ArmNNOptions.route``).
ROUTES: tuple[str, ...] = ("auto", "parser", "delegate")

#: Values of ``ArmNNOptions.vet`` (:mod:`armvww.backends.armnn_vet`).
VET_MODES: tuple[str, ...] = ("auto", "full", "off")

#: Arm NN's log levels (``logging-severity``).
LOG_SEVERITIES: tuple[str, ...] = ("trace", "debug", "info", "warning", "error", "fatal")


@dataclass(frozen=True)
class ArmNNOptions(BackendOptions):
    """Options of the Arm NN backends (one dataclass for the family; each field says which
    backend reads it). Every option is feature-detected against the installed PyArmNN: one it
    cannot honour raises :class:`~armvww.errors.OptionError` when the network is loaded.

    Attributes:
        cpu_threads: CpuAcc ``NumberOfThreads`` (1..64).
        cpu_fast_math: CpuAcc ``FastMathEnabled`` (may use Winograd and lose exactness).
        gpu_fast_math: GpuAcc ``FastMathEnabled``.
        gpu_tuning_level: GpuAcc CL tuning level 0 (none) .. 3 (exhaustive).
        gpu_tuning_file: GpuAcc tuning file, read, and written after tuning.
        gpu_kernel_profiling: GpuAcc ``KernelProfilingEnabled``.
        gpu_cached_network: GpuAcc compiled-kernel cache file (``CachedNetworkFilePath``):
            read when it exists, else written after the load (atomically) when
            ``gpu_save_cached_network`` is true.
        gpu_save_cached_network: write ``gpu_cached_network`` after loading.
        allow_defective: run models with PAD even on a runtime that fails the PAD probe.
        profiling: enable Arm NN's profiler; per-workload times and backends go to
            ``session.info["profile"]`` after each :meth:`ArmNNSession.profile` call
            (parser route only).
        route: ``"auto"`` (parser when PyArmNN works and can honour the options, else the
            delegate), ``"parser"`` or ``"delegate"``.
        delegate_path: the delegate library (a file or a folder); default: the environment
            variable ``ARMVWW_ARMNN_DELEGATE``, then the standard places
            (:func:`armvww.backends.armnn_delegate.find_delegate`). Delegate route only.
        gpu_mlgo_tuning_file: GpuAcc MLGO heuristics file (delegate route only).
        log_severity: Arm NN's log level on the delegate route (``trace`` .. ``fatal``;
            default ``fatal``: quiet). Process-wide in Arm NN.
        dot_file: write the optimised network as Graphviz ``.dot`` here at load (delegate
            route only).
        pure_armnn: delegate route: fail to load rather than let LiteRT's kernels run nodes
            Arm NN cannot (``disable-tflite-runtime-fallback``). The parser route is always
            pure Arm NN.
        vet: vetting of a model that is not one of the pinned ML-zoo models in a child
            process before this process loads it (:mod:`armvww.backends.armnn_vet`):
            ``"auto"`` (default; GpuAcc's load is vetted on a CPU backend), ``"full"``
            (exactly the asked backends, GpuAcc too) or ``"off"`` (trust the model: a crash
            in Arm NN's native code then kills this process).

    On the delegate route, ``gpu_tuning_level``, ``gpu_tuning_file`` and
    ``gpu_kernel_profiling`` configure Arm NN's process-wide runtime, which the first
    delegate of the process creates: a later session asking for other values raises
    :class:`~armvww.errors.OptionError`. A tuning file is read when the runtime is made and
    written (after tuning, level > 0) when the process exits.
    """

    cpu_threads: int | None = None
    cpu_fast_math: bool = False
    gpu_fast_math: bool = False
    gpu_tuning_level: int | None = None
    gpu_tuning_file: str | None = None
    gpu_kernel_profiling: bool = False
    gpu_cached_network: str | None = None
    gpu_save_cached_network: bool = False
    allow_defective: bool = False
    profiling: bool = False
    route: str = "auto"
    delegate_path: str | None = None
    gpu_mlgo_tuning_file: str | None = None
    log_severity: str | None = None
    dot_file: str | None = None
    pure_armnn: bool = False
    vet: str = "auto"

    def __post_init__(self) -> None:
        if self.vet not in VET_MODES:
            raise OptionError(f"vet must be one of {', '.join(VET_MODES)}, got {self.vet!r}")
        if self.route not in ROUTES:
            raise OptionError(f"route must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if self.log_severity is not None and self.log_severity not in LOG_SEVERITIES:
            raise OptionError(
                f"log_severity must be one of {', '.join(LOG_SEVERITIES)}, "
                f"got {self.log_severity!r}"
            )
        if self.cpu_threads is not None and not (
            isinstance(self.cpu_threads, int) and 1 <= self.cpu_threads <= 64
        ):
            raise OptionError(f"cpu_threads must be an int in 1..64, got {self.cpu_threads!r}")
        if self.gpu_tuning_level is not None and self.gpu_tuning_level not in (0, 1, 2, 3):
            raise OptionError(
                f"gpu_tuning_level must be 0 (none), 1 (rapid), 2 (normal) or 3 (exhaustive), "
                f"got {self.gpu_tuning_level!r}"
            )
        if self.gpu_save_cached_network and not self.gpu_cached_network:
            raise OptionError("gpu_save_cached_network needs gpu_cached_network (a file path)")
        if self.gpu_cached_network:  # Arm NN reads it natively: never a FIFO or a device
            k = files.kind(os.path.expanduser(self.gpu_cached_network))
            if isinstance(k, OSError) or k not in ("file", "missing"):
                why = k.strerror if isinstance(k, OSError) else f"it is a {k}"
                raise OptionError(
                    f"gpu_cached_network {self.gpu_cached_network!r} must be a regular file "
                    f"(or not exist yet): {why}"
                )
        if self.gpu_tuning_level and not self.gpu_tuning_file:
            raise OptionError("gpu_tuning_level > 0 needs gpu_tuning_file to keep the result")


#: Debian suite -> the package holding Arm NN's CpuRef backend library.
_CPUREF_PACKAGES = {"bookworm": "libarmnn-cpuref-backend22", "trixie": "libarmnn-cpuref-backend33"}


#: Where the Debian suite is read from.
OS_RELEASE = Path("/etc/os-release")


def _debian_codename() -> str:
    try:
        text = OS_RELEASE.read_text()
    except OSError:
        return ""
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return m.group(1) if m else ""


def cpuref_package() -> str:
    """The Debian package with Arm NN's CpuRef backend library on this system (bookworm:
    ``libarmnn-cpuref-backend22``, trixie: ``libarmnn-cpuref-backend33``)."""
    return _CPUREF_PACKAGES.get(_debian_codename(), "libarmnn-cpuref-backend33")


def machine() -> str:
    """This machine's architecture name (``platform.machine()``)."""
    return platform.machine()


def is_arm_cpu() -> bool:
    """True on an Arm CPU (where CpuAcc, and GpuAcc with a Mali GPU, can exist)."""
    m = machine().lower()
    return m in ("aarch64", "arm64") or m.startswith("arm")


def venv_hides_system_packages() -> bool:
    """True in a virtual environment made without ``--system-site-packages``: Debian's
    python3-pyarmnn (in /usr/lib/python3/dist-packages) is then invisible."""
    if sys.prefix == sys.base_prefix:
        return False
    try:
        cfg = (Path(sys.prefix) / "pyvenv.cfg").read_text()
    except OSError:
        return True
    m = re.search(r"^include-system-site-packages\s*=\s*(\w+)", cfg, re.M)
    return not (m and m.group(1).lower() == "true")


def install_hint(backend: str) -> str:
    """Why ``backend`` cannot come from pyarmnn here and what (if anything) gives it: on a
    non-Arm machine no package gives CpuAcc or GpuAcc; in a venv without system site
    packages Debian's pyarmnn is invisible; CpuRef names its library package."""
    parts = ["pyarmnn is not importable by this Python (it is not on PyPI)"]
    if backend in ("CpuAcc", "GpuAcc") and not is_arm_cpu():
        need = "an Arm CPU" + (
            " and a Mali GPU with its OpenCL driver" if backend == "GpuAcc" else ""
        )
        parts.append(
            f"{backend} needs {need}: on {machine()} no package gives it "
            "(apt's python3-pyarmnn gives CpuRef only here)"
        )
    elif venv_hides_system_packages():
        parts.append(
            f"{sys.prefix} is a virtual environment without system site packages, so Debian's "
            "python3-pyarmnn is invisible to it even when installed: use /usr/bin/python3, or "
            "a venv made with `/usr/bin/python3 -m venv --system-site-packages DIR`"
        )
    else:
        parts.append(
            "on Debian/Ubuntu, as root: "
            f"`apt-get install --no-install-recommends python3-pyarmnn {cpuref_package()}`"
        )
    return "; ".join(parts)


def publish_cached_network(info: dict[str, Any], tmp: Path, dest: Path) -> None:
    """Move the cached-network file Arm NN has just written (``tmp``) to ``dest`` atomically,
    recording the outcome in ``info["cached_network"]``; both routes use it. Never raises:
    an OS error keeps the old file and is logged and recorded."""
    try:
        if tmp.is_file() and tmp.stat().st_size > 0:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
            info["cached_network"] = f"wrote {dest} ({dest.stat().st_size} bytes)"
        else:
            info["cached_network"] = "Arm NN wrote no cache file"
            log.warning("GpuAcc did not write a cached network to %s", tmp)
    except OSError as exc:
        log.warning("could not save the cached network %s: %s (old file kept)", dest, exc)
        info["cached_network"] = f"not saved: {exc}"
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
