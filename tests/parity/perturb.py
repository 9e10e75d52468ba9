"""Make a deliberately wrong variant of a real model: one operator's bias changed in place.

Independent of armvww's parity code: the bias bytes are located with armvww's FlatBuffers
reader (``armvww.model.flatbuf``) and patched; the graph, tensor list and every other byte stay
as they were, so per-layer parity must point at exactly that operator.
"""

from __future__ import annotations

import numpy as np

from armvww.model import TFLITE_IDENTIFIER, Model, flatbuf


def bias_shift(model: Model, position: int, out_lsb: float) -> np.ndarray:
    """int32 bias deltas (per output channel) that move operator ``position``'s
    pre-activation output by ``out_lsb`` steps of its output scale."""
    op = model.operators[position]
    x, w, y = (model.tensors[t] for t in op.inputs[:2] + op.outputs[:1])
    assert x.scale and y.scale
    w_scales = np.asarray(w.scales or (w.scale,), dtype=np.float64)
    return np.round(out_lsb * y.scale / (x.scale * w_scales)).astype(np.int64)


def with_bias_shift(model: Model, position: int, out_lsb: float) -> bytes:
    """The model's bytes with operator ``position``'s bias raised by ``out_lsb`` output LSB."""
    op = model.operators[position]
    assert op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"), op.op
    data = bytearray(model.data)
    root = flatbuf.root(bytes(data), TFLITE_IDENTIFIER)
    sg = next(root.tables(2))
    tensors = list(sg.tables(0))
    buffers = list(root.tables(4))
    bias_t = op.inputs[2]
    start, length = buffers[tensors[bias_t].u32(2)].bytes_vector(0)
    bias = np.frombuffer(bytes(data[start : start + length]), dtype="<i4").astype(np.int64)
    delta = bias_shift(model, position, out_lsb)
    new = np.clip(bias + np.broadcast_to(delta, bias.shape), -(2**31), 2**31 - 1)
    data[start : start + length] = new.astype("<i4").tobytes()
    return bytes(data)
