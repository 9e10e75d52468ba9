"""armvww: Arm's MicroNet visual-wake-words person detector on Arm NN and LiteRT.

>>> import armvww
>>> with armvww.Detector(backend="auto") as det:        # doctest: +SKIP
...     r = det.detect("photo.jpg")
...     print(r.person, r.score, r.backend)
"""

from __future__ import annotations

import logging

from ._version import __version__
from .backends import available_backends
from .backends.base import Availability, BackendOptions
from .backends.litert import LiteRTOptions
from .detector import Detection, Detector
from .errors import (
    ArmvwwError,
    BackendError,
    BackendUnavailableError,
    DefectiveRuntimeError,
    FetchError,
    ImageDecodeError,
    InputError,
    ModelCrashError,
    ModelIntegrityError,
    ModelNotFoundError,
    OptionError,
    UnsupportedModelError,
)
from .model import Model, TensorSpec, parse_model
from .model.store import fetch, load_model

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ArmvwwError",
    "Availability",
    "BackendError",
    "BackendOptions",
    "BackendUnavailableError",
    "DefectiveRuntimeError",
    "Detection",
    "Detector",
    "FetchError",
    "ImageDecodeError",
    "InputError",
    "LiteRTOptions",
    "Model",
    "ModelCrashError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "OptionError",
    "TensorSpec",
    "UnsupportedModelError",
    "__version__",
    "available_backends",
    "fetch",
    "load_model",
    "parse_model",
]
