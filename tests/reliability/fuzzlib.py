"""Shared machinery of the model and image fuzzers (used by the tests and by ``tools/``).

* :func:`model_sites` walks a TFLite file with armvww's own bounds-checked reader and lists
  where its structural fields are (offsets, vector lengths, vtables, shapes, types, buffer
  and tensor indices, quantisation, operator options); :func:`mutate_model` rewrites those
  fields with hostile values, truncates, splices and flips bits, seeded and reproducible.
* :func:`image_seeds` makes small images of every format and mode armvww must read;
  :func:`mutate_image` damages them (PNG CRCs are re-computed half the time so the damage
  reaches the decoder instead of stopping at the checksum).
* :class:`Worker` runs cases in a child process (``python -m tests.reliability.fuzzlib``)
  with an address-space limit: a segfault or abort is seen as a signal and counted as a
  crash, a case that does not answer in time is killed and counted as a timeout, and the
  worker is started again. The child feeds every model to :func:`armvww.parse_model` and,
  when it is valid, to every available backend through :class:`armvww.Detector`; every image
  to :meth:`armvww.Detector.quantize` and :meth:`~armvww.Detector.run`.

Outcomes: ``valid`` (a model or tensor came out), ``typed`` (an :class:`ArmvwwError`),
``untyped`` (any other exception: a bug), ``crash`` (the child died), ``timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUTCOMES = ("valid", "typed", "untyped", "crash", "timeout")
#: Address-space limit of a worker (bytes): a hostile input that makes a runtime allocate
#: without bound ends in MemoryError / a failed allocation instead of exhausting the host.
WORKER_MEM_LIMIT = 3 << 30

# --------------------------------------------------------------------------------------------
# Model mutation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A structural field of a model file: ``size`` bytes at ``pos``."""

    pos: int
    size: int
    kind: str
    what: str


