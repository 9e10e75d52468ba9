"""LiteRT backend: Google's TFLite runtime, the embedded default and the parity reference.

The interpreter comes from the first of these that imports *and* loads and runs a tiny
model of armvww's own making: ``ai_edge_litert.interpreter`` (LiteRT, numpy 2 ready),
``tflite_runtime.interpreter`` (frozen at 2.14; needs numpy < 2), ``tensorflow.lite``. So
``armvww backends`` and ``detect`` agree: a runtime that imports but cannot load (e.g.
tflite-runtime 2.14 under numpy 2) is unavailable, with the reason and a ``numpy<2`` hint.

What ran is reported by behaviour: the session's ``runtime`` names the package, version and
the kernels that really ran. XNNPACK counts only when the interpreter's execution plan holds
delegate nodes (tflite-runtime 2.14 asked for XNNPACK runs its built-in kernels on these
int8 models). The runtime's native ``INFO: Created TensorFlow Lite XNNPACK delegate`` line is
kept off stderr unless armvww logs at DEBUG (``armvww -vv``) or ``ARMVWW_RUNTIME_LOGS=1``.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

import numpy as np

from ..errors import BackendError, BackendUnavailableError, OptionError
from ..model import Model
from ..model.tflite_build import tiny_vww_model
from .base import Availability, Backend, BackendOptions, Session, emulation_info

log = logging.getLogger(__name__)

RuntimeName = Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"]
_CANDIDATES: dict[str, tuple[str, str]] = {
    # name -> (interpreter module, distribution for the version)
    "ai_edge_litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite", "tensorflow"),
}


#: Most interpreter threads :class:`LiteRTOptions` accepts (see ``threads``).
MAX_THREADS = 256


@dataclass(frozen=True)
class LiteRTOptions(BackendOptions):
    """Options of the LiteRT backend.

    Attributes:
        threads: interpreter threads (``None``: the runtime's default), 1 to
            :data:`MAX_THREADS`. Bounded because each thread is a real pthread with its own
            stack: LiteRT does not check its thread creation, and ``threads=100000`` (over
            the process limit, RLIMIT_NPROC 96,369 here) crashed the process with SIGSEGV in
            ``close()``; a VWW graph (~0.2 ms per inference) gains nothing from more threads
            than cores long before 256.
        xnnpack: use the XNNPACK delegate (LiteRT's default CPU kernels); ``False`` runs the
            built-in reference-style kernels.
        runtime: force one interpreter package instead of the first that imports.
        preserve_all_tensors: keep every intermediate tensor readable (for per-layer parity;
            slower, and disables XNNPACK).
    """

    threads: int | None = None
    xnnpack: bool = True
    runtime: RuntimeName = "auto"
    preserve_all_tensors: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and (
            not isinstance(self.threads, int)
            or isinstance(self.threads, bool)
            or not 1 <= self.threads <= MAX_THREADS
        ):
            raise OptionError(
                f"LiteRTOptions.threads must be an int in 1..{MAX_THREADS}, got {self.threads!r}"
            )
        if self.runtime not in ("auto", *_CANDIDATES):
            raise OptionError(
                f"LiteRTOptions.runtime must be one of auto, {', '.join(_CANDIDATES)}; "
                f"got {self.runtime!r}"
            )


def _version(dist: str, module: ModuleType) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return str(getattr(module, "__version__", "?"))


@cache
def _import(runtime: str) -> tuple[ModuleType, str]:
    """Import one interpreter package; returns (module, "dist version")."""
    modname, dist = _CANDIDATES[runtime]
    mod = importlib.import_module(modname)
    return mod, f"{dist} {_version(dist, mod)}"


#: Native log lines of the runtimes that say nothing a user needs.
_NOISE = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$")


@contextmanager
def quiet_runtime_logs() -> Iterator[None]:
    """Keep the runtime's native INFO noise (the XNNPACK line) off stderr.

    The interpreters print it from C++ to file descriptor 2 and offer no Python API to
    silence it, so fd 2 is redirected to a temporary file for the duration; every other
    line is written back to stderr unchanged, the noise goes to the DEBUG log. Nothing is
    filtered when armvww logs at DEBUG or ``ARMVWW_RUNTIME_LOGS=1``.
    """
    if os.environ.get("ARMVWW_RUNTIME_LOGS") == "1" or log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if _NOISE.match(line.rstrip("\n")):
                    log.debug("runtime: %s", line.rstrip())
                else:
                    os.write(2, line.encode())


def _numpy_hint(exc: BaseException) -> str:
    """A ``numpy<2`` hint when a runtime built for numpy 1 fails under numpy 2."""
    text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}"
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0" and (
        "_ARRAY_API" in text
        or "numpy" in text.lower()
        or "returned a result with an exception" in text
    ):
        return (
            f" (it was built for numpy 1.x and this is numpy {np.__version__}: "
            "`pip install 'numpy<2'`, or use LiteRT: `pip install ai-edge-litert`)"
        )
    return ""


def _trial(mod: ModuleType) -> None:
    """Load and run armvww's tiny VWW-shaped model: proof the runtime works here."""
    with quiet_runtime_logs():
        it = mod.Interpreter(model_content=tiny_vww_model())
        it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
    it.invoke()
    it.get_tensor(it.get_output_details()[0]["index"])


@cache
def _probe(runtime: str) -> tuple[ModuleType | None, str, str]:
    """(module, runtime description, failure reason) for ``runtime`` or ``"auto"``: the first
    candidate that imports and runs the tiny trial model."""
    names = list(_CANDIDATES) if runtime == "auto" else [runtime]
    reasons = []
    for name in names:
        modname = _CANDIDATES[name][0]
        try:
            mod, desc = _import(name)
        except Exception as exc:  # ImportError, or numpy ABI errors (_ARRAY_API not found)
            reasons.append(f"{modname}: {type(exc).__name__}: {exc}{_numpy_hint(exc)}".strip())
            continue
        try:
            with _lock:
                _trial(mod)
        except Exception as exc:
            reasons.append(
                f"{desc} imports but cannot run a model: {type(exc).__name__}: {exc}"
                f"{_numpy_hint(exc)}"
            )
            continue
        return mod, desc, ""
    return (
        None,
        "",
        "; ".join(reasons)
        + (". Install LiteRT: pip install ai-edge-litert" if runtime == "auto" else ""),
    )


def _delegated_nodes(it: Any) -> int | None:
    """Delegate nodes in the interpreter's execution plan; None when it cannot say."""
    details = getattr(it, "_get_ops_details", None)
    if details is None:
        return None
    try:
        return sum(1 for op in details() if op.get("op_name") == "DELEGATE")
    except Exception:
        return None


class LiteRTSession(Session):
    """A LiteRT interpreter holding one model."""

    def __init__(self, model: Model, options: LiteRTOptions, mod: ModuleType, desc: str):
        self.backend = LiteRTBackend.name
        self.runtime = desc
        self.replica_options = options
        # LiteRT's default runs a graph this small on one thread (measured: process CPU time
        # = wall time an invoke)
        self.inference_threads = options.threads or 1
        kwargs: dict[str, Any] = {"model_content": model.data}
        if options.threads is not None:
            kwargs["num_threads"] = options.threads
        if options.preserve_all_tensors:
            kwargs["experimental_preserve_all_tensors"] = True
        delegate = "XNNPACK" if options.xnnpack else "none (built-in kernels)"
        if not options.xnnpack or options.preserve_all_tensors:
            resolver = getattr(mod, "OpResolverType", None)
            if resolver is None:
                raise OptionError(f"{desc} cannot disable XNNPACK (no OpResolverType)")
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            delegate = "none (built-in kernels)"
        t0 = time.perf_counter()
        try:
            with quiet_runtime_logs():
                self._it = mod.Interpreter(**kwargs)
                self._it.allocate_tensors()
        except Exception as exc:
            raise BackendError(
                f"LiteRT ({desc}) could not load {model.name}: {exc}{_numpy_hint(exc)}"
            ) from exc
        load_s = time.perf_counter() - t0
        if delegate == "XNNPACK":
            n = _delegated_nodes(self._it)
            if n == 0:
                delegate = "none (built-in kernels: XNNPACK was asked for but not applied)"
                log.info(
                    "%s applied no XNNPACK delegate to %s: built-in kernels run", desc, model.name
                )
            elif n is None:
                delegate = "XNNPACK (requested; the runtime cannot say if it was applied)"
        kernels = (
            "XNNPACK"
            if delegate == "XNNPACK"
            else ("built-in kernels" if delegate.startswith("none") else "XNNPACK requested")
        )
        #: package, version and the kernels that really ran
        self.runtime = f"{desc}, {kernels}"
        ins, outs = self._it.get_input_details(), self._it.get_output_details()
        self._in = ins[0]["index"]
        self._out = outs[0]["index"]
        self._set = self._it.set_tensor
        self._invoke = self._it.invoke
        self._get = self._it.get_tensor
        self.info = {
            "runtime": self.runtime,
            "package": desc,
            "threads": options.threads,
            "delegate": delegate,
            "load_s": load_s,
            **emulation_info(),
        }

    @property
    def interpreter(self) -> Any:
        """The underlying interpreter (for per-layer inspection)."""
        return self._it

    def run(self, q: np.ndarray) -> np.ndarray:
        try:
            self._set(self._in, q)
            self._invoke()
            out: np.ndarray = self._get(self._out)
        except Exception as exc:
            raise BackendError(f"LiteRT failed to run: {exc}") from exc
        return out

    def close(self) -> None:
        self._it = None
        self._set = self._invoke = self._get = _closed


def _closed(*_a: object) -> Any:
    raise BackendError("this LiteRT session is closed")


_lock = threading.Lock()


class LiteRTBackend(Backend):
    """The LiteRT (TFLite) interpreter on the CPU."""

    name = "LiteRT"
    options_type = LiteRTOptions

    @classmethod
    def availability(cls) -> Availability:
        mod, desc, reason = _probe("auto")
        if mod is None:
            return Availability(cls.name, False, reason)
        return Availability(cls.name, True, "", desc)

    @classmethod
    def open(
        cls, model: Model, options: BackendOptions | None = None, fallbacks: Sequence[str] = ()
    ) -> Session:
        opts = options if isinstance(options, LiteRTOptions) else LiteRTOptions()
        mod, desc, reason = _probe(opts.runtime)
        if mod is None:
            raise BackendUnavailableError(f"LiteRT is not available: {reason}")
        with _lock:  # interpreter construction is not documented as thread-safe
            return LiteRTSession(model, opts, mod, desc)
