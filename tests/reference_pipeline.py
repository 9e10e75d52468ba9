"""An independent, deliberately naive restatement of Arm's reference pipeline, for tests.

It follows ml-embedded-evaluation-kit's ``gen_rgb_cpp.py`` (``Image.open().convert("RGB")``,
``int()`` sizes, a float crop box) and the C++ formulas, pixel by pixel with numpy float32
scalars. It shares no code with :mod:`armvww.preprocess`.

``keep_grey=True`` restates armvww's one documented departure for single-channel photos
(the grey value is used as it is, without the RGB round trip and its float32 ``v - 1``
quirk); everything else is the reference.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

f32 = np.float32


def reference_grey(r: int, g: int, b: int) -> int:
    """``RgbToGrayscale``: float32, left to right, no fused multiply-add, clamped to 255."""
    grey = int(f32(f32(f32(0.299) * f32(r)) + f32(f32(0.587) * f32(g))) + f32(f32(0.114) * f32(b)))
    return min(grey, 255)


def reference_q(grey: int, scale: float, zp: int) -> int:
    """``VisualWakeWordPreProcess``: ``trunc(grey / 255 / scale + zp)`` in float32."""
    v = f32(f32(f32(grey) / f32(255.0)) / f32(scale)) + f32(zp)
    return max(-128, min(127, int(v)))


def reference_input(
    path: str, w: int, h: int, scale: float, zp: int, keep_grey: bool = False
) -> np.ndarray:
    img = Image.open(path)
    grey_photo = keep_grey and img.mode == "L"
    img = img.convert("L" if grey_photo else "RGB")
    ratio = float(max(w, h)) / float(min(img.size[0], img.size[1]))
    rw, rh = int(img.size[0] * ratio), int(img.size[1] * ratio)
    img = img.resize([rw, rh], Image.BILINEAR)
    img = img.crop(((rw - w) / 2, (rh - h) / 2, (rw + w) / 2, (rh + h) / 2))
    pix = np.array(img, dtype=np.uint8)
    out = np.empty((h, w), dtype=np.int8)
    for y in range(h):
        for x in range(w):
            grey = int(pix[y, x]) if grey_photo else reference_grey(*(int(v) for v in pix[y, x]))
            out[y, x] = reference_q(grey, scale, zp)
    return out.reshape(1, h, w, 1)
