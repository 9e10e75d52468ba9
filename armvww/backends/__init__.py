"""Backend registry: every known backend, in ``auto`` preference order.

Adding a backend is one new module with a :class:`~armvww.backends.base.Backend` subclass and
one line in :data:`_REGISTRY`. Entries are ``"module:Class"`` strings, imported on first use,
so a backend's runtime (pyarmnn, LiteRT) is never imported until it is asked for.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache

from ..errors import BackendUnavailableError
from .base import Availability, Backend, BackendOptions, Session

log = logging.getLogger(__name__)

#: name -> "module:Class", in the order ``backend="auto"`` tries them.
_REGISTRY: dict[str, str] = {
    "GpuAcc": "armvww.backends.armnn:GpuAccBackend",
    "CpuAcc": "armvww.backends.armnn:CpuAccBackend",
    "LiteRT": "armvww.backends.litert:LiteRTBackend",
    "CpuRef": "armvww.backends.armnn:CpuRefBackend",
}

#: Preference order of ``backend="auto"`` (names absent from the registry are skipped).
AUTO_ORDER: tuple[str, ...] = ("GpuAcc", "CpuAcc", "LiteRT", "CpuRef")


def names() -> list[str]:
    """Every registered backend name, in ``auto`` order first, then the rest."""
    ordered = [n for n in AUTO_ORDER if n in _REGISTRY]
    return ordered + [n for n in _REGISTRY if n not in ordered]


def canonical(name: str) -> str:
    """The registered spelling of ``name`` (case-insensitive), or ``name`` unchanged."""
    for n in _REGISTRY:
        if n.lower() == name.lower():
            return n
    return name


@cache
def get(name: str) -> type[Backend]:
    """The backend class registered as ``name``.

    Raises:
        BackendUnavailableError: no backend of that name exists (the message lists them).
    """
    key = canonical(name)
    if key not in _REGISTRY:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; known backends: {', '.join(names())} (or 'auto', 'fastest')"
        )
    module, _, cls = _REGISTRY[key].partition(":")
    backend: type[Backend] = getattr(importlib.import_module(module), cls)
    return backend


def availability(name: str, options: BackendOptions | None = None) -> Availability:
    """Availability of one backend (with ``options``, when they choose the runtime); an
    import failure is reported, never raised."""
    try:
        return get(name).availability_with(options)
    except BackendUnavailableError:
        raise
    except Exception as exc:  # a broken runtime install must not break the lister
        log.debug("availability of %s failed", name, exc_info=True)
        return Availability(name, False, f"{type(exc).__name__}: {exc}")


def available_backends() -> list[Availability]:
    """Every known backend with ``available`` and, when not, the reason."""
    return [availability(n) for n in names()]


__all__ = [
    "AUTO_ORDER",
    "Availability",
    "Backend",
    "BackendOptions",
    "Session",
    "availability",
    "available_backends",
    "canonical",
    "get",
    "names",
]
