"""Tests for armvww.model.tflite_build: the FlatBuffers writer, the generated models and the
rewriter.

Pure tests read the written bytes back with armvww.model.flatbuf (an independent reader) and
armvww.model.parse_model. Tests marked ``litert`` run the models in LiteRT and compare
against numpy references; tests that need the real ML-zoo models look for them in
``$ARMVWW_SHARED/models`` (default ``<repo>/../shared/models``).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from armvww.errors import InputError, ModelIntegrityError, UnsupportedModelError
from armvww.model import OP_CODES, TENSOR_TYPES, flatbuf, parse_model
from armvww.model import tflite_build as tb

from .conftest import MODELS, need_data

REAL_MODELS = ["vww2_50_50_INT8.tflite", "vww4_128_128_INT8.tflite"]

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _real_model(name: str) -> bytes:
    need_data()
    return (MODELS / name).read_bytes()


def _interp_module() -> Any:
    return pytest.importorskip(
        "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is not importable"
    )


def _run(data: bytes, inputs: list[np.ndarray], **kwargs: Any) -> tuple[list[np.ndarray], Any]:
    """Run ``data`` in LiteRT; return its outputs (in subgraph order) and the interpreter."""
    mod = _interp_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = mod.Interpreter(model_content=data, **kwargs)
    it.allocate_tensors()
    for det, x in zip(it.get_input_details(), inputs, strict=True):
        it.set_tensor(det["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()], it


def _round_away(v: np.ndarray) -> np.ndarray:
    """Round half away from zero (TFLite's requantisation rounding)."""
    out: np.ndarray = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return out


def _quantize(real: np.ndarray, scale: float, zp: int) -> np.ndarray:
    q = _round_away(np.asarray(real, dtype=np.float64) / scale) + zp
    out: np.ndarray = np.clip(q, -128, 127).astype(np.int8)
    return out


def _requant(acc: np.ndarray, multiplier: np.ndarray | float, zp: int) -> np.ndarray:
    q = _round_away(acc.astype(np.float64) * multiplier) + zp
    out: np.ndarray = np.clip(q, -128, 127).astype(np.int8)
    return out


def _conv_same_s2(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """3x3 stride-2 SAME correlation of x (H, W, Cin) with w (Cout, 3, 3, Cin); pads with 0."""
    h, wd, _ = x.shape
    oh, ow = math.ceil(h / 2), math.ceil(wd / 2)
    ph = max((oh - 1) * 2 + 3 - h, 0)
    pw = max((ow - 1) * 2 + 3 - wd, 0)
    xp = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((oh, ow, w.shape[0]), dtype=np.result_type(x, w))
    for i in range(oh):
        for j in range(ow):
            patch = xp[2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
            out[i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _tiny_reference(p: tb.TinyVwwParams, x: np.ndarray) -> dict[str, np.ndarray]:
    """Integer-accumulate / float-requantise reference of tiny_vww_model, layer by layer."""
    xi = x[0].astype(np.int64) - p.in_zp  # padding with the zero point == padding with 0 here
    acc = _conv_same_s2(xi, p.conv_w.astype(np.int64)) + p.conv_b
    conv = _requant(acc, p.in_scale * p.conv_w_scales / p.conv_scale, p.conv_zp)
    conv = np.maximum(conv, p.conv_zp)[None]  # fused ReLU: real 0 is the zero point
    pool = _quantize(
        (conv.astype(np.float64) - p.conv_zp).mean(axis=(1, 2), keepdims=True) * p.conv_scale,
        p.conv_scale,
        p.conv_zp,
    )
    return {"conv": conv, "pool": pool, "reshape": pool.reshape(1, -1), **_fc(p, pool)}


def _fc(p: tb.TinyVwwParams, act: np.ndarray) -> dict[str, np.ndarray]:
    a = act.reshape(1, -1).astype(np.int64) - p.conv_zp
    acc = a @ p.fc_w.astype(np.int64).T + p.fc_b
    return {"out": _requant(acc, p.conv_scale * p.fc_w_scale / p.out_scale, p.out_zp)}


def _tiny_float_reference(p: tb.TinyVwwParams, xf: np.ndarray) -> np.ndarray:
    """Pure float reference of float_model (same constants, dequantised)."""
    wf = p.conv_w * p.conv_w_scales[:, None, None, None]
    bf = p.conv_b * p.in_scale * p.conv_w_scales
    conv = np.maximum(_conv_same_s2(xf[0].astype(np.float64), wf) + bf, 0.0)
    pooled = conv.mean(axis=(0, 1))
    out: np.ndarray = pooled @ (p.fc_w * p.fc_w_scale).T + p.fc_b * p.conv_scale * p.fc_w_scale
    return out[None]


def _tables_aligned(data: bytes) -> Iterator[tuple[str, int, int]]:
    """Yield (what, position, required alignment) for every vector the model contains."""
    r = flatbuf.root(data, b"TFL3")
    for b in r.tables(4):
        start, n = b.bytes_vector(0)
        if n:
            yield "buffer data", start, 16
    for sg in r.tables(2):
        for field in (1, 2):
            yield "subgraph io", sg.vector_info(field, 4)[0], 4
        for t in sg.tables(0):
            yield "shape", t.vector_info(0, 4)[0], 4
            q = t.table(4)
            if q is not None and q.has(3):
                yield "zero points", q.vector_info(3, 8)[0], 8
                yield "scales", q.vector_info(2, 4)[0], 4
        for op in sg.tables(3):
            yield "op inputs", op.vector_info(1, 4)[0], 4


# --------------------------------------------------------------------------------------------
# the writer, read back with our own reader
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(8, 8), (5, 7), (50, 50), (1, 1)])
def test_tiny_vww_parses_with_the_right_facts(hw: tuple[int, int]) -> None:
    data = tb.tiny_vww_model(hw)
    assert data[4:8] == b"TFL3"
    m = parse_model(data)
    p = tb.tiny_vww_params(hw)
    assert m.input.shape == (1, *hw, 1) and m.input.dtype == "int8"
    assert m.input.zero_point == p.in_zp
    assert m.input.scale == pytest.approx(p.in_scale, rel=1e-7)
    assert m.output.shape == (1, 2) and m.output.dtype == "int8"
    assert m.output.scale == pytest.approx(p.out_scale, rel=1e-7)
    assert m.output.zero_point == p.out_zp
    assert [o.op for o in m.operators] == [
        "CONV_2D",
        "AVERAGE_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
    ]
    weights = m.tensors[m.operators[0].inputs[1]]
    assert weights.is_constant and weights.shape == (4, 3, 3, 1)
    assert weights.scales == pytest.approx(tuple(p.conv_w_scales))  # per-channel survives
    assert m.description.startswith("armvww tiny VWW")


def test_layout_follows_the_converter() -> None:
    data = tb.tiny_vww_model()
    r = flatbuf.root(data, b"TFL3")
    assert r.u32(0) == 3
    buffers = list(r.tables(4))
    assert buffers[0].bytes_vector(0) == (0, 0)  # the empty sentinel
    sg = next(r.tables(2))
    tensors = list(sg.tables(0))
    assert [t.u32(2) for t in tensors] == list(range(1, len(tensors) + 1))
    assert len(buffers) == len(tensors) + 1
    w = tensors[1]
    start, n = buffers[w.u32(2)].bytes_vector(0)
    p = tb.tiny_vww_params()
    assert np.array_equal(np.frombuffer(data[start : start + n], np.int8), p.conv_w.ravel())
    assert sg.string(4) == "main"


def test_every_vector_is_aligned() -> None:
    for data in (tb.tiny_vww_model(), tb.pad_probe_model(True), tb.float_model()):
        for what, pos, align in _tables_aligned(data):
            assert pos % align == 0, f"{what} at {pos} is not {align}-aligned"


def test_builtin_options_are_written_with_schema_ids() -> None:
    data = tb.tiny_vww_model((8, 6))
    sg = next(flatbuf.root(data, b"TFL3").tables(2))
    conv, pool, reshape, fc = list(sg.tables(3))
    # union type codes from schema.fbs: Conv2D 1, Pool2D 5, FullyConnected 8, Reshape 17
    assert [o.u8(3) for o in (conv, pool, reshape, fc)] == [1, 5, 17, 8]
    c = conv.table(4)
    assert c is not None
    assert (c.i8(0), c.i32(1), c.i32(2), c.i8(3), c.i32(4, 1), c.i32(5, 1)) == (0, 2, 2, 1, 1, 1)
    pl = pool.table(4)
    assert pl is not None
    assert (pl.i8(0), pl.i32(1), pl.i32(2), pl.i32(3), pl.i32(4)) == (1, 1, 1, 3, 4)
    rs = reshape.table(4)
    assert rs is not None and rs.i32_vector(0) == [1, 4]
    codes = [max(oc.i8(0), oc.i32(3)) for oc in flatbuf.root(data, b"TFL3").tables(1)]
    assert codes == [
        OP_CODES[n] for n in ("CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED")
    ]


def test_options_enums_floats_and_depthwise() -> None:
    t = tb.TensorDef
    data = tb.build_model(
        [
            t((1, 4, 4, 2), "float32", "x"),
            t((1, 3, 3, 4), "float32", "w", data=np.ones((1, 3, 3, 4), np.float32)),
            t((4,), "float32", "b", data=np.zeros(4, np.float32)),
            t((1, 2, 2, 4), "float32", "y"),
            t((1, 2, 2, 4), "float32", "z"),
        ],
        [
            tb.OpDef(
                "DEPTHWISE_CONV_2D",
                [0, 1, 2],
                [3],
                {
                    "padding": "VALID",
                    "depth_multiplier": 2,
                    "fused_activation_function": "RELU6",
                    "dilation_h_factor": 1,
                },
            ),
            tb.OpDef("SOFTMAX", [3], [4], {"beta": 0.5}),
        ],
        [0],
        [4],
    )
    ops = list(next(flatbuf.root(data, b"TFL3").tables(2)).tables(3))
    assert [o.u8(3) for o in ops] == [2, 9]
    dw, sm = ops[0].table(4), ops[1].table(4)
    assert dw is not None and sm is not None
    assert (dw.i8(0), dw.i32(3), dw.i8(4)) == (1, 2, 3)
    assert sm.f32(0) == 0.5


def test_output_is_deterministic_and_golden() -> None:
    assert tb.tiny_vww_model() == tb.tiny_vww_model()
    # Golden hashes: regenerate only on purpose (a layout change is a format change).
    assert len(tb.pad_probe_model()) % 4 == 0
    assert hashlib.sha256(tb.pad_probe_model()).hexdigest() == PAD_PROBE_SHA256
    assert hashlib.sha256(tb.tiny_vww_model()).hexdigest() == TINY_VWW_SHA256


PAD_PROBE_SHA256 = "305a06985b0714b0b600f1c52f8c78abc4d1b100e30b3e3a279702bf5365620e"
TINY_VWW_SHA256 = "a6dd607fdb5fc4e71377830be4205345116478b47203ef752990dc64a5ea569f"


def _foreign() -> list[tuple[Callable[[], bytes], str]]:
    return [
        (tb.float_model, "float32"),
        (tb.wrong_output_model, "(1, 3)"),
        (tb.two_input_model, "2 inputs"),
        (tb.rgb_input_model, "(1, 8, 8, 3)"),
        (tb.custom_op_model, "ArmvwwTestOp"),
    ]


@pytest.mark.parametrize(("make", "says"), _foreign(), ids=lambda v: getattr(v, "__name__", v))
def test_foreign_models_are_rejected_with_the_reason(make: Callable[[], bytes], says: str) -> None:
    with pytest.raises(UnsupportedModelError, match=None) as exc:
        parse_model(make())
    assert says in str(exc.value)


def test_dynamic_shape_model_has_a_dynamic_signature() -> None:
    data = tb.dynamic_shape_model()
    sg = next(flatbuf.root(data, b"TFL3").tables(2))
    inp = next(sg.tables(0))
    assert inp.i32_vector(0) == [1, 8, 8, 1]
    assert inp.i32_vector(7) == [-1, 8, 8, 1]  # Tensor.shape_signature


def test_pad_probe_layout() -> None:
    for then_conv in (False, True):
        data = tb.pad_probe_model(then_conv)
        with pytest.raises(UnsupportedModelError, match=r"\(1, 4, 4, 1\)"):
            parse_model(data)  # not a VWW model, on purpose
        sg = next(flatbuf.root(data, b"TFL3").tables(2))
        tensors = list(sg.tables(0))
        first = next(sg.tables(3))
        inp = tensors[first.i32_vector(1)[0]]
        q = inp.table(4)
        assert q is not None and q.i64_vector(3) == [tb.PAD_PROBE_ZERO_POINT] != [0]
        codes = [max(oc.i8(0), oc.i32(3)) for oc in flatbuf.root(data, b"TFL3").tables(1)]
        assert codes[first.u32(0)] == OP_CODES["PAD"]


def test_pad_probe_expected_is_zero_point_padding() -> None:
    x = tb.pad_probe_input()
    want = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=tb.PAD_PROBE_ZERO_POINT)
    assert np.array_equal(tb.pad_probe_expected(x), want)
    assert tb.PAD_PROBE_ZERO_POINT not in x and 0 not in x
    with pytest.raises(InputError):
        tb.pad_probe_expected(x.astype(np.int16))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"ops": [tb.OpDef("NOT_AN_OP", [0], [1])]}, "not a TFLite builtin"),
        ({"ops": [tb.OpDef("ADD", [0, 0], [1], {"strid": 1})]}, "not fields of AddOptions"),
        ({"ops": [tb.OpDef("RELU", [0], [1], {"x": 1})]}, "takes no builtin options"),
        ({"ops": [tb.OpDef("ADD", [0, 7], [1])]}, "refers to tensor 7"),
        ({"ops": [tb.OpDef("CUSTOM", [0], [1])]}, "needs a custom_code"),
        (
            {"ops": [tb.OpDef("ADD", [0, 0], [1], {"fused_activation_function": "GELU"})]},
            "expected one of",
        ),
        ({"t0": tb.TensorDef((2,), "int8", data=np.zeros(3, np.int8))}, "data has 3"),
        ({"t0": tb.TensorDef((2,), "int8", data=np.zeros(2, np.int16))}, "int16 array"),
        ({"t0": tb.TensorDef((2,), "int8", data=b"\0")}, "needs 2 bytes"),
        ({"t0": tb.TensorDef((2,), "qint8")}, "dtype 'qint8'"),
        ({"t0": tb.TensorDef((2,), "int8", scale=[1.0, 2.0], zero_point=[0])}, "2 scales"),
    ],
)
def test_build_model_rejects_bad_specs(kwargs: dict[str, Any], says: str) -> None:
    t0 = kwargs.get("t0", tb.TensorDef((2,), "int8", "a", scale=0.1, zero_point=0))
    t1 = tb.TensorDef((2,), "int8", "b", scale=0.1, zero_point=0)
    ops = kwargs.get("ops", [tb.OpDef("ADD", [0, 0], [1])])
    with pytest.raises(InputError, match=None) as exc:
        tb.build_model([t0, t1], ops, [0], [1])
    assert says in str(exc.value)


