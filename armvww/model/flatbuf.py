"""A small, bounds-checked reader for FlatBuffers tables (no code generation, no native code).

Every access checks that offsets and lengths stay inside the buffer, so hostile bytes end in
:class:`FlatbufferError` rather than an ``IndexError``, a huge allocation or a hang.
Only the subset the TFLite schema needs is implemented: tables, scalars, strings and
vectors of scalars or tables.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

_U8: Final = struct.Struct("<B")
_I8: Final = struct.Struct("<b")
_U16: Final = struct.Struct("<H")
_I32: Final = struct.Struct("<i")
_U32: Final = struct.Struct("<I")
_I64: Final = struct.Struct("<q")
_U64: Final = struct.Struct("<Q")
_F32: Final = struct.Struct("<f")

#: Upper bound on the element count of any vector we will iterate (guards against hostile sizes).
MAX_VECTOR: Final = 1 << 24


class FlatbufferError(ValueError):
    """The bytes are not a well-formed FlatBuffer for the field being read."""


class Table:
    """A view of one FlatBuffers table inside ``buf`` at absolute position ``pos``."""

    __slots__ = ("_vt", "_vt_len", "buf", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        _need(buf, pos, 4, "table")
        soff = _I32.unpack_from(buf, pos)[0]
        vt = pos - soff
        _need(buf, vt, 4, "vtable")
        vt_len = _U16.unpack_from(buf, vt)[0]
        if vt_len < 4 or vt_len % 2:
            raise FlatbufferError(f"vtable at {vt} has an invalid length {vt_len}")
        _need(buf, vt, vt_len, "vtable")
        self._vt = vt
        self._vt_len = vt_len

    def _field(self, index: int) -> int:
        """Absolute position of field ``index``, or 0 when it is absent."""
        slot = 4 + 2 * index
        if slot + 2 > self._vt_len:
            return 0
        off: int = _U16.unpack_from(self.buf, self._vt + slot)[0]
        return self.pos + off if off else 0

    def has(self, index: int) -> bool:
        return self._field(index) != 0

    def _scalar(self, index: int, fmt: struct.Struct, default: int | float) -> int | float:
        p = self._field(index)
        if not p:
            return default
        _need(self.buf, p, fmt.size, "scalar field")
        value: int | float = fmt.unpack_from(self.buf, p)[0]
        return value

    def u8(self, index: int, default: int = 0) -> int:
        return int(self._scalar(index, _U8, default))

    def i8(self, index: int, default: int = 0) -> int:
        return int(self._scalar(index, _I8, default))

    def i32(self, index: int, default: int = 0) -> int:
        return int(self._scalar(index, _I32, default))

    def u32(self, index: int, default: int = 0) -> int:
        return int(self._scalar(index, _U32, default))

    def u64(self, index: int, default: int = 0) -> int:
        return int(self._scalar(index, _U64, default))

    def f32(self, index: int, default: float = 0.0) -> float:
        return float(self._scalar(index, _F32, default))

    def _indirect(self, index: int) -> int:
        p = self._field(index)
        if not p:
            return 0
        _need(self.buf, p, 4, "offset field")
        target: int = p + _U32.unpack_from(self.buf, p)[0]
        _need(self.buf, target, 4, "offset target")
        return target

    def table(self, index: int) -> Table | None:
        t = self._indirect(index)
        return Table(self.buf, t) if t else None

    def string(self, index: int, strict: bool = False) -> str | None:
        """A string field (None when absent). FlatBuffers strings are UTF-8: with ``strict``
        other bytes raise UnicodeDecodeError, else they are replaced."""
        v = self._indirect(index)
        if not v:
            return None
        n = _U32.unpack_from(self.buf, v)[0]
        _need(self.buf, v + 4, n, "string")
        return bytes(self.buf[v + 4 : v + 4 + n]).decode("utf-8", "strict" if strict else "replace")

    def vector_info(self, index: int, elem_size: int) -> tuple[int, int]:
        """Return ``(start, length)`` of a vector field; ``(0, 0)`` when absent."""
        v = self._indirect(index)
        if not v:
            return 0, 0
        n = _U32.unpack_from(self.buf, v)[0]
        if n > MAX_VECTOR:
            raise FlatbufferError(f"vector at {v} claims {n} elements (limit {MAX_VECTOR})")
        _need(self.buf, v + 4, n * elem_size, "vector")
        return v + 4, n

    def vector_len(self, index: int) -> int:
        return self.vector_info(index, 1)[1] if self.has(index) else 0

    def _scalars(self, index: int, fmt: struct.Struct) -> list[int] | list[float]:
        start, n = self.vector_info(index, fmt.size)
        return [fmt.unpack_from(self.buf, start + i * fmt.size)[0] for i in range(n)]

    def i32_vector(self, index: int) -> list[int]:
        return [int(x) for x in self._scalars(index, _I32)]

    def i64_vector(self, index: int) -> list[int]:
        return [int(x) for x in self._scalars(index, _I64)]

    def f32_vector(self, index: int) -> list[float]:
        return [float(x) for x in self._scalars(index, _F32)]

    def bytes_vector(self, index: int) -> tuple[int, int]:
        """``(start, length)`` of a ``[ubyte]`` field, without copying it."""
        return self.vector_info(index, 1)

    def tables(self, index: int) -> Iterator[Table]:
        start, n = self.vector_info(index, 4)
        for i in range(n):
            p = start + 4 * i
            yield Table(self.buf, p + _U32.unpack_from(self.buf, p)[0])


def root(buf: bytes | memoryview, identifier: bytes | None = None) -> Table:
    """Return the root table of ``buf``, checking the 4-byte file identifier if given."""
    if len(buf) < 8:
        raise FlatbufferError(f"{len(buf)} bytes is too short for a FlatBuffer (need >= 8)")
    if identifier is not None and bytes(buf[4:8]) != identifier:
        found = bytes(buf[4:8])
        raise FlatbufferError(f"file identifier is {found!r}, expected {identifier!r}")
    return Table(buf, _U32.unpack_from(buf, 0)[0])


def _need(buf: bytes | memoryview, pos: int, size: int, what: str) -> None:
    if pos < 0 or size < 0 or pos + size > len(buf):
        raise FlatbufferError(
            f"{what} at offset {pos} (+{size} bytes) lies outside the {len(buf)}-byte buffer"
        )
