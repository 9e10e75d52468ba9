"""The armvww error family.

Every failure armvww reports on purpose is an :class:`ArmvwwError`. Subclasses say what
went wrong; each message says what was expected, what was found and what to do.
Each family has its own CLI exit code (:attr:`ArmvwwError.exit_code`).
"""

from __future__ import annotations


class ArmvwwError(Exception):
    """Base class of every error armvww raises on purpose."""

    #: Exit code of the ``armvww`` CLI for this family (2 is argparse's usage error).
    exit_code: int = 10


class ModelNotFoundError(ArmvwwError):
    """No model file could be found, or a path does not exist / cannot be read."""

    exit_code = 11


class ModelIntegrityError(ArmvwwError):
    """The model bytes are damaged: truncated, corrupt flatbuffer, or a hash/size mismatch."""

    exit_code = 12


class UnsupportedModelError(ArmvwwError):
    """A valid TFLite model, but not one armvww can run (wrong shapes, dtypes, ops...)."""

    exit_code = 13


class ModelCrashError(UnsupportedModelError):
    """Vetting the model in a child process crashed the runtime (a signal such as SIGSEGV or
    SIGABRT, or a hang): loading it in this process would have killed it. The message names
    the signal, backend, route and runtime version."""


class ImageDecodeError(ArmvwwError):
    """An image could not be read, decoded or converted (including decompression bombs)."""

    exit_code = 14


class InputError(ArmvwwError, ValueError, TypeError):
    """An array or argument given to the API has the wrong type, dtype, shape or value.

    Also a ValueError and a TypeError, so code written against plain Python errors still
    catches it."""

    exit_code = 15


class BackendUnavailableError(ArmvwwError):
    """A requested backend cannot be used here; the message names the available ones."""

    exit_code = 16


class BackendError(ArmvwwError):
    """A backend that loaded failed while preparing or running the model."""

    exit_code = 17


class DefectiveRuntimeError(BackendUnavailableError):
    """The installed runtime is known (by behaviour) to compute wrong results for this model."""

    exit_code = 18


class FetchError(ArmvwwError):
    """Downloading a model failed (network, HTTP status, or verification of the download)."""

    exit_code = 19


class OptionError(ArmvwwError, ValueError, TypeError):
    """A backend option is invalid (wrong type or value), or the installed runtime cannot
    honour it. Also a ValueError and a TypeError."""

    exit_code = 20


__all__ = [
    "ArmvwwError",
    "BackendError",
    "BackendUnavailableError",
    "DefectiveRuntimeError",
    "FetchError",
    "ImageDecodeError",
    "InputError",
    "ModelCrashError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "OptionError",
    "UnsupportedModelError",
]