def model_sites(data: bytes) -> list[Site]:
    """Every structural field of a TFLite model that armvww or a runtime interprets."""
    from armvww.model import flatbuf

    sites: list[Site] = [Site(0, 4, "uoffset", "root"), Site(4, 4, "ident", "identifier")]
    rt = flatbuf.root(data, b"TFL3")

    def tab(t: flatbuf.Table, what: str) -> None:
        sites.append(Site(t.pos, 4, "soffset", f"{what}.vtable_offset"))
        sites.append(Site(t._vt, 2, "u16", f"{what}.vtable_len"))
        sites.append(Site(t._vt + 2, 2, "u16", f"{what}.object_len"))
        for i in range((t._vt_len - 4) // 2):
            sites.append(Site(t._vt + 4 + 2 * i, 2, "u16", f"{what}.vt[{i}]"))

    def scalar(t: flatbuf.Table, idx: int, size: int, kind: str, what: str) -> None:
        p = t._field(idx)
        if p and p + size <= len(data):
            sites.append(Site(p, size, kind, what))

    def vec(t: flatbuf.Table, idx: int, elem: int, kind: str | None, what: str) -> None:
        p = t._field(idx)
        if not p:
            return
        sites.append(Site(p, 4, "uoffset", f"{what}.offset"))
        v = t._indirect(idx)
        sites.append(Site(v, 4, "vec_len", f"{what}.len"))
        if kind is not None:
            n = struct.unpack_from("<I", data, v)[0]
            for k in range(min(n, 64)):
                sites.append(Site(v + 4 + k * elem, elem, kind, f"{what}[{k}]"))

    def tables(t: flatbuf.Table, idx: int, what: str) -> list[flatbuf.Table]:
        vec(t, idx, 4, "uoffset", what)
        return list(t.tables(idx)) if t.has(idx) else []

    tab(rt, "model")
    scalar(rt, 0, 4, "i32", "model.version")
    vec(rt, 3, 1, None, "model.description")
    for i, oc in enumerate(tables(rt, 1, "model.operator_codes")):
        tab(oc, f"opcode{i}")
        scalar(oc, 0, 1, "i8", f"opcode{i}.deprecated_builtin_code")
        scalar(oc, 2, 4, "i32", f"opcode{i}.version")
        scalar(oc, 3, 4, "opcode", f"opcode{i}.builtin_code")
    for i, b in enumerate(tables(rt, 4, "model.buffers")):
        tab(b, f"buffer{i}")
        vec(b, 0, 1, None, f"buffer{i}.data")
        scalar(b, 1, 8, "i64", f"buffer{i}.offset")
        scalar(b, 2, 8, "i64", f"buffer{i}.size")
    for s, sg in enumerate(tables(rt, 2, "model.subgraphs")):
        tab(sg, f"sg{s}")
        vec(sg, 1, 4, "index", f"sg{s}.inputs")
        vec(sg, 2, 4, "index", f"sg{s}.outputs")
        for i, t in enumerate(tables(sg, 0, f"sg{s}.tensors")):
            w = f"tensor{i}"
            tab(t, w)
            vec(t, 0, 4, "dim", f"{w}.shape")
            vec(t, 7, 4, "dim", f"{w}.shape_signature")
            scalar(t, 1, 1, "type", f"{w}.type")
            scalar(t, 2, 4, "index", f"{w}.buffer")
            scalar(t, 5, 1, "i8", f"{w}.is_variable")
            q = t.table(4)
            if q is not None:
                scalar(t, 4, 4, "uoffset", f"{w}.quantization.offset")
                tab(q, f"{w}.quantization")
                vec(q, 2, 4, "f32", f"{w}.scale")
                vec(q, 3, 8, "i64", f"{w}.zero_point")
                scalar(q, 6, 4, "i32", f"{w}.quantized_dimension")
        for j, op in enumerate(tables(sg, 3, f"sg{s}.operators")):
            w = f"op{j}"
            tab(op, w)
            scalar(op, 0, 4, "index", f"{w}.opcode_index")
            vec(op, 1, 4, "index", f"{w}.inputs")
            vec(op, 2, 4, "index", f"{w}.outputs")
            scalar(op, 3, 1, "u8", f"{w}.builtin_options_type")
            opt = op.table(4)
            if opt is not None:
                tab(opt, f"{w}.options")
                for k in range((opt._vt_len - 4) // 2):
                    scalar(opt, k, 1, "u8", f"{w}.options.field{k}")
    return sites


def _interesting(kind: str, size: int, orig: int, n: int) -> list[int]:
    base = [0, 1, 2, 3, 4, -1, -2, 0x7F, 0x80, 0xFF, orig + 1, orig - 1, orig ^ 0x80]
    if kind == "type":
        return [*range(0, 20), -1, 0x7F, -0x80]
    if kind == "dim":
        return [
            0,
            -1,
            1,
            2,
            3,
            4095,
            4096,
            4097,
            65535,
            1 << 20,
            1 << 24,
            (1 << 31) - 1,
            -(1 << 31),
            orig * 2,
            orig + 1,
            orig * 1000,
        ]
    if size >= 2:
        base += [0x7FFF, 0x8000, 0xFFFF, orig + 2, orig - 2, orig * 2, orig + 4, orig - 4]
    if size >= 4:
        base += [
            0x10000,
            0x7FFFFFFF,
            -0x80000000,
            n,
            n - 4,
            n + 4,
            n * 2,
            1 << 20,
            1 << 24,
            1 << 28,
            orig + 8,
            orig - 8,
            orig + 0x1000,
        ]
    if size == 8:
        base += [(1 << 63) - 1, -(1 << 63), 1 << 32, n - 8, (1 << 32) + n]
    return base


def _write(buf: bytearray, site: Site, value: int | float) -> None:
    if site.kind == "f32":
        struct.pack_into("<f", buf, site.pos, float(value))
        return
    mask = (1 << (8 * site.size)) - 1
    buf[site.pos : site.pos + site.size] = (int(value) & mask).to_bytes(site.size, "little")


def _mutate_site(buf: bytearray, site: Site, rng: random.Random) -> str:
    if site.pos + site.size > len(buf):
        return f"{site.what}=(gone)"
    if site.kind == "f32":
        v: float | int = rng.choice(
            [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e-45, 3.4e38, 1.0]
        )
    elif site.kind == "ident":
        v = int.from_bytes(
            rng.choice([b"TFL2", b"TFL4", b"\0\0\0\0", b"tfl3", b"PK\3\4"]), "little"
        )
    else:
        orig = int.from_bytes(buf[site.pos : site.pos + site.size], "little", signed=True)
        v = rng.choice(_interesting(site.kind, site.size, orig, len(buf)))
    _write(buf, site, v)
    return f"{site.what}={v}"


def _pick_site(sites: Sequence[Site], rng: random.Random) -> Site:
    """A site chosen kind first, so rare kinds (indices, types, options) get their share."""
    by_kind: dict[str, list[Site]] = {}
    for s in sites:
        by_kind.setdefault(s.kind, []).append(s)
    return rng.choice(by_kind[rng.choice(sorted(by_kind))])


def mutate_model(data: bytes, sites: Sequence[Site], rng: random.Random) -> tuple[bytes, str]:
    """One seeded mutation of a model; returns the new bytes and a description."""
    buf = bytearray(data)
    n = len(buf)
    strategy = rng.choices(
        [
            "field",
            "fields",
            "options",
            "huge_dims",
            "type",
            "bitflip",
            "bytes",
            "truncate",
            "splice",
            "header",
            "extend",
        ],
        weights=[28, 10, 8, 5, 5, 13, 5, 10, 8, 4, 4],
    )[0]
    if strategy == "field":
        return bytes(buf), "field " + _mutate_site(buf, _pick_site(sites, rng), rng)
    if strategy == "fields":
        k = rng.randint(2, 5)
        return bytes(buf), "fields " + ", ".join(
            _mutate_site(buf, _pick_site(sites, rng), rng) for _ in range(k)
        )
    if strategy == "options":
        opts = [s for s in sites if ".options.field" in s.what or "options_type" in s.what]
        k = rng.randint(1, 3)
        return bytes(buf), "options " + ", ".join(
            _mutate_site(buf, rng.choice(opts), rng) for _ in range(k)
        )
    if strategy == "huge_dims":
        dims = [s for s in sites if s.kind == "dim"]
        tensor = rng.choice(dims).what.split(".")[0]
        own = [s for s in dims if s.what.startswith(tensor + ".")]
        big = rng.choice([1 << 12, 1 << 16, 1 << 20, (1 << 31) - 1, 46341])
        for s in own:
            _write(buf, s, big)
        return bytes(buf), f"huge_dims {tensor} -> {big}"
    if strategy == "type":
        s = rng.choice([s for s in sites if s.kind == "type"])
        return bytes(buf), "type " + _mutate_site(buf, s, rng)
    if strategy == "bitflip":
        k = rng.randint(1, 8)
        near = rng.random() < 0.6
        flips = []
        for _ in range(k):
            if near:
                s = rng.choice(sites)
                pos = min(max(s.pos + rng.randint(-4, s.size + 3), 0), n - 1)
            else:
                pos = rng.randrange(n)
            bit = rng.randrange(8)
            buf[pos] ^= 1 << bit
            flips.append(f"{pos}:{bit}")
        return bytes(buf), "bitflip " + " ".join(flips)
    if strategy == "bytes":
        pos = rng.randrange(n)
        k = rng.randint(1, 16)
        buf[pos : pos + k] = rng.randbytes(k)
        return bytes(buf[:n]), f"bytes {pos}+{k}"
    if strategy == "truncate":
        cut = rng.choice(
            [rng.randrange(n), rng.randrange(n // 4) * 4, rng.choice(sites).pos, rng.randrange(64)]
        )
        return bytes(buf[:cut]), f"truncate {cut}"
    if strategy == "splice":
        pos = rng.randrange(n)
        k = rng.choice([4, 8, 16, 64, rng.randint(1, 32)])
        how = rng.choice(["delete", "insert", "duplicate"])
        if how == "delete":
            del buf[pos : pos + k]
        elif how == "insert":
            buf[pos:pos] = rng.randbytes(k)
        else:
            buf[pos:pos] = buf[pos : pos + k]
        return bytes(buf), f"splice {how} {pos}+{k}"
    if strategy == "header":
        pos = rng.randrange(8)
        buf[pos] = rng.randrange(256)
        return bytes(buf), f"header byte {pos}"
    junk = rng.choice([b"\0" * 4, b"\xff" * 64, rng.randbytes(4 * rng.randint(1, 256))])
    return bytes(buf) + junk, f"extend +{len(junk)}"


def model_cases(
    models: Sequence[tuple[str, bytes]], count: int, seed: int, start: int = 0
) -> Iterable[tuple[str, bytes]]:
    """``count`` reproducible mutations spread over ``models``, from case ``start`` on: (case
    id, bytes). A case's id and bytes do not depend on ``start``."""
    sites = {name: model_sites(data) for name, data in models}
    for i in range(start, start + count):
        name, data = models[i % len(models)]
        rng = random.Random(f"{seed}:{i}")
        mutated, desc = mutate_model(data, sites[name], rng)
        yield f"{name}#{seed}:{i} {desc}", mutated


# --------------------------------------------------------------------------------------------
# Image seeds and mutation
# --------------------------------------------------------------------------------------------


def base_rgb(w: int = 31, h: int = 23, seed: int = 7) -> Any:
    """A deterministic, non-symmetric uint8 RGB picture (gradients, noise and a corner mark)."""
    import numpy as np

    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    b = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    a = np.stack([r, g, b], axis=-1)
    a[: h // 4, : w // 4] = (255, 0, 0)
    return a


def encode(img: Any, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def image_seeds() -> list[tuple[str, bytes]]:
    """Small images of every format and mode armvww reads (and a few it must refuse)."""
    import numpy as np
    from PIL import Image, features

    rgb = Image.fromarray(base_rgb(), "RGB")
    grey = rgb.convert("L")
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray((base_rgb()[..., 2] // 2 + 64).astype(np.uint8), "L"))
    pal = rgb.quantize(16)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 3
    one = grey.point(lambda v: 255 if v > 100 else 0).convert("1")
    i16 = Image.fromarray(base_rgb()[..., 0].astype(np.uint16) * 257)
    cmyk = rgb.convert("CMYK")
    la = Image.merge("LA", [grey, grey.point(lambda v: 255 - v)])
    f32 = Image.fromarray(base_rgb()[..., 0].astype(np.float32) / 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    seeds = [
        ("png-1", encode(one, "PNG")),
        ("png-L", encode(grey, "PNG")),
        ("png-LA", encode(la, "PNG")),
        ("png-P", encode(pal, "PNG")),
        ("png-P-transparency", encode(pal_t, "PNG", transparency=3)),
        ("png-RGB", encode(rgb, "PNG")),
        ("png-RGBA", encode(rgba, "PNG")),
        ("png-I16", encode(i16, "PNG")),
        ("png-1x1", encode(rgb.resize((1, 1)), "PNG")),
        ("png-exif6", encode(rgb, "PNG", exif=exif)),
        ("jpeg-L", encode(grey, "JPEG", quality=90)),
        ("jpeg-RGB", encode(rgb, "JPEG", quality=90)),
        ("jpeg-progressive", encode(rgb, "JPEG", quality=80, progressive=True)),
        ("jpeg-CMYK", encode(cmyk, "JPEG", quality=90)),
        ("jpeg-exif6", encode(rgb, "JPEG", quality=90, exif=exif)),
        ("bmp-1", encode(one, "BMP")),
        ("bmp-L", encode(grey, "BMP")),
        ("bmp-P", encode(pal, "BMP")),
        ("bmp-RGB", encode(rgb, "BMP")),
        ("bmp-RGBA", encode(rgba, "BMP")),
        ("gif-P", encode(pal, "GIF")),
        ("gif-anim", encode(pal, "GIF", save_all=True, append_images=[rgb.quantize(8)])),
        ("tiff-1", encode(one, "TIFF")),
        ("tiff-L", encode(grey, "TIFF")),
        ("tiff-RGB-lzw", encode(rgb, "TIFF", compression="tiff_lzw")),
        ("tiff-RGBA", encode(rgba, "TIFF")),
        ("tiff-CMYK", encode(cmyk, "TIFF")),
        ("tiff-I16", encode(i16, "TIFF")),
        ("tiff-F", encode(f32, "TIFF")),
        ("ppm-RGB", encode(rgb, "PPM")),
        ("png-RGB-interlaced", _interlaced_png(rgb)),
        ("jpeg-RGB-big", encode(Image.fromarray(base_rgb(240, 180), "RGB"), "JPEG", quality=70)),
        ("gif-interlaced", encode(pal, "GIF", interlace=True)),
        ("tiff-multipage", encode(rgb, "TIFF", save_all=True, append_images=[grey])),
        ("tiff-jpeg", encode(rgb, "TIFF", compression="jpeg")),
        ("pgm-L", encode(grey, "PPM")),
    ]
    if features.check("webp"):
        seeds += [
            ("webp-RGB", encode(rgb, "WEBP", quality=80)),
            ("webp-RGBA-lossless", encode(rgba, "WEBP", lossless=True)),
            (
                "webp-anim-lossless",
                encode(rgb, "WEBP", lossless=True, save_all=True, append_images=[rgb.rotate(90)]),
            ),
        ]
    return seeds


def png_with_size(w: int, h: int) -> bytes:
    """A valid 1x1 PNG whose IHDR then claims ``w`` x ``h`` (CRC fixed): a bomb header."""
    from PIL import Image

    buf = bytearray(encode(Image.new("L", (1, 1), 9), "PNG"))
    struct.pack_into(">II", buf, 16, w, h)
    return fix_png_crcs(bytes(buf))


def special_images() -> list[tuple[str, bytes]]:
    """Fixed hostile and edge-case images: bombs, 0 and 1 pixel, every EXIF orientation."""
    from PIL import Image

    rgb = Image.fromarray(base_rgb(), "RGB")
    out = [
        ("bomb-png-100000x100000", png_with_size(100_000, 100_000)),
        ("bomb-png-2^31-1x1", png_with_size(0x7FFFFFFF, 1)),
        ("bomb-png-9000x9000-real", encode(Image.new("1", (9000, 9000)), "PNG")),
        ("zero-png-0x5", png_with_size(0, 5)),
        ("zero-png-5x0", png_with_size(5, 0)),
        ("empty", b""),
        ("not-an-image", b"hello, this is text\n" * 10),
    ]
    gif = bytearray(encode(rgb.quantize(4), "GIF"))
    struct.pack_into("<HH", gif, 6, 0xFFFF, 0xFFFF)
    out.append(("bomb-gif-screen-65535x65535", bytes(gif)))
    bmp = bytearray(encode(rgb, "BMP"))
    struct.pack_into("<ii", bmp, 18, 60000, -60000)
    out.append(("bomb-bmp-60000x60000", bytes(bmp)))
    px = rgb.resize((1, 1))
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"):
        try:
            out.append((f"1px-{fmt}", encode(px if fmt != "GIF" else px.quantize(2), fmt)))
        except (KeyError, OSError):
            pass
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        out.append((f"exif{o}-jpeg", encode(rgb, "JPEG", exif=exif)))
        out.append((f"exif{o}-png", encode(rgb, "PNG", exif=exif)))
    bad = Image.Exif()
    bad[0x0112] = 99
    out.append(("exif99-jpeg", encode(rgb, "JPEG", exif=bad)))
    return out + must_fail_images()


#: Case ids of inputs that must be refused: answering one is counted as a failure.
MUST_FAIL = "mustfail-"


def must_fail_images() -> list[tuple[str, bytes]]:
    """Hostile inputs of issue 14 that must give a typed error, never an answer: bytes for
    decoders armvww does not open (EPS/PostScript, PDF, whatever the name), JPEGs and PNGs
    cut short and closed again, aspect-ratio bombs."""
    from PIL import Image

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\nshowpage\n"
    out = [
        ("mustfail-eps", eps),
        ("mustfail-ps", b"%!PS\n{ } loop\n"),
        (
            "mustfail-eps-binary",
            b"\xc5\xd0\xd3\xc6" + struct.pack("<IIII", 32, len(eps), 0, 0) + b"\0" * 12 + eps,
        ),
        ("mustfail-pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"),
        ("mustfail-aspect-1x67108864", png_with_size(1, 67_108_864)),
        ("mustfail-aspect-67108864x1", png_with_size(67_108_864, 1)),
        ("mustfail-aspect-2x40000000", png_with_size(2, 40_000_000)),
    ]
    photo = Image.fromarray(base_rgb(160, 120, seed=3), "RGB")
    for prog in (False, True):
        data = encode(photo, "JPEG", quality=90, progressive=prog)
        for frac in (3, 2):
            for tail in (b"\xff\xd9", b"\xff\xfe\x00\x04ok\xff\xd9"):
                cut = data[: len(data) // frac] + tail
                out.append(
                    (f"mustfail-jpeg-{'prog' if prog else 'base'}-cut1/{frac}-{len(tail)}", cut)
                )
    png = encode(photo, "PNG")
    for frac in (3, 2):
        out.append((f"mustfail-png-cut1/{frac}-iend", png[: len(png) // frac] + png[-12:]))
    return out


def _interlaced_png(img: Any) -> bytes:
    """An Adam7-interlaced PNG (Pillow does not write them): encoded by hand with zlib."""
    import numpy as np

    a = np.asarray(img.convert("RGB"))
    h, w = a.shape[:2]
    raw = b""
    passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ]
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\0" + row.tobytes() for row in sub)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC of a (possibly damaged) PNG, so damage reaches the decoder."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    buf = bytearray(data)
    pos = 8
    while pos + 12 <= len(buf):
        n = struct.unpack_from(">I", buf, pos)[0]
        end = pos + 8 + n
        if end + 4 > len(buf):
            break
        struct.pack_into(">I", buf, end, zlib.crc32(buf[pos + 4 : end]) & 0xFFFFFFFF)
        pos = end + 4
    return bytes(buf)


def mutate_image(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One seeded mutation of an encoded image; returns the new bytes and a description."""
    buf = bytearray(data)
    n = len(buf)
    strategy = rng.choices(
        ["header_int", "bitflip", "bytes", "truncate", "splice", "huge_png", "cut_close"],
        weights=[30, 25, 10, 15, 10, 10, 10],
    )[0]
    if strategy == "header_int":
        k = rng.randint(1, 3)
        parts = []
        for _ in range(k):
            size = rng.choice([1, 2, 4])
            pos = rng.randrange(max(min(n, 96) - size, 1))
            v = rng.choice(
                [
                    0,
                    1,
                    0x7F,
                    0x80,
                    0xFF,
                    0xFFFF,
                    0x7FFFFFFF,
                    0xFFFFFFFF,
                    1 << 16,
                    46341,
                    65500,
                    n,
                    n * 4,
                ]
            )
            order = rng.choice(["little", "big"])
            buf[pos : pos + size] = (v & ((1 << (8 * size)) - 1)).to_bytes(size, order)  # type: ignore[arg-type]
            parts.append(f"{pos}:{size}{order[0]}={v}")
        desc = "header_int " + " ".join(parts)
    elif strategy == "bitflip":
        k = rng.randint(1, 16)
        for _ in range(k):
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        desc = f"bitflip x{k}"
    elif strategy == "bytes":
        pos = rng.randrange(n)
        k = rng.randint(1, 32)
        buf[pos : pos + k] = rng.randbytes(k)
        desc = f"bytes {pos}+{k}"
    elif strategy == "truncate":
        cut = rng.choice([rng.randrange(n), rng.randrange(min(n, 64)), n - rng.randint(1, 16)])
        buf = buf[: max(cut, 0)]
        desc = f"truncate {cut}"
    elif strategy == "cut_close":  # cut short, then closed again (an EOI / IEND marker)
        cut = rng.randrange(n)
        tail = data[-12:] if data.startswith(b"\x89PNG") else b"\xff\xd9"
        buf = buf[:cut] + bytearray(tail)
        desc = f"cut_close {cut}"
    elif strategy == "splice":
        pos = rng.randrange(n)
        k = rng.randint(1, 64)
        if rng.random() < 0.5:
            del buf[pos : pos + k]
        else:
            buf[pos:pos] = buf[max(pos - k, 0) : pos]
        desc = f"splice {pos}+{k}"
    else:
        desc = "huge_png"
        if data.startswith(b"\x89PNG"):
            w, h = rng.choice(
                [
                    (1 << 16, 1 << 16),
                    (0x7FFFFFFF, 1),
                    (100000, 100000),
                    (0, 5),
                    (5, 0),
                    (9000, 9000),
                ]
            )
            struct.pack_into(">II", buf, 16, w, h)
            desc += f" {w}x{h}"
        else:
            buf = bytearray(data[: n // 2])
    out = bytes(buf)
    if rng.random() < 0.5:
        out = fix_png_crcs(out)
    return out, desc


def image_cases(
    seeds: Sequence[tuple[str, bytes]], count: int, seed: int, start: int = 0
) -> Iterable[tuple[str, bytes]]:
    """``count`` reproducible image mutations spread over ``seeds``, from case ``start`` on:
    (case id, bytes)."""
    for i in range(start, start + count):
        name, data = seeds[i % len(seeds)]
        rng = random.Random(f"{seed}:{i}")
        mutated, desc = mutate_image(data, rng)
        yield f"{name}#{seed}:{i} {desc}", mutated


# --------------------------------------------------------------------------------------------
# Child-process isolation
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What happened to one case."""

    case: str
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)


class Worker:
    """A child process that runs cases; restarted after a crash or a timeout."""

    def __init__(
        self,
        timeout: float = 30.0,
        mem_limit: int = WORKER_MEM_LIMIT,
        model: str | None = None,
        stderr_path: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.mem_limit = mem_limit
        self.model = model
        self.stderr_path = stderr_path
        self.restarts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._spawn()

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        cmd = [
            sys.executable,
            "-m",
            "tests.reliability.fuzzlib",
            "--worker",
            "--mem-limit",
            str(self.mem_limit),
        ]
        if self.model:
            cmd += ["--model", self.model]
        err = open(self.stderr_path, "ab") if self.stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=REPO, env=env
        )
        if err is not subprocess.DEVNULL:
            err.close()  # type: ignore[union-attr]
        self._buf = b""
        line = self._readline(time.monotonic() + 120)
        if line is None or json.loads(line).get("ready") is not True:
            raise RuntimeError(f"fuzz worker did not start: {line!r}")

    def _readline(self, deadline: float) -> bytes | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def run(self, case: str, kind: str, data: bytes) -> Result:
        """Run one case (``kind`` is ``"model"`` or ``"image"``)."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(struct.pack("<cI", kind[0].encode(), len(data)) + data)
            self.proc.stdin.flush()
            line = self._readline(time.monotonic() + self.timeout)
        except (BrokenPipeError, OSError):
            line = None
        if line is not None:
            detail = json.loads(line)
            return Result(case, detail.pop("outcome"), detail)
        try:
            rc = self.proc.wait(timeout=0.5)
            outcome = "crash"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            outcome = "timeout"
        self._close_pipes()
        self.restarts += 1
        self._spawn()
        return Result(case, outcome, {"returncode": rc})

    def _close_pipes(self) -> None:
        """Close the worker's pipes now: a request left in stdin's buffer (a write that
        failed with EPIPE) would otherwise fail again whenever the garbage collector gets
        to the pipe, as an "Exception ignored" that a strict test run (pytest's unraisable
        hook) counts against whichever test is running then (CI saw it in
        test_worker_sees_a_crash_as_a_crash)."""
        assert self.proc is not None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._close_pipes()
        self.proc = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_cases(
    cases: Iterable[tuple[str, bytes]],
    kind: str,
    workers: int = 2,
    timeout: float = 30.0,
    model: str | None = None,
    on_result: Callable[[Result], None] | None = None,
    stderr_path: str | None = None,
) -> tuple[Counter[str], list[Result]]:
    """Run ``cases`` on ``workers`` child processes; returns outcome counts and the failures
    (every result that is not ``valid`` or ``typed``)."""
    import queue
    import threading

    counts: Counter[str] = Counter({o: 0 for o in OUTCOMES})
    failures: list[Result] = []
    lock = threading.Lock()
    q: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=4 * workers)
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            with Worker(timeout, model=model, stderr_path=stderr_path) as w:
                while (item := q.get()) is not None:
                    r = w.run(item[0], kind, item[1])
                    if r.outcome == "valid" and item[0].startswith(MUST_FAIL):
                        r = Result(r.case, "untyped", {"error": "answered an input it must refuse"})
                    with lock:
                        counts[r.outcome] += 1
                        if r.outcome not in ("valid", "typed"):
                            failures.append(r)
                        if on_result is not None:
                            on_result(r)
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
            while q.get() is not None:
                pass

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for c in cases:
        q.put(c)
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return counts, failures


# --------------------------------------------------------------------------------------------
# The child side
# --------------------------------------------------------------------------------------------


def _worker_main(mem_limit: int, model_path: str | None) -> None:  # pragma: no cover - child
    import logging
    import resource
    import traceback

    import numpy as np

    import armvww

    logging.disable(logging.CRITICAL)
    # every route of a backend that has several (Arm NN: parser and delegate), each opened
    # the way users open it: through Detector, so Arm NN's child-process vetting runs too
    runs: list[tuple[str, str, Any]] = []
    for a in armvww.available_backends():
        if not a.available:
            continue
        routes = [r for r, d in a.details.get("routes", {}).items() if d.get("available")]
        if len(routes) > 1:
            from armvww.backends.armnn import ArmNNOptions

            runs += [(f"{a.name}:{r}", a.name, ArmNNOptions(route=r)) for r in routes]
        else:
            runs.append((a.name, a.name, None))
    image_det = None
    if model_path:
        image_det = armvww.Detector(model_path, backend="LiteRT")
    probe = (base_rgb(64, 48),)
    if mem_limit:
        resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    out = sys.stdout.buffer
    inp = sys.stdin.buffer

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj).encode() + b"\n")
        out.flush()

    def untyped(stage: str) -> dict[str, Any]:
        et, ev, _ = sys.exc_info()
        return {
            "outcome": "untyped",
            "stage": stage,
            "error": getattr(et, "__name__", "?"),
            "message": str(ev)[:300],
            "traceback": traceback.format_exc()[-3000:],
        }

    def model_case(data: bytes) -> dict[str, Any]:
        try:
            m = armvww.parse_model(data, "<fuzz>")
        except armvww.ArmvwwError as exc:
            return {"outcome": "typed", "stage": "parse", "error": type(exc).__name__}
        except Exception:
            return untyped("parse")
        ran: dict[str, str] = {}
        for name, backend, options in runs:
            try:
                with armvww.Detector(m, backend=backend, options=options) as det:
                    qs = [np.zeros(det.input_shape, np.int8)]
                    if backend == "LiteRT":  # Arm NN's reference kernels are slow: one less
                        qs.append(np.full(det.input_shape, 127, np.int8))
                    for q in qs:
                        r = det.run(q)
                        if r.dtype != np.int8 or r.shape != (1, 2):
                            return {
                                "outcome": "untyped",
                                "stage": name,
                                "error": f"wrong output {r.dtype} {r.shape}",
                            }
                    d = det.detect(probe[0])
                    if not 0.0 <= d.score <= 1.0:
                        return {"outcome": "untyped", "stage": name, "error": f"score {d.score}"}
                ran[name] = "ran"
            except armvww.ArmvwwError as exc:
                ran[name] = type(exc).__name__
            except Exception:
                return untyped(name)
        return {"outcome": "valid", "backends": ran}

    def image_case(data: bytes) -> dict[str, Any]:
        assert image_det is not None
        try:
            q = image_det.quantize(data)
        except armvww.ArmvwwError as exc:
            return {"outcome": "typed", "stage": "quantize", "error": type(exc).__name__}
        except Exception:
            return untyped("quantize")
        if q.dtype != np.int8 or q.shape != image_det.input_shape:
            return {
                "outcome": "untyped",
                "stage": "quantize",
                "error": f"wrong tensor {q.dtype} {q.shape}",
            }
        try:
            image_det.run(q)
        except armvww.ArmvwwError as exc:
            return {"outcome": "typed", "stage": "run", "error": type(exc).__name__}
        except Exception:
            return untyped("run")
        return {"outcome": "valid"}

    sandbox = make_sandbox()
    reply({"ready": True, "backends": [label for label, _, _ in runs]})
    while True:
        head = inp.read(5)
        if len(head) < 5:
            return
        kind, n = struct.unpack("<cI", head)
        data = inp.read(n)
        try:
            if kind == b"a":
                res = api_case(json.loads(data), image_det, sandbox)
            else:
                res = model_case(data) if kind == b"m" else image_case(data)
        except MemoryError:
            res = untyped("memory")
        reply(res)


# --------------------------------------------------------------------------------------------
# API arguments, file kinds and environment variables (tools/fuzz_api.py)
# --------------------------------------------------------------------------------------------

#: Hostile values per Detector argument (JSON-encodable stand-ins decoded by ``_value``).
API_VALUES: dict[str, list[Any]] = {
    "model": [
        "vww2",
        None,
        12345,
        1.5,
        ["vww2"],
        "a\x00b",
        "@fifo",
        "@zero",
        "@dir",
        "@loop",
        "@dangling",
        "@long",
        "@vww4_as_vww2",
        "@vww2",
        "@nonutf8",
        "",
        "vww9",
    ],
    "backend": [
        "LiteRT",
        "auto",
        "fastest",
        None,
        123,
        "@bytes",
        [],
        ["LiteRT", 3],
        "Lite\x00RT",
        "CpuRef",
        "nope",
        ["nope", "LiteRT"],
        "",
    ],
    "threshold": [0.5, 0, 1, -0.1, 1.1, "nan", "inf", "-inf", "big", "0.5", True, None],
    "max_pixels": [67108864, 1, 0, -5, "nan", 1e9, "big", True, None, 10**30],
    "fast_decode": [False, True, "yes", 1, None],
    "options": [None, "@object", "@litert1", "@litert_huge", "@litert0", "LiteRT", ["@object"]],
}
#: Items for detect_many / detect (``@`` names are files of the sandbox).
API_ITEMS: list[Any] = [
    "@png",
    "@fifo",
    "@zero",
    "@null",
    "@dir",
    "@loop",
    "@dangling",
    "@long",
    "@deep",
    "a\x00b.png",
    "@nonutf8",
    "@newline",
    "@png_bytes",
    "@eps",
    "@jpeg_cut",
    123,
    None,
    "@array",
    "@bad_array",
]
#: Environment variables and hostile values.
API_ENV: dict[str, list[str]] = {
    "ARMVWW_MODEL": ["@fifo", "@zero", "@dir", "@long", "@dangling", "a", "@vww4_as_vww2"],
    "ARMVWW_MODEL_DIR": ["@dir", "@fifo_dir", "@long", "/nonexistent", "@zero"],
    "ARMVWW_PROBE_TIMEOUT": ["abc", "nan", "-1", "1e9", "0", "inf", "300"],
    "XDG_CACHE_HOME": ["@dir", "@zero", "@long", "@fifo"],
}


def make_sandbox() -> dict[str, Any]:  # pragma: no cover - child
    """Files of every kind for API cases: a FIFO, links, long and odd names..."""
    import tempfile

    from PIL import Image

    root = Path(tempfile.mkdtemp(prefix="armvww-apifuzz-"))
    png = encode(Image.fromarray(base_rgb(), "RGB"), "PNG")
    jpg = encode(Image.fromarray(base_rgb(), "RGB"), "JPEG")
    (root / "ok.png").write_bytes(png)
    os.mkfifo(root / "fifo.png")
    os.mkfifo(root / "vww2_50_50_INT8.tflite")
    (root / "fifodir").mkdir()
    os.mkfifo(root / "fifodir" / "vww2_50_50_INT8.tflite")
    (root / "d").mkdir()
    (root / "d" / "a.png").write_bytes(png)
    (root / "d" / "loop").symlink_to(root / "d")
    (root / "dangling.png").symlink_to(root / "gone.png")
    (root / "zero.png").symlink_to("/dev/zero")
    shared = Path(os.environ.get("ARMVWW_SHARED", REPO.parent / "shared")) / "models"
    fake = root / "fake" / "vww2_50_50_INT8.tflite"
    fake.parent.mkdir()
    if (shared / "vww4_128_128_INT8.tflite").is_file():
        fake.write_bytes((shared / "vww4_128_128_INT8.tflite").read_bytes())
    nonutf8 = os.fsencode(root) + b"/bad\xff.png"
    with open(nonutf8, "wb") as f:
        f.write(png)
    (root / "new\nline.png").write_bytes(png)
    return {
        "root": str(root),
        "@png": str(root / "ok.png"),
        "@fifo": str(root / "fifo.png"),
        "@zero": "/dev/zero",
        "@null": "/dev/null",
        "@dir": str(root / "d"),
        "@fifo_dir": str(root / "fifodir"),
        "@loop": str(root / "d" / "loop"),
        "@dangling": str(root / "dangling.png"),
        "@long": str(root / ("x" * 300 + ".png")),
        "@deep": str(root / "/".join(["y" * 250] * 20) / "z.png"),
        "@nonutf8": os.fsdecode(nonutf8),
        "@newline": str(root / "new\nline.png"),
        "@vww4_as_vww2": str(fake),
        "@vww2": str(shared / "vww2_50_50_INT8.tflite"),
        "@png_bytes": png,
        "@eps": b"%!PS-Adobe-3.0 EPSF-3.0\n{ } loop\n",
        "@jpeg_cut": jpg[: len(jpg) // 2] + b"\xff\xd9",
    }


def _value(v: Any, box: dict[str, Any]) -> Any:  # pragma: no cover - child
    import math

    import numpy as np

    import armvww

    if isinstance(v, list):
        return [_value(x, box) for x in v]
    if not isinstance(v, str):
        return v
    special: dict[str, Any] = {
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "big": 10**400,
        "@object": object(),
        "@bytes": b"LiteRT",
        "@litert1": armvww.LiteRTOptions(threads=1),
        "@array": base_rgb(20, 20),
        "@bad_array": np.zeros((3, 3), np.float64),
    }
    if v in special:
        return special[v]
    if v in ("@litert_huge", "@litert0"):  # built inside the case: the constructor may raise
        return v
    return box.get(v, v)


def api_cases(count: int, seed: int, start: int = 0) -> Iterable[tuple[str, bytes]]:
    """``count`` reproducible API cases from case ``start`` on: (case id, JSON spec)."""
    for i in range(start, start + count):
        rng = random.Random(f"api:{seed}:{i}")
        kind = rng.choice(["detector", "detect_many", "detect", "env", "threads"])
        spec: dict[str, Any] = {"kind": kind}
        if kind == "detector":
            spec["kwargs"] = {
                k: rng.choice(v)
                for k, v in API_VALUES.items()
                if rng.random() < 0.5 or k == "model"
            }
        elif kind in ("detect_many", "detect"):
            n = rng.randint(1, 6)
            spec["items"] = [rng.choice(API_ITEMS) for _ in range(n)]
            spec["wrap"] = rng.choice(["list", "generator", "raising", "single"])
        elif kind == "env":
            spec["env"] = {k: rng.choice(v) for k, v in API_ENV.items() if rng.random() < 0.5}
            spec["call"] = rng.choice(["load_none", "load_vww2", "backends", "fetch_dir"])
        else:
            spec["threads"] = rng.choice([1, 2, 8, 64, 256, 257, 100000, 0, -1, True, 2.5])
        desc = json.dumps(spec, sort_keys=True)[:160]
        yield f"api#{seed}:{i} {desc}", json.dumps(spec).encode()


def api_case(  # pragma: no cover - child
    spec: dict[str, Any], det: Any, box: dict[str, Any]
) -> dict[str, Any]:
    """Run one API case; ``lost`` items (a result count that is not the input count) are
    reported as untyped."""
    import traceback

    import armvww
    from armvww.model import store

    def out(outcome: str, **kw: Any) -> dict[str, Any]:
        return {"outcome": outcome, **kw}

    saved = dict(os.environ)
    try:
        if spec["kind"] == "detector":
            kw = {k: _value(v, box) for k, v in spec["kwargs"].items()}
            if kw.get("options") in ("@litert_huge", "@litert0"):
                kw["options"] = armvww.LiteRTOptions(
                    threads=100_000 if kw["options"] == "@litert_huge" else 0
                )
            model = kw.pop("model")
            with armvww.Detector(model, **kw) as d:
                r = d.detect(base_rgb(30, 30))
                if not 0 <= r.score <= 1:
                    return out("untyped", error=f"score {r.score}")
            return out("valid")
        if spec["kind"] in ("detect_many", "detect"):
            items = [_value(x, box) for x in spec["items"]]
            if spec["kind"] == "detect":
                for it in items:
                    try:
                        det.detect(it)
                    except armvww.ArmvwwError:
                        pass
                return out("valid")
            wrap = spec["wrap"]
            if wrap == "single":
                src: Any = items[0]
                expect_min = 1
            elif wrap == "list":
                src, expect_min = items, len(items)
            else:

                def gen() -> Any:
                    yield from items
                    if wrap == "raising":
                        raise RuntimeError("the caller's generator failed")

                src, expect_min = gen(), len(items) + (wrap == "raising")
            res = det.detect_many(src)
            names = spec["items"] if wrap != "single" else spec["items"][:1]
            dirs = sum(1 for x in names if x in ("@dir", "@loop"))  # a folder: its images
            if len(res) < expect_min - dirs or (not dirs and len(res) != expect_min):
                return out("untyped", error=f"lost items: {len(res)} results for {expect_min}")
            return out("valid")
        if spec["kind"] == "env":
            for k, v in spec["env"].items():
                os.environ[k] = str(box.get(v, v))
            call = spec["call"]
            if call == "load_none":
                store.load_model(None)
            elif call == "load_vww2":
                store.load_model("vww2")
            elif call == "backends":
                for a in armvww.available_backends():
                    if not a.available and "Traceback" in a.reason:
                        return out("untyped", error=a.reason[:200])
            else:
                store.find_known("vww4")
            return out("valid")
        t = spec["threads"]
        armvww.LiteRTOptions(threads=t)
        if isinstance(t, int) and t > 256:
            return out("untyped", error=f"threads={t} accepted")
        return out("valid")
    except armvww.ArmvwwError as exc:
        return out("typed", stage=spec["kind"], error=type(exc).__name__)
    except Exception:
        et, ev, _ = sys.exc_info()
        return out(
            "untyped",
            stage=spec["kind"],
            error=getattr(et, "__name__", "?"),
            message=str(ev)[:300],
            traceback=traceback.format_exc()[-2000:],
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":  # pragma: no cover - child
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true", required=True)
    ap.add_argument("--mem-limit", type=int, default=WORKER_MEM_LIMIT)
    ap.add_argument("--model")
    a = ap.parse_args()
    _worker_main(a.mem_limit, a.model)


def fuzz_cli(
    kind: str,
    doc: str,
    replay_example: str,
    make_cases: Callable[[argparse.Namespace], Iterable[tuple[str, bytes]] | None],
    breakdown: Callable[[Result], str],
    model: str | None = None,
) -> int:
    """The command line shared by tools/fuzz_models.py and tools/fuzz_images.py.

    ``make_cases`` returns the case iterator (``None`` when its inputs are missing);
    ``breakdown`` names the bucket a result is counted in. Exit status 0 only when there were
    no untyped errors, crashes or timeouts.
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--start",
        type=int,
        default=0,
        help="index of the first case (a long corpus in chunks: ids do not depend on it)",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--replay", help=f"run only the case with this id prefix ({replay_example})")
    ap.add_argument("--dump", help="with --replay: write the mutated bytes here")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()
    made = make_cases(args)
    if made is None:
        return 2
    cases: Iterable[tuple[str, bytes]] = made
    if args.replay:
        found = [(c, d) for c, d in cases if c.split(" ")[0] == args.replay]
        if not found:
            print(f"no case {args.replay}", file=sys.stderr)
            return 2
        if args.dump:
            Path(args.dump).write_bytes(found[0][1])
        cases = iter(found)

    start = time.monotonic()
    kinds: Counter[str] = Counter()
    done = [0]

    def progress(r: Result) -> None:
        done[0] += 1
        kinds[breakdown(r)] += 1
        if done[0] % 1000 == 0:
            print(f"  {done[0]} cases, {time.monotonic() - start:.0f} s", file=sys.stderr)

    # the workers' caches (Arm NN vetting verdicts, fastest) start empty and are dropped:
    # every mutated model is vetted in this run, none answered from an earlier one
    import tempfile

    cache = tempfile.TemporaryDirectory(prefix="armvww-fuzz-cache-")
    os.environ["XDG_CACHE_HOME"] = cache.name
    counts, failures = run_cases(
        cases,
        kind,
        workers=args.workers,
        timeout=args.timeout,
        on_result=progress,
        stderr_path=os.devnull,
        model=model,
    )
    cache.cleanup()
    elapsed = time.monotonic() - start
    summary = {
        "cases": sum(counts.values()),
        "seed": args.seed,
        "start": args.start,
        **{o: counts[o] for o in OUTCOMES},
        "seconds": round(elapsed, 1),
        "breakdown": dict(sorted(kinds.items())),
        "failures": [{"case": f.case, "outcome": f.outcome, **f.detail} for f in failures],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        first = f", cases {args.start}..{args.start + summary['cases'] - 1}" if args.start else ""
        print(f"{kind} fuzz: {summary['cases']} cases (seed {args.seed}{first}) in {elapsed:.0f} s")
        for o in OUTCOMES:
            print(f"  {o:<8} {counts[o]}")
        print("  breakdown:")
        for k, v in sorted(kinds.items()):
            print(f"    {v:>6}  {k}")
        for f in failures:
            print(f"FAILURE {f.outcome}: {f.case}\n  {json.dumps(f.detail)[:3000]}")
    bad = counts["untyped"] + counts["crash"] + counts["timeout"]
    return 1 if bad else 0
