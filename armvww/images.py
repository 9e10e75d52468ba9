"""Image input: decode files, bytes, PIL images and arrays into an ``L`` or ``RGB`` image.

This module does the I/O and the mode bookkeeping; the maths lives in
:mod:`armvww.preprocess`. Rules, chosen to match Arm's reference (which calls
``Image.open(path).convert("RGB")``):

* EXIF orientation is applied first.
* ``L`` and ``1`` stay single-channel; ``LA`` drops alpha and stays single-channel.
* 16-bit and 32-bit integer greyscale (``I;16*``, ``I``) become 8-bit by
  ``round(v * 255 / 65535)`` (values clipped to [0, 65535]); Pillow's own ``convert("L")``
  would clip instead of scaling.
* Everything else (``RGB``, ``RGBA``, ``RGBX``, ``P``, ``PA``, ``CMYK``, ``YCbCr``, ``LAB``,
  ``HSV``) goes through Pillow's ``convert("RGB")``: alpha is dropped, not composited,
  exactly like the reference.
* 32-bit float images (``F``) are refused: their range is ambiguous.
* Arrays: uint8 ``HxW``, ``HxWx1`` (grey), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA).
* Images with more than :data:`MAX_PIXELS` pixels are refused before decoding
  (decompression-bomb guard); so is every Pillow ``DecompressionBombWarning``, and so is an
  image whose resized copy would exceed ``max_pixels`` (an extreme aspect ratio), checked
  from the header before decoding.
* Only the decoders in :data:`FORMATS` ever see untrusted bytes (``Image.open(...,
  formats=FORMATS)``): EPS/PS (Ghostscript), PDF, and Pillow's other plugins are never
  reached, whatever a file is named.
* Missing data is an error, never a grey fill: Pillow's truncated-file errors are kept
  (``ImageFile.LOAD_TRUNCATED_IMAGES`` is the caller's documented opt-in to tolerate them),
  and JPEGs are checked with libjpeg-turbo in strict mode (``simplejpeg``), which turns
  libjpeg's "premature end of data segment" warning (a JPEG cut short and closed with an
  ``FF D9`` marker) into an :class:`~armvww.errors.ImageDecodeError`.
* Folder walks (:func:`walk`) report, never drop: an unlistable folder, a stat failure or a
  symlink loop is an error item; symlinked subfolders are followed (each real folder once
  per branch, so a link loop ends).
"""

from __future__ import annotations

import io
import logging
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ArmvwwError, ImageDecodeError, InputError
from .files import read_regular_file

log = logging.getLogger(__name__)

#: Largest image (in pixels) armvww decodes: 8K x 8K. Override per call.
MAX_PIXELS = 8192 * 8192
#: Largest image file armvww reads (bytes).
MAX_FILE_BYTES = 256 * 1024 * 1024

#: What :func:`load_image` accepts.
ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray

_SINGLE = {"L", "1", "LA", "La"}
_INT_GREY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}

#: The only Pillow decoders armvww lets untrusted bytes reach (JPEG includes multi-picture
#: MPO files from cameras; PPM covers PGM/PBM/PNM).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

#: Image file extensions a directory walk picks up.
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".gif", ".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".webp"}
)