def _roundtrip_case(
    shapes: list[tuple[int, ...]], names: list[str], dtypes: list[str], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    defs = []
    for i, (shape, name, dt) in enumerate(zip(shapes, names, dtypes, strict=True)):
        const = None
        if i % 2 and math.prod(shape):
            const = rng.integers(-100, 100, size=shape).astype(dt)
        defs.append(tb.TensorDef(shape, dt, name, scale=0.5 + i, zero_point=i - 3, data=const))
    defs.append(tb.TensorDef((1,), "float32", "sink"))
    model = tb.build_model(
        defs, [tb.OpDef("ADD", [0, 0], [len(defs) - 1])], [0], [len(defs) - 1], "d\u00e9scription"
    )
    r = flatbuf.root(model, b"TFL3")
    assert r.string(3) == "d\u00e9scription"
    buffers = list(r.tables(4))
    for d, t in zip(defs, list(next(r.tables(2)).tables(0)), strict=True):
        assert tuple(t.i32_vector(0)) == d.shape
        assert t.string(3) == (d.name or t.string(3))
        assert TENSOR_TYPES[t.i8(1)][0] == d.dtype
        q = t.table(4)
        assert q is not None
        scales = [] if d.scale is None else [d.scale]
        zps = [] if d.zero_point is None else [d.zero_point]
        assert (q.f32_vector(2), q.i64_vector(3)) == (scales, zps)
        start, n = buffers[t.u32(2)].bytes_vector(0)
        expect = b"" if d.data is None else np.asarray(d.data).tobytes()
        assert model[start : start + n] == expect
        assert start % 16 == 0 or n == 0


def test_roundtrip_fixed() -> None:
    _roundtrip_case(
        [(1, 3, 3, 1), (4,), (2, 5)], ["a", "", "\u4e2d\u6587"], ["int8", "int32", "int16"], 0
    )


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test extra

    def test_roundtrip_property_needs_hypothesis() -> None:
        pytest.skip("hypothesis is not installed")

else:
    _dims = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)
    _dt = st.sampled_from(["int8", "int32", "int16", "uint8", "int64"])

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(st.tuples(_dims, st.text(max_size=12), _dt), min_size=1, max_size=6),
        st.integers(0, 2**31),
    )
    def test_roundtrip_property(cases: list[tuple[tuple[int, ...], str, str]], seed: int) -> None:
        shapes, names, dtypes = (list(c) for c in zip(*cases, strict=True))
        _roundtrip_case(shapes, names, dtypes, seed)


