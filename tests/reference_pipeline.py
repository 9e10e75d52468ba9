"""An independent, deliberately naive restatement of Arm's reference pipeline, for tests.

It follows ml-embedded-evaluation-kit's ``gen_rgb_cpp.py`` (``Image.open().convert("RGB")``,
``int()`` sizes, a float crop box) and the C++ formulas, pixel by pixel with numpy float32
scalars. It shares no code with :mod:`armvww.preprocess`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def reference_input(path: str, w: int, h: int, scale: float, zp: int) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    ratio = float(max(w, h)) / float(min(img.size[0], img.size[1]))
    rw, rh = int(img.size[0] * ratio), int(img.size[1] * ratio)
    img = img.resize([rw, rh], Image.BILINEAR)
    img = img.crop(((rw - w) / 2, (rh - h) / 2, (rw + w) / 2, (rh + h) / 2))
    rgb = np.array(img, dtype=np.uint8)
    out = np.empty((h, w), dtype=np.int8)
    f32 = np.float32
    for y in range(h):
        for x in range(w):
            r, g, b = (f32(v) for v in rgb[y, x])
            grey = int(f32(f32(f32(0.299) * r) + f32(f32(0.587) * g)) + f32(f32(0.114) * b))
            grey = min(grey, 255)
            v = f32(f32(f32(grey) / f32(255.0)) / f32(scale)) + f32(zp)
            out[y, x] = max(-128, min(127, int(v)))
    return out.reshape(1, h, w, 1)
