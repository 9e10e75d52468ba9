"""The model layer: facts read from the flatbuffer, validation, typed errors."""

from __future__ import annotations

import struct

import pytest

from armvww.errors import ArmvwwError, ModelIntegrityError, UnsupportedModelError
from armvww.model import manifest, parse_model


def test_vww2_facts(vww2_bytes: bytes) -> None:
    m = parse_model(vww2_bytes, "vww2_50_50_INT8.tflite", "vww2_50_50_INT8.tflite")
    assert m.known is not None and m.known.name == "vww2"
    assert m.size == 280384 and m.sha1 == "5d887ca438c0a7feeed3c8c22dce99b55565c8ea"
    assert (m.input.name, m.input.shape, m.input.dtype) == ("input", (1, 50, 50, 1), "int8")
    assert m.input.zero_point == -72 and m.input.scale == pytest.approx(0.00754918, rel=1e-6)
    assert (m.output.name, m.output.shape, m.output.dtype) == ("Identity", (1, 2), "int8")
    assert m.output.zero_point == 34 and m.output.scale == pytest.approx(0.05457818, rel=1e-6)
    assert m.ops == ("ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "RESHAPE")
    assert len(m.operators) == 71 and m.op_counts["PAD"] == 5
    assert m.input_hw == (50, 50) and m.labels == ("no_person", "person")


def test_vww4_facts(vww4_bytes: bytes) -> None:
    m = parse_model(vww4_bytes)
    assert m.known is not None and m.known.name == "vww4"
    assert m.input.shape == (1, 128, 128, 1) and m.input.zero_point == -70
    assert m.output.shape == (1, 2) and m.output.zero_point == -17
    assert m.input_hw == (128, 128)


def test_ops_agree_with_litert(vww2_bytes: bytes) -> None:
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    it = interp.Interpreter(model_content=vww2_bytes)
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert ops == [o.op for o in parse_model(vww2_bytes).operators]


def test_model_is_immutable(vww2_bytes: bytes) -> None:
    m = parse_model(vww2_bytes)
    with pytest.raises(AttributeError):
        m.sha1 = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "err", "words"),
    [
        (b"", ModelIntegrityError, "empty"),
        (b"\x00" * 4, ModelIntegrityError, "not a TFLite"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, ModelIntegrityError, "not a TFLite"),
    ],
)
def test_garbage_is_refused(data: bytes, err: type[Exception], words: str) -> None:
    with pytest.raises(err, match=words):
        parse_model(data)


@pytest.mark.parametrize("cut", [8, 100, 1000, 50000, 280383])
def test_truncated_model_is_a_typed_error(vww2_bytes: bytes, cut: int) -> None:
    with pytest.raises(ArmvwwError):
        parse_model(vww2_bytes[:cut])


def test_truncated_known_name_is_a_hash_error(vww2_bytes: bytes) -> None:
    with pytest.raises(ModelIntegrityError, match=r"should be ML-zoo vww2.*armvww fetch vww2"):
        parse_model(vww2_bytes[:-1], "x", name_hint="vww2")


def test_bit_flip_in_known_file_is_refused(vww2_bytes: bytes) -> None:
    b = bytearray(vww2_bytes)
    b[200000] ^= 0x10  # a weight byte: still a well-formed flatbuffer
    with pytest.raises(ModelIntegrityError, match="SHA-1"):
        parse_model(bytes(b), "vww2_50_50_INT8.tflite", name_hint="vww2_50_50_INT8.tflite")
    # without a name the same bytes are a valid, unknown model
    m = parse_model(bytes(b))
    assert m.known is None


def test_root_offset_out_of_range(vww2_bytes: bytes) -> None:
    b = bytearray(vww2_bytes)
    struct.pack_into("<I", b, 0, len(b) + 100)
    with pytest.raises(ModelIntegrityError, match="outside"):
        parse_model(bytes(b))


def test_huge_dimension_is_refused(vww2_bytes: bytes) -> None:
    m = parse_model(vww2_bytes)
    # find the input tensor's shape vector: 4 int32 (1, 50, 50, 1) preceded by its length 4
    needle = struct.pack("<5i", 4, 1, 50, 50, 1)
    pos = vww2_bytes.find(needle)
    assert pos > 0 and m.input.shape == (1, 50, 50, 1)
    b = bytearray(vww2_bytes)
    struct.pack_into("<2i", b, pos + 8, 1 << 20, 1 << 20)
    with pytest.raises(UnsupportedModelError, match="elements"):
        parse_model(bytes(b))


def test_manifest_lookup() -> None:
    assert manifest.by_name("vww4") is manifest.KNOWN_MODELS["vww4"]
    assert manifest.by_name("vww2_50_50_INT8.tflite") is manifest.KNOWN_MODELS["vww2"]
    assert manifest.by_sha1("0" * 40) is None
    for m in manifest.KNOWN_MODELS.values():
        assert m.url.startswith("https://") and manifest.ML_ZOO_COMMIT in m.url
        assert m.url.endswith(m.filename)


def test_generated_foreign_models_are_refused() -> None:
    from armvww.model import tflite_build as tb

    for make, says in (
        (tb.dynamic_shape_model, "dynamic shape"),
        (tb.float_model, "float32"),
        (tb.wrong_output_model, "(1, 3)"),
        (tb.two_input_model, "2 inputs"),
        (tb.rgb_input_model, "(1, 8, 8, 3)"),
        (tb.custom_op_model, "custom operator"),
    ):
        with pytest.raises(UnsupportedModelError) as exc:
            parse_model(make())
        assert says in str(exc.value), (make.__name__, str(exc.value))
    assert parse_model(tb.tiny_vww_model()).input_hw == (8, 8)