# --------------------------------------------------------------------------------------------
# with_extra_outputs, pure
# --------------------------------------------------------------------------------------------


def test_all_intermediate_tensors_of_tiny_model() -> None:
    m = parse_model(tb.tiny_vww_model())
    got = tb.all_intermediate_tensors(m)
    assert got == [m.operators[0].outputs[0], m.operators[1].outputs[0], m.operators[2].outputs[0]]
    assert m.output.index not in got


def test_with_extra_outputs_appends_and_only_patches_one_offset() -> None:
    data = tb.tiny_vww_model()
    m = parse_model(data)
    extra = tb.all_intermediate_tensors(m)
    new = tb.with_extra_outputs(data, extra)
    sg = next(flatbuf.root(new, b"TFL3").tables(2))
    assert sg.i32_vector(2) == [m.output.index, *extra]
    assert sg.i32_vector(1) == [m.input.index]
    diff = [i for i in range(len(data)) if data[i] != new[i]]
    assert diff and max(diff) - min(diff) < 4  # the outputs uoffset, nothing else
    assert tb.with_extra_outputs(data, []) == data
    assert len(new) % 4 == 0  # parse_model refuses FlatBuffers whose size is not 4k
    for what, pos, align in _tables_aligned(new):
        assert pos % align == 0, f"{what} at {pos} is not {align}-aligned"


