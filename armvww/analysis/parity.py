"""Backend parity: compare raw int8 outputs of a backend against a reference, and the contract.

Bit-exactness across runtimes is promised by nobody (the TFLite and Arm NN maintainers say
so), so parity is measured and bounded by evidence. For each backend, on the same int8 inputs:

* ``max_abs_lsb``: largest |output - reference| in quantised steps (LSB) over all logits;
  ``max_abs_logit`` the same in dequantised logit units;
* ``exact_share``: share of logits that are bit-identical;
* ``rmse_per_byte``: root mean square of the byte differences (what Arm NN's ExecuteNetwork
  ``--compare-with-tflite`` prints);
* ``argmax_agreement``: share of inputs with the same decision (argmax);
* ``disagreements``: the inputs whose decision differs although the reference margin
  ``|logit1 - logit0|`` is above ``near_tie_lsb`` (near-ties are expected to flip).

The :class:`Contract` holds ``tolerance_lsb`` and ``near_tie_lsb``; its defaults come from
measurements on this project's machines (see the README, "Backend parity").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .. import preprocess
from ..backends.litert import LiteRTOptions
from ..errors import BackendError, UnsupportedModelError
from ..model import Model, tflite_build
from ..select import open_session


@dataclass(frozen=True)
class Contract:
    """What a backend must meet against the reference.

    Attributes:
        tolerance_lsb: largest allowed |difference| of any output logit, in LSB.
        near_tie_lsb: a decision flip is forgiven when the reference margin between the two
            logits is at most this many LSB.
    """

    tolerance_lsb: int = 32
    near_tie_lsb: int = 16


@dataclass
class ParityStats:
    """Parity of one backend against the reference over the same inputs."""

    backend: str
    reference: str
    n_inputs: int
    max_abs_lsb: int
    max_abs_logit: float
    exact_share: float
    rmse_per_byte: float
    argmax_agreement: float
    flips: list[int] = field(default_factory=list)
    disagreements: list[int] = field(default_factory=list)
    worst_input: int = -1
    contract: Contract = field(default_factory=Contract)
    #: reference margin ``|logit1 - logit0|`` (LSB) of each input in ``flips``, same order.
    flip_margins: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the backend meets the contract."""
        return self.max_abs_lsb <= self.contract.tolerance_lsb and not self.disagreements

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def compare(
    backend: str,
    outputs: np.ndarray,
    reference_outputs: np.ndarray,
    output_scale: float,
    contract: Contract | None = None,
    reference: str = "LiteRT",
) -> ParityStats:
    """Parity statistics of ``outputs`` against ``reference_outputs``.

    Both are int8 arrays of shape ``(n, 2)`` (one row per input, same order).

    Raises:
        ValueError: shapes differ or are not ``(n, 2)``.
    """
    contract = contract or Contract()
    a = np.asarray(outputs).reshape(len(outputs), -1).astype(np.int64)
    r = np.asarray(reference_outputs).reshape(len(reference_outputs), -1).astype(np.int64)
    if a.shape != r.shape or a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
        raise ValueError(f"outputs {a.shape} and reference {r.shape} must both be (n, 2), n > 0")
    diff = np.abs(a - r)
    max_lsb = int(diff.max())
    decided = np.argmax(a, axis=1)
    ref_decided = np.argmax(r, axis=1)
    flips = np.nonzero(decided != ref_decided)[0]
    margin = np.abs(r[:, 1] - r[:, 0])
    hard = [int(i) for i in flips if margin[i] > contract.near_tie_lsb]
    return ParityStats(
        backend=backend,
        reference=reference,
        n_inputs=len(a),
        max_abs_lsb=max_lsb,
        max_abs_logit=float(max_lsb * output_scale),
        exact_share=float((diff == 0).mean()),
        rmse_per_byte=float(np.sqrt((diff.astype(np.float64) ** 2).mean())),
        argmax_agreement=float((decided == ref_decided).mean()),
        flips=[int(i) for i in flips],
        disagreements=hard,
        worst_input=int(np.argmax(diff.max(axis=1))),
        contract=contract,
        flip_margins=[int(margin[i]) for i in flips],
    )


