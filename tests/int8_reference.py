"""An independent int8 reference for the first layers of a TFLite model, for tests.

Integer arithmetic in numpy (int64 accumulators), restating TFLite's quantised convolution
rules (``tensorflow/lite/kernels/internal/common.h`` and ``quantization_util.cc``):

* the per-channel real multiplier ``input_scale * filter_scale[c] / output_scale`` (in
  double, from the float32 scales) becomes a Q31 mantissa and a shift (``QuantizeMultiplier``:
  ``frexp``, ``round`` half away from zero);
* ``acc = sum((x - input_zp) * w) + bias`` over the padded window (padding holds
  ``input_zp``, i.e. contributes nothing);
* ``out = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << left, mantissa),
  right) + output_zp``, clamped to [-128, 127].

The final right shift has two rounding rules in TFLite's own code: ``rounding="away"`` is
``RoundingDivideByPOT`` of the reference kernels (ties away from zero); ``rounding="up"`` is
the rounding right shift of ruy, the GEMM library behind LiteRT's optimized CONV_2D on x86
and arm64 (NEON ``srshl``: ties toward +inf). They differ only for negative exact ties.
Measured on vww2's first 8 layers (2026-12, ai-edge-litert 2.3.0 built-in kernels): "up" is
bit-exact on every layer; "away" differs by 1 LSB at a handful of ties in the 1x1
convolutions whose output can go below the zero point.

It shares no code with armvww or any runtime: it takes the weights, biases and quantisation
parameters as plain arrays (read from the model file by the caller) and only knows CONV_2D
and DEPTHWISE_CONV_2D with SAME padding, the ops that start the ML-zoo VWW models.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Rounding = Literal["away", "up"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier``: ``real = mantissa * 2**(shift - 31)``, mantissa in Q31."""
    if real == 0.0:
        return 0, 0
    frac, shift = math.frexp(real)
    q = math.floor(abs(frac) * (1 << 31) + 0.5) * (1 if frac > 0 else -1)  # std::round
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` on int32 values held in int64."""
    a = a.astype(np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # fits: |a|, |b| < 2**31
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    high = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C++ division truncates toward zero
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(
    x: np.ndarray, exponent: np.ndarray, rounding: Rounding = "away"
) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT`` (ties away from zero), or with ``rounding="up"``
    ruy's rounding right shift (ties toward +inf)."""
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + ((x < 0) if rounding == "away" else 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(
    acc: np.ndarray,
    multipliers: np.ndarray,
    shifts: np.ndarray,
    out_zp: int,
    rounding: Rounding = "away",
) -> np.ndarray:
    """``MultiplyByQuantizedMultiplier`` per output channel (last axis), + zp, clamp."""
    left = np.maximum(shifts, 0)
    right = np.maximum(-shifts, 0)
    x = acc.astype(np.int64) * (np.int64(1) << left)
    x = np.clip(x, INT32_MIN, INT32_MAX)
    high = saturating_rounding_doubling_high_mul(x, multipliers)
    y = rounding_divide_by_pot(high, right, rounding)
    return np.clip(y + out_zp, -128, 127).astype(np.int8)


def channel_multipliers(
    in_scale: float, w_scales: np.ndarray, out_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    pairs = [
        quantize_multiplier(float(np.float32(in_scale)) * float(ws) / float(np.float32(out_scale)))
        for ws in np.asarray(w_scales, dtype=np.float32)
    ]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def _same_pad(size: int, k: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2  # TFLite puts the smaller half before


def _windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """(N, OH, OW, kh, kw, C) int64 windows of ``x - in_zp`` (already subtracted), SAME."""
    n, h, w, c = x.shape
    oh, pt = _same_pad(h, kh, stride)
    ow, pl = _same_pad(w, kw, stride)
    padded = np.zeros((n, h + kh + stride, w + kw + stride, c), np.int64)
    padded[:, pt : pt + h, pl : pl + w] = x
    out = np.empty((n, oh, ow, kh, kw, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j] = padded[
                :, i : i + oh * stride : stride, j : j + ow * stride : stride
            ]
    return out


def conv2d(
    x: np.ndarray,
    in_zp: int,
    weights: np.ndarray,
    bias: np.ndarray,
    stride: int,
    multipliers: np.ndarray,
    shifts: np.ndarray,
    out_zp: int,
    rounding: Rounding = "away",
) -> np.ndarray:
    """CONV_2D, SAME padding; ``weights`` is (O, kh, kw, I) int8, ``bias`` int32."""
    _, kh, kw, _ = weights.shape
    win = _windows(x.astype(np.int64) - in_zp, kh, kw, stride)
    acc = np.einsum("nhwijc,oijc->nhwo", win, weights.astype(np.int64)) + bias.astype(np.int64)
    return requantize(acc, multipliers, shifts, out_zp, rounding)


def depthwise_conv2d(
    x: np.ndarray,
    in_zp: int,
    weights: np.ndarray,
    bias: np.ndarray,
    stride: int,
    multipliers: np.ndarray,
    shifts: np.ndarray,
    out_zp: int,
    rounding: Rounding = "away",
) -> np.ndarray:
    """DEPTHWISE_CONV_2D (depth multiplier 1), SAME; ``weights`` is (1, kh, kw, C)."""
    _, kh, kw, _ = weights.shape
    win = _windows(x.astype(np.int64) - in_zp, kh, kw, stride)
    acc = np.einsum("nhwijc,ijc->nhwc", win, weights[0].astype(np.int64)) + bias.astype(np.int64)
    return requantize(acc, multipliers, shifts, out_zp, rounding)


def first_layers(
    model: object,
    constant: object,
    x: np.ndarray,
    n_ops: int,
    rounding: Rounding = "away",
    start: int = 0,
) -> dict[int, np.ndarray]:
    """Run the model's operators ``start .. start + n_ops - 1`` (CONV_2D /
    DEPTHWISE_CONV_2D in a chain) on the int8 ``x`` (the first one's input); returns
    {output tensor index: int8 values}.

    ``model`` is an :class:`armvww.model.Model` (shapes, quantisation and operator list as
    read from the file); ``constant(i)`` returns the values of constant tensor ``i``
    (weights and biases). Strides follow from the shapes (SAME padding:
    ``out = ceil(in / stride)``).
    """
    tensors = model.tensors  # type: ignore[attr-defined]
    ops = model.operators[start : start + n_ops]  # type: ignore[attr-defined]
    values: dict[int, np.ndarray] = {ops[0].inputs[0]: x}
    for op in ops:
        src, wt, bt = op.inputs[:3]
        (dst,) = op.outputs
        ti, tw, to = tensors[src], tensors[wt], tensors[dst]
        h, oh = ti.shape[1], to.shape[1]
        stride = next(s for s in (1, 2, 3, 4) if -(-h // s) == oh)
        m, sh = channel_multipliers(ti.scale, np.array(tw.scales), to.scale)
        w = np.asarray(constant(wt), np.int8)  # type: ignore[operator]
        b = np.asarray(constant(bt), np.int32)  # type: ignore[operator]
        fn = {"CONV_2D": conv2d, "DEPTHWISE_CONV_2D": depthwise_conv2d}[op.op]
        zi, zo = ti.zero_point, to.zero_point
        values[dst] = fn(values[src], zi, w, b, stride, m, sh, zo, rounding)
    del values[ops[0].inputs[0]]
    return values


def constants_via_litert(data: bytes) -> object:
    """``constant(i)`` reading a tensor's stored values through a LiteRT interpreter (data
    only: none of its arithmetic is used)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter

    it = Interpreter(model_content=data)
    return lambda i: np.array(it.get_tensor(i), copy=True)
