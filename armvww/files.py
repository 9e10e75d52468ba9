"""Reading the files armvww is pointed at (images, models, caches, label lists) safely.

Whatever a path names (a FIFO with no writer, ``/dev/zero``, a directory, a file swapped
while it is opened), reading it neither hangs nor reads without bound: every read is of a
regular file, checked on the open descriptor, and bounded.
"""

from __future__ import annotations

import os
import stat

from .errors import ArmvwwError, InputError

#: What reading and decoding an untrusted cache file of our own (JSON verdicts, the
#: ``fastest`` choice) can raise: each means "unsound, ignore it and measure again".
UNSOUND_CACHE_ERRORS: tuple[type[BaseException], ...] = (
    ArmvwwError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    RecursionError,
    MemoryError,
)


def read_regular_file(
    path: str | os.PathLike[str], limit: int, what: str, error: type[ArmvwwError]
) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes.

    The file is opened with ``O_NONBLOCK`` (a FIFO with no writer cannot hang the open) and
    checked with ``fstat`` on the open descriptor before anything is read (a FIFO, a device
    such as ``/dev/zero`` or a directory is refused; no race with a swapped path), and at
    most ``limit + 1`` bytes are ever read.

    Raises:
        InputError: the path is not a str/PathLike, or contains a NUL byte.
        error: (the given ArmvwwError subclass) the path does not exist, cannot be opened or
            read (ENAMETOOLONG, EACCES...), is not a regular file, or is over ``limit``.
    """
    try:
        name = os.fspath(path)
    except TypeError as exc:
        raise InputError(
            f"{what} path must be a str or os.PathLike, got {type(path).__name__}"
        ) from exc
    if "\0" in (name if isinstance(name, str) else name.decode("latin-1")):
        raise InputError(f"{what} path {name!r} contains a NUL byte")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise error(f"{what} {name!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise error(f"{what} {name!r} is a directory") from exc
    except OSError as exc:
        raise error(f"{what} {name!r} cannot be read: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{what} {name!r} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {name!r} is not a regular file (a FIFO, device or socket)")
        if st.st_size > limit:
            raise error(
                f"{what} {name!r} is {st.st_size} bytes, over the limit of {limit} bytes for "
                f"{what} files"
            )
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except ArmvwwError:
        raise
    except (OSError, MemoryError) as exc:
        raise error(f"{what} {name!r} cannot be read: {exc}") from exc
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{what} {name!r} grew past the {limit}-byte limit while being read")
    return data


def kind(path: str | os.PathLike[str]) -> str | OSError:
    """``"dir"``, ``"file"``, ``"other"`` or ``"missing"`` for ``path`` (symlinks followed),
    or the OSError ``stat`` raised (EACCES, ENAMETOOLONG, ELOOP...), never raised.

    Raises:
        InputError: the path is not a str/PathLike, or contains a NUL byte.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        return exc
    except (ValueError, TypeError) as exc:
        raise InputError(f"path {path!r:.200} is not a valid path: {exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat.S_ISREG(st.st_mode) else "other"