@pytest.mark.parametrize(
    ("indices", "exc", "says"),
    [
        ([99], InputError, "does not exist"),
        ([3, 3], InputError, "duplicates"),
        ([9], InputError, "already a subgraph output"),
        ([1], InputError, "is a constant"),
    ],
)
def test_with_extra_outputs_rejects(indices: list[int], exc: type[Exception], says: str) -> None:
    with pytest.raises(exc, match=None) as info:
        tb.with_extra_outputs(tb.tiny_vww_model(), indices)
    assert says in str(info.value)


def test_with_extra_outputs_rejects_garbage() -> None:
    good = tb.tiny_vww_model()
    with pytest.raises(ModelIntegrityError):
        tb.with_extra_outputs(b"\x08\0\0\0TFL3" + b"\xff" * 8, [0])
    with pytest.raises(ModelIntegrityError):
        tb.with_extra_outputs(good[:64], [3])


# --------------------------------------------------------------------------------------------
# LiteRT runs
# --------------------------------------------------------------------------------------------


def _seeded_inputs(shape: tuple[int, ...], n: int = 3) -> list[np.ndarray]:
    return [
        np.random.default_rng(seed).integers(-128, 128, size=shape, dtype=np.int8)
        for seed in range(n)
    ]


@pytest.mark.litert
@pytest.mark.parametrize("then_conv", [False, True])
def test_pad_probe_in_litert(then_conv: bool) -> None:
    data = tb.pad_probe_model(then_conv)
    for x in [tb.pad_probe_input(), *_seeded_inputs((1, 2, 2, 1))]:
        (out,), _ = _run(data, [x])
        assert out.dtype == np.int8 and out.shape == (1, 4, 4, 1)
        border = np.ones((4, 4), bool)
        border[1:3, 1:3] = False
        assert (out[0, :, :, 0][border] == tb.PAD_PROBE_ZERO_POINT).all()
        assert np.array_equal(out[:, 1:3, 1:3, :], x)
        assert np.array_equal(out, tb.pad_probe_expected(x))


