"""Preprocessing and quantisation maths: pure functions, no I/O.

This is the one place where an image becomes the model's int8 input and where int8 logits
become a probability. Every backend receives the same bytes from here.

The contract follows Arm's reference pipeline for these models (ml-embedded-evaluation-kit:
``scripts/py/gen_rgb_cpp.py`` resizes and crops; ``RgbToGrayscale`` and
``VisualWakeWordPreProcess`` quantise):

1. Resize so the shorter side equals the model side, with Pillow's bilinear filter; the
   longer side is ``int(long * model_side / short)`` as in the reference.
2. Centre-crop with the reference's float box, which Pillow rounds half-to-even.
3. Colour images: ``grey = trunc(0.299*R + 0.587*G + 0.114*B)`` in float32, left-to-right,
   with no fused multiply-add, clamped to 255. Single-channel images skip this step.
   Float32 makes ``grey(v, v, v) == v - 1`` for 13 values of v (37, 61, 74, 93, 111, 122,
   148, 186, 215, 222, 233, 244, 253); the reference does the same, so we keep it.
4. ``q = trunc(float32(grey) / 255 / scale + zero_point)`` in float32, clamped to
   [-128, 127] *before* the cast (the reference casts first, which is undefined behaviour
   in C++ when out of range; for the ML-zoo VWW models no value is out of range, so the
   bytes are the same). A 256-entry table serves this step.

One deliberate difference: the reference computes the shorter side as
``int(short * (side / short))``, which floating point makes ``side - 1`` for some sizes
(6945 of the sizes below 20000 for a 50-pixel model: 97, 161, 193 ...); its crop then pads a
black row and column. armvww resizes the shorter side to exactly ``side``. Pass
``reference_truncation=True`` to :func:`resize_crop` to reproduce the reference exactly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

# Reference weights, as float32 (C++ ``const float R = 0.299;``).
_R = np.float32(0.299)
_G = np.float32(0.587)
_B = np.float32(0.114)
_F255 = np.float32(255.0)

#: grey(v, v, v) == v - 1 for these v (float32 rounding; kept for bit-compatibility).
GREY_QUIRK_VALUES: tuple[int, ...] = (37, 61, 74, 93, 111, 122, 148, 186, 215, 222, 233, 244, 253)


def resized_size(
    width: int, height: int, target_w: int, target_h: int, reference_truncation: bool = False
) -> tuple[int, int]:
    """Size the image is resized to before the centre crop (aspect ratio kept).

    The shorter side becomes ``max(target_w, target_h)``; the longer side is
    ``int(long * ratio)`` exactly as in the reference script.
    """
    side = max(target_w, target_h)
    ratio = float(side) / float(min(width, height))
    rw = int(width * ratio)
    rh = int(height * ratio)
    if not reference_truncation:
        if width <= height:
            rw = side
        if height <= width:
            rh = side
        rw, rh = max(rw, target_w), max(rh, target_h)
    return max(rw, 1), max(rh, 1)


def crop_box(rw: int, rh: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """The reference's centre-crop box, rounded as Pillow rounds it (half to even)."""
    box = (
        (rw - target_w) / 2,
        (rh - target_h) / 2,
        (rw + target_w) / 2,
        (rh + target_h) / 2,
    )
    x0, y0, x1, y1 = (round(v) for v in box)
    return x0, y0, x1, y1


def resize_crop(
    img: Image.Image, target_w: int, target_h: int, reference_truncation: bool = False
) -> Image.Image:
    """Resize (bilinear, aspect kept) and centre-crop ``img`` to ``target_w`` x ``target_h``.

    ``img`` must be in mode ``"L"`` or ``"RGB"``.
    """
    rw, rh = resized_size(img.width, img.height, target_w, target_h, reference_truncation)
    if (rw, rh) != img.size:
        img = img.resize((rw, rh), Image.Resampling.BILINEAR)
    box = crop_box(rw, rh, target_w, target_h)
    if box != (0, 0, rw, rh):
        img = img.crop(box)
    return img


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """Reference greyscale: ``trunc(0.299R + 0.587G + 0.114B)`` in float32, clamped to 255.

    ``rgb`` is uint8 with a last axis of 3; the result is uint8 without that axis.
    """
    f = rgb.astype(np.float32)
    # Three separate float32 ufuncs: each product and sum is rounded, as in the C++ code
    # compiled without FMA contraction; the order is (R*r + G*g) + B*b.
    acc = np.multiply(f[..., 0], _R)
    acc = np.add(acc, np.multiply(f[..., 1], _G))
    acc = np.add(acc, np.multiply(f[..., 2], _B))
    grey = acc.astype(np.uint32)  # truncation toward zero; values are >= 0
    out: np.ndarray = np.minimum(grey, 255).astype(np.uint8)
    return out


