"""Backend selection: ``auto``, a preference list, one name, or ``fastest`` -> an open
session and one :class:`Selection` record (what was asked, the order tried, why earlier
candidates were skipped, and the measurements behind ``fastest``). The Detector stores that
record; nothing re-derives it.

``backend="fastest"``: measure the available backends briefly, once, and pick the fastest.
At first use for a model on a machine, every available backend opens the model and runs
:data:`ROUNDS` interleaved rounds of short timed bursts of inference on a fixed int8 tensor
(after a warm-up); the median latency per backend orders them. A backend reachable by
several routes (Arm NN: PyArmNN's parser and the TfLite delegate) is measured on each, as
``Name:route=R``, and the winning route is the one opened. The result is cached as JSON
in ``$XDG_CACHE_HOME/armvww/fastest/<model sha1>-<machine key>.json`` (default
``~/.cache/armvww``), written atomically, and reused while the machine key (CPU model, core
count, architecture) and the set of available backends with their runtime versions are
unchanged. Delete the file, or call :func:`fastest_choice` with ``refresh=True``, to measure
again.

The explanation (medians, skipped backends, cached or measured) is logged at INFO and kept
in the :class:`Selection`; :func:`last_choice` returns the last one made for a model, and
:meth:`FastestChoice.explain` words it.

The measure is steady-state latency only: cold start (e.g. GpuAcc's kernel compilation,
which can take minutes under emulation) is paid once by the measurement and not counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import backends, files, machine
from .backends.base import BackendOptions, Session
from .errors import (
    ArmvwwError,
    BackendError,
    BackendUnavailableError,
    DefectiveRuntimeError,
    InputError,
)
from .model import Model
from .model.store import write_atomic

log = logging.getLogger(__name__)

#: Layout version of the cache file (a different version is re-measured).
CACHE_VERSION = 1
#: Untimed runs per backend before measuring.
WARMUP = 5
#: Interleaved rounds; each backend runs one burst per round.
ROUNDS = 5
#: A burst runs at least this many inferences and stops after :data:`BURST_S` seconds.
BURST_MIN = 3
BURST_S = 0.05

_LAST: dict[str, FastestChoice] = {}


@dataclass(frozen=True)
class FastestChoice:
    """The outcome of a ``fastest`` measurement.

    Attributes:
        order: measured backends, fastest first.
        median_us: median latency per measured backend (µs).
        skipped: backend -> reason it was not measured (unavailable, or failed to open).
        cached: the result came from the cache file.
        path: the cache file.
        measured_at: UTC time of the measurement.
    """

    order: tuple[str, ...]
    median_us: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    cached: bool = False
    path: str = ""
    measured_at: str = ""

    def explain(self) -> str:
        """One line: the pick and why (medians), and what was skipped."""
        if not self.order:
            why = "no backend could be measured"
        else:
            meds = ", ".join(f"{n} {self.median_us[n]:.1f} µs" for n in self.order)
            why = f"picked {self.order[0]}: median latency {meds}"
        src = "cached" if self.cached else "measured"
        skipped = "; ".join(f"{k}: {v}" for k, v in self.skipped.items())
        return (
            f"{why} ({src} {self.measured_at}"
            + (f", {self.path}" if self.path else "")
            + ")"
            + (f"; not measured: {skipped}" if skipped else "")
        )


def cache_dir() -> Path:
    """Folder of the ``fastest`` cache files."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "armvww" / "fastest"


def machine_key() -> dict[str, Any]:
    """What identifies "this machine" for the cache: architecture, CPU model, cores."""
    return machine.identity()