@pytest.mark.litert
@pytest.mark.parametrize("hw", [(8, 8), (7, 5), (50, 50)])
def test_tiny_vww_matches_numpy_reference(hw: tuple[int, int]) -> None:
    p = tb.tiny_vww_params(hw)
    data = tb.tiny_vww_model(hw)
    m = parse_model(data)
    conv_t, pool_t, resh_t = tb.all_intermediate_tensors(m)
    probe = tb.with_extra_outputs(data, [conv_t, pool_t, resh_t])
    outs = []
    for x in _seeded_inputs((1, *hw, 1), 6):
        (out,), _ = _run(data, [x])
        (out2, conv, pool, resh), _ = _run(probe, [x])
        assert np.array_equal(out, out2)
        ref = _tiny_reference(p, x)
        # end to end, against the reference chain
        assert np.abs(out.astype(int) - ref["out"]).max() <= 1
        # layer by layer, each fed with LiteRT's own input to that layer
        assert np.abs(conv.astype(int) - ref["conv"]).max() <= 1
        fed_pool = _quantize(
            (conv.astype(np.float64) - p.conv_zp).mean(axis=(1, 2), keepdims=True) * p.conv_scale,
            p.conv_scale,
            p.conv_zp,
        )
        assert np.abs(pool.astype(int) - fed_pool).max() <= 1
        assert np.array_equal(resh, pool.reshape(1, -1))
        assert np.abs(out.astype(int) - _fc(p, resh)["out"]).max() <= 1
        assert (conv > p.conv_zp).mean() > 0.2  # the reference is not trivially saturated
        outs.append(tuple(out.ravel()))
    assert len(set(outs)) > 1  # the output depends on the input


