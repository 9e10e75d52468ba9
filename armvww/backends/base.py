"""The backend contract every runtime family implements.

A :class:`Backend` class describes one named backend (``"LiteRT"``, ``"CpuAcc"``...): it can
say whether it is usable here (:meth:`Backend.availability`, with the reason when not) and
open a :class:`Session` for a validated :class:`~armvww.model.Model`. A session runs int8
tensors of exactly the model's input shape and returns the raw int8 output. Sessions are not
thread-safe; :class:`armvww.Detector` serialises calls to its session.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..model import Model


@dataclass(frozen=True)
class Availability:
    """Whether a backend can be used here, and why not when it cannot."""

    name: str
    available: bool
    reason: str = ""
    runtime: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "available": self.available,
            "reason": self.reason,
            "runtime": self.runtime,
            **({"details": self.details} if self.details else {}),
        }


@dataclass(frozen=True)
class BackendOptions:
    """Base of the frozen option dataclasses; each family subclasses it."""

    #: Backend names these options apply to (empty: every backend of the family).
    applies_to: ClassVar[tuple[str, ...]] = ()


def emulation_info() -> dict[str, Any]:
    """``{"emulated": True, "emulation": ...}`` when ``ARMVWW_EMULATION`` says this process
    runs under an emulator (tools/images.sh sets it for arm64 on x86), else ``{}``.
    Sessions merge it into their ``info`` so benchmarks label such rows."""
    how = os.environ.get("ARMVWW_EMULATION")
    return {"emulated": True, "emulation": how} if how else {}


class Session(abc.ABC):
    """One loaded model on one backend. ``run`` maps an int8 input to the raw int8 output."""

    #: Backend name that really runs (e.g. ``"LiteRT"``, ``"CpuAcc"``).
    backend: str
    #: Runtime description (package and version, e.g. ``"ai-edge-litert 2.3.0"``).
    runtime: str
    #: Facts worth reporting: per-layer placement, options in force, timings of the load.
    info: dict[str, Any]
    #: How a family with several ways into its runtime got there (Arm NN: ``"parser"`` or
    #: ``"delegate"``); empty for a family with one.
    route: str = ""
    #: The options this session was opened with, when a second session of the same backend
    #: with them runs at full speed beside it in another thread or process (a CPU runtime,
    #: cheap to open): then the pipeline (:mod:`armvww.pipeline`) may give each of its
    #: workers its own session. ``None``: one session only (a GPU, a runtime that holds the
    #: GIL or is costly to open).
    replica_options: BackendOptions | None = None
    #: CPU threads one inference keeps busy: 0 where a GPU computes, ``None`` where it is
    #: every core (CpuAcc's default) or unknown. Where it leaves a core free, the pipeline
    #: prepares the next frame on it even for small frames (:func:`armvww.pipeline.choose_plan`).
    inference_threads: int | None = None

    @abc.abstractmethod
    def run(self, q: np.ndarray) -> np.ndarray:
        """Run one int8 input of exactly the model's input shape; return the int8 output.

        The caller (the Detector) has already checked dtype, shape and contiguity.

        Raises:
            BackendError: the runtime failed.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources. Idempotent."""


class Backend(abc.ABC):
    """One named backend: availability and session factory."""

    #: The name users pass (``Detector(backend=name)``).
    name: ClassVar[str]
    #: Options dataclass type this backend reads, if any.
    options_type: ClassVar[type[BackendOptions] | None] = None

    @classmethod
    @abc.abstractmethod
    def availability(cls) -> Availability:
        """Whether this backend works here. Cached per process; must never raise or crash."""

    @classmethod
    def availability_with(cls, options: BackendOptions | None) -> Availability:
        """Availability when opened with ``options`` (a family whose options choose the
        runtime, such as Arm NN's route and library path, overrides it). Must never raise."""
        return cls.availability()

    @classmethod
    @abc.abstractmethod
    def open(
        cls,
        model: Model,
        options: BackendOptions | None = None,
        fallbacks: Sequence[str] = (),
    ) -> Session:
        """Load ``model`` and return a ready session.

        ``fallbacks`` are the names after this one in the caller's preference list. A family
        that can split one network across its backends (Arm NN) may give them the layers this
        backend cannot run, and must report it; other families ignore them.

        Raises:
            BackendUnavailableError: the backend is not usable here (reason in the message).
            DefectiveRuntimeError: the runtime is known to compute wrong results for the model.
            OptionError: ``options`` cannot be honoured by the installed runtime.
            BackendError: the runtime failed to load the model.
        """