def describe(image: object) -> str:
    """A short label for an input, used in results and error messages."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    if isinstance(image, Image.Image):
        return f"<PIL {image.mode} {image.width}x{image.height}>"
    if isinstance(image, np.ndarray):
        return _describe_array(image.dtype, image.shape)
    return f"<{type(image).__name__}>"


@lru_cache(maxsize=256)
def _describe_array(dtype: np.dtype[Any], shape: tuple[int, ...]) -> str:
    # cached: a camera's frames share one label, and numpy's str(dtype) costs ~5 µs a call
    return f"<ndarray {dtype} {shape}>"


def load_image(
    image: ImageInput,
    max_pixels: int = MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    side: int = 1,
) -> Image.Image:
    """Decode ``image`` into an ``"L"`` or ``"RGB"`` PIL image, EXIF orientation applied.

    ``side``: the model's input side; an image whose shorter side resized to it would need
    more than ``max_pixels`` pixels is refused from its header (aspect-ratio bomb).

    ``draft``: for JPEG files, let the decoder downscale by 1/2, 1/4 or 1/8 while keeping
    both sides at least this ``(width, height)``; see the README for what that changes.

    Raises:
        ImageDecodeError: unreadable, truncated, unsupported or oversized image data.
        InputError: an array of the wrong dtype or shape, or an unsupported input type.
    """
    if (
        not (isinstance(max_pixels, (int, np.integer)) and not isinstance(max_pixels, bool))
        or max_pixels < 1
    ):
        raise InputError(f"max_pixels must be an int >= 1, got {max_pixels!r:.80}")
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        _check_pixels(image, max_pixels, describe(image), side)
        return _normalise(image, describe(image))
    if isinstance(image, (str, os.PathLike)):
        label = describe(image)
        data = read_regular_file(image, MAX_FILE_BYTES, "image", ImageDecodeError)
        return _decode(data, label, max_pixels, draft, side)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(bytes(image), describe(image), max_pixels, draft, side)
    raise InputError(
        f"unsupported image input {type(image).__name__}; expected a path, bytes, a PIL "
        "image or a uint8 numpy array"
    )


@cache
def _strict_jpeg() -> object | None:
    try:
        import simplejpeg  # type: ignore[import-untyped]
    except ImportError:
        log.warning(
            "simplejpeg is not installed: a JPEG cut short and closed with an EOI marker "
            "cannot be told from a whole one here (pip install simplejpeg)"
        )
        return None
    return cast(object, simplejpeg)


def _check_jpeg_complete(data: bytes, label: str) -> None:
    """Refuse a JPEG whose entropy-coded data ends early (libjpeg would fill it with grey)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        return  # the caller's documented opt-in to tolerate truncated images
    sj = _strict_jpeg()
    if sj is None:
        return
    try:
        sj.decode_jpeg(  # type: ignore[attr-defined]
            data, colorspace="GRAY", fastdct=True, min_factor=8, strict=True
        )
    except ValueError as exc:
        msg = str(exc)
        if "premature end" in msg.lower() or "corrupt" in msg.lower() or "warning" in msg.lower():
            raise ImageDecodeError(
                f"image {label} is truncated or corrupt JPEG data (libjpeg: {msg}); a decoder "
                "would fill the missing part with grey"
            ) from exc
        log.debug("strict JPEG check of %s: %s (left to Pillow)", label, msg)


def _decode(
    data: bytes, label: str, max_pixels: int, draft: tuple[int, int] | None, side: int
) -> Image.Image:
    if not data:
        raise ImageDecodeError(f"image {label} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            _check_pixels(img, max_pixels, label, side)
            if img.format in ("JPEG", "MPO"):
                _check_jpeg_complete(data, label)
            if draft is not None and img.format == "JPEG":
                img.draft("RGB" if img.mode not in _SINGLE else "L", draft)
            img.load()
            return _normalise(img, label)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"image {label} is not in a format armvww reads ({', '.join(FORMATS)})"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image {label} is too large to decode safely: {exc}") from exc
    except Exception as exc:  # Pillow raises many types on damaged data (TypeError too)
        log.debug("decoding %s failed with %s", label, type(exc).__name__, exc_info=True)
        raise ImageDecodeError(
            f"image {label} is truncated or corrupt: {type(exc).__name__}: {exc}"
        ) from exc


def _check_pixels(img: Image.Image, max_pixels: int, label: str, side: int = 1) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"image {label} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageDecodeError(
            f"image {label} is {w}x{h} = {w * h} pixels, over the limit of {max_pixels} "
            "(decompression-bomb guard); pass max_pixels= to allow it"
        )
    # an aspect-ratio bomb (1 x 67M): the shorter side resized to ``side`` makes the other
    # side huge; refused from the header, before decoding
    if side * side * max(w, h) > max_pixels * min(w, h):
        raise ImageDecodeError(
            f"image {label} is {w}x{h}: resizing its shorter side to {side} would need about "
            f"{side * side * max(w, h) // min(w, h)} pixels, over max_pixels ({max_pixels}); "
            "crop it to a saner aspect ratio first"
        )


def _normalise(img: Image.Image, label: str) -> Image.Image:
    """Apply EXIF orientation and bring any mode to ``L`` or ``RGB``."""
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception as exc:  # malformed EXIF must not crash decoding
        raise ImageDecodeError(f"image {label} has unreadable EXIF data: {exc}") from exc
    mode = img.mode
    if mode == "L":
        return img
    if mode in _SINGLE:
        return img.convert("L") if mode == "1" else img.getchannel(0)
    if mode in _INT_GREY:
        return Image.fromarray(_grey16_to_8(img), "L")
    if mode == "F":
        raise ImageDecodeError(
            f"image {label} is 32-bit float ({mode}); its range is ambiguous: convert it to "
            "8-bit first"
        )
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"image {label} in mode {mode} cannot become RGB: {exc}") from exc


#: Elements per slice when scaling 16/32-bit grey (int32 work buffers of 256 KiB).
_SLICE = 1 << 16