@pytest.mark.litert
def test_float_model_matches_numpy_float() -> None:
    p = tb.tiny_vww_params()
    for x in _seeded_inputs((1, 8, 8, 1)):
        xf = ((x.astype(np.float64) - p.in_zp) * p.in_scale).astype(np.float32)
        (out,), _ = _run(tb.float_model(), [xf])
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, _tiny_float_reference(p, xf), rtol=1e-4, atol=1e-5)


@pytest.mark.litert
@pytest.mark.parametrize(
    ("make", "in_shapes", "out_shape"),
    [
        (tb.wrong_output_model, [(1, 8, 8, 1)], (1, 3)),
        (tb.two_input_model, [(1, 8, 8, 1)] * 2, (1, 2)),
        (tb.rgb_input_model, [(1, 8, 8, 3)], (1, 2)),
        (tb.dynamic_shape_model, [(1, 8, 8, 1)], (1, 2)),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_foreign_models_run_in_litert(
    make: Callable[[], bytes], in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]
) -> None:
    xs = [np.full(s, 5, np.int8) for s in in_shapes]
    (out,), it = _run(make(), xs)
    assert out.shape == out_shape and out.dtype == np.int8
    if make is tb.dynamic_shape_model:
        assert list(it.get_input_details()[0]["shape_signature"]) == [-1, 8, 8, 1]
    if make is tb.wrong_output_model:  # classes 0 and 1 are the tiny model's, class 2 is new
        (base,), _ = _run(tb.tiny_vww_model(), xs)
        p3 = tb.tiny_vww_params(classes=3)
        ref = _fc(p3, _tiny_reference(p3, xs[0])["pool"])["out"]
        assert np.abs(out.astype(int) - ref).max() <= 1
        assert np.abs(out[:, :2].astype(int) - base).max() <= 1


@pytest.mark.litert
def test_custom_op_model_is_refused_by_litert() -> None:
    with pytest.raises(RuntimeError, match="ArmvwwTestOp"):
        _run(tb.custom_op_model(), [np.zeros((1, 8, 8, 1), np.int8)])


@pytest.mark.litert
def test_with_extra_outputs_extends_signatures() -> None:
    t = tb.TensorDef
    data = tb.build_model(
        [
            t((1, 2, 2, 1), "int8", "x", scale=0.1, zero_point=-3),
            t((4, 2), "int32", "p", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)),
            t((1, 4, 4, 1), "int8", "padded", scale=0.1, zero_point=-3),
            t((1, 4, 4, 1), "int8", "z", scale=0.2, zero_point=0),
        ],
        [tb.OpDef("PAD", [0, 1], [2]), tb.OpDef("ADD", [2, 2], [3], {"pot_scale_int16": False})],
        [0],
        [3],
        signature_key="serving_default",
    )
    new = tb.with_extra_outputs(data, [2])
    mod = _interp_module()
    it = mod.Interpreter(model_content=new)
    assert it.get_signature_list()["serving_default"]["outputs"] == ["padded", "z"]
    x = tb.pad_probe_input()
    got = it.get_signature_runner("serving_default")(x=x)
    assert np.array_equal(
        got["padded"], np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-3)
    )
    base = mod.Interpreter(model_content=data).get_signature_runner("serving_default")(x=x)
    assert np.array_equal(got["z"], base["z"])


