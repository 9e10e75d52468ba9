"""Arm NN backends GpuAcc, CpuAcc and CpuRef, by two routes: PyArmNN's TfLite parser
(:mod:`armvww.backends.armnn_parser`) and Arm NN's TfLite delegate loaded into LiteRT
(:mod:`armvww.backends.armnn_delegate`).

The route is ``ArmNNOptions.route``: ``"parser"``, ``"delegate"`` or ``"auto"`` (the default:
the parser when PyArmNN works here and the options allow it, else the delegate). Each
backend's :class:`~armvww.backends.base.Availability` gives both routes in
``details["routes"]``; a session says which route ran in ``info["route"]``.

This module holds the three backend classes and the route choice; the options are
:mod:`armvww.backends.armnn_options`, the parser route :mod:`armvww.backends.armnn_parser`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailableError, DefectiveRuntimeError, OptionError
from ..model import Model
from . import armnn_delegate, armnn_threads, armnn_vet
from .armnn_options import ARMNN_BACKENDS, ROUTES, ArmNNOptions, install_hint
from .armnn_parser import ArmNNSession, import_pyarmnn, open_session, probe, runtime
from .base import Availability, Backend, BackendOptions, Session

log = logging.getLogger(__name__)

__all__ = [
    "ARMNN_BACKENDS",
    "ROUTES",
    "ArmNNOptions",
    "ArmNNSession",
    "CpuAccBackend",
    "CpuRefBackend",
    "GpuAccBackend",
    "delegate_route",
    "import_pyarmnn",
    "parser_route",
    "probe",
    "runtime",
]


# --------------------------------------------------------------------------- the backends


#: Options only the delegate route can honour.
DELEGATE_ONLY: tuple[str, ...] = (
    "delegate_path",
    "gpu_mlgo_tuning_file",
    "log_severity",
    "dot_file",
)
#: GpuAcc runtime options: the delegate honours them; PyArmNN 23.08 cannot (the parser
#: route's session says why), so ``auto`` takes the delegate for them.
_RUNTIME_OPTIONS: tuple[str, ...] = ("gpu_tuning_level", "gpu_tuning_file", "gpu_kernel_profiling")
#: Options the parser route honours only with model options (BackendOptions) in PyArmNN.
_PARSER_MODEL_OPTIONS: tuple[str, ...] = (
    "cpu_threads",
    "cpu_fast_math",
    "gpu_fast_math",
    "gpu_cached_network",
)


def _asked(opts: ArmNNOptions, names: Sequence[str]) -> list[str]:
    return [n for n in names if getattr(opts, n) not in (None, False)]


def parser_route(name: str) -> dict[str, Any]:
    """The parser route of backend ``name``: ``available``, ``reason``, ``runtime`` and the
    probe's details (never raises)."""
    p = probe()
    if p.missing:
        return {"available": False, "reason": install_hint(name), "runtime": ""}
    if p.error:
        return {"available": False, "reason": p.error, "runtime": ""}
    b = p.backends.get(name)
    if b is None:
        return {
            "available": False,
            "reason": "the probe did not reach this backend",
            "runtime": p.version,
        }
    details = {k: v for k, v in b.items() if k not in ("backend", "ok", "reason", "stage")}
    if not b.get("ok"):
        return {
            "available": False,
            "reason": str(b.get("reason", "")),
            "runtime": p.version,
            **details,
        }
    return {
        "available": True,
        "reason": "",
        "runtime": p.version,
        "features": p.features,
        **details,
    }


