"""The parity run behind ``armvww parity``: the same int8 inputs through backends and a
reference, the report (see :data:`SCHEMA`) and its text form.

Per backend: max |delta| in LSB and in logit units, share of exact logits, per-byte RMSE
(ExecuteNetwork's ``--compare-with-tflite`` measure), argmax agreement and the decision flips
that are not near-ties; the verdict against the :class:`~armvww.analysis.parity.Contract`.
With ``per_layer``, every operator output of each backend is compared against the reference
in the same configuration (tensors exposed as extra outputs by rewriting the model) on the
inputs where that backend differed most, and the first layer over the contract, the first
inexact layer and the worst layer are reported.

The report's ``exit_code``: 0 every backend compared meets the contract;
:data:`EXIT_CONTRACT_BROKEN` (3) some backend breaks it; 16 (``BackendUnavailableError``) a
backend named explicitly could not run, or there was nothing to compare.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from ..detector import Detector
from ..errors import ArmvwwError, BackendUnavailableError, OptionError
from ..model import Model
from ..pipeline import PlanSpec, prepared
from . import parity
from .common import BackendEntry, advance, entry_options, progress_or_silent

log = logging.getLogger(__name__)

#: Exit code when at least one backend breaks the contract.
EXIT_CONTRACT_BROKEN = 3
#: Version of the JSON layout.
SCHEMA = "armvww.parity/1"
#: Inputs re-run per backend for ``--per-layer`` (the worst input first, then flips).
PER_LAYER_INPUTS = 4


def check_candidate(model: Model, candidate: Model) -> None:
    """Check that ``candidate`` can stand in for ``model`` (same input and output shapes).

    Raises:
        OptionError: the shapes differ.
    """
    if candidate.input.shape != model.input.shape or candidate.output.shape != model.output.shape:
        raise OptionError(
            f"--candidate-model {candidate.name} has input {candidate.input.shape} / output "
            f"{candidate.output.shape}; the model has {model.input.shape} / {model.output.shape}"
        )


def parity_inputs(
    model: Model,
    n_generated: int,
    seed: int,
    paths: Sequence[str],
    reference: BackendEntry,
    workers: PlanSpec = "auto",
) -> list[np.ndarray]:
    """``n_generated`` seeded inputs, then the images at ``paths`` quantised by the shared
    preprocessing (through the reference's Detector; decoded by the pipeline, ``workers`` as
    in :meth:`armvww.Detector.iter_detect`).

    Raises:
        OptionError: no inputs at all.
        ImageDecodeError, InputError: an image cannot be used.
        BackendUnavailableError: the reference cannot run (only when there are images).
    """
    qs = parity.generated_inputs(model, n_generated, seed) if n_generated else []
    if paths:
        with Detector(model, backend=reference.name, options=entry_options(reference)) as det:
            for _, out in prepared(det.quantize_stage, paths, workers):  # pipelined, in order
                if isinstance(out, ArmvwwError):
                    raise out
                qs.append(out)
    if not qs:
        raise OptionError("no inputs: give --inputs N (> 0) or --images")
    return qs


def _run_outputs(
    model: Model, entry: BackendEntry, qs: Sequence[np.ndarray], prog: tqdm[Any]
) -> tuple[np.ndarray, str]:
    """Raw outputs of ``entry`` on ``qs`` (n, 2), and a description of the runtime."""
    with Detector(model, backend=entry.name, options=entry_options(entry)) as det:
        outs = []
        for q in qs:
            outs.append(det.run(q))
            advance(prog, 1, entry.label)
        info = det.session_info
        desc = det.runtime
        if "delegate" in info:
            desc += f", delegate {info['delegate']}"
        if info.get("emulated"):
            desc += " (emulated)"
        return parity.stack(outs), desc


def _layer_inputs(st: parity.ParityStats, n: int, limit: int) -> list[int]:
    picks = [st.worst_input, *st.disagreements, *st.flips]
    out: list[int] = []
    for i in picks:
        if 0 <= i < n and i not in out:
            out.append(i)
    return out[:limit]


def run_parity(
    model: Model,
    entries: Sequence[BackendEntry],
    reference: BackendEntry,
    qs: Sequence[np.ndarray],
    contract: parity.Contract,
    *,
    per_layer: bool = False,
    per_layer_inputs: int = PER_LAYER_INPUTS,
    candidate_model: Model | None = None,
    explicit: bool = True,
    progress: tqdm[Any] | None = None,
) -> dict[str, Any]:
    """Run the comparison; return the JSON-ready report (see :data:`SCHEMA`).

    ``candidate_model`` (same inputs and outputs as ``model``) is what the backends run; the
    reference always runs ``model``. A backend that cannot run is listed under ``skipped``.

    Raises:
        BackendUnavailableError: the reference cannot run.
        ValueError: no inputs.
    """
    if not qs:
        raise ValueError("parity needs at least one input")
    cand = candidate_model or model
    prog = progress_or_silent(progress, len(qs) * (1 + len(entries)))
    ref_out, ref_desc = _run_outputs(model, reference, qs, prog)
    assert model.output.scale is not None
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for e in entries:
        try:
            got, desc = _run_outputs(cand, e, qs, prog)
        except ArmvwwError as exc:
            log.info("parity: %s skipped: %s", e.label, exc)
            skipped.append({"backend": e.label, "reason": f"{type(exc).__name__}: {exc}"})
            advance(prog, len(qs))
            continue
        st = parity.compare(e.label, got, ref_out, model.output.scale, contract, reference.label)
        row: dict[str, Any] = {"backend": e.label, "runtime": desc, **st.as_dict()}
        if per_layer:
            ids = _layer_inputs(st, len(qs), per_layer_inputs)
            try:
                rep = parity.per_layer(
                    model,
                    e.name,
                    [qs[i] for i in ids],
                    entry_options(e),
                    contract,
                    input_ids=ids,
                    candidate_model=candidate_model,
                    reference=reference.name,
                    reference_options=entry_options(reference),
                )
                row["per_layer"] = rep.as_dict()
            except ArmvwwError as exc:
                row["per_layer"] = {"error": f"{type(exc).__name__}: {exc}"}
        results.append(row)
    prog.close()
    broken = [r["backend"] for r in results if not r["ok"]]
    if broken:
        code = EXIT_CONTRACT_BROKEN
    elif (skipped and explicit) or not results:
        code = BackendUnavailableError.exit_code
    else:
        code = 0
    return {
        "schema": SCHEMA,
        "model": {"name": model.name, "sha1": model.sha1, "source": model.source},
        "candidate_model": None
        if candidate_model is None
        else {"name": cand.name, "sha1": cand.sha1, "source": cand.source},
        "reference": {"backend": reference.label, "runtime": ref_desc},
        "n_inputs": len(qs),
        "contract": dataclasses.asdict(contract),
        "results": results,
        "skipped": skipped,
        "broken": broken,
        "ok": not broken,
        "exit_code": code,
    }


def to_text(report: dict[str, Any], inputs_desc: str = "") -> str:
    """The human-readable report."""
    c = report["contract"]
    lines = [
        f"model {report['model']['name']} ({report['model']['sha1'][:12]}), "
        f"{report['n_inputs']} inputs{inputs_desc}",
        f"reference {report['reference']['backend']} ({report['reference']['runtime']})",
        f"contract: max |d| <= {c['tolerance_lsb']} LSB; a flipped decision is forgiven when "
        f"the reference margin is <= {c['near_tie_lsb']} LSB",
    ]
    if report.get("candidate_model"):
        cm = report["candidate_model"]
        lines.append(f"backends run the candidate model {cm['name']} ({cm['sha1'][:12]})")
    stats = [_stats_of(r) for r in report["results"]]
    if stats:
        lines += ["", parity.format_table(stats)]
    for r in report["results"]:
        if r["flips"]:
            fl = ", ".join(
                f"#{i} (margin {m}{'' if m <= c['near_tie_lsb'] else ', HARD'})"
                for i, m in zip(r["flips"], r["flip_margins"], strict=True)
            )
            lines.append(f"flips {r['backend']}: {fl}")
    for r in report["results"]:
        lines.append(f"runtime {r['backend']}: {r['runtime']}")
    for s in report["skipped"]:
        lines.append(f"skipped {s['backend']}: {s['reason']}")
    layered = [r for r in report["results"] if "per_layer" in r]
    if layered:
        ref = report["reference"]["backend"]
        lines += ["", f"per layer, every operator output against {ref} (same configuration):"]
    for r in layered:
        pl = r["per_layer"]
        if "error" in pl:
            lines.append(f"  {r['backend']}: not available: {pl['error']}")
            continue
        rep = _layer_report_of(pl)
        head = f"  {r['backend']} on inputs {pl['inputs']}"
        if pl["output_unchanged"] is False:
            head += " (note: exposing the tensors changed its final output)"
        if pl.get("reference_unchanged") is False:
            head += " (note: exposing the tensors changed the reference's final output)"
        lines.append(head + ":")
        over = rep.first_over
        if over is not None:
            lines.append(
                f"    first layer over {c['tolerance_lsb']} LSB: {parity.format_layer(over)}"
            )
        else:
            lines.append(f"    no layer exceeds {c['tolerance_lsb']} LSB")
        first = rep.first_inexact
        lines.append(
            "    first inexact layer: "
            + (parity.format_layer(first) if first else "none (bit-exact throughout)")
        )
        worst = rep.worst
        if worst is not None and worst.max_abs_lsb > 0:
            lines.append(f"    worst layer: {parity.format_layer(worst)}")
    lines.append("")
    lines.append(
        "verdict: "
        + ("every backend meets the contract" if report["ok"] else f"BROKEN by {report['broken']}")
    )
    return "\n".join(lines)


def _stats_of(r: dict[str, Any]) -> parity.ParityStats:
    keys = {f.name for f in dataclasses.fields(parity.ParityStats)}
    d = {k: v for k, v in r.items() if k in keys}
    d["contract"] = parity.Contract(**r["contract"])
    return parity.ParityStats(**d)


def _layer_report_of(pl: dict[str, Any]) -> parity.LayerReport:
    def layer(d: dict[str, Any]) -> parity.LayerStats:
        return parity.LayerStats(**{**d, "shape": tuple(d["shape"])})

    return parity.LayerReport(
        backend=pl["backend"],
        reference=pl["reference"],
        inputs=pl["inputs"],
        layers=[layer(d) for d in pl["layers"]],
        contract=parity.Contract(**pl["contract"]),
        output_unchanged=pl["output_unchanged"],
        reference_unchanged=pl.get("reference_unchanged"),
    )