@pytest.mark.litert
@pytest.mark.parametrize("name", REAL_MODELS)
@pytest.mark.parametrize("resolver", ["AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"])
def test_with_extra_outputs_on_real_models(name: str, resolver: str) -> None:
    data = _real_model(name)
    mod = _interp_module()
    kw = {"experimental_op_resolver_type": getattr(mod.OpResolverType, resolver)}
    m = parse_model(data)
    extra = tb.all_intermediate_tensors(m)
    assert len(extra) == len(m.operators) - 1
    new = tb.with_extra_outputs(data, extra)
    assert new[: len(data)] != data and len(new) > len(data)
    for x in _seeded_inputs(m.input.shape):
        (orig,), _ = _run(data, [x], **kw)
        outs, it = _run(new, [x], **kw)
        assert [d["index"] for d in it.get_output_details()] == [m.output.index, *extra]
        assert outs[0].tobytes() == orig.tobytes()  # bit for bit
        _, ref = _run(data, [x], experimental_preserve_all_tensors=True, **kw)
        assert ref.get_tensor(m.output.index).tobytes() == orig.tobytes()
        for k, idx in enumerate(extra):
            want = ref.get_tensor(idx)
            assert outs[k + 1].shape == want.shape == m.tensors[idx].shape
            assert np.array_equal(outs[k + 1], want), f"tensor {idx} ({m.tensors[idx].name})"
        assert len({o.tobytes() for o in outs[1:]}) > len(outs) // 2  # really distinct layers