def _available() -> dict[str, str]:
    """Available backends -> runtime description; unavailable ones are left out. A backend
    reachable by several routes (Arm NN: parser and delegate) is one entry per route,
    ``Name:route=R``, so ``fastest`` measures each."""
    out = {}
    for name in backends.names():
        av = backends.availability(name)
        if not av.available:
            continue
        routes = {r: d for r, d in av.details.get("routes", {}).items() if d.get("available")}
        if len(routes) > 1:
            for r, d in routes.items():
                out[f"{name}{ROUTE_SEP}{r}"] = str(d.get("runtime", av.runtime))
        else:
            out[name] = av.runtime
    return out


#: How a ``fastest`` candidate names one route of a backend (``CpuRef:route=delegate``).
ROUTE_SEP = ":route="


def split_route(label: str) -> tuple[str, str | None]:
    """``"CpuRef:route=delegate"`` -> ``("CpuRef", "delegate")``; a plain name -> (name, None)."""
    name, sep, route = label.partition(ROUTE_SEP)
    return (name, route) if sep else (label, None)


def check_names(spec: BackendSpec) -> None:
    """Raise for a backend name that is not registered, before any model is searched.

    Raises:
        BackendUnavailableError: an unknown name (the message lists the known ones).
    """
    for label in [spec] if isinstance(spec, str) else list(spec):
        name, _ = split_route(label)
        if name.lower() not in ("auto", "fastest"):
            backends.get(name)


def _with_route(
    cls: type[backends.Backend], opts: BackendOptions | None, route: str | None
) -> BackendOptions | None:
    """``opts`` with ``route`` when the candidate names one and the caller left it ``auto``."""
    if route is None or cls.options_type is None:
        return opts
    if opts is None:
        return cls.options_type(route=route)  # type: ignore[call-arg]
    if getattr(opts, "route", None) == "auto":
        return dataclasses.replace(opts, route=route)  # type: ignore[call-arg]
    return opts


def cache_path(model: Model, runtimes: dict[str, str] | None = None) -> Path:
    """Cache file of ``model`` on this machine with these backends and runtimes."""
    key = {"m": machine_key(), "r": runtimes if runtimes is not None else _available()}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f"{model.sha1}-{digest}.json"