def delegate_route(name: str, delegate_path: str | None = None) -> dict[str, Any]:
    """The delegate route of backend ``name`` with the library :func:`~armvww.backends.
    armnn_delegate.find_delegate` finds: ``available``, ``reason``, ``runtime``,
    ``library`` and the probe's details (never raises)."""
    loc = armnn_delegate.find_delegate(delegate_path)
    if loc.path is None:
        return {"available": False, "reason": loc.reason, "runtime": "", "library": ""}
    found = armnn_delegate.probe(loc.path)
    lib = {"library": str(loc.path), "found": loc.how}
    if found.error:
        return {"available": False, "reason": found.error, "runtime": "", **lib}
    runtime = f"{found.version or 'Arm NN'} (TfLite delegate; {found.litert})"
    b = found.backends.get(name)
    if b is None:
        return {
            "available": False,
            "reason": "the delegate probe did not reach this backend",
            "runtime": runtime,
            **lib,
        }
    details = {k: v for k, v in b.items() if k not in ("backend", "ok", "reason", "stage")}
    if found.keys:
        details["option_keys"] = sorted(k for k, v in found.keys.items() if v)
    if not b.get("ok"):
        return {
            "available": False,
            "reason": str(b.get("reason", "")),
            "runtime": runtime,
            **lib,
            **details,
        }
    return {"available": True, "reason": "", "runtime": runtime, **lib, **details}


def _parser_allows(opts: ArmNNOptions, route: dict[str, Any]) -> bool:
    if _asked(opts, DELEGATE_ONLY) or _asked(opts, _RUNTIME_OPTIONS):
        return False
    feats = route.get("features", {})
    return not (_asked(opts, _PARSER_MODEL_OPTIONS) and not feats.get("model_options", False))


_DEFECTIVE = (
    "defective: this Arm NN's TfLite parser pads int8 with 0 instead of the zero point "
    "(PAD probe); models with PAD are refused"
)


