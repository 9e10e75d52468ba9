"""Write TFLite models, and rewrite existing ones, with Google's ``flatbuffers.Builder``.

Only the TFLite specifics live here (the schema subset, field ids, defaults); the FlatBuffers
encoding is the ``flatbuffers`` package's. Three jobs:

* :func:`build_model` turns a tiny graph spec (:class:`TensorDef`, :class:`OpDef`) into the
  bytes of a ``.tflite`` file (schema version 3, file identifier ``TFL3``), laid out the way
  the TFLite converter lays it out: buffer 0 is the empty sentinel, every tensor has its own
  buffer, every operator its builtin options table.
* Ready-made generators: :func:`pad_probe_model` (detects runtimes that pad int8 with 0
  instead of the zero point), :func:`tiny_vww_model` (a cheap VWW-shaped model for trial
  loads and tests) and foreign or bad models for tests (:func:`float_model`, ...).
* :func:`with_extra_outputs` rewrites a model, moving nothing, so that chosen intermediate
  tensors become extra subgraph outputs, for per-layer parity checks.

Field ids and union numbers follow ``tensorflow/lite/schema/schema.fbs`` (schema 3c).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from flatbuffers import Builder

from ..errors import InputError, ModelIntegrityError, UnsupportedModelError
from . import OP_CODES, TENSOR_TYPES, TFLITE_IDENTIFIER, Model, flatbuf

__all__ = [
    "OpDef",
    "PAD_PROBE_SCALE",
    "PAD_PROBE_ZERO_POINT",
    "TensorDef",
    "TinyVwwParams",
    "all_intermediate_tensors",
    "build_model",
    "custom_op_model",
    "dynamic_shape_model",
    "float_model",
    "pad_probe_expected",
    "pad_probe_input",
    "pad_probe_model",
    "rgb_input_model",
    "tiny_vww_model",
    "tiny_vww_params",
    "two_input_model",
    "with_extra_outputs",
    "wrong_output_model",
]

_I32: Final = struct.Struct("<i")
_U32: Final = struct.Struct("<I")

# --------------------------------------------------------------------------------------------
# The TFLite schema subset we write.
# --------------------------------------------------------------------------------------------

#: dtype name -> TFLite TensorType code (from :data:`armvww.model.TENSOR_TYPES`).
DTYPE_CODES: Final[dict[str, int]] = {name: code for code, (name, _) in TENSOR_TYPES.items()}
_NUMPY_DTYPES: Final[dict[str, str]] = {
    "float32": "<f4",
    "float16": "<f2",
    "float64": "<f8",
    "int8": "i1",
    "uint8": "u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "int64": "<i8",
    "uint64": "<u8",
    "bool": "?",
}

# union BuiltinOptions, in schema order (type code = position + 1; 0 is NONE).
_UNION_NAMES = (
    "Conv2DOptions DepthwiseConv2DOptions ConcatEmbeddingsOptions LSHProjectionOptions "
    "Pool2DOptions SVDFOptions RNNOptions FullyConnectedOptions SoftmaxOptions "
    "ConcatenationOptions AddOptions L2NormOptions LocalResponseNormalizationOptions "
    "LSTMOptions ResizeBilinearOptions CallOptions ReshapeOptions SkipGramOptions "
    "SpaceToDepthOptions EmbeddingLookupSparseOptions MulOptions PadOptions GatherOptions "
    "BatchToSpaceNDOptions SpaceToBatchNDOptions TransposeOptions ReducerOptions SubOptions "
    "DivOptions SqueezeOptions SequenceRNNOptions StridedSliceOptions ExpOptions "
    "TopKV2Options SplitOptions LogSoftmaxOptions CastOptions DequantizeOptions "
    "MaximumMinimumOptions ArgMaxOptions LessOptions NegOptions PadV2Options"
).split()
#: BuiltinOptions union type codes, e.g. ``BUILTIN_OPTIONS["Conv2DOptions"] == 1``.
BUILTIN_OPTIONS: Final[dict[str, int]] = {n: i + 1 for i, n in enumerate(_UNION_NAMES)}

_PADDING: Final = {"SAME": 0, "VALID": 1}
_ACTIVATION: Final = {
    "NONE": 0,
    "RELU": 1,
    "RELU_N1_TO_1": 2,
    "RELU6": 3,
    "TANH": 4,
    "SIGN_BIT": 5,
}
_WEIGHTS_FORMAT: Final = {"DEFAULT": 0, "SHUFFLED4x16INT8": 1}


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # "i8" (byte enum), "bool", "i32", "f32", "[i32]"
    default: int | float | tuple[int, ...] = 0
    enum: Mapping[str, int] | None = None


_F_PAD = _Field("padding", "i8", 0, _PADDING)
_F_ACT = _Field("fused_activation_function", "i8", 0, _ACTIVATION)
_F_BIAS_T = _Field("quantized_bias_type", "i8", 0, DTYPE_CODES)

# options table -> its fields, in field-id order (from schema.fbs).
_TABLES: Final[dict[str, tuple[_Field, ...]]] = {
    "Conv2DOptions": (
        _F_PAD,
        _Field("stride_w", "i32", 1),
        _Field("stride_h", "i32", 1),
        _F_ACT,
        _Field("dilation_w_factor", "i32", 1),
        _Field("dilation_h_factor", "i32", 1),
        _F_BIAS_T,
    ),
    "DepthwiseConv2DOptions": (
        _F_PAD,
        _Field("stride_w", "i32", 1),
        _Field("stride_h", "i32", 1),
        _Field("depth_multiplier", "i32", 1),
        _F_ACT,
        _Field("dilation_w_factor", "i32", 1),
        _Field("dilation_h_factor", "i32", 1),
    ),
    "Pool2DOptions": (
        _F_PAD,
        _Field("stride_w", "i32", 1),
        _Field("stride_h", "i32", 1),
        _Field("filter_width", "i32", 1),
        _Field("filter_height", "i32", 1),
        _F_ACT,
    ),
    "FullyConnectedOptions": (
        _F_ACT,
        _Field("weights_format", "i8", 0, _WEIGHTS_FORMAT),
        _Field("keep_num_dims", "bool", 0),
        _Field("asymmetric_quantize_inputs", "bool", 0),
        _F_BIAS_T,
    ),
    "SoftmaxOptions": (_Field("beta", "f32", 1.0),),
    "ConcatenationOptions": (_Field("axis", "i32", 0), _F_ACT),
    "AddOptions": (_F_ACT, _Field("pot_scale_int16", "bool", 1)),
    "SubOptions": (_F_ACT, _Field("pot_scale_int16", "bool", 1)),
    "MulOptions": (_F_ACT,),
    "ReshapeOptions": (_Field("new_shape", "[i32]", ()),),
    "PadOptions": (),
    "PadV2Options": (),
    "ReducerOptions": (_Field("keep_dims", "bool", 0),),
    "SqueezeOptions": (_Field("squeeze_dims", "[i32]", ()),),
    "DequantizeOptions": (),
}
# Defaults the schema gives when a field is absent (differs from our defaults for some fields:
# an absent stride is 0 and an absent softmax beta is 0.0 in the schema, but we always write
# the value the caller meant).
_SCHEMA_DEFAULTS: Final[dict[str, int | float]] = {
    "dilation_w_factor": 1,
    "dilation_h_factor": 1,
    "pot_scale_int16": 1,
}

#: builtin operator -> its options table (operators not listed take no options).
OP_OPTIONS: Final[dict[str, str]] = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "L2_POOL_2D": "Pool2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "SOFTMAX": "SoftmaxOptions",
    "CONCATENATION": "ConcatenationOptions",
    "ADD": "AddOptions",
    "SUB": "SubOptions",
    "MUL": "MulOptions",
    "RESHAPE": "ReshapeOptions",
    "PAD": "PadOptions",
    "PADV2": "PadV2Options",
    "MEAN": "ReducerOptions",
    "SQUEEZE": "SqueezeOptions",
    "DEQUANTIZE": "DequantizeOptions",
}

# Operator versions the converter writes for int8 graphs (op_version.cc); 1 otherwise.
_INT8_VERSIONS: Final[dict[str, int]] = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "ADD": 2,
    "SUB": 2,
    "MUL": 2,
    "PAD": 2,
    "PADV2": 2,
    "AVERAGE_POOL_2D": 2,
    "MAX_POOL_2D": 2,
    "SOFTMAX": 2,
    "CONCATENATION": 2,
    "MEAN": 2,
    "DEQUANTIZE": 2,
    "QUANTIZE": 2,
}


@dataclass(frozen=True)
class TensorDef:
    """One tensor of a graph spec.

    ``scale`` / ``zero_point`` are a number for per-tensor quantisation, or sequences (one per
    slice along ``quantized_dimension``) for per-channel quantisation; ``None`` for none.
    ``data`` makes the tensor a constant (a numpy array of the tensor's dtype and size, or the
    raw little-endian bytes). ``shape_signature`` (with -1 for unknown dims) is written when
    given, as the converter does for dynamic shapes.
    """

    shape: tuple[int, ...]
    dtype: str
    name: str = ""
    scale: float | Sequence[float] | None = None
    zero_point: int | Sequence[int] | None = None
    data: np.ndarray | bytes | None = field(default=None, repr=False)
    quantized_dimension: int = 0
    shape_signature: tuple[int, ...] | None = None


@dataclass(frozen=True)
class OpDef:
    """One operator of a graph spec: a builtin name (or ``"CUSTOM"`` with ``custom_code``)."""

    op: str
    inputs: Sequence[int]
    outputs: Sequence[int]
    options: Mapping[str, object] | None = None
    custom_code: str | None = None
    version: int | None = None


def build_model(
    tensors: Sequence[TensorDef],
    operators: Sequence[OpDef],
    inputs: Sequence[int],
    outputs: Sequence[int],
    description: str = "armvww.tflite_build",
    signature_key: str | None = None,
) -> bytes:
    """Serialise a graph spec as a TFLite flatbuffer (schema version 3, identifier ``TFL3``).

    Operators are written in the given (execution) order. Operator codes are de-duplicated
    per (op, custom code, version). With ``signature_key``, one SignatureDef maps the input
    and output tensors by name (like a converted SavedModel).

    Raises:
        InputError: an unknown dtype or operator, an option the operator's options table does
            not have, an index outside the tensor list, or constant data whose dtype or size
            does not match its tensor.
    """
    nt = len(tensors)
    if nt == 0 or not operators:
        raise InputError("a model needs at least one tensor and one operator")

    def check(idx: Sequence[int], what: str, optional: bool = False) -> list[int]:
        out = [int(i) for i in idx]
        for i in out:
            if not (0 <= i < nt or (optional and i == -1)):
                raise InputError(f"{what} refers to tensor {i}; the graph has {nt} tensors")
        return out

    g_inputs = check(inputs, "subgraph input")
    g_outputs = check(outputs, "subgraph output")
    tensor_payloads = [_tensor_bytes(i, t) for i, t in enumerate(tensors)]

    b = Builder(4096 + sum(len(p) + 16 for p in tensor_payloads))

    # Operator codes (in order of first use).
    code_keys: list[tuple[str, str | None, int]] = []
    op_code_index: list[int] = []
    for j, od in enumerate(operators):
        if od.op != "CUSTOM" and od.op not in OP_CODES:
            raise InputError(f"operator {j}: {od.op!r} is not a TFLite builtin operator name")
        if od.op == "CUSTOM" and not od.custom_code:
            raise InputError(f"operator {j}: a CUSTOM operator needs a custom_code")
        check(od.inputs, f"operator {j} ({od.op}) input", optional=True)
        check(od.outputs, f"operator {j} ({od.op}) output")
        version = od.version if od.version is not None else _default_version(od, tensors)
        key = (od.op, od.custom_code if od.op == "CUSTOM" else None, version)
        if key not in code_keys:
            code_keys.append(key)
        op_code_index.append(code_keys.index(key))

    # Buffers: 0 is the empty sentinel, then one per tensor (empty for non-constants).
    buffer_offs = [_empty_table(b)]
    for payload in tensor_payloads:
        if payload:
            b.Prep(16, len(payload))  # constant data 16-aligned, as the converter writes it
            data_off = b.CreateByteVector(payload)
            b.StartObject(1)
            b.PrependUOffsetTRelativeSlot(0, data_off, 0)  # Buffer.data
            buffer_offs.append(b.EndObject())
        else:
            buffer_offs.append(_empty_table(b))
    buffers_vec = _offset_vector(b, buffer_offs)

    # Tensors.
    tensor_offs = [_write_tensor(b, i, t, i + 1) for i, t in enumerate(tensors)]
    tensors_vec = _offset_vector(b, tensor_offs)

    # Operators.
    op_offs: list[int] = []
    for j, od in enumerate(operators):
        opt_type, opt_off = _write_options(b, j, od)
        ins = _i32_vector(b, od.inputs)
        outs = _i32_vector(b, od.outputs)
        b.StartObject(5)
        b.PrependUint32Slot(0, op_code_index[j], 0)  # opcode_index
        b.PrependUOffsetTRelativeSlot(1, ins, 0)  # inputs
        b.PrependUOffsetTRelativeSlot(2, outs, 0)  # outputs
        b.PrependUint8Slot(3, opt_type, 0)  # builtin_options_type
        b.PrependUOffsetTRelativeSlot(4, opt_off, 0)  # builtin_options
        op_offs.append(b.EndObject())
    ops_vec = _offset_vector(b, op_offs)

    in_vec = _i32_vector(b, g_inputs)
    out_vec = _i32_vector(b, g_outputs)
    sg_name = b.CreateString("main")
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)  # SubGraph.tensors
    b.PrependUOffsetTRelativeSlot(1, in_vec, 0)  # inputs
    b.PrependUOffsetTRelativeSlot(2, out_vec, 0)  # outputs
    b.PrependUOffsetTRelativeSlot(3, ops_vec, 0)  # operators
    b.PrependUOffsetTRelativeSlot(4, sg_name, 0)  # name
    subgraphs_vec = _offset_vector(b, [b.EndObject()])

    code_offs: list[int] = []
    for op, custom, version in code_keys:
        custom_off = b.CreateString(custom) if custom else 0
        code = OP_CODES[op]
        b.StartObject(4)
        b.PrependInt8Slot(0, min(code, 127), 0)  # deprecated_builtin_code
        b.PrependUOffsetTRelativeSlot(1, custom_off, 0)  # custom_code
        b.PrependInt32Slot(2, version, 1)  # version
        b.PrependInt32Slot(3, code, 0)  # builtin_code
        code_offs.append(b.EndObject())
    codes_vec = _offset_vector(b, code_offs)

    sig_vec = 0
    if signature_key is not None:
        sig_in = _tensor_maps(b, [(tensors[i].name or f"tensor_{i}", i) for i in g_inputs])
        sig_out = _tensor_maps(b, [(tensors[i].name or f"tensor_{i}", i) for i in g_outputs])
        key_off = b.CreateString(signature_key)
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(0, sig_in, 0)  # SignatureDef.inputs
        b.PrependUOffsetTRelativeSlot(1, sig_out, 0)  # outputs
        b.PrependUOffsetTRelativeSlot(2, key_off, 0)  # signature_key
        sig_vec = _offset_vector(b, [b.EndObject()])

    desc = b.CreateString(description)
    b.StartObject(8)
    b.PrependUint32Slot(0, 3, 0)  # Model.version: schema 3
    b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)  # operator_codes
    b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)  # subgraphs
    b.PrependUOffsetTRelativeSlot(3, desc, 0)  # description
    b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)  # buffers
    b.PrependUOffsetTRelativeSlot(7, sig_vec, 0)  # signature_defs
    b.Finish(b.EndObject(), file_identifier=TFLITE_IDENTIFIER)
    return bytes(b.Output())


def _default_version(od: OpDef, tensors: Sequence[TensorDef]) -> int:
    if od.op in _INT8_VERSIONS and any(i >= 0 and tensors[i].dtype == "int8" for i in od.inputs):
        return _INT8_VERSIONS[od.op]
    return 1


def _empty_table(b: Builder) -> int:
    b.StartObject(0)
    end: int = b.EndObject()
    return end


def _i32_vector(b: Builder, values: Sequence[int]) -> int:
    off: int = b.CreateNumpyVector(np.asarray([int(v) for v in values], dtype="<i4"))
    return off


def _offset_vector(b: Builder, offsets: Sequence[int]) -> int:
    """A vector of uoffsets to tables or strings written earlier."""
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    end: int = b.EndVector()
    return end


def _tensor_bytes(i: int, t: TensorDef) -> bytes:
    if t.dtype not in DTYPE_CODES:
        raise InputError(
            f"tensor {i} ({t.name!r}) has dtype {t.dtype!r}; expected one of {sorted(DTYPE_CODES)}"
        )
    if any(int(d) < 0 for d in t.shape):
        raise InputError(f"tensor {i} ({t.name!r}) has a negative dimension in {t.shape}")
    if t.data is None:
        return b""
    n = math.prod(t.shape)
    itemsize = dict(TENSOR_TYPES.values())[t.dtype]
    if isinstance(t.data, (bytes, bytearray, memoryview)):
        raw = bytes(t.data)
    else:
        arr = np.asarray(t.data)
        want = _NUMPY_DTYPES.get(t.dtype)
        if want is None or arr.dtype != np.dtype(want).newbyteorder("="):
            raise InputError(
                f"tensor {i} ({t.name!r}) is {t.dtype} but its data is a {arr.dtype} array"
            )
        if arr.size != n:
            raise InputError(
                f"tensor {i} ({t.name!r}) has shape {t.shape} ({n} elements) but its data has "
                f"{arr.size}"
            )
        raw = np.ascontiguousarray(arr, dtype=np.dtype(want)).tobytes()
    if len(raw) != n * itemsize:
        raise InputError(
            f"tensor {i} ({t.name!r}) {t.shape} {t.dtype} needs {n * itemsize} bytes of data, "
            f"got {len(raw)}"
        )
    if not raw:
        raise InputError(f"tensor {i} ({t.name!r}) is a constant with no elements")
    return raw


def _write_tensor(b: Builder, i: int, t: TensorDef, buffer: int) -> int:
    scales: list[float] = []
    zps: list[int] = []
    if t.scale is not None:
        scales = [float(t.scale)] if isinstance(t.scale, (int, float)) else list(t.scale)
        if t.zero_point is None:
            zps = [0] * len(scales)
        elif isinstance(t.zero_point, (int, np.integer)):
            zps = [int(t.zero_point)]
        else:
            zps = [int(z) for z in t.zero_point]
        if len(zps) != len(scales):
            raise InputError(
                f"tensor {i} ({t.name!r}) has {len(scales)} scales but {len(zps)} zero points"
            )
    elif t.zero_point is not None:
        raise InputError(f"tensor {i} ({t.name!r}) has a zero point but no scale")
    scale_vec = b.CreateNumpyVector(np.asarray(scales, dtype="<f4")) if scales else 0
    zp_vec = b.CreateNumpyVector(np.asarray(zps, dtype="<i8")) if zps else 0
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(2, scale_vec, 0)  # QuantizationParameters.scale
    b.PrependUOffsetTRelativeSlot(3, zp_vec, 0)  # zero_point
    b.PrependInt32Slot(6, t.quantized_dimension, 0)  # quantized_dimension
    quant = b.EndObject()
    sig = _i32_vector(b, t.shape_signature) if t.shape_signature else 0
    name = b.CreateString(t.name or f"tensor_{i}")
    shape = _i32_vector(b, t.shape)
    b.StartObject(8)
    b.PrependUOffsetTRelativeSlot(0, shape, 0)  # Tensor.shape
    b.PrependInt8Slot(1, DTYPE_CODES[t.dtype], 0)  # type
    b.PrependUint32Slot(2, buffer, 0)  # buffer
    b.PrependUOffsetTRelativeSlot(3, name, 0)  # name
    b.PrependUOffsetTRelativeSlot(4, quant, 0)  # quantization
    b.PrependUOffsetTRelativeSlot(7, sig, 0)  # shape_signature
    end: int = b.EndObject()
    return end


def _write_options(b: Builder, j: int, od: OpDef) -> tuple[int, int]:
    opts = dict(od.options or {})
    table = OP_OPTIONS.get(od.op)
    if table is None:
        if opts:
            raise InputError(
                f"operator {j} ({od.op}) takes no builtin options, got {sorted(opts)}; "
                f"armvww writes options for {sorted(OP_OPTIONS)}"
            )
        return 0, 0
    fields = _TABLES[table]
    known = {f.name for f in fields}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise InputError(
            f"operator {j} ({od.op}): {unknown} are not fields of {table}; "
            f"its fields are {[f.name for f in fields]}"
        )
    vectors: dict[int, int] = {}
    values: dict[int, int | float] = {}
    for k, f in enumerate(fields):
        raw = opts.get(f.name, f.default)
        if f.kind == "[i32]":
            seq = raw if isinstance(raw, (list, tuple)) else None
            if seq is None:
                raise InputError(f"operator {j} ({od.op}): {f.name} must be a list of ints")
            if seq or f.name in opts:
                vectors[k] = _i32_vector(b, seq)
            continue
        values[k] = _option_value(j, od.op, f, raw)
    b.StartObject(len(fields))
    for k, off in vectors.items():
        b.PrependUOffsetTRelativeSlot(k, off, 0)
    for k, value in values.items():
        # the schema's default is left out, as the converter does; we always mean `value`
        default = _SCHEMA_DEFAULTS.get(fields[k].name, 0)
        kind = fields[k].kind
        if kind == "f32":
            b.PrependFloat32Slot(k, float(value), float(default))
        elif kind == "i32":
            b.PrependInt32Slot(k, int(value), int(default))
        else:
            b.PrependInt8Slot(k, int(value), int(default))
    end: int = b.EndObject()
    return BUILTIN_OPTIONS[table], end


def _option_value(j: int, op: str, f: _Field, raw: object) -> int | float:
    if f.enum is not None and isinstance(raw, str):
        if raw not in f.enum:
            raise InputError(
                f"operator {j} ({op}): {f.name}={raw!r}; expected one of {sorted(f.enum)}"
            )
        return f.enum[raw]
    if f.kind == "f32":
        if not isinstance(raw, (int, float)):
            raise InputError(f"operator {j} ({op}): {f.name} must be a number, got {raw!r}")
        return float(raw)
    if isinstance(raw, bool) or isinstance(raw, (int, np.integer)):
        return int(raw)
    raise InputError(f"operator {j} ({op}): {f.name} must be an int, got {raw!r}")


def _tensor_maps(b: Builder, entries: Sequence[tuple[str, int]]) -> int:
    """A vector of TensorMap tables (name, tensor index)."""
    offs = []
    for name, i in entries:
        name_off = b.CreateString(name)
        b.StartObject(2)
        b.PrependUOffsetTRelativeSlot(0, name_off, 0)  # TensorMap.name
        b.PrependUint32Slot(1, i, 0)  # tensor_index
        offs.append(b.EndObject())
    return _offset_vector(b, offs)


# --------------------------------------------------------------------------------------------
# Ready-made models.
# --------------------------------------------------------------------------------------------

#: Scale and zero point of the PAD probe's input and output (the zero point is vww2's input).
PAD_PROBE_SCALE: Final = 0.0078125
PAD_PROBE_ZERO_POINT: Final = -72
_PAD_PROBE_SHAPE: Final = (1, 2, 2, 1)


def pad_probe_model(then_conv: bool = False) -> bytes:
    """The smallest int8 model with one PAD whose input zero point is not zero.

    Input int8 (1, 2, 2, 1), scale :data:`PAD_PROBE_SCALE`, zero point
    :data:`PAD_PROBE_ZERO_POINT`; PAD by 1 on H and W; output int8 (1, 4, 4, 1) with the same
    quantisation. A correct runtime fills the border with the zero point (real 0.0); Arm NN
    20.08's TfLite parser fills it with int8 0. With ``then_conv`` a 1x1 identity CONV_2D
    follows the PAD (same output), which lets a runtime fold the pad into the convolution.
    See :func:`pad_probe_expected`.

    This is not a VWW model: :func:`armvww.model.parse_model` rejects it.
    """
    sc, zp = PAD_PROBE_SCALE, PAD_PROBE_ZERO_POINT
    paddings = np.array([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=np.int32)
    tensors = [
        TensorDef(_PAD_PROBE_SHAPE, "int8", "input", scale=sc, zero_point=zp),
        TensorDef((4, 2), "int32", "paddings", data=paddings),
        TensorDef((1, 4, 4, 1), "int8", "padded", scale=sc, zero_point=zp),
    ]
    ops = [OpDef("PAD", [0, 1], [2])]
    if then_conv:
        tensors += [
            TensorDef(
                (1, 1, 1, 1),
                "int8",
                "identity_w",
                scale=[1 / 127],
                zero_point=[0],
                data=np.array([127], dtype=np.int8).reshape(1, 1, 1, 1),
            ),
            TensorDef(
                (1,),
                "int32",
                "identity_b",
                scale=[PAD_PROBE_SCALE / 127],
                zero_point=[0],
                data=np.zeros(1, dtype=np.int32),
            ),
            TensorDef((1, 4, 4, 1), "int8", "output", scale=sc, zero_point=zp),
        ]
        ops.append(OpDef("CONV_2D", [2, 3, 4], [5], {"padding": "VALID"}))
    return build_model(tensors, ops, [0], [len(tensors) - 1], "armvww PAD zero-point probe")


def pad_probe_input() -> np.ndarray:
    """A fixed int8 (1, 2, 2, 1) input for the PAD probe; no value equals 0 or the zero point."""
    return np.array([10, -20, 30, 127], dtype=np.int8).reshape(_PAD_PROBE_SHAPE)


def pad_probe_expected(x: np.ndarray) -> np.ndarray:
    """What a correct runtime returns from :func:`pad_probe_model` for the input ``x``.

    Raises:
        InputError: ``x`` is not an int8 array of shape (1, 2, 2, 1).
    """
    x = np.asarray(x)
    if x.dtype != np.int8 or x.shape != _PAD_PROBE_SHAPE:
        raise InputError(f"the PAD probe takes int8 {_PAD_PROBE_SHAPE}, got {x.dtype} {x.shape}")
    out = np.full((1, 4, 4, 1), PAD_PROBE_ZERO_POINT, dtype=np.int8)
    out[:, 1:3, 1:3, :] = x
    return out


@dataclass(frozen=True)
class TinyVwwParams:
    """Every constant of :func:`tiny_vww_model`, for independent reference computations."""

    hw: tuple[int, int]
    in_scale: float
    in_zp: int
    conv_w: np.ndarray  # int8 (C1, 3, 3, Cin), per-output-channel scales
    conv_w_scales: np.ndarray  # float64 (C1,)
    conv_b: np.ndarray  # int32 (C1,), scale in_scale * conv_w_scales
    conv_scale: float
    conv_zp: int  # conv output (ReLU fused), also the pool output
    fc_w: np.ndarray  # int8 (N, C1), per-tensor
    fc_w_scale: float
    fc_b: np.ndarray  # int32 (N,), scale conv_scale * fc_w_scale
    out_scale: float
    out_zp: int


_TINY_C1: Final = 4


def tiny_vww_params(
    hw: tuple[int, int] = (8, 8), channels: int = 1, classes: int = 2
) -> TinyVwwParams:
    """The deterministic constants of :func:`tiny_vww_model` (no random number generator).

    Raises:
        InputError: a non-positive size, channel or class count.
    """
    h, w = int(hw[0]), int(hw[1])
    if h < 1 or w < 1 or channels < 1 or classes < 1:
        raise InputError(f"tiny VWW model needs positive sizes, got hw={hw} channels={channels}")
    c1 = _TINY_C1
    k = np.arange(c1 * 9 * channels, dtype=np.int64)
    conv_w = (((k * 37 + 11) % 255) - 127).astype(np.int8).reshape(c1, 3, 3, channels)
    conv_w_scales = np.array([0.004, 0.005, 0.006, 0.007], dtype=np.float64)[:c1]
    in_scale, in_zp = 0.0078125, -72
    conv_b = np.array([40, -300, 1200, -20], dtype=np.int32)[:c1]
    j = np.arange(classes * c1, dtype=np.int64)
    fc_w = (((j * 53 + 29) % 255) - 127).astype(np.int8).reshape(classes, c1)
    return TinyVwwParams(
        hw=(h, w),
        in_scale=in_scale,
        in_zp=in_zp,
        conv_w=conv_w,
        conv_w_scales=conv_w_scales,
        conv_b=conv_b,
        conv_scale=0.02,
        conv_zp=-128,
        fc_w=fc_w,
        fc_w_scale=0.01,
        fc_b=(np.arange(classes, dtype=np.int32) * 150 - 75).astype(np.int32),
        out_scale=0.05,
        out_zp=3,
    )


def _tiny_graph(
    hw: tuple[int, int],
    channels: int = 1,
    classes: int = 2,
    dtype: str = "int8",
    n_inputs: int = 1,
    custom: bool = False,
    dynamic: bool = False,
) -> bytes:
    p = tiny_vww_params(hw, channels, classes)
    h, w = p.hw
    c1 = _TINY_C1
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    quant = dtype == "int8"
    t: list[TensorDef] = []

    def add(
        shape: tuple[int, ...],
        name: str,
        scale: float | list[float] | None,
        zp: int | list[int] | None,
        data: np.ndarray | None = None,
        tdtype: str | None = None,
        sig: tuple[int, ...] | None = None,
    ) -> int:
        t.append(
            TensorDef(
                shape,
                tdtype or dtype,
                name,
                scale=scale if quant else None,
                zero_point=zp if quant else None,
                data=data,
                shape_signature=sig,
            )
        )
        return len(t) - 1

    if quant:
        conv_w, conv_b, fc_w, fc_b = p.conv_w, p.conv_b, p.fc_w, p.fc_b
    else:
        conv_w = (p.conv_w * p.conv_w_scales[:, None, None, None]).astype(np.float32)
        conv_b = (p.conv_b * p.in_scale * p.conv_w_scales).astype(np.float32)
        fc_w = (p.fc_w * p.fc_w_scale).astype(np.float32)
        fc_b = (p.fc_b * p.conv_scale * p.fc_w_scale).astype(np.float32)
    bias_t = "int32" if quant else "float32"
    image = (1, h, w, channels)
    sig = (-1, h, w, channels) if dynamic else None
    inputs = [add(image, "input", p.in_scale, p.in_zp, sig=sig)]
    ops: list[OpDef] = []
    x = inputs[0]
    for k in range(1, n_inputs):
        inputs.append(add(image, f"input_{k}", p.in_scale, p.in_zp))
        s = add(image, f"sum_{k}", p.in_scale * 2, p.in_zp)
        ops.append(OpDef("ADD", [x, inputs[-1]], [s]))
        x = s
    w_scales = [float(v) for v in p.conv_w_scales]
    cw = add((c1, 3, 3, channels), "conv/weights", w_scales, [0] * c1, conv_w)
    cb = add((c1,), "conv/bias", [p.in_scale * v for v in w_scales], [0] * c1, conv_b, bias_t)
    conv_out = add((1, h2, w2, c1), "conv/relu", p.conv_scale, p.conv_zp)
    pool = add((1, 1, 1, c1), "pool", p.conv_scale, p.conv_zp)
    shp = add((2,), "reshape/shape", None, None, np.array([1, c1], dtype=np.int32), "int32")
    resh = add((1, c1), "reshape", p.conv_scale, p.conv_zp)
    fw = add((classes, c1), "fc/weights", p.fc_w_scale, 0, fc_w)
    fb = add((classes,), "fc/bias", p.conv_scale * p.fc_w_scale, 0, fc_b, bias_t)
    ops += [
        OpDef(
            "CONV_2D",
            [x, cw, cb],
            [conv_out],
            {"padding": "SAME", "stride_w": 2, "stride_h": 2, "fused_activation_function": "RELU"},
        ),
        OpDef(
            "AVERAGE_POOL_2D",
            [conv_out],
            [pool],
            {
                "padding": "VALID",
                "stride_w": 1,
                "stride_h": 1,
                "filter_width": w2,
                "filter_height": h2,
            },
        ),
        OpDef("RESHAPE", [pool, shp], [resh], {"new_shape": [1, c1]}),
    ]
    if custom:
        c = add((1, c1), "custom", p.conv_scale, p.conv_zp)
        ops.append(OpDef("CUSTOM", [resh], [c], custom_code="ArmvwwTestOp"))
        resh = c
    out = add((1, classes), "Identity", p.out_scale, p.out_zp)
    ops.append(OpDef("FULLY_CONNECTED", [resh, fw, fb], [out]))
    return build_model(t, ops, inputs, [out], f"armvww tiny VWW {h}x{w} {dtype}")


def tiny_vww_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """A small valid VWW-shaped int8 model with deterministic weights.

    int8 (1, H, W, 1) -> CONV_2D 3x3/2 SAME + ReLU (4 channels, per-channel weights) ->
    AVERAGE_POOL_2D over the whole map -> RESHAPE (1, 4) -> FULLY_CONNECTED -> int8 (1, 2).
    Its constants are :func:`tiny_vww_params`. Cheap to load: use it for trial loads of a
    backend (GpuAcc/CpuAcc) in a child process, and in tests.

    Raises:
        InputError: a non-positive size.
    """
    return _tiny_graph(hw)


#: The operator types of Arm's MicroNet VWW models (vww2, vww4), in :func:`vww_ops_model` order.
VWW_OP_TYPES: Final = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "PAD",
    "ADD",
    "AVERAGE_POOL_2D",
    "RESHAPE",
)


def vww_ops_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """A small int8 model with one operator of each of :data:`VWW_OP_TYPES`, wired the way
    Arm's MicroNet VWW models use them, plus the classifier head of :func:`tiny_vww_model`.

    int8 (1, H, W, 1) -> CONV_2D 3x3/2 SAME + ReLU (4 channels) and, on a second branch,
    DEPTHWISE_CONV_2D 3x3/2 SAME + ReLU (1 channel) -> PAD of the channels 1 -> 4 (its zero
    point is not 0) -> ADD of both branches (MicroNet's residual with a channel-padded
    shortcut) -> AVERAGE_POOL_2D over the whole map (VALID, no padding) -> RESHAPE (1, 4) ->
    FULLY_CONNECTED -> int8 (1, 2). Deterministic constants, no random number generator.

    The CONV_2D, AVERAGE_POOL_2D, RESHAPE and FULLY_CONNECTED are :func:`tiny_vww_model`'s
    (same shapes, weights and quantisation: the ADD's output has the CONV_2D's), the model
    armvww's availability probe loads on every Arm NN backend. Arm Compute Library bakes
    shapes and quantisation into each OpenCL program's build options, so on GpuAcc those
    layers reuse the programs the probe already built (a compiled-kernel cache such as
    PoCL's hits); only the DEPTHWISE_CONV_2D, PAD and ADD programs are this model's own.
    Under emulation (GpuAcc on PoCL under qemu, docs/gpuacc-pocl.md) that is what makes a
    cold run of this model cheap.

    In vww2 and vww4 every PAD pads channels and feeds an ADD, and the one AVERAGE_POOL_2D
    averages a whole feature map with no PAD before it. A spatial PAD before an average pool
    is avoided on purpose: Arm NN folds it into the pooling, and GpuAcc (Arm Compute
    Library's OpenCL pooling, 23.08) then averages the padding as raw 0 instead of the zero
    point (docs/gpuacc-pocl.md), a pattern the VWW models do not contain.

    Raises:
        InputError: a non-positive size.
    """
    p = tiny_vww_params(hw)
    h, w = p.hw
    c = _TINY_C1
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    t: list[TensorDef] = []

    def add(
        shape: tuple[int, ...],
        name: str,
        scale: float | list[float] | None,
        zp: int | list[int] | None,
        data: np.ndarray | None = None,
        dtype: str = "int8",
        qdim: int = 0,
    ) -> int:
        t.append(TensorDef(shape, dtype, name, scale, zp, data, quantized_dimension=qdim))
        return len(t) - 1

    conv_scales = [float(v) for v in p.conv_w_scales]
    dw_scale = 0.011
    k = np.arange(9, dtype=np.int64)
    dw_w = (((k * 29 + 7) % 255) - 127).astype(np.int8).reshape(1, 3, 3, 1)
    x = add((1, h, w, 1), "input", p.in_scale, p.in_zp)
    cw = add((c, 3, 3, 1), "conv/weights", conv_scales, [0] * c, p.conv_w)
    cb = add((c,), "conv/bias", [p.in_scale * v for v in conv_scales], [0] * c, p.conv_b, "int32")
    conv = add((1, h2, w2, c), "conv/relu", p.conv_scale, p.conv_zp)
    dw = add((1, 3, 3, 1), "dw/weights", [dw_scale], [0], dw_w, qdim=3)
    db = add((1,), "dw/bias", [p.in_scale * dw_scale], [0], np.array([25], np.int32), "int32")
    dwo = add((1, h2, w2, 1), "dw/relu", 0.03, -20)
    pads = add(
        (4, 2),
        "pad/paddings",
        None,
        None,
        np.array([[0, 0], [0, 0], [0, 0], [0, c - 1]], dtype=np.int32),
        "int32",
    )
    padded = add((1, h2, w2, c), "pad", 0.03, -20)
    sm = add((1, h2, w2, c), "add", p.conv_scale, p.conv_zp)
    pool = add((1, 1, 1, c), "pool", p.conv_scale, p.conv_zp)
    shape = add((2,), "reshape/shape", None, None, np.array([1, c], dtype=np.int32), "int32")
    resh = add((1, c), "reshape", p.conv_scale, p.conv_zp)
    fw = add((2, c), "fc/weights", p.fc_w_scale, 0, p.fc_w)
    fb = add((2,), "fc/bias", p.conv_scale * p.fc_w_scale, 0, p.fc_b, "int32")
    out = add((1, 2), "Identity", p.out_scale, p.out_zp)
    relu = "RELU"
    ops = [
        OpDef(
            "CONV_2D",
            [x, cw, cb],
            [conv],
            {"padding": "SAME", "stride_w": 2, "stride_h": 2, "fused_activation_function": relu},
        ),
        OpDef(
            "DEPTHWISE_CONV_2D",
            [x, dw, db],
            [dwo],
            {
                "padding": "SAME",
                "stride_w": 2,
                "stride_h": 2,
                "depth_multiplier": 1,
                "fused_activation_function": relu,
            },
        ),
        OpDef("PAD", [dwo, pads], [padded]),
        OpDef("ADD", [conv, padded], [sm]),
        OpDef(
            "AVERAGE_POOL_2D",
            [sm],
            [pool],
            {
                "padding": "VALID",
                "stride_w": 1,
                "stride_h": 1,
                "filter_width": w2,
                "filter_height": h2,
            },
        ),
        OpDef("RESHAPE", [pool, shape], [resh], {"new_shape": [1, c]}),
        OpDef("FULLY_CONNECTED", [resh, fw, fb], [out]),
    ]
    return build_model(t, ops, [x], [out], f"armvww VWW operator set {h}x{w} int8")


def float_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """The tiny VWW graph in float32 (foreign: armvww runs int8 models only).

    Raises:
        InputError: a non-positive size.
    """
    return _tiny_graph(hw, dtype="float32")


def wrong_output_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """The tiny VWW graph with an int8 (1, 3) output (foreign: VWW has two classes).

    Raises:
        InputError: a non-positive size.
    """
    return _tiny_graph(hw, classes=3)


def two_input_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """Two int8 image inputs, ADDed, then the tiny VWW graph (foreign: one input expected).

    Raises:
        InputError: a non-positive size.
    """
    return _tiny_graph(hw, n_inputs=2)


def rgb_input_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """The tiny VWW graph on an int8 (1, H, W, 3) input (foreign: VWW is greyscale).

    Raises:
        InputError: a non-positive size.
    """
    return _tiny_graph(hw, channels=3)


def custom_op_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """The tiny VWW graph with a CUSTOM operator ``ArmvwwTestOp`` that no runtime knows.

    Raises:
        InputError: a non-positive size.
    """
    return _tiny_graph(hw, custom=True)


def dynamic_shape_model(hw: tuple[int, int] = (8, 8)) -> bytes:
    """The tiny VWW graph whose input has ``shape_signature`` (-1, H, W, 1): a dynamic batch.

    Its ``shape`` is (1, H, W, 1), as the converter writes it; only the signature is dynamic.

    Raises:
        InputError: a non-positive size.
    """
    return _tiny_graph(hw, dynamic=True)


# --------------------------------------------------------------------------------------------
# Rewriting: intermediate tensors as extra outputs.
# --------------------------------------------------------------------------------------------


def all_intermediate_tensors(model: Model) -> list[int]:
    """Every operator output in execution order, without the model's own output.

    The result can be passed to :func:`with_extra_outputs` as is.
    """
    seen = {model.output.index}
    out: list[int] = []
    for op in model.operators:
        for t in op.outputs:
            if t >= 0 and t not in seen:
                seen.add(t)
                out.append(t)
    return out


def _field_pos(t: flatbuf.Table, index: int) -> int:
    """Absolute position of field ``index`` of table ``t`` (0 when absent)."""
    vt = t.pos - _I32.unpack_from(t.buf, t.pos)[0]
    vt_len = struct.unpack_from("<H", t.buf, vt)[0]
    slot = 4 + 2 * index
    if slot + 2 > vt_len:
        return 0
    off = struct.unpack_from("<H", t.buf, vt + slot)[0]
    return t.pos + off if off else 0


def _append(data: bytearray, frag: bytes, align: int, obj_from_end: int) -> int:
    """Append ``frag`` at an ``align``-aligned position; return the object's position."""
    data.extend(bytes((-len(data)) % align))
    start = len(data)
    data.extend(frag)
    return start + len(frag) - obj_from_end


def _patch_uoffset(data: bytearray, field_pos: int, target: int) -> None:
    if target <= field_pos:
        raise ModelIntegrityError("internal error: a patched uoffset would point backwards")
    _U32.pack_into(data, field_pos, target - field_pos)


def with_extra_outputs(data: bytes, tensor_indices: Sequence[int]) -> bytes:
    """Rewrite a TFLite model so that ``tensor_indices`` become extra outputs of subgraph 0.

    The original outputs keep their places; the new ones follow in the given order, so output
    ``k + len(original outputs)`` is tensor ``tensor_indices[k]``. Nothing is moved: the new
    output vector is appended to the file and the subgraph's ``outputs`` offset re-pointed at
    it. SignatureDefs of subgraph 0 get matching entries (named after the tensors), so
    signature runners see the extra outputs too. The original bytes are left as they were.

    Raises:
        InputError: an index outside the tensor list, a duplicate, a tensor that is already an
            output, or a constant tensor.
        ModelIntegrityError: ``data`` is not a readable TFLite flatbuffer.
        UnsupportedModelError: the model's subgraph 0 has no outputs field to extend.
    """
    data = bytes(data)
    try:
        root = flatbuf.root(data, TFLITE_IDENTIFIER)
        sg = next(root.tables(2), None)
        if sg is None:
            raise UnsupportedModelError("the model has no subgraph to add outputs to")
        outputs = sg.i32_vector(2)
        tensors = list(sg.tables(0))
        const_buffers = {
            i for i, b in enumerate(root.tables(4)) if b.bytes_vector(0)[1] or b.u64(2)
        }
        wanted = [int(i) for i in tensor_indices]
        names = [t.string(3) or f"tensor_{i}" for i, t in enumerate(tensors)]
        for i in wanted:
            if not 0 <= i < len(tensors):
                raise InputError(f"tensor {i} does not exist; the subgraph has {len(tensors)}")
            if i in outputs:
                raise InputError(f"tensor {i} ({names[i]!r}) is already a subgraph output")
            if tensors[i].u32(2) in const_buffers:
                raise InputError(f"tensor {i} ({names[i]!r}) is a constant, not an activation")
        if len(set(wanted)) != len(wanted):
            raise InputError(f"tensor_indices has duplicates: {wanted}")
        out_field = _field_pos(sg, 2)
        if not out_field:
            raise UnsupportedModelError("subgraph 0 has no outputs field to extend")
        signatures = [s for s in root.tables(7) if s.u32(4) == 0 and _field_pos(s, 1)]
        sig_maps = [[(m.string(0) or "", m.u32(1)) for m in s.tables(1)] for s in signatures]
    except flatbuf.FlatbufferError as exc:
        raise ModelIntegrityError(f"not a readable TFLite flatbuffer: {exc}") from exc
    if not wanted:
        return data

    out = bytearray(data)
    vec = _append(out, b"", 4, 0)
    out.extend(_U32.pack(len(outputs) + len(wanted)))
    out.extend(struct.pack(f"<{len(outputs) + len(wanted)}i", *outputs, *wanted))
    _patch_uoffset(out, out_field, vec)

    for s, maps in zip(signatures, sig_maps, strict=True):
        taken = {n for n, _ in maps}
        entries = list(maps)
        for i in wanted:
            name, k = names[i], 1
            while name in taken:
                name, k = f"{names[i]}_{k}", k + 1
            taken.add(name)
            entries.append((name, i))
        b = Builder(1024)
        vec_off = _tensor_maps(b, entries)
        align = max(b.minalign, 4)
        b.Prep(align, 0)  # pad the front: the fragment is placed at an `align` multiple
        frag = bytes(b.Bytes[b.Head() :])  # unfinished: no root, only the vector
        _patch_uoffset(out, _field_pos(s, 1), _append(out, frag, align, vec_off))
    return bytes(out)
