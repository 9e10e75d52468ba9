"""Known truth for images: label files, and how results compare with them.

A labelled folder holds a ``labels.csv`` (columns ``path`` and ``label``, or a headerless
``path,label``; paths relative to the CSV's folder; labels ``1``/``0``, ``person``/
``no_person``). :func:`truth_for` finds the ``labels.csv`` of the folders given to ``detect``
(or of a file's own folder); :func:`tally` counts right and wrong results against it;
:func:`short_name` keeps displayed paths relative to the folder the user named.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import files, images
from .errors import InputError

#: Largest label file read.
MAX_LABELS_BYTES = 64 * 1024 * 1024
#: The label file looked for beside images.
LABELS_FILE = "labels.csv"
#: Label words by value (1 = person).
NAMES = ("no_person", "person")
_VALUES = {"1": 1, "0": 0, "person": 1, "no_person": 0, "true": 1, "false": 0}


def read_csv(src: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """``(image path, label)`` rows of a label CSV (see the module docs).

    Raises:
        InputError: an unreadable file, a short row, an unknown label, or no rows.
    """
    src = Path(src)
    try:
        raw = files.read_regular_file(src, MAX_LABELS_BYTES, "label file", InputError)
        rows = list(csv.reader(raw.decode("utf-8").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {src} as a CSV of path,label: {exc}") from exc
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{src} is empty; expected rows of path,label")
    head = [c.strip().lower() for c in rows[0]]
    if "path" in head and "label" in head:
        ip, il = head.index("path"), head.index("label")
        rows, first = rows[1:], 2
    else:
        ip, il, first = 0, 1, 1
    out: list[tuple[Path, int]] = []
    for n, row in enumerate(rows, start=first):
        if len(row) <= max(ip, il):
            raise InputError(f"{src}:{n}: expected path,label, got {row!r}")
        found = _VALUES.get(row[il].strip().lower())
        if found is None:
            raise InputError(f"{src}:{n}: unknown label {row[il]!r}; use 1/0 or person/no_person")
        p = Path(row[ip].strip())
        out.append((p if p.is_absolute() else src.parent / p, found))
    if not out:
        raise InputError(f"{src} lists no images")
    return out


def read_labelled(source: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """``(image path, label)`` pairs from a ``person/`` + ``no_person/`` folder or a CSV.

    Raises:
        InputError: not such a folder or CSV, an unknown label, or no images at all.
    """
    src = Path(source)
    out: list[tuple[Path, int]] = []
    if files.kind(src) == "dir":
        for sub, label in (("no_person", 0), ("person", 1)):
            d = src / sub
            if files.kind(d) == "dir":
                out += [(Path(p), label) for p in images.iter_image_paths(d)]
        if not out:
            raise InputError(
                f"{src} has no images under person/ or no_person/; expected those two "
                "subfolders, or give a CSV of path,label"
            )
        return sorted(out)
    if files.kind(src) != "file":
        raise InputError(f"{src} is neither a folder nor a CSV file")
    return read_csv(src)


def _key(p: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(p))


def truth_for(inputs: Iterable[object]) -> tuple[dict[str, int], list[Path]]:
    """The known labels of the images under ``inputs`` (the paths given to ``detect``).

    For each input, the nearest ``labels.csv`` is read: in the folder itself (or, for a file,
    its folder), else in the closest folder above it. Returns
    ``({absolute normalised image path: label}, [label files read])``; inputs that are not
    paths, or have no label file, contribute nothing.

    Raises:
        InputError: a label file that exists but cannot be parsed.
    """
    truth: dict[str, int] = {}
    files: list[Path] = []
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            continue
        csv_path = _nearest_label_file(Path(item))
        if csv_path is None or csv_path in files:
            continue
        files.append(csv_path)
        for path, label in read_csv(csv_path):
            truth[_key(path)] = label
    return truth, files


def _nearest_label_file(p: Path) -> Path | None:
    start = Path(_key(p))
    for d in (start, *start.parents) if files.kind(start) == "dir" else start.parents:
        f = d / LABELS_FILE
        if files.kind(f) in ("file", "other"):  # a FIFO or device fails when read, loudly
            return f
    return None


def short_name(source: str, roots: Sequence[str | os.PathLike[str]]) -> str:
    """``source`` relative to the first folder of ``roots`` that holds it (the folders the
    user named), else unchanged."""
    src = _key(source)
    for r in roots:
        if files.kind(r) == "dir":
            root = _key(r)
            if src.startswith(root + os.sep):
                return os.path.relpath(src, root)
    return source


class _Result(Protocol):
    @property
    def source(self) -> str | None: ...
    @property
    def person(self) -> bool: ...
    @property
    def ok(self) -> bool: ...


@dataclass(frozen=True)
class Tally:
    """Results against known truth: ``right + wrong`` images had a label and a result."""

    right: int = 0
    wrong: int = 0
    unlabelled: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        """Every result counted (labelled, unlabelled and failed)."""
        return self.right + self.wrong + self.unlabelled + self.failed

    def line(self) -> str:
        """One summary line, e.g. ``9 of 13 right (4 wrong)``."""
        judged = self.right + self.wrong
        text = f"{self.right} of {judged} right ({self.wrong} wrong)"
        extra = []
        if self.unlabelled:
            extra.append(f"{self.unlabelled} without a label")
        if self.failed:
            extra.append(f"{self.failed} failed")
        return text + (f"; {', '.join(extra)}" if extra else "")


def truth_of(result: _Result, truth: dict[str, int]) -> int | None:
    """The known label (1 = person) of one result's image, or None."""
    return truth.get(_key(result.source)) if result.source else None


def tally(results: Iterable[_Result], truth: dict[str, int]) -> Tally:
    """Count right and wrong decisions among ``results`` against ``truth``."""
    right = wrong = unlabelled = failed = 0
    for r in results:
        if not r.ok:
            failed += 1
            continue
        t = truth_of(r, truth)
        if t is None:
            unlabelled += 1
        elif int(r.person) == t:
            right += 1
        else:
            wrong += 1
    return Tally(right, wrong, unlabelled, failed)