class _ArmNNBackend(Backend):
    """Shared logic of the three Arm NN backends: route choice and the PAD refusal."""

    options_type = ArmNNOptions
    arm_only: ClassVar[bool] = False

    @classmethod
    def availability(cls) -> Availability:
        return cls.availability_with(None)

    @classmethod
    def availability_with(cls, options: BackendOptions | None) -> Availability:
        """Both routes (``details["routes"]``); available when the route the options ask for
        (``auto``: either) is. The runtime and details are those of the route ``auto`` or
        the options pick."""
        opts = options if isinstance(options, ArmNNOptions) else ArmNNOptions()
        routes = {
            "parser": parser_route(cls.name),
            "delegate": delegate_route(cls.name, opts.delegate_path),
        }
        wanted = [opts.route] if opts.route != "auto" else ["parser", "delegate"]
        chosen = next((r for r in wanted if routes[r]["available"]), wanted[0])
        r = routes[chosen]
        details = {k: v for k, v in r.items() if k not in ("available", "reason", "runtime")}
        details.update(route=chosen, routes=routes)
        if not r["available"]:
            reason = "; ".join(f"{w} route: {routes[w]['reason']}" for w in wanted)
            return Availability(cls.name, False, reason, str(r["runtime"]), details)
        reason = _DEFECTIVE if r.get("defective_pad") else ""
        return Availability(cls.name, True, reason, str(r["runtime"]), details)

    @classmethod
    def choose_route(cls, opts: ArmNNOptions) -> tuple[str, dict[str, Any]]:
        """The route ``opts`` lead to here, and its availability record.

        Raises:
            BackendUnavailableError: the route asked for (``auto``: every route) is not
                available; the message gives each reason.
            OptionError: ``route="parser"`` with options only the delegate honours.
        """
        if opts.route == "parser" and _asked(opts, DELEGATE_ONLY):
            raise OptionError(
                f"{', '.join(_asked(opts, DELEGATE_ONLY))}: delegate-route option(s), but "
                "route='parser' was asked for; use route='delegate' or 'auto'"
            )
        parser = parser_route(cls.name) if opts.route != "delegate" else None
        if opts.route == "parser" or (
            opts.route == "auto"
            and parser is not None
            and parser["available"]
            and _parser_allows(opts, parser)
        ):
            assert parser is not None
            if not parser["available"]:
                raise BackendUnavailableError(
                    f"{cls.name} (parser route) is not available: {parser['reason']}"
                )
            return "parser", parser
        delegate = delegate_route(cls.name, opts.delegate_path)
        if delegate["available"]:
            return "delegate", delegate
        if opts.route == "auto" and parser is not None and parser["available"]:
            return "parser", parser  # the parser then says which option it cannot honour
        reasons = ([f"parser route: {parser['reason']}"] if parser is not None else []) + [
            f"delegate route: {delegate['reason']}"
        ]
        raise BackendUnavailableError(f"{cls.name} is not available: {'; '.join(reasons)}")

    @classmethod
    def open(
        cls, model: Model, options: BackendOptions | None = None, fallbacks: Sequence[str] = ()
    ) -> Session:
        opts = options if isinstance(options, ArmNNOptions) else ArmNNOptions()
        route, av = cls.choose_route(opts)
        defective = bool(av.get("defective_pad"))
        if defective and "PAD" in model.op_counts and not opts.allow_defective:
            raise DefectiveRuntimeError(
                f"{cls.name} ({av['runtime']}, {route} route) fails armvww's PAD probe: it "
                f"fills int8 padding with 0 instead of the zero point, which makes {model.name} "
                f"({model.op_counts['PAD']} PAD ops) wrong. Use Arm NN >= 23.08 (Debian "
                "trixie), another backend, or ArmNNOptions(allow_defective=True) to run it "
                "anyway"
            )

        # Arm NN backends after this one in the caller's list take layers this one cannot
        # run, when they work on the same route.
        def works(f: str) -> bool:
            r = parser_route(f) if route == "parser" else delegate_route(f, opts.delegate_path)
            return bool(r["available"])

        prefs = [cls.name] + [
            f for f in fallbacks if f in ARMNN_BACKENDS and f != cls.name and works(f)
        ]
        found = armnn_delegate.probe(Path(av["library"])) if route == "delegate" else None
        verdict = armnn_vet.vet(
            model,
            prefs,
            route,
            opts,
            str(av["runtime"]),
            library=str(av.get("library", "")),
            usable=[b for b in ARMNN_BACKENDS if works(b)],
            delegate_probe=found,
            defective=defective,
        )
        # CpuAcc's thread count is one per process (armnn_threads): booked before the load
        claim = armnn_threads.claim(opts.cpu_threads) if "CpuAcc" in prefs else None
        session: ArmNNSession | armnn_delegate.DelegateSession
        try:
            if found is not None:
                session = armnn_delegate.DelegateSession(
                    model,
                    prefs,
                    opts,
                    Path(av["library"]),
                    found,
                    defective,
                    fresh=claim is not None and claim.must_load,
                )
            else:
                session = open_session(model, prefs, opts, defective)
        except BaseException:
            if claim is not None:
                claim.release()
            raise
        _threads(session, claim)
        info = getattr(session, "info", None)
        if isinstance(info, dict):
            info["vetting"] = (
                verdict.describe()
                if verdict is not None
                else ("off" if opts.vet == "off" else f"not needed: pinned {model.name}")
            )
        return session


def _threads(
    session: ArmNNSession | armnn_delegate.DelegateSession,
    claim: armnn_threads.ThreadClaim | None,
) -> None:
    """Say how many CPU threads ``session``'s inference keeps busy, and hold ``claim`` until
    the session closes or is collected."""
    if session.backend == "GpuAcc":
        session.inference_threads = 0
    elif session.backend == "CpuRef":
        session.inference_threads = 1
    if claim is None:
        return
    session.threads_claim = claim
    weakref.finalize(session, claim.release)
    if session.backend == "CpuAcc":
        session.inference_threads = claim.threads
    session.info["cpu_threads"] = armnn_threads.describe(claim.threads)
    if claim.note:
        session.info["cpu_threads_note"] = claim.note
        log.warning("CpuAcc %s", claim.note)


class GpuAccBackend(_ArmNNBackend):
    """Arm NN GpuAcc: Arm Compute Library OpenCL kernels (Mali GPUs)."""

    name = "GpuAcc"


class CpuAccBackend(_ArmNNBackend):
    """Arm NN CpuAcc: Arm Compute Library NEON kernels (Arm CPUs)."""

    name = "CpuAcc"


class CpuRefBackend(_ArmNNBackend):
    """Arm NN CpuRef: the portable reference backend (slow; any CPU)."""

    name = "CpuRef"
