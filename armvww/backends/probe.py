"""Child-process probe of the Arm NN backends (run as ``python -m armvww.backends.probe``).

It prints one ``ARMVWW_PROBE <json>`` line per step and flushes after each, so the parent
knows how far it got if a driver aborts or hangs the process:

1. ``{"stage": "import", ...}``: pyarmnn imported (version, features), or why not.
2. For CpuRef, CpuAcc, GpuAcc in that order (GpuAcc last: it is the one that aborts on a
   broken OpenCL driver): ``{"stage": "start", "backend": B}`` then ``{"stage": "done",
   "backend": B, "ok": ..., ...}`` after a trial load and one inference of a tiny network of
   the project's own making, plus the PAD probe on that backend.

With ``--delegate LIBRARY`` it probes Arm NN's TfLite delegate instead
(:mod:`armvww.backends.armnn_delegate`): ``import`` (LiteRT), then per backend ``start``,
``library`` (the Arm NN version, once the library loaded) and ``done`` after
``load_delegate`` + ``Interpreter(...)`` + one inference of the tiny model and the PAD probe;
``fatal`` when the library does not load at all; finally ``keys``: which option keys the
library knows. A crash at ``Interpreter(...)`` (a delegate built against other TfLite
headers) leaves the last ``start`` unanswered, which the parent turns into the reason.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

from ..model import tflite_build as tb
from . import armnn_parser
from .armnn_delegate import (
    KEYS,
    TRIAL_VALUES,
    armnn_version_of_loaded,
    import_litert,
    node_placement,
)
from .armnn_options import ARMNN_BACKENDS, cpuref_package, is_arm_cpu, machine


def emit(**msg: Any) -> None:
    sys.stdout.write("ARMVWW_PROBE " + json.dumps(msg) + "\n")
    sys.stdout.flush()


def _load_and_run(ann: Any, rt: Any, data: bytes, backend: str, x: np.ndarray) -> np.ndarray:
    fd, path = tempfile.mkstemp(prefix="armvww-probe-", suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        parser = ann.ITfLiteParser()
        net = parser.CreateNetworkFromBinaryFile(path)
    finally:
        os.unlink(path)
    in_info = parser.GetNetworkInputBindingInfo(0, parser.GetSubgraphInputTensorNames(0)[0])
    out_info = parser.GetNetworkOutputBindingInfo(0, parser.GetSubgraphOutputTensorNames(0)[0])
    opt, _ = ann.Optimize(net, [ann.BackendId(backend)], rt.GetDeviceSpec(), ann.OptimizerOptions())
    net_id, _ = rt.LoadNetwork(opt)
    try:
        outputs = ann.make_output_tensors([out_info])
        rt.EnqueueWorkload(net_id, ann.make_input_tensors([in_info], [x]), outputs)
        out: np.ndarray = ann.workload_tensors_to_ndarray(outputs)[0]
        return out
    finally:
        rt.UnloadNetwork(net_id)


def main() -> int:
    try:
        ann = armnn_parser.import_pyarmnn()
        feats = armnn_parser.features(ann)
        version = armnn_parser.pyarmnn_version(ann)
    except Exception as exc:
        emit(stage="import", ok=False, reason=str(exc))
        return 0
    emit(stage="import", ok=True, version=version, features=feats)
    rt = armnn_parser.runtime()
    listed = {str(b) for b in rt.GetDeviceSpec().GetSupportedBackends()}
    tiny = tb.tiny_vww_model()
    tiny_in = np.arange(64, dtype=np.int64).reshape(1, 8, 8, 1).astype(np.int8)
    pad, pad_in = tb.pad_probe_model(), tb.pad_probe_input()
    pad_expected = tb.pad_probe_expected(pad_in)
    only = os.environ.get("ARMVWW_PROBE_ONLY")
    for backend in ARMNN_BACKENDS:
        if only and backend not in only.split(","):
            continue
        if backend not in listed:
            if backend == "CpuRef":
                hint = f" (its library is in the package {cpuref_package()})"
            elif not is_arm_cpu():
                hint = f" (an Arm CPU is needed; no package gives it on {machine()})"
            else:
                hint = ""
            emit(
                stage="done",
                backend=backend,
                ok=False,
                reason=f"the {backend} backend library is not installed or not built for this "
                f"machine{hint}; Arm NN lists only {sorted(listed)}",
            )
            continue
        emit(stage="start", backend=backend)
        t0 = time.perf_counter()
        try:
            out = _load_and_run(ann, rt, tiny, backend, tiny_in)
            if out.shape != (1, 2) or out.dtype != np.int8:
                raise RuntimeError(f"trial network returned {out.dtype} {out.shape}")
            trial_s = time.perf_counter() - t0
            padded = _load_and_run(ann, rt, pad, backend, pad_in)
            defective = not np.array_equal(padded.reshape(pad_expected.shape), pad_expected)
        except Exception as exc:
            emit(
                stage="done",
                backend=backend,
                ok=False,
                reason=f"trial load failed: {type(exc).__name__}: {exc}",
            )
            continue
        emit(
            stage="done",
            backend=backend,
            ok=True,
            trial_s=round(trial_s, 4),
            defective_pad=bool(defective),
            pad_border=int(padded.reshape(-1)[0]),
        )
    return 0


def delegate_main(path: str) -> int:
    """The child: load the delegate at ``path`` on each backend and report (see module doc)."""
    try:
        mod, litert = import_litert()
    except Exception as exc:
        emit(stage="import", ok=False, reason=f"LiteRT failed to import: {exc}")
        return 0
    emit(stage="import", ok=True, litert=litert)
    tiny = tb.tiny_vww_model()
    tiny_in = np.arange(64, dtype=np.int64).reshape(1, 8, 8, 1).astype(np.int8)
    pad, pad_in = tb.pad_probe_model(), tb.pad_probe_input()
    pad_expected = tb.pad_probe_expected(pad_in)
    only = os.environ.get("ARMVWW_PROBE_ONLY")
    library_reported = False
    ok_backend = ""
    for backend in ARMNN_BACKENDS:
        if only and backend not in only.split(","):
            continue
        emit(stage="start", backend=backend)
        t0 = time.perf_counter()
        opts = {"backends": backend, "logging-severity": "fatal"}
        try:
            d = mod.load_delegate(path, opts)
        except (OSError, AttributeError) as exc:
            # the library itself does not load: the same for every backend
            emit(stage="fatal", reason=f"{path} does not load: {type(exc).__name__}: {exc}")
            return 0
        except ValueError as exc:
            msg = " ".join(str(exc).split())
            if "No known backend" in msg:
                msg = f"this Arm NN has no {backend} backend here ({msg})"
            emit(stage="done", backend=backend, ok=False, reason=msg)
            continue
        if not library_reported:
            emit(stage="library", version=armnn_version_of_loaded())
            library_reported = True
        try:
            out, nodes = _trial(mod, tiny, d, tiny_in)
            if out.shape != (1, 2) or out.dtype != np.int8:
                raise RuntimeError(f"trial network returned {out.dtype} {out.shape}")
            if not nodes["armnn"]:
                raise RuntimeError("the delegate took no node of the trial network")
            trial_s = time.perf_counter() - t0
            padded, _ = _trial(mod, pad, d, pad_in)
            defective = not np.array_equal(padded.reshape(pad_expected.shape), pad_expected)
        except Exception as exc:
            emit(
                stage="done",
                backend=backend,
                ok=False,
                reason=f"trial load failed: {type(exc).__name__}: {' '.join(str(exc).split())}",
            )
            continue
        ok_backend = ok_backend or backend
        emit(
            stage="done",
            backend=backend,
            ok=True,
            trial_s=round(trial_s, 4),
            defective_pad=bool(defective),
            pad_border=int(padded.reshape(-1)[0]),
        )
    if ok_backend:
        emit(stage="keys-start")
        keys = {}
        for key in KEYS:
            if key == "backends":
                keys[key] = True
                continue
            try:
                mod.load_delegate(path, {"backends": ok_backend, key: TRIAL_VALUES[key]})
                keys[key] = True
            except ValueError as exc:
                keys[key] = "Unknown option" not in str(exc)
        emit(stage="keys", keys=keys)
    return 0


def _trial(mod: Any, data: bytes, d: Any, x: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    it = mod.Interpreter(
        model_content=data,
        experimental_delegates=[d],
        experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    nodes = node_placement(it)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    out: np.ndarray = it.get_tensor(it.get_output_details()[0]["index"]).copy()
    return out, {"armnn": len(nodes["delegated"]), "litert": len(nodes["kept"])}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--delegate":
        sys.exit(delegate_main(sys.argv[2]))
    sys.exit(main())
