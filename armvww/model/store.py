"""Finding, loading and fetching model files.

Resolution order for :func:`load_model`:

1. an explicit path, bytes or :class:`~armvww.model.Model`;
2. for ``None``: the file named by ``ARMVWW_MODEL``, else the known default (``vww2``);
3. a known name (``"vww2"``, ``"vww4"``...) is searched, by its ML-zoo file name, in
   ``ARMVWW_MODEL`` (when it is a directory, or the directory of the file it names),
   ``ARMVWW_MODEL_DIR``, ``models/`` of a source checkout, and the user cache
   (``$XDG_CACHE_HOME/armvww/models``, default ``~/.cache/armvww/models``);
4. otherwise a :class:`~armvww.errors.ModelNotFoundError` says how to provide the file.

Nothing here touches the network except :func:`fetch` and :func:`download_verified`, which
the ``armvww fetch`` command calls explicitly. ``ARMVWW_FETCH_BASE`` (a URL) replaces the
pinned download URLs with a mirror laid out like the shared data folder
(``<base>/models/<file>``, ``<base>/data/vww_samples/<path>``): for a local copy, a proxy,
or the tests' HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .. import files, hints
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


#: Environment variable naming a mirror that replaces every pinned download URL.
FETCH_BASE_ENV = "ARMVWW_FETCH_BASE"


def cache_root() -> Path:
    """The user cache folder of armvww (``$XDG_CACHE_HOME/armvww``, default
    ``~/.cache/armvww``), laid out like the shared data folder: ``models/``,
    ``data/vww_samples/``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "armvww"


def cache_dir() -> Path:
    """The user cache folder for downloaded models."""
    return cache_root() / "models"


def download_url(pinned: str, mirror_path: str) -> str:
    """``pinned``, or ``$ARMVWW_FETCH_BASE/mirror_path`` when that variable is set."""
    base = os.environ.get(FETCH_BASE_ENV)
    return f"{base.rstrip('/')}/{mirror_path}" if base else pinned


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
                f"{unsearchable}. Run `{hints.command('fetch ' + known.name)}` (downloads "
                f"{known.size} bytes from ML-zoo and verifies SHA-1), or copy {known.filename} "
                f"into {cache_dir()}, or set ARMVWW_MODEL to the file's path"
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
    An existing verified copy is reused (no network). ``ARMVWW_FETCH_BASE`` replaces the URL
    (see the module docs).

    Raises:
        FetchError: unknown name, network/HTTP failure, or a download that fails verification;
            the message says where to put a copy obtained another way.
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
    url = download_url(known.url, f"models/{known.filename}")
    return download_verified(
        known.name, url, known.size, known.sha1, dest, timeout, retry=f"fetch {known.name}"
    )


def download_verified(
    what: str, url: str, size: int, sha1: str, dest: Path, timeout: float, retry: str
) -> Path:
    """Download ``url`` to ``dest``, atomically, only if it is ``size`` bytes with ``sha1``.

    ``retry`` is the armvww subcommand that retries (and verifies a copy put in place by
    hand), used in the error's hint.

    Raises:
        FetchError: network/HTTP failure, a short, long or wrong download (nothing written),
            or ``dest`` cannot be written (the previous file, if any, is unchanged).
    """
    manual = (
        f"Without network: get {dest.name} ({size} bytes, SHA-1 {sha1}) from {url} another "
        f"way, copy it to {dest}, then run `{hints.command(retry)}` to verify it"
    )
    log.info("downloading %s from %s", what, url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            data = resp.read(size + 1)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        why = getattr(exc, "reason", None) or exc
        if isinstance(exc, urllib.error.HTTPError):
            why = f"HTTP {exc.code} {exc.reason}"
        raise FetchError(
            f"downloading {what} from {url} failed ({type(exc).__name__}: {why}). {manual}"
        ) from exc
    got = hashlib.sha1(data).hexdigest()
    if len(data) != size or got != sha1:
        raise FetchError(
            f"download of {what} from {url} is {len(data)} bytes with SHA-1 {got}; expected "
            f"{size} bytes with SHA-1 {sha1}. Nothing was written. {manual}"
        )
    try:
        write_atomic(dest, data)
    except OSError as exc:
        raise FetchError(
            f"downloaded {what} but could not write {dest}: {exc}; the previous file, "
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