@lru_cache(maxsize=64)
def quant_table(scale: float, zero_point: int) -> np.ndarray:
    """256-entry table: ``table[v] = clamp(trunc(float32(v)/255/scale + zero_point))``.

    ``scale`` is the model's float32 input scale; the arithmetic is float32 throughout.
    The returned array is read-only.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"input scale must be finite and > 0, got {scale}")
    v = np.arange(256, dtype=np.float32)
    x = np.add(np.divide(np.divide(v, _F255), np.float32(scale)), np.float32(zero_point))
    t = np.trunc(x)
    table = np.clip(t, -128, 127).astype(np.int8)
    table.setflags(write=False)
    return table


def quantize_grey(grey: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Map uint8 grey pixels to the model's int8 input values (same shape)."""
    if grey.dtype != np.uint8:
        raise TypeError(f"grey pixels must be uint8, got {grey.dtype}")
    out: np.ndarray = quant_table(scale, zero_point)[grey]
    return out


def image_to_input(
    img: Image.Image,
    shape: tuple[int, ...],
    scale: float,
    zero_point: int,
    reference_truncation: bool = False,
) -> np.ndarray:
    """The full contract: an ``"L"`` or ``"RGB"`` image to an int8 tensor of ``shape``.

    ``shape`` is the model's NHWC input shape ``(1, H, W, 1)``.
    """
    if img.mode not in ("L", "RGB"):
        raise ValueError(f"image_to_input needs mode L or RGB, got {img.mode}")
    h, w = shape[1], shape[2]
    img = resize_crop(img, w, h, reference_truncation)
    arr = np.asarray(img, dtype=np.uint8)
    grey = arr if arr.ndim == 2 else rgb_to_grey(arr)
    q = quantize_grey(grey, scale, zero_point)
    return np.ascontiguousarray(q.reshape(shape))


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``scale * (q - zero_point)`` as float64; the subtraction is done in int64."""
    return (q.astype(np.int64) - np.int64(zero_point)).astype(np.float64) * float(scale)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / np.sum(e, axis=-1, keepdims=True)
    return out


def person_score(raw: np.ndarray, scale: float, zero_point: int) -> float:
    """P(person): softmax of the dequantised (no person, person) logits, index 1.

    For two classes the softmax is the logistic of the logit difference; it is computed with
    Python floats (the zero point cancels), which is exact to rounding and far cheaper than
    numpy on two numbers (:func:`gap_score`).

    Raises:
        ValueError: ``raw`` does not hold exactly 2 logits.
    """
    flat = np.asarray(raw).reshape(-1)
    if flat.shape != (2,):
        raise ValueError(f"expected 2 logits, got shape {flat.shape}")
    return gap_score(int(flat[0]) - int(flat[1]), scale)


def gap_score(gap: int, scale: float) -> float:
    """P(person) for the int8 logit difference ``gap = raw[0] - raw[1]`` at output ``scale``:
    ``1 / (1 + exp(gap * scale))``."""
    d = gap * float(scale)  # logit0 - logit1
    if d > 700.0:  # exp overflow guard; the probability is 0 to double precision
        return 0.0
    return 1.0 / (1.0 + math.exp(d))


@lru_cache(maxsize=64)
def gap_scores(scale: float) -> tuple[float, ...]:
    """:func:`gap_score` for every int8 logit difference, -255 to 255 (index ``gap + 255``):
    the same floats, by a table lookup (a pipeline scores thousands of items a second)."""
    return tuple(gap_score(g, scale) for g in range(-255, 256))


#: The default decision threshold: at this value the decision is the reference's argmax.
DEFAULT_THRESHOLD = 0.5


def decide(raw: np.ndarray, score: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """The person decision: ``score > threshold`` (strictly).

    At the default threshold (0.5) it is decided on the raw int8 logits, exactly as Arm's
    reference takes the argmax: person iff ``raw[1] > raw[0]``. A tie (equal logits,
    P(person) = 0.5) is ``no person``, as ``argmax`` returns the first of equal values.
    Any other threshold compares P(person) strictly: ``threshold=0`` calls everything with a
    non-zero P(person) a person, ``threshold=1`` calls nothing a person.
    """
    flat = np.asarray(raw).reshape(-1)
    return decide_logits(int(flat[0]), int(flat[1]), score, threshold)


def decide_logits(
    no_person: int, person: int, score: float, threshold: float = DEFAULT_THRESHOLD
) -> bool:
    """:func:`decide` on the two raw logits as ints."""
    if threshold == DEFAULT_THRESHOLD:
        return person > no_person
    return score > threshold
