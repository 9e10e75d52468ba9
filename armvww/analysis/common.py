"""What the bench, parity and eval engines share: backend entries and their options, and
the progress bar they advance.

An entry is written ``Name`` or ``Name:key=value:key=value`` (e.g. ``LiteRT:xnnpack=false``);
the keys are fields of the backend's options dataclass. Progress is a :class:`tqdm.tqdm`
made by the caller (the CLI: on stderr when it is a terminal); engines only ``reset`` and
``update`` it, and run without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from .. import backends
from ..errors import InputError, OptionError


@dataclass(frozen=True)
class BackendEntry:
    """One configuration of a backend: a backend name and option overrides.

    Written ``Name`` or ``Name:key=value:key=value`` (e.g. ``LiteRT:xnnpack=false``); the
    keys are fields of the backend's options dataclass.
    """

    name: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> BackendEntry:
        """Parse ``Name[:key=value...]``.

        Raises:
            InputError: an empty name or an override without ``=``.
        """
        name, *parts = [s.strip() for s in text.split(":")]
        if not name:
            raise InputError(f"bad backend entry {text!r}: expected Name[:key=value...]")
        kv: list[tuple[str, Any]] = []
        for part in parts:
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise InputError(f"bad option {part!r} in {text!r}: expected key=value")
            kv.append((key.strip(), _coerce(value.strip())))
        return cls(backends.canonical(name), tuple(kv))

    @property
    def label(self) -> str:
        """How the entry is shown: ``LiteRT`` or ``LiteRT:xnnpack=False``."""
        return ":".join([self.name, *(f"{k}={v}" for k, v in self.overrides)])


def _coerce(value: str) -> Any:
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low == "none":
        return None
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def entry_options(
    entry: BackendEntry, defaults: Mapping[str, Any] | None = None
) -> backends.BackendOptions | None:
    """The options dataclass of ``entry``: ``defaults`` for the fields the backend's options
    have (others are ignored), then the entry's own overrides.

    Raises:
        BackendUnavailableError: no backend of that name.
        OptionError: an override names a field the backend's options do not have, or a value
            the options reject.
    """
    otype = backends.get(entry.name).options_type
    if otype is None:
        if entry.overrides:
            raise OptionError(f"backend {entry.name} takes no options; got {entry.label}")
        return None
    names = {f.name for f in dataclasses.fields(otype)}
    kw = {k: v for k, v in (defaults or {}).items() if k in names and v is not None}
    bad = [key for key, _ in entry.overrides if key not in names]
    if bad:
        raise OptionError(
            f"{otype.__name__} has no option {', '.join(map(repr, bad))}; "
            f"it has {', '.join(sorted(names))}"
        )
    kw.update(entry.overrides)
    try:
        return otype(**kw)
    except TypeError as exc:
        raise OptionError(f"bad options for {entry.label}: {exc}") from exc


def _parts(spec: Sequence[str]) -> Iterator[str]:
    """The comma-separated, possibly repeated items of ``spec`` (``all`` when empty)."""
    for value in spec or ["all"]:
        for part in (p.strip() for p in value.split(",")):
            if part:
                yield part


def registered_entries(spec: Sequence[str]) -> list[BackendEntry]:
    """Entries of ``spec``, where ``all`` is every registered backend (available or not: the
    bench reports why one could not run). Repeats are kept.

    Raises:
        InputError: a malformed entry.
    """
    out: list[BackendEntry] = []
    for part in _parts(spec):
        if part.lower() == "all":
            out += [BackendEntry(n) for n in backends.names()]
        else:
            out.append(BackendEntry.parse(part))
    return out


def expand_backends(
    spec: Sequence[str], reference: BackendEntry
) -> tuple[list[BackendEntry], bool]:
    """Backend entries to compare, and whether they were named explicitly.

    ``all`` means every registered backend that is available here, except the reference
    itself (naming it explicitly compares it with itself, useful with a candidate model);
    with the default LiteRT (XNNPACK) reference it adds ``LiteRT:xnnpack=False``
    (LiteRT's built-in kernels, a real second configuration). Repeats are dropped.

    Raises:
        InputError: a malformed entry.
    """
    out: list[BackendEntry] = []
    explicit = True
    for part in _parts(spec):
        if part.lower() == "all":
            explicit = False
            for name in backends.names():
                if name == reference.name and not reference.overrides:
                    if name == "LiteRT":
                        out.append(BackendEntry("LiteRT", (("xnnpack", False),)))
                    continue
                if backends.availability(name).available:
                    out.append(BackendEntry(name))
        else:
            out.append(BackendEntry.parse(part))
    seen: set[str] = set()
    unique = []
    for e in out:
        if e.label not in seen:
            seen.add(e.label)
            unique.append(e)
    return unique, explicit


def progress_or_silent(progress: tqdm[Any] | None, total: int) -> tqdm[Any]:
    """``progress`` reset to ``total`` units, or a disabled bar when there is none."""
    bar = progress if progress is not None else tqdm(disable=True)
    bar.reset(total=max(total, 1))
    return bar


def advance(bar: tqdm[Any], n: int, label: str | None = None) -> None:
    """Advance ``bar`` by ``n`` units; ``label`` names the current work."""
    if label is not None:
        bar.set_description_str(label[:40], refresh=False)
    bar.update(n)
