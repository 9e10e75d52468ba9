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
  (decompression-bomb guard); so is every Pillow ``DecompressionBombWarning``.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageDecodeError, InputError

log = logging.getLogger(__name__)

#: Largest image (in pixels) armvww decodes: 8K x 8K. Override per call.
MAX_PIXELS = 8192 * 8192
#: Largest image file armvww reads (bytes).
MAX_FILE_BYTES = 256 * 1024 * 1024

#: What :func:`load_image` accepts.
ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray

_SINGLE = {"L", "1", "LA", "La"}
_INT_GREY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}

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
        return f"<ndarray {image.dtype} {image.shape}>"
    return f"<{type(image).__name__}>"


def load_image(
    image: ImageInput, max_pixels: int = MAX_PIXELS, draft: tuple[int, int] | None = None
) -> Image.Image:
    """Decode ``image`` into an ``"L"`` or ``"RGB"`` PIL image, EXIF orientation applied.

    ``draft``: for JPEG files, let the decoder downscale by 1/2, 1/4 or 1/8 while keeping
    both sides at least this ``(width, height)``; see the README for what that changes.

    Raises:
        ImageDecodeError: unreadable, truncated, unsupported or oversized image data.
        InputError: an array of the wrong dtype or shape, or an unsupported input type.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        _check_pixels(image, max_pixels, describe(image))
        return _normalise(image, describe(image))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            st = path.stat()
            if path.is_dir():
                raise IsADirectoryError(str(path))
            if not path.is_file():
                raise ImageDecodeError(f"image {str(path)!r} is not a regular file")
            if st.st_size > MAX_FILE_BYTES:
                raise ImageDecodeError(
                    f"image {str(path)!r} is {st.st_size} bytes, over the {MAX_FILE_BYTES}-byte "
                    "limit for an image file"
                )
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ImageDecodeError(f"image {str(path)!r} does not exist") from exc
        except IsADirectoryError as exc:
            raise ImageDecodeError(f"image {str(path)!r} is a directory") from exc
        except (OSError, MemoryError) as exc:
            raise ImageDecodeError(f"image {str(path)!r} cannot be read: {exc}") from exc
        return _decode(data, str(path), max_pixels, draft)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(bytes(image), describe(image), max_pixels, draft)
    raise InputError(
        f"unsupported image input {type(image).__name__}; expected a path, bytes, a PIL "
        "image or a uint8 numpy array"
    )


def _decode(data: bytes, label: str, max_pixels: int, draft: tuple[int, int] | None) -> Image.Image:
    if not data:
        raise ImageDecodeError(f"image {label} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_pixels(img, max_pixels, label)
            if draft is not None and img.format == "JPEG":
                img.draft("RGB" if img.mode not in _SINGLE else "L", draft)
            img.load()
            return _normalise(img, label)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"image {label} is not in a format Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP...)"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image {label} is too large to decode safely: {exc}") from exc
    except Exception as exc:  # Pillow raises many types on damaged data (TypeError too)
        log.debug("decoding %s failed with %s", label, type(exc).__name__, exc_info=True)
        raise ImageDecodeError(
            f"image {label} is truncated or corrupt: {type(exc).__name__}: {exc}"
        ) from exc


def _check_pixels(img: Image.Image, max_pixels: int, label: str) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"image {label} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageDecodeError(
            f"image {label} is {w}x{h} = {w * h} pixels, over the limit of {max_pixels} "
            "(decompression-bomb guard); pass max_pixels= to allow it"
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
        a = np.asarray(img).astype(np.int64)
        a = np.clip(a, 0, 65535)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
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


def iter_image_paths(path: str | os.PathLike[str]) -> list[Path]:
    """Image files under a directory (recursively, sorted), or ``[path]`` for a file."""
    p = Path(path)
    if p.is_dir():
        # everything with an image name but a directory: a dangling link or a FIFO named
        # x.png is then reported as a failed item, not dropped
        return sorted(
            f
            for f in p.rglob("*")
            if f.suffix.lower() in IMAGE_EXTENSIONS and (f.is_symlink() or not f.is_dir())
        )
    return [p]