def test_vww_ops_model_has_each_vww_operator_once() -> None:
    m = parse_model(tb.vww_ops_model(), "vww_ops_model")
    assert [o.op for o in m.operators] == [*tb.VWW_OP_TYPES, "FULLY_CONNECTED"]
    assert m.input.shape == (1, 8, 8, 1) and m.output.shape == (1, 2)
    # the six types of Arm's MicroNet VWW models (the real model, when present)
    vww2 = MODELS / "vww2_50_50_INT8.tflite"
    if vww2.is_file():
        assert set(parse_model(vww2.read_bytes()).ops) == set(tb.VWW_OP_TYPES)


@pytest.mark.litert
def test_vww_ops_model_shares_the_probe_models_layers() -> None:
    """Its CONV_2D, AVERAGE_POOL_2D, RESHAPE and FULLY_CONNECTED are tiny_vww_model's (the
    probe's trial model): the same tensors (shape, type, quantisation, constant data) and,
    fed the same tensor, the same results; so GpuAcc builds the same OpenCL programs for
    them (Arm Compute Library bakes shapes and quantisation into the build options)."""
    from ai_edge_litert.interpreter import Interpreter

    def tensors(data: bytes) -> tuple[Any, dict[str, dict[str, Any]]]:
        it = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        return it, {t["name"]: t for t in it.get_tensor_details()}

    ops_it, ops = tensors(tb.vww_ops_model())
    tiny_it, tiny = tensors(tb.tiny_vww_model())
    shared = ("conv/weights", "conv/bias", "conv/relu", "pool", "reshape", "fc/weights")
    for name in (*shared, "fc/bias", "Identity"):
        a, b = ops[name], tiny[name]
        assert (a["shape"].tolist(), a["dtype"]) == (b["shape"].tolist(), b["dtype"]), name
        qa, qb = a["quantization_parameters"], b["quantization_parameters"]
        assert all(np.array_equal(qa[k], qb[k]) for k in ("scales", "zero_points")), name
    for name in ("conv/weights", "conv/bias", "fc/weights", "fc/bias"):
        assert np.array_equal(
            ops_it.get_tensor(ops[name]["index"]), tiny_it.get_tensor(tiny[name]["index"])
        )
    # the ADD's output has the CONV's quantisation, so the pool and the head are the same
    qa, qc = ops["add"]["quantization_parameters"], ops["conv/relu"]["quantization_parameters"]
    assert np.array_equal(qa["scales"], qc["scales"]) and np.array_equal(
        qa["zero_points"], qc["zero_points"]
    )
    rng = np.random.default_rng(3)
    for _ in range(5):  # same options: the same input gives the same CONV output
        x = rng.integers(-128, 128, (1, 8, 8, 1), dtype=np.int8)
        for it in (ops_it, tiny_it):
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
        conv = [
            it.get_tensor(d["conv/relu"]["index"]) for it, d in ((ops_it, ops), (tiny_it, tiny))
        ]
        assert np.array_equal(*conv)


@pytest.mark.litert
def test_vww_ops_model_runs_and_spreads_its_outputs() -> None:
    """LiteRT runs it, and different inputs give different outputs (not saturated), so a
    backend that gets an operator wrong shows up in a parity comparison."""
    rng = np.random.default_rng(0)
    outs = set()
    for _ in range(20):
        x = rng.integers(-128, 128, (1, 8, 8, 1), dtype=np.int8)
        (y,), _ = _run(tb.vww_ops_model(), [x])
        outs.add(tuple(y.reshape(-1).tolist()))
    assert len(outs) >= 8, outs