def measure(model: Model, names: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Median latency (µs) per backend of ``names`` that opens, and why others did not."""
    sessions: dict[str, backends.Session] = {}
    skipped: dict[str, str] = {}
    for name in names:
        base, route = split_route(name)
        try:
            cls = backends.get(base)
            sessions[name] = cls.open(model, _with_route(cls, None, route))
        except ArmvwwError as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
    q = np.random.default_rng(0).integers(-128, 128, size=model.input.shape, dtype=np.int8)
    samples: dict[str, list[float]] = {n: [] for n in sessions}
    try:
        for s in sessions.values():
            for _ in range(WARMUP):
                s.run(q)
        clock = time.perf_counter
        for _ in range(ROUNDS):
            for name, s in sessions.items():
                end = clock() + BURST_S
                k = 0
                while k < BURST_MIN or clock() < end:
                    t0 = clock()
                    s.run(q)
                    samples[name].append(clock() - t0)
                    k += 1
    finally:
        for s in sessions.values():
            s.close()
    return {n: statistics.median(v) * 1e6 for n, v in samples.items()}, skipped


#: Largest ``fastest`` cache file read (they are < 2 KB).
MAX_CACHE_BYTES = 64 * 1024


def _load(path: Path, runtimes: dict[str, str]) -> FastestChoice | None:
    """The cached choice, or None (measure again) for anything but a sound, current file: a
    missing file, not a regular file (FIFO, device), over :data:`MAX_CACHE_BYTES`, not JSON
    (deeply nested too), another version or runtime set, or a verdict naming a backend that
    is not available here."""
    if files.kind(path) == "missing":
        return None
    try:
        raw = files.read_regular_file(path, MAX_CACHE_BYTES, "fastest cache", ArmvwwError)
        d = json.loads(raw.decode("utf-8"))
        if d.get("version") != CACHE_VERSION or d.get("runtimes") != runtimes:
            return None
        med = {str(k): float(v) for k, v in d["median_us"].items()}
        order = tuple(n for n in d["order"] if isinstance(n, str))
        if len(order) != len(d["order"]) or set(order) != set(med) or len(set(order)) != len(order):
            raise ValueError("order and medians disagree")
        if not all(math.isfinite(v) and v > 0 for v in med.values()):
            raise ValueError("a median is not a positive finite number")
        unavailable = [n for n in order if n not in runtimes]
        if unavailable:
            raise ValueError(f"it names {', '.join(unavailable)}, not available here")
        return FastestChoice(
            order, med, dict(d.get("skipped", {})), True, str(path), str(d.get("measured_at", ""))
        )
    except files.UNSOUND_CACHE_ERRORS as exc:
        log.warning("ignoring the fastest-backend cache %s (%s); measuring again", path, exc)
        return None


def fastest_choice(model: Model, refresh: bool = False) -> FastestChoice:
    """The measured order of the available backends for ``model`` (cached per machine).

    Raises:
        OSError: never for the cache: an unreadable or unwritable cache is logged and the
            measurement is used without it.
    """
    runtimes = _available()
    path = cache_path(model, runtimes)
    choice = None if refresh else _load(path, runtimes)
    if choice is None:
        med, skipped = measure(model, list(runtimes))
        order = tuple(sorted(med, key=med.__getitem__))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc = {
            "version": CACHE_VERSION,
            "model_sha1": model.sha1,
            "model": model.name,
            "machine": machine_key(),
            "runtimes": runtimes,
            "order": list(order),
            "median_us": {n: round(med[n], 2) for n in order},  # same as the choice
            "skipped": skipped,
            "measured_at": now,
            "method": f"{WARMUP} warm-up runs, {ROUNDS} interleaved rounds of >= {BURST_MIN} "
            f"runs / {BURST_S} s per backend, median",
        }
        try:
            write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
        except OSError as exc:
            log.warning("could not write the fastest-backend cache %s: %s", path, exc)
        medians = {n: round(med[n], 2) for n in order}
        choice = FastestChoice(order, medians, skipped, False, str(path), now)
    _LAST[model.sha1] = choice
    log.info("backend=fastest for %s: %s", model.name, choice.explain())
    return choice


def fastest_order(model: Model) -> list[str]:
    """Backend names for ``Detector(backend="fastest")``, fastest first.

    When nothing could be measured, returns the ``auto`` order so the Detector reports each
    backend's reason.
    """
    choice = fastest_choice(model)
    if choice.order:
        return list(choice.order)
    return auto_order()


def last_choice(model: Model) -> FastestChoice | None:
    """The last :class:`FastestChoice` made for ``model`` in this process, if any."""
    return _LAST.get(model.sha1)


# -- selection ------------------------------------------------------------------------------
BackendSpec = str | Sequence[str]
OptionsSpec = BackendOptions | Sequence[BackendOptions] | None
Rule = Literal["requested", "list", "auto", "fastest"]


@dataclass(frozen=True)
class Selection:
    """How a backend was chosen: made once by :func:`open_backend`, stored by the Detector.

    Attributes:
        rule: ``"requested"`` (one name), ``"list"`` (a preference list), ``"auto"`` or
            ``"fastest"``.
        order: the candidates, in the order they were tried.
        backend: the backend that opened.
        skipped: why each candidate before it was not used (``"Name: reason"``).
        fastest: the measurements behind rule ``"fastest"`` (None for the other rules).
    """

    rule: Rule
    order: tuple[str, ...]
    backend: str
    skipped: tuple[str, ...] = ()
    fastest: FastestChoice | None = None

    def explain(self) -> str:
        """One line: the rule and its grounds (the order, or the measured medians)."""
        if self.rule == "auto":
            return f"auto: the first usable of {', '.join(self.order)}"
        if self.rule == "fastest":
            return "fastest: " + (self.fastest.explain() if self.fastest else "not measured")
        if self.rule == "list":
            return "preference list: " + ", ".join(self.order)
        return "requested"


def auto_order() -> list[str]:
    """The registered backends in ``auto`` preference order."""
    return [n for n in backends.AUTO_ORDER if n in backends.names()]


def _candidates(spec: BackendSpec, model: Model) -> tuple[list[str], Rule, FastestChoice | None]:
    """Backend names to try, the rule that ordered them, and fastest's measurements."""
    if isinstance(spec, str):
        key = spec.lower()
        if key == "auto":
            return auto_order(), "auto", None
        if key == "fastest":
            names = fastest_order(model)
            return names, "fastest", last_choice(model)
        return [spec], "requested", None
    names = list(spec)
    if not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"backend must be a name or a non-empty list of names, got {spec!r}")
    return names, "list", None