def generated_inputs(model: Model, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` seeded, image-like int8 inputs made through the shared preprocessing.

    Each is a random low-resolution colour pattern upscaled to a random size, plus noise, so
    that the inputs look like photos to the model (smooth regions, edges, full range) rather
    than white noise. The same ``(model input shape, n, seed)`` gives the same bytes.
    """
    rng = np.random.default_rng(seed)
    s = model.input
    assert s.scale is not None and s.zero_point is not None
    out = []
    for _ in range(n):
        lo_h, lo_w = (int(v) for v in rng.integers(2, 12, size=2))
        lo = rng.integers(0, 256, size=(lo_h, lo_w, 3), dtype=np.uint8)
        h, w = (int(v) for v in rng.integers(32, 257, size=2))
        img = Image.fromarray(lo, "RGB").resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(img).astype(np.int16)
        arr = arr + rng.integers(-12, 13, size=arr.shape, dtype=np.int16)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        out.append(preprocess.image_to_input(img, s.shape, s.scale, s.zero_point))
    return out


def stack(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Stack raw outputs of shape (1, 2) or (2,) into an int8 (n, 2) array."""
    return np.stack([np.asarray(o, dtype=np.int8).reshape(-1) for o in outputs])


# ----------------------------------------------------------------------------- per layer
#
# Per-layer parity compares every operator output of a candidate against the reference on
# the same inputs. LiteRT can keep every tensor readable (``experimental_preserve_all_tensors``)
# but only with its built-in kernels, which are not XNNPACK: on vww2/vww4 they differ from
# XNNPACK by up to 11 LSB at the output while Arm NN CpuRef is within 1-3 LSB of XNNPACK.
# So, like with like: any runtime that is not LiteRT-with-preserve (Arm NN, LiteRT with
# XNNPACK) runs a rewritten copy of the model whose extra subgraph outputs are those tensors
# (:func:`armvww.model.tflite_build.with_extra_outputs`); nothing else in the graph changes, and
# whether its final output stayed the same is checked and reported.


@dataclass(frozen=True)
class LayerStats:
    """Divergence of one operator's output tensor against the reference.

    Attributes:
        position: execution position of the operator (0-based).
        op: the operator type (``CONV_2D``...).
        tensor: index of its output tensor in subgraph 0.
        name: the tensor's name.
        shape: the tensor's shape.
        scale: the tensor's quantisation scale (``None`` when not per-tensor).
        max_abs_lsb: largest |candidate - reference| over all elements and inputs, in LSB.
        max_abs_real: the same in real units (``max_abs_lsb * scale``).
        exact_share: share of bit-identical elements.
        rmse_per_byte: root mean square of the element differences.
        n_values: number of elements compared (all inputs).
    """

    position: int
    op: str
    tensor: int
    name: str
    shape: tuple[int, ...]
    scale: float | None
    max_abs_lsb: int
    max_abs_real: float
    exact_share: float
    rmse_per_byte: float
    n_values: int

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class LayerReport:
    """Per-layer parity of one candidate against the reference, in execution order."""

    backend: str
    reference: str
    inputs: list[int]
    layers: list[LayerStats]
    contract: Contract = field(default_factory=Contract)
    #: the candidate's final output on the rewritten network equals its output on the
    #: original network (``None`` when not checked: the candidate needed no rewriting).
    output_unchanged: bool | None = None
    #: the same for the reference.
    reference_unchanged: bool | None = None

    @property
    def first_inexact(self) -> LayerStats | None:
        """The first layer whose output differs at all from the reference."""
        return next((s for s in self.layers if s.max_abs_lsb > 0), None)

    @property
    def first_over(self) -> LayerStats | None:
        """The first layer whose divergence exceeds the contract's ``tolerance_lsb``."""
        return next((s for s in self.layers if s.max_abs_lsb > self.contract.tolerance_lsb), None)

    @property
    def worst(self) -> LayerStats | None:
        """The layer with the largest divergence in LSB (the first of equals)."""
        if not self.layers:
            return None
        return max(self.layers, key=lambda s: (s.max_abs_lsb, -s.position))

    def as_dict(self) -> dict[str, Any]:
        def one(s: LayerStats | None) -> dict[str, Any] | None:
            return None if s is None else s.as_dict()

        return {
            "backend": self.backend,
            "reference": self.reference,
            "inputs": list(self.inputs),
            "contract": asdict(self.contract),
            "output_unchanged": self.output_unchanged,
            "reference_unchanged": self.reference_unchanged,
            "first_over": one(self.first_over),
            "first_inexact": one(self.first_inexact),
            "worst": one(self.worst),
            "layers": [s.as_dict() for s in self.layers],
        }


def tensor_stats(candidate: np.ndarray, reference: np.ndarray) -> tuple[int, float, float]:
    """(max |difference| in LSB, exact share, RMSE) of two integer arrays of equal shape.

    The difference is taken in int64, so no wrap-around whatever the dtype.

    Raises:
        ValueError: the shapes differ, or the arrays are empty.
    """
    a = np.asarray(candidate)
    r = np.asarray(reference)
    if a.shape != r.shape or a.size == 0:
        raise ValueError(f"candidate {a.shape} and reference {r.shape} must match and be non-empty")
    diff = np.abs(a.astype(np.int64) - r.astype(np.int64))
    return (
        int(diff.max()),
        float((diff == 0).mean()),
        float(np.sqrt((diff.astype(np.float64) ** 2).mean())),
    )


def compare_layers(
    model: Model,
    candidate: dict[int, np.ndarray],
    reference: dict[int, np.ndarray],
    *,
    backend: str,
    reference_name: str = "LiteRT (built-in kernels)",
    inputs: Sequence[int] = (),
    contract: Contract | None = None,
) -> LayerReport:
    """Compare captured tensors (``tensor index -> stacked values``) operator by operator.

    Only operator outputs present in both mappings are compared, in execution order.

    Raises:
        ValueError: a tensor's captured shapes differ between candidate and reference.
    """
    layers: list[LayerStats] = []
    for pos, op in enumerate(model.operators):
        for t in op.outputs:
            if t < 0 or t not in candidate or t not in reference:
                continue
            spec = model.tensors[t]
            try:
                max_lsb, exact, rmse = tensor_stats(candidate[t], reference[t])
            except ValueError as exc:
                raise ValueError(f"tensor {t} ({spec.name!r}) after {op.op}: {exc}") from exc
            layers.append(
                LayerStats(
                    position=pos,
                    op=op.op,
                    tensor=t,
                    name=spec.name,
                    shape=tuple(spec.shape),
                    scale=spec.scale,
                    max_abs_lsb=max_lsb,
                    max_abs_real=float(max_lsb * (spec.scale or 0.0)),
                    exact_share=exact,
                    rmse_per_byte=rmse,
                    n_values=int(np.asarray(reference[t]).size),
                )
            )
    return LayerReport(
        backend=backend,
        reference=reference_name,
        inputs=list(inputs),
        layers=layers,
        contract=contract or Contract(),
    )


def capture_tensors(
    model: Model,
    backend: str,
    inputs: Sequence[np.ndarray],
    options: Any = None,
    tensors: Sequence[int] | None = None,
    candidate_model: Model | None = None,
) -> tuple[dict[int, np.ndarray], bool | None]:
    """Run ``inputs`` on ``backend`` and capture intermediate tensors.

    ``tensors`` defaults to every operator output; the model's output is always included.
    Returns ``({tensor index: values stacked over inputs}, output_unchanged)``: LiteRT with
    ``preserve_all_tensors`` reads its tensors directly (``output_unchanged`` is ``None``);
    any other backend runs a copy of the model rewritten so that the tensors are extra
    outputs, and ``output_unchanged`` says whether its final outputs equal those of the
    original network on the same backend (exposing a tensor can stop a fusion).

    ``candidate_model`` (same graph as ``model``, e.g. with changed weights) is what runs;
    ``model`` only supplies the tensor list.

    Raises:
        BackendUnavailableError, BackendError, OptionError: the backend cannot run it.
        UnsupportedModelError: the backend cannot expose intermediate tensors.
    """
    import dataclasses

    run_model = candidate_model or model
    idx = list(tensors) if tensors is not None else tflite_build.all_intermediate_tensors(model)
    out_t = model.output.index
    captured: dict[int, list[np.ndarray]] = {t: [] for t in [*idx, out_t]}
    direct = isinstance(options, LiteRTOptions) and options.preserve_all_tensors
    if direct:
        session, _ = open_session(run_model, backend, options)
        try:
            it = getattr(session, "interpreter", None)
            if it is None:
                raise UnsupportedModelError(f"{backend} cannot preserve its tensors")
            for q in inputs:
                session.run(q)
                for t in captured:
                    captured[t].append(np.array(it.get_tensor(t), copy=True))
        finally:
            session.close()
        return {t: np.stack(v) for t, v in captured.items()}, None

    rewritten = dataclasses.replace(
        run_model, data=tflite_build.with_extra_outputs(run_model.data, idx), known=None
    )
    plain, _ = open_session(run_model, backend, options)
    try:
        expected = [np.array(plain.run(q), copy=True) for q in inputs]
    finally:
        plain.close()
    session, _ = open_session(rewritten, backend, options)
    unchanged = True
    try:
        for q, want in zip(inputs, expected, strict=True):
            outs = _all_outputs(session, q, [model.output.index, *idx])
            if len(outs) != len(idx) + 1:
                raise BackendError(
                    f"{backend} returned {len(outs)} outputs for a network with {len(idx) + 1}"
                )
            unchanged = unchanged and np.array_equal(
                np.asarray(outs[0]).reshape(-1), np.asarray(want).reshape(-1)
            )
            captured[out_t].append(np.asarray(outs[0]).reshape(model.output.shape).copy())
            for t, v in zip(idx, outs[1:], strict=True):
                shape = model.tensors[t].shape
                if int(np.prod(shape)) != np.asarray(v).size:
                    raise BackendError(
                        f"{backend}: output for tensor {t} has {np.asarray(v).size} values, "
                        f"the model says {shape}"
                    )
                captured[t].append(np.asarray(v).reshape(shape).copy())
    finally:
        session.close()
    return {t: np.stack(v) for t, v in captured.items()}, unchanged


def _all_outputs(session: Any, q: np.ndarray, tensor_order: Sequence[int]) -> list[np.ndarray]:
    """Every output of a session on a multi-output network, in subgraph output order."""

    run_all = getattr(session, "run_all", None)
    if run_all is not None:
        outs: list[np.ndarray] = run_all(q)
        return outs
    it = getattr(session, "interpreter", None)
    if it is None:
        raise UnsupportedModelError(
            f"{session.backend} exposes neither run_all() nor an interpreter, so its "
            "intermediate tensors cannot be read"
        )
    session.run(q)
    return [np.array(it.get_tensor(t), copy=True) for t in tensor_order]


def per_layer(
    model: Model,
    backend: str,
    inputs: Sequence[np.ndarray],
    options: Any = None,
    contract: Contract | None = None,
    input_ids: Sequence[int] = (),
    candidate_model: Model | None = None,
    reference: str = "LiteRT",
    reference_options: Any = None,
) -> LayerReport:
    """Locate where ``backend`` diverges: every operator output against ``reference`` (by
    default LiteRT with XNNPACK, the same configuration as the output-level reference) on
    the original ``model``.

    Compare like with like: LiteRT's built-in kernels (the only ones that can
    ``preserve_all_tensors``) differ from XNNPACK by up to 11 LSB at the output on these
    models, so the reference is not read that way unless ``reference_options`` asks for it;
    XNNPACK's tensors are exposed by rewriting, and the report says whether that left the
    reference's final output unchanged (:attr:`LayerReport.reference_unchanged`).

    Raises:
        BackendUnavailableError, BackendError, OptionError, UnsupportedModelError: as
            :func:`capture_tensors`.
    """
    ref, ref_unchanged = capture_tensors(model, reference, inputs, reference_options)
    got, unchanged = capture_tensors(
        model, backend, inputs, options, candidate_model=candidate_model
    )
    ref_name = reference
    if reference_options is not None and getattr(reference_options, "xnnpack", True) is False:
        ref_name += " (built-in kernels)"
    rep = compare_layers(
        model,
        got,
        ref,
        backend=backend,
        reference_name=ref_name,
        inputs=list(input_ids) or list(range(len(inputs))),
        contract=contract,
    )
    rep.output_unchanged = unchanged
    rep.reference_unchanged = ref_unchanged
    return rep


def format_layer(s: LayerStats) -> str:
    """One line about a layer: position, op, tensor and its statistics."""
    scale = f"{s.scale:.4g}" if s.scale else "?"
    name = s.name if len(s.name) <= 40 else s.name[:37] + "..."
    return (
        f"#{s.position} {s.op} -> tensor {s.tensor} {name!r} {list(s.shape)}: "
        f"max |d| {s.max_abs_lsb} LSB ({s.max_abs_real:.4g} at scale {scale}), "
        f"exact {s.exact_share:.1%}, rmse {s.rmse_per_byte:.3f}"
    )


def format_table(stats: Sequence[ParityStats], labels: Sequence[str] | None = None) -> str:
    """A readable table of parity statistics, one row per backend."""
    head = (
        f"{'backend':<22} {'max|d| LSB':>10} {'logit':>7} {'exact':>7} {'rmse/B':>7} "
        f"{'argmax':>7} {'flips':>5} {'hard':>4}  verdict"
    )
    rows = [head]
    for k, s in enumerate(stats):
        name = labels[k] if labels else s.backend
        rows.append(
            f"{name:<22} {s.max_abs_lsb:>10d} {s.max_abs_logit:>7.3f} {s.exact_share:>7.1%} "
            f"{s.rmse_per_byte:>7.3f} {s.argmax_agreement:>7.1%} {len(s.flips):>5d} "
            f"{len(s.disagreements):>4d}  {'ok' if s.ok else 'BROKEN'}"
        )
    return "\n".join(rows)