def _grey16_to_8(img: Image.Image) -> np.ndarray:
    """``round(clip(v, 0, 65535) * 255 / 65535)`` as uint8, a slice of rows at a time.

    Only a 256 KiB int32 slice is ever widened (an int64 copy of a whole 8K x 8K image
    peaked at 1.4-1.7 GB), so the peak stays proportional to the 8-bit size.
    """
    a = np.asarray(img)
    out = np.empty(a.shape, np.uint8)
    rows = max(1, _SLICE // max(1, a.shape[1]))
    for r in range(0, a.shape[0], rows):
        s = np.clip(a[r : r + rows], 0, 65535).astype(np.int32)
        s *= 255
        s += 32767
        s //= 65535
        out[r : r + rows] = s
    return out


def _from_array(a: np.ndarray) -> Image.Image:
    label = describe(a)
    if a.dtype != np.uint8:
        raise InputError(
            f"image array {label} must be uint8 (0..255); convert it, e.g. "
            "np.clip(a, 0, 255).astype(np.uint8)"
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InputError(f"image array {label} must be HxW, HxWx1, HxWx3 or HxWx4")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"image array {label} has no pixels")
    a = np.ascontiguousarray(a)
    if a.ndim == 2:
        return Image.fromarray(a, "L")
    if a.shape[2] == 4:
        a = np.ascontiguousarray(a[:, :, :3])
    return Image.fromarray(a, "RGB")


@dataclass(frozen=True)
class BadItem:
    """An input that cannot become an image, found while expanding inputs: its label and
    the error to report for it (an unlistable folder, a link loop, an iterable that raised)."""

    source: str
    error: ArmvwwError


def _is_dir(path: str | os.PathLike[str]) -> bool:
    """``stat`` says directory; any stat failure (ENAMETOOLONG, EACCES, NUL...) is False, and
    the item is then reported by :func:`load_image` with its own error."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError, TypeError):
        return False


def walk(path: str | os.PathLike[str]) -> Iterator[Path | BadItem]:
    """Lazily, the image files under a folder (recursively, in sorted path order), or
    ``path`` itself when it is not a folder.

    Rules: names with an extension of :data:`IMAGE_EXTENSIONS` that are not folders are
    items (a dangling link or a FIFO named ``x.png`` then fails when read, it is not
    dropped). A folder that cannot be listed (no read or search permission) and a symlink
    loop are :class:`BadItem`\\ s. Symlinked subfolders are followed; a folder already on the
    current branch (a loop) is not walked again.
    """
    if not _is_dir(path):
        yield Path(path)
        return
    yield from _walk_dir(Path(path), frozenset())


def _walk_dir(folder: Path, ancestors: frozenset[tuple[int, int]]) -> Iterator[Path | BadItem]:
    try:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield BadItem(
            str(folder),
            ImageDecodeError(f"folder {str(folder)!r} cannot be listed: {exc.strerror or exc}"),
        )
        return
    if key in ancestors:
        yield BadItem(
            str(folder),
            ImageDecodeError(
                f"folder {str(folder)!r} is a symbolic link back into its own parent "
                "folders (a loop); not walked again"
            ),
        )
        return
    inner = ancestors | {key}
    for e in entries:
        p = Path(e.path)
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk_dir(p, inner)
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            yield p


def iter_image_paths(path: str | os.PathLike[str]) -> list[Path]:
    """Image files under a directory (recursively, sorted), or ``[path]`` for a file.

    Entries :func:`walk` reports as bad are included as paths, so that reading them fails
    and they are reported, not dropped.
    """
    return [Path(x.source) if isinstance(x, BadItem) else x for x in walk(path)]


#: Inputs that are ONE item for :func:`expand_inputs`, never iterated.
_SINGLE_ITEMS = (str, bytes, bytearray, memoryview, os.PathLike, np.ndarray, Image.Image)


def expand_inputs(items: object) -> Iterator[ImageInput | BadItem]:
    """The items of a ``detect_many`` input, lazily, one result's worth at a time.

    * A str, bytes, PathLike, array or PIL image is ONE item (a string is never iterated
      character by character); a folder path stands for the images inside it (:func:`walk`).
    * Anything else must be an iterable; it is consumed lazily, one item at a time.
    * An iterable that raises gives one :class:`BadItem` (an :class:`InputError` naming the
      exception) at that point, and the expansion stops there: a generator that raised is
      finished. Every item produced before is kept.
    """
    if isinstance(items, _SINGLE_ITEMS):
        items = (items,)
    try:
        it = iter(items)  # type: ignore[call-overload]
    except TypeError:
        yield BadItem(
            describe(items),
            InputError(
                f"detect_many needs an image or an iterable of images, got {type(items).__name__}"
            ),
        )
        return
    n = 0
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:  # a caller's generator may raise anything
            yield BadItem(
                f"<input {n}>",
                InputError(
                    f"the input iterable raised {type(exc).__name__}: {exc} after {n} items; "
                    "the items after it were not read"
                ),
            )
            return
        n += 1
        if isinstance(item, (str, os.PathLike)) and _is_dir(item):
            yield from walk(item)
        else:
            yield item