def _pick_options(options: OptionsSpec, cls: type[backends.Backend]) -> BackendOptions | None:
    if options is None or cls.options_type is None:
        return None
    seq = [options] if isinstance(options, BackendOptions) else list(options)
    for o in seq:
        if isinstance(o, cls.options_type) and (not o.applies_to or cls.name in o.applies_to):
            return o
    return None


def open_backend(
    model: Model, spec: BackendSpec = "auto", options: OptionsSpec = None
) -> tuple[Session, Selection]:
    """Open the first usable backend of ``spec`` for ``model``.

    ``spec`` is a backend name, ``"auto"``, ``"fastest"`` or an ordered list of names.
    Returns the session and the :class:`Selection` record of how it was chosen.

    Raises:
        BackendUnavailableError: no candidate could be used; the message gives each reason
            and the list of backends available here.
        DefectiveRuntimeError: the only candidate's runtime is defective.
        OptionError: options that the chosen backend's runtime cannot honour.
        InputError: ``spec`` is neither a name nor a non-empty list of names.
    """
    names, rule, measured = _candidates(spec, model)
    automatic = rule in ("auto", "fastest")
    reasons: list[str] = []
    errors: list[type[BackendUnavailableError]] = []
    for i, label in enumerate(names):
        name, route = split_route(label)
        cls = backends.get(name)
        opts = _with_route(cls, _pick_options(options, cls), route)
        av = backends.availability(cls.name, opts)
        if not av.available:
            reasons.append(f"{label}: {av.reason}")
            continue
        later = tuple(dict.fromkeys(split_route(n)[0] for n in names[i + 1 :]))
        try:
            session = cls.open(model, opts, later)
        except (BackendUnavailableError, BackendError) as exc:
            reasons.append(f"{cls.name}: {exc}")
            if isinstance(exc, DefectiveRuntimeError):
                errors.append(DefectiveRuntimeError)
            continue
        if reasons:
            level = logging.INFO if automatic else logging.WARNING
            log.log(level, "using %s; skipped %s", cls.name, "; ".join(reasons))
        return session, Selection(rule, tuple(names), session.backend, tuple(reasons), measured)
    usable = [a.name for a in backends.available_backends() if a.available]
    # a single defective candidate keeps its own, more precise type
    kind = errors[0] if len(names) == 1 and errors else BackendUnavailableError
    raise kind(
        f"no requested backend ({', '.join(names) or 'none'}) could be used: "
        f"{'; '.join(reasons) or 'nothing to try'}. Available here: "
        f"{', '.join(usable) or 'none'} (see `armvww backends`)"
    )


def open_session(
    model: Model, spec: BackendSpec = "auto", options: OptionsSpec = None
) -> tuple[Session, tuple[str, ...]]:
    """:func:`open_backend`, for callers that need only the session and the skip reasons.

    Raises:
        BackendUnavailableError, DefectiveRuntimeError, OptionError, InputError: as
            :func:`open_backend`.
    """
    session, selection = open_backend(model, spec, options)
    return session, selection.skipped
