"""Arm NN's PyArmNN route (the TfLite parser).

Flow: ``ITfLiteParser`` -> ``Optimize`` with an ordered list of Arm NN backends ->
``LoadNetwork`` -> ``EnqueueWorkload``. One class per Arm NN backend, one shared
``IRuntime`` per process (destroying one runtime breaks the others).

Availability is proven, not assumed. ``GetDeviceSpec()`` lists GpuAcc whenever its library
is installed, even with no OpenCL driver, and loading a network on a broken driver aborts
the process. So a child process (:mod:`armvww.backends.probe`) imports pyarmnn,
loads a tiny network of the project's own making on each backend and runs the PAD probe;
its verdict is cached for the life of this process. A crash, abort or hang of the child is a
reason, never a crash of the app.

Known-bad runtimes are refused by behaviour: Arm NN 20.08's TfLite parser pads int8 tensors
with 0 instead of the zero point. A runtime that fails the PAD probe refuses models with PAD
(:class:`~armvww.errors.DefectiveRuntimeError`) unless ``ArmNNOptions(allow_defective=True)``.

pyarmnn is imported lazily: armvww installs and works without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendError, BackendUnavailableError, OptionError
from ..model import Model
from .armnn_options import ArmNNOptions, probe_timeout, publish_cached_network
from .armnn_threads import ThreadClaim
from .base import Session, emulation_info

log = logging.getLogger(__name__)


_DOT_LAYER = re.compile(r"LayerName : (.*?)\\l.*?BackendID : (\w+)")


# --------------------------------------------------------------------------- pyarmnn import


_import_lock = threading.Lock()
_ann: ModuleType | None = None


def import_pyarmnn() -> ModuleType:
    """Import pyarmnn quietly (its deprecation print and parser warnings are logged at DEBUG).

    Raises:
        BackendUnavailableError: pyarmnn is absent or fails to import.
    """
    global _ann
    with _import_lock:
        if _ann is not None:
            return _ann
        noisy = logging.getLogger("pyarmnn")
        old_level = noisy.level
        noisy.setLevel(logging.ERROR)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                import pyarmnn
        except Exception as exc:
            raise BackendUnavailableError(
                f"pyarmnn failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            noisy.setLevel(old_level)
        if out.getvalue().strip():
            log.debug("pyarmnn said on import: %s", out.getvalue().strip())
        mod: ModuleType = pyarmnn
        _ann = mod
        return mod


def pyarmnn_version(ann: ModuleType) -> str:
    """``"Arm NN 33.0.0 (pyarmnn 33.0.0)"`` style description."""
    core = getattr(ann, "ARMNN_VERSION", "?")
    return f"Arm NN {core} (pyarmnn {getattr(ann, '__version__', '?')})"


def features(ann: ModuleType) -> dict[str, bool]:
    """What the installed PyArmNN can do, detected by attributes (never by version)."""
    oo = ann.OptimizerOptions()
    co = ann.CreationOptions()
    return {
        "model_options": hasattr(ann, "BackendOptions") and hasattr(oo, "m_ModelOptions"),
        "runtime_backend_options": hasattr(co, "m_BackendOptions"),
        "serialize_to_dot": hasattr(ann.IOptimizedNetwork, "SerializeToDot"),
        "profiling": hasattr(ann, "INetworkProperties") and hasattr(ann, "get_profiling_data"),
    }


# --------------------------------------------------------------------------- runtime


_runtime_lock = threading.RLock()
_runtime: Any = None


def runtime() -> Any:
    """The one ``IRuntime`` of this process, created on first use and never destroyed."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            ann = import_pyarmnn()
            _runtime = ann.IRuntime(ann.CreationOptions())
        return _runtime


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class ProbeResult:
    """What the child probe found: per backend, ok or the reason; and the PAD verdict."""

    version: str = ""
    features: dict[str, bool] = field(default_factory=dict)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    #: pyarmnn cannot be imported by this Python at all (the reason is per backend:
    #: :func:`~armvww.backends.armnn_options.install_hint`)
    missing: bool = False


_probe_lock = threading.Lock()
_probe_cache: ProbeResult | None = None


def probe(timeout: float | None = None) -> ProbeResult:
    """Run (once per process) the child probe of every Arm NN backend.

    Never raises: every failure becomes a reason in the result.
    """
    global _probe_cache
    with _probe_lock:
        if _probe_cache is None:
            _probe_cache = _run_probe(timeout)
        return _probe_cache


