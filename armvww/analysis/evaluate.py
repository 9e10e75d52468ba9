"""``armvww eval``: accuracy, precision, recall and the confusion matrix on labelled images,
for several backends in one run, on the same int8 inputs.

Labelled images come from a directory with ``person/`` and ``no_person/`` subfolders
(searched recursively) or a CSV with ``path`` and ``label`` columns (a header row naming
them, or the first two columns of a headerless file; relative paths are relative to the
CSV's folder; labels ``1``/``0``, ``person``/``no_person``). "Positive" means person.

Each image is decoded and preprocessed once (the shared preprocessing); every backend runs
the same int8 tensor, so the backends' decisions differ only by their arithmetic.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import preprocess
from ..detector import Detector
from ..errors import ArmvwwError, InputError
from ..labels import read_labelled
from ..model import Model
from ..pipeline import PlanSpec, Preparer, prepared
from .common import BackendEntry, advance, entry_options, progress_or_silent

log = logging.getLogger(__name__)

#: Version of the JSON layout.
SCHEMA = "armvww.eval/1"


@dataclass(frozen=True)
class Confusion:
    """Confusion counts with person as the positive class."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @classmethod
    def of(cls, labels: Sequence[int], decisions: Sequence[int]) -> Confusion:
        """Counts from true labels and decisions (1 = person)."""
        pairs = list(zip(labels, decisions, strict=True))
        return cls(
            tp=sum(1 for y, d in pairs if y == 1 and d == 1),
            fp=sum(1 for y, d in pairs if y == 0 and d == 1),
            tn=sum(1 for y, d in pairs if y == 0 and d == 0),
            fn=sum(1 for y, d in pairs if y == 1 and d == 0),
        )

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else math.nan

    @property
    def precision(self) -> float:
        """tp / (tp + fp); NaN when nothing was called person."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        """tp / (tp + fn); NaN when there is no person image."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    def matrix(self) -> list[list[int]]:
        """Rows = truth (no_person, person), columns = decision (no_person, person)."""
        return [[self.tn, self.fp], [self.fn, self.tp]]

    def as_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 6)

        return {
            "n": self.n,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "matrix": self.matrix(),
            "accuracy": num(self.accuracy),
            "precision": num(self.precision),
            "recall": num(self.recall),
        }


@dataclass
class BackendResult:
    """One backend's decisions on the evaluated images (same order as the images)."""

    backend: str
    runtime: str = ""
    raw: list[list[int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    decisions: list[int] = field(default_factory=list)
    confusion: Confusion = field(default_factory=Confusion)
    error: str | None = None


def evaluate(
    items: Sequence[tuple[Path, int]],
    entries: Sequence[BackendEntry],
    model: Model,
    threshold: float = 0.5,
    progress: tqdm[Any] | None = None,
    workers: PlanSpec = "auto",
) -> dict[str, Any]:
    """Run every backend on every labelled image; return the JSON-ready report.

    The images are decoded and preprocessed once, by the pipeline (:mod:`armvww.pipeline`,
    ``workers`` as in :meth:`armvww.Detector.iter_detect`).

    Images that cannot be decoded are listed under ``image_errors`` and left out of every
    backend's figures. A backend that cannot run has ``error`` set.

    Raises:
        InputError: a bad threshold or no images.
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}")
    if not items:
        raise InputError("no labelled images to evaluate")
    prog = progress_or_silent(progress, len(items) * (1 + len(entries)))
    spec, out = model.input, model.output
    assert spec.scale is not None and spec.zero_point is not None
    assert out.scale is not None and out.zero_point is not None
    qs: list[np.ndarray] = []
    kept: list[tuple[Path, int]] = []
    image_errors: list[dict[str, str]] = []
    prep = Preparer(spec.shape, spec.scale, spec.zero_point, side=max(model.input_hw))
    outcomes = prepared(prep, [str(p) for p, _ in items], workers)
    for (path, label), (_, got) in zip(items, outcomes, strict=True):
        if isinstance(got, ArmvwwError):
            image_errors.append({"path": str(path), "error": f"{type(got).__name__}: {got}"})
        else:
            qs.append(got)
            kept.append((path, label))
        advance(prog, 1, f"preprocess {path.name}")
    labels = [y for _, y in kept]
    results: list[BackendResult] = []
    for e in entries:
        r = BackendResult(e.label)
        try:
            with Detector(model, backend=e.name, options=entry_options(e)) as det:
                r.runtime = det.runtime
                for q in qs:
                    raw = det.run(q).reshape(-1)
                    score = preprocess.person_score(raw, out.scale, out.zero_point)
                    r.raw.append([int(v) for v in raw])
                    r.scores.append(score)
                    r.decisions.append(int(preprocess.decide(raw, score, threshold)))
                    advance(prog, 1, e.label)
        except ArmvwwError as exc:
            log.info("eval: %s could not run: %s", e.label, exc)
            r.error = f"{type(exc).__name__}: {exc}"
            advance(prog, len(items))
            results.append(r)
            continue
        r.confusion = Confusion.of(labels, r.decisions)
        results.append(r)
    prog.close()
    return {
        "schema": SCHEMA,
        "model": {"name": model.name, "sha1": model.sha1},
        "threshold": threshold,
        "images": [{"path": str(p), "label": y} for p, y in kept],
        "image_errors": image_errors,
        "results": [
            {
                "backend": r.backend,
                "runtime": r.runtime,
                "error": r.error,
                **({} if r.error else r.confusion.as_dict()),
                "decisions": r.decisions,
                "scores": [round(s, 6) for s in r.scores],
                "raw": r.raw,
            }
            for r in results
        ],
    }


def to_text(report: dict[str, Any], per_image: bool) -> str:
    """The human-readable report: the metrics table, then (optionally) each image."""
    ok = [r for r in report["results"] if not r["error"]]
    lines = [
        f"model {report['model']['name']}, {len(report['images'])} labelled images, "
        f"threshold {report['threshold']}"
    ]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines.append(
        f"{'backend':<22} {'accuracy':>8} {'precision':>9} {'recall':>6}   "
        "confusion [[TN FP] [FN TP]]"
    )
    for r in ok:
        lines.append(
            f"{r['backend']:<22} {pct(r['accuracy']):>8} {pct(r['precision']):>9} "
            f"{pct(r['recall']):>6}   {r['matrix']}"
        )
    for r in report["results"]:
        if r["error"]:
            lines.append(f"{r['backend']:<22} could not run: {r['error']}")
    if per_image and ok:
        width = max([len(Path(i["path"]).name) for i in report["images"]] + [5])
        widths = [max(len(r["backend"]), 15) for r in ok]
        cols = "  ".join(f"{r['backend']:>{w}}" for r, w in zip(ok, widths, strict=True))
        lines += ["", f"{'image':<{width}}  {'truth':<9}  {cols}"]
        for k, item in enumerate(report["images"]):
            truth = "person" if item["label"] else "no_person"
            cells = []
            for r, w in zip(ok, widths, strict=True):
                d = "person" if r["decisions"][k] else "no_person"
                mark = "" if r["decisions"][k] == item["label"] else "*"
                cells.append(f"{d + ' ' + format(r['scores'][k], '.2f') + mark:>{w}}")
            lines.append(f"{Path(item['path']).name:<{width}}  {truth:<9}  {'  '.join(cells)}")
        lines.append("(score = P(person); * = wrong decision)")
    for e in report["image_errors"]:
        lines.append(f"image error {e['path']}: {e['error']}")
    return "\n".join(lines)


__all__ = ["SCHEMA", "BackendResult", "Confusion", "evaluate", "read_labelled"]
