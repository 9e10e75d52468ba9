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

from . import preprocess
from .model import Model


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