def reset_probe() -> None:
    """Forget the cached probe (tests, or after installing a driver)."""
    global _probe_cache
    with _probe_lock:
        _probe_cache = None


def _run_probe(timeout: float | None) -> ProbeResult:
    if importlib.util.find_spec("pyarmnn") is None:
        return ProbeResult(error="pyarmnn is not importable by this Python", missing=True)
    if timeout is None:
        timeout, problem = probe_timeout()
        if problem:
            return ProbeResult(error=problem)
    pkg_parent = str(Path(__file__).resolve().parent.parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "armvww.backends.probe"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
        timed_out = False
    except subprocess.TimeoutExpired as exc:
        rc, timed_out = -9, True
        out = _text(exc.stdout)
        err = _text(exc.stderr)
    except OSError as exc:
        return ProbeResult(error=f"could not start the Arm NN probe process: {exc}")
    log.debug("Arm NN probe took %.2fs, rc=%s", time.perf_counter() - t0, rc)
    result = ProbeResult()
    backends: dict[str, dict[str, Any]] = {}
    running: str | None = None
    for line in out.splitlines():
        if not line.startswith("ARMVWW_PROBE "):
            continue
        try:
            msg = json.loads(line[len("ARMVWW_PROBE ") :])
        except json.JSONDecodeError:
            continue
        if msg.get("stage") == "import":
            if not msg.get("ok"):
                return ProbeResult(error=msg.get("reason", "pyarmnn failed to import"))
            result = ProbeResult(version=msg["version"], features=msg["features"])
        elif msg.get("stage") == "start":
            running = msg["backend"]
        elif msg.get("stage") == "done":
            backends[msg["backend"]] = msg
            running = None
    tail = " | ".join(ln for ln in err.strip().splitlines()[-3:] if ln.strip())
    if timed_out or rc != 0:
        how = (
            f"timed out after {timeout:.0f}s"
            if timed_out
            else (f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}")
        )
        where = f" while loading a network on {running}" if running else ""
        reason = f"the probe process {how}{where}" + (f": {tail}" if tail else "")
        if running:
            backends[running] = {"backend": running, "ok": False, "reason": reason}
        elif not backends:
            return ProbeResult(version=result.version, features=result.features, error=reason)
    return ProbeResult(result.version, result.features, backends)


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


# --------------------------------------------------------------------------- the session


def _backend_options(ann: ModuleType, name: str, pairs: list[tuple[str, Any]]) -> Any:
    bo = ann.BackendOptions(ann.BackendId(name))
    for key, value in pairs:
        bo.AddOption(ann.BackendOption(key, value))
    return bo


class ArmNNSession(Session):
    """One network loaded on Arm NN (parser route) with an ordered backend preference list."""

    route = "parser"
    #: The CpuAcc thread count this session holds (released at close).
    threads_claim: ThreadClaim | None = None

    def __init__(self, model: Model, prefs: Sequence[str], opts: ArmNNOptions, defective: bool):
        ann = import_pyarmnn()
        feats = features(ann)
        rt = runtime()
        self.backend = prefs[0]
        self.runtime = pyarmnn_version(ann)
        self._ann = ann
        self._rt = rt
        self._net_id: int | None = None
        self.info: dict[str, Any] = {
            "runtime": self.runtime,
            "route": "parser",
            "preferences": list(prefs),
            "options": {k: v for k, v in opts.__dict__.items() if v not in (None, False)},
        }
        self.info.update(emulation_info())
        if defective:
            self.info["defective_pad"] = True
        model_opts, cache_tmp = self._model_options(ann, feats, prefs, opts)

        t0 = time.perf_counter()
        parser = ann.ITfLiteParser()
        try:
            fd, tmp = tempfile.mkstemp(prefix="armvww-", suffix=".tflite")
        except OSError as exc:
            raise BackendError(f"no temporary file for Arm NN's parser: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(model.data)
            network = parser.CreateNetworkFromBinaryFile(tmp)
        except RuntimeError as exc:
            raise BackendError(f"Arm NN's TfLite parser refused {model.name}: {exc}") from exc
        except OSError as exc:
            raise BackendError(
                f"could not write the model to a temporary file for Arm NN's parser: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        in_names = parser.GetSubgraphInputTensorNames(0)
        out_names = parser.GetSubgraphOutputTensorNames(0)
        self._in_info = parser.GetNetworkInputBindingInfo(0, in_names[0])
        self._out_infos = [parser.GetNetworkOutputBindingInfo(0, n) for n in out_names]
        bound = tuple(self._in_info[1].GetShape())
        if bound != model.input.shape and int(np.prod(bound)) != model.input.size:
            raise BackendError(
                f"Arm NN bound the input as {bound}, but the model says {model.input.shape}"
            )
        self.info["parse_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        oo = ann.OptimizerOptions()
        if model_opts:
            oo.m_ModelOptions = model_opts
        try:
            opt, messages = ann.Optimize(
                network, [ann.BackendId(b) for b in prefs], rt.GetDeviceSpec(), oo
            )
        except RuntimeError as exc:
            raise BackendError(f"Arm NN could not optimise for {list(prefs)}: {exc}") from exc
        self.info["optimize_s"] = time.perf_counter() - t0
        if messages:
            self.info["optimize_messages"] = list(messages)
        self._report_placement(opt, prefs, feats)

        t0 = time.perf_counter()
        try:
            with _runtime_lock:
                # 21.x+ turns profiling on at load (INetworkProperties with memory sources);
                # 20.08's INetworkProperties has no such flag: there the profiler is only
                # switched on after the load (below)
                with_props = hasattr(ann, "MemorySource_Undefined")
                if opts.profiling and feats["profiling"] and with_props:
                    props = ann.INetworkProperties(
                        False, ann.MemorySource_Undefined, ann.MemorySource_Undefined, True
                    )
                    self._net_id, msg = rt.LoadNetwork(opt, props)
                else:
                    self._net_id, msg = rt.LoadNetwork(opt)
        except RuntimeError as exc:
            if cache_tmp is not None:
                with contextlib.suppress(OSError):
                    cache_tmp.unlink()
            raise BackendError(f"Arm NN could not load the network on {prefs[0]}: {exc}") from exc
        self.info["load_s"] = time.perf_counter() - t0
        if msg:
            self.info["load_message"] = msg
        if cache_tmp is not None and opts.gpu_cached_network:
            publish_cached_network(self.info, cache_tmp, Path(opts.gpu_cached_network))
        if opts.profiling and feats["profiling"]:
            self._profiler = rt.GetProfiler(self._net_id)
            self._profiler.EnableProfiling(True)
        self._outputs = ann.make_output_tensors(self._out_infos)

    def _model_options(
        self, ann: ModuleType, feats: dict[str, bool], prefs: Sequence[str], o: ArmNNOptions
    ) -> tuple[list[Any], Path | None]:
        cpu: list[tuple[str, Any]] = []
        gpu: list[tuple[str, Any]] = []
        if o.cpu_threads is not None:
            cpu.append(("NumberOfThreads", o.cpu_threads))
        if o.cpu_fast_math:
            cpu.append(("FastMathEnabled", True))
        if o.gpu_fast_math:
            gpu.append(("FastMathEnabled", True))
        cache_tmp: Path | None = None
        if o.gpu_cached_network:
            path = Path(o.gpu_cached_network)
            if path.is_file() and path.stat().st_size > 0:
                gpu += [("SaveCachedNetwork", False), ("CachedNetworkFilePath", str(path))]
                self.info["cached_network"] = f"read {path}"
            elif o.gpu_save_cached_network:
                path.parent.mkdir(parents=True, exist_ok=True)
                cache_tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                # Arm NN 23.08 only writes into a file that already exists (silently nothing
                # otherwise): create it empty, publish it after the load if it was filled
                cache_tmp.touch()
                gpu += [("SaveCachedNetwork", True), ("CachedNetworkFilePath", str(cache_tmp))]
                self.info["cached_network"] = f"write {path}"
        if (cpu or gpu) and not feats["model_options"]:
            raise OptionError(
                f"{self.runtime} has no BackendOptions / OptimizerOptions.m_ModelOptions, so it "
                f"cannot honour {[k for k, _ in cpu + gpu]}; remove those options"
            )
        runtime_only = {
            "gpu_tuning_level": o.gpu_tuning_level,
            "gpu_tuning_file": o.gpu_tuning_file,
            "gpu_kernel_profiling": o.gpu_kernel_profiling or None,
        }
        asked = [k for k, v in runtime_only.items() if v is not None]
        if asked and not feats["runtime_backend_options"]:
            raise OptionError(
                f"{self.runtime}: {', '.join(asked)} are GpuAcc runtime options "
                "(IRuntime.CreationOptions.m_BackendOptions), which this PyArmNN does not "
                "expose; they cannot be honoured from Python here"
            )
        if asked:  # pragma: no cover - no PyArmNN with runtime backend options was available
            raise OptionError(
                f"{', '.join(asked)} must be set when the process-wide Arm NN runtime is "
                "created; armvww does not support them yet"
            )
        result = []
        if cpu and "CpuAcc" in prefs:
            result.append(_backend_options(ann, "CpuAcc", cpu))
        if gpu and "GpuAcc" in prefs:
            result.append(_backend_options(ann, "GpuAcc", gpu))
        return result, cache_tmp

    def _report_placement(self, opt: Any, prefs: Sequence[str], feats: dict[str, bool]) -> None:
        if not feats["serialize_to_dot"]:
            self.info["placement"] = "unknown (no SerializeToDot in this PyArmNN)"
            return
        fd, dot_path = tempfile.mkstemp(prefix="armvww-", suffix=".dot")
        os.close(fd)
        try:
            opt.SerializeToDot(dot_path)
            dot = Path(dot_path).read_text(errors="replace")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(dot_path)
        layers = _DOT_LAYER.findall(dot)
        counts = Counter(b for _, b in layers)
        self.info["placement"] = dict(counts)
        others = sorted({n for n, b in layers if b != prefs[0]})
        if others:
            self.info["offloaded_layers"] = others
            log.warning(
                "Arm NN placed %d of %d layers on %s instead of %s: %s",
                len(others),
                len(layers),
                ", ".join(sorted(set(counts) - {prefs[0]})),
                prefs[0],
                ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""),
            )

    def run(self, q: np.ndarray) -> np.ndarray:
        if self._net_id is None:
            raise BackendError("this Arm NN session is closed")
        try:
            inputs = self._ann.make_input_tensors([self._in_info], [q])
            self._rt.EnqueueWorkload(self._net_id, inputs, self._outputs)
            out: np.ndarray = self._ann.workload_tensors_to_ndarray(self._outputs)[0]
        except (RuntimeError, TypeError, ValueError) as exc:
            raise BackendError(f"Arm NN failed to run on {self.backend}: {exc}") from exc
        return out

    def run_all(self, q: np.ndarray) -> list[np.ndarray]:
        """Run and return every network output (used by per-layer parity)."""
        if self._net_id is None:
            raise BackendError("this Arm NN session is closed")
        inputs = self._ann.make_input_tensors([self._in_info], [q])
        self._rt.EnqueueWorkload(self._net_id, inputs, self._outputs)
        outs: list[np.ndarray] = self._ann.workload_tensors_to_ndarray(self._outputs)
        return outs

    def profile(self) -> dict[str, Any]:
        """Per-workload times and backends of the last inference (needs ``profiling=True``).

        Raises:
            OptionError: profiling was not enabled or is not supported.
            BackendError: this PyArmNN could not read its own profiler's data (20.08's
                ``get_profiling_data`` fails on its profiler's JSON with a KeyError).
        """
        prof = getattr(self, "_profiler", None)
        if prof is None:
            raise OptionError("open the session with ArmNNOptions(profiling=True) to profile")
        try:
            data = self._ann.get_profiling_data(prof)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise BackendError(
                f"{self.runtime} could not read its profiler's data "
                f"({type(exc).__name__}: {exc}); profiling needs Arm NN >= 23.08"
            ) from exc
        per = {
            name: {"backend": d.get("backend"), "time_us": d.get("execution_time")}
            for name, d in data.per_workload_execution_data.items()
        }
        self.info["profile"] = per
        return per

    def close(self) -> None:
        if self._net_id is not None:
            net_id, self._net_id = self._net_id, None
            with _runtime_lock, contextlib.suppress(Exception):
                self._rt.UnloadNetwork(net_id)
        if self.threads_claim is not None:
            self.threads_claim.release()


def open_session(
    model: Model, prefs: Sequence[str], opts: ArmNNOptions, defective: bool
) -> ArmNNSession:
    """A parser-route session on the Arm NN backends ``prefs`` (in preference order).

    Raises:
        BackendError, OptionError: see :class:`ArmNNSession`.
    """
    with _runtime_lock:
        return ArmNNSession(model, prefs, opts, defective)
