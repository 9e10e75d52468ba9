"""Finding, loading and fetching model files.

Resolution order for :func:`load_model`:

1. an explicit path, bytes or :class:`~armvww.model.Model`;
2. for ``None``: the file named by ``ARMVWW_MODEL``, else the known default (``vww2``);
3. a known name (``"vww2"``, ``"vww4"``...) is searched, by its ML-zoo file name, in
   ``ARMVWW_MODEL`` (when it is a directory, or the directory of the file it names),
   ``ARMVWW_MODEL_DIR``, ``models/`` of a source checkout, and the user cache
   (``$XDG_CACHE_HOME/armvww/models``, default ``~/.cache/armvww/models``);
4. otherwise a :class:`~armvww.errors.ModelNotFoundError` says how to provide the file.

Nothing here touches the network except :func:`fetch`, which the ``armvww fetch`` command
calls explicitly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .. import files
from ..errors import (
    FetchError,
    InputError,
    ModelIntegrityError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from . import MAX_MODEL_BYTES, Model, manifest, parse_model

log = logging.getLogger(__name__)

ModelSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Model | None


def cache_dir() -> Path:
    """The user cache folder for downloaded models."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "armvww" / "models"


def checkout_models_dir() -> Path:
    """``models/`` beside the package in a source checkout."""
    return Path(__file__).resolve().parent.parent / "models"


def search_dirs() -> list[Path]:
    """Folders searched for a known model's file, in order."""
    dirs: list[Path] = []
    env = os.environ.get("ARMVWW_MODEL")
    if env:
        p = Path(env)
        dirs.append(p if files.kind(p) == "dir" else p.parent)
    env_dir = os.environ.get("ARMVWW_MODEL_DIR")
    if env_dir:
        dirs.append(Path(env_dir))
    dirs += [checkout_models_dir(), cache_dir()]
    return dirs


def find_known(name: str, problems: list[str] | None = None) -> Path | None:
    """Path of the known model ``name`` if an entry of that file name exists in
    :func:`search_dirs` (of any kind: reading a FIFO or a device named like the model then
    fails with a clear error, it is not skipped). A folder that cannot be searched (EACCES,
    ENAMETOOLONG...) is skipped with a warning, and its reason appended to ``problems``."""
    known = manifest.by_name(name)
    if known is None:
        return None
    for d in search_dirs():
        f = d / known.filename
        k = files.kind(f)
        if isinstance(k, OSError):
            why = f"{d}: {k.strerror or k}"
            log.warning("model folder %s cannot be searched: %s", d, k.strerror or k)
            if problems is not None:
                problems.append(why)
            continue
        if k != "missing":
            return f
    return None


def load_model(source: ModelSource = None) -> Model:
    """Resolve ``source`` to a validated :class:`Model` (see the module docs for the order).

    Raises:
        ModelNotFoundError: nothing found for a name, or a path that does not exist.
        ModelIntegrityError: damaged bytes, or a known model whose size/SHA-1 differ.
        UnsupportedModelError: a valid TFLite model that is not a VWW-style int8 model.
    """
    if isinstance(source, Model):
        if hashlib.sha256(source.data).hexdigest() != source.sha256:
            raise ModelIntegrityError(
                f"model {source.source!r}: its bytes no longer match the SHA-256 it was "
                "validated with (was it rebuilt with dataclasses.replace?); parse it again"
            )
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_model(bytes(source), "<bytes>")
    if source is None:
        env = os.environ.get("ARMVWW_MODEL")
        if env and files.kind(env) != "dir":
            return _load_path(Path(env))
        source = manifest.DEFAULT_MODEL
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            "model must be a path, bytes, a Model or a known name "
            f"({', '.join(manifest.KNOWN_MODELS)}), got {type(source).__name__}"
        )
    text = os.fspath(source)
    if not isinstance(text, str) or "\0" in text:
        raise InputError(f"model path {text!r:.200} is not a valid path (bytes or a NUL byte)")
    if manifest.by_name(text) is not None and os.sep not in text and files.kind(text) == "missing":
        problems: list[str] = []
        path = find_known(text, problems)
        if path is None:
            known = manifest.by_name(text)
            assert known is not None
            where = ", ".join(str(d) for d in search_dirs())
            unsearchable = f" (could not search {'; '.join(problems)})" if problems else ""
            raise ModelNotFoundError(
                f"model {known.name} ({known.filename}) was not found in: {where}"
                f"{unsearchable}. Run "
                f"`armvww fetch {known.name}` (downloads {known.size} bytes from ML-zoo and "
                "verifies SHA-1), or set ARMVWW_MODEL to the file's path"
            )
        return _load_path(path, hint=text)
    return _load_path(Path(text))


def _load_path(path: Path, hint: str | None = None) -> Model:
    """Read a model file: a regular file of at most MAX_MODEL_BYTES, read bounded (a FIFO,
    ``/dev/zero`` or a directory is refused before reading; see :mod:`armvww.files`)."""
    k = files.kind(path)
    if k == "file":
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise UnsupportedModelError(
                f"model {str(path)!r} is {size} bytes; armvww accepts models up to "
                f"{MAX_MODEL_BYTES} bytes"
            )
    data = files.read_regular_file(path, MAX_MODEL_BYTES, "model file", ModelNotFoundError)
    return parse_model(data, str(path), name_hint=hint or path.name)


def fetch(name: str, dest_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Download the known model ``name`` from its pinned ML-zoo URL into ``dest_dir``.

    The file is written atomically and only after its size and SHA-1 match the manifest.
    An existing verified copy is reused. This is the only function that uses the network.

    Raises:
        FetchError: unknown name, network/HTTP failure, or a download that fails verification.
    """
    known = manifest.by_name(name)
    if known is None:
        raise FetchError(
            f"unknown model {name!r}; known: {', '.join(sorted(manifest.KNOWN_MODELS))}"
        )
    dest_dir = dest_dir or cache_dir()
    dest = dest_dir / known.filename
    if files.kind(dest) == "file":
        try:
            data = files.read_regular_file(dest, MAX_MODEL_BYTES, "model file", ModelNotFoundError)
            parse_model(data, str(dest), name_hint=known.name)
            log.info("%s already present and verified at %s", known.name, dest)
            return dest
        except (ModelIntegrityError, UnsupportedModelError, ModelNotFoundError) as exc:
            log.warning("existing %s failed verification (%s); downloading again", dest, exc)
    log.info("downloading %s from %s", known.name, known.url)
    try:
        with urllib.request.urlopen(known.url, timeout=timeout) as resp:  # noqa: S310
            data = resp.read(known.size + 1)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise FetchError(f"downloading {known.name} from {known.url} failed: {exc}") from exc
    sha1 = hashlib.sha1(data).hexdigest()
    if len(data) != known.size or sha1 != known.sha1:
        raise FetchError(
            f"download of {known.name} is {len(data)} bytes with SHA-1 {sha1}; expected "
            f"{known.size} bytes with SHA-1 {known.sha1}. Nothing was written"
        )
    try:
        write_atomic(dest, data)
    except OSError as exc:
        raise FetchError(
            f"downloaded {known.name} but could not write {dest}: {exc}; the previous file, "
            "if any, is unchanged"
        ) from exc
    return dest


def write_atomic(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` via a temporary file and rename: the old file survives any
    failure (disk full included).

    Raises:
        OSError: the write failed (the destination is unchanged).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
