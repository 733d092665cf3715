"""Decoding an image file into the platform's canonical form: an 8-bit RGB Pillow image.

Every stage that looks at pixels (ingest, detect, segment, the question writer) decodes with
:func:`decode_image`, so the pixel grid the manifest describes (``width`` x ``height``, after the
EXIF orientation is applied) is the grid every mask and box refers to.

Refusals raise :class:`ImageRefused` whose ``code`` is one of :data:`REFUSAL_CODES`; it becomes the
quarantine row's ``code`` column (counted) and the message its ``detail`` column (read).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EMPTY: Final = "empty"
NOT_AN_IMAGE: Final = "not_an_image"
CORRUPT: Final = "truncated_or_corrupt"
TOO_MANY_BYTES: Final = "too_many_bytes"  # the file is larger than ingest.max_bytes (refused before reading)
TOO_MANY_PIXELS: Final = "too_many_pixels"  # the header declares more than ingest.max_pixels (a decompression bomb)
OUTSIDE_FOLDER: Final = "outside_images_folder"  # the path resolves outside the input folder (symlink, ``..``)
UNSUPPORTED_MODE: Final = "unsupported_mode"
DUPLICATE: Final = "duplicate"
UNREADABLE: Final = "unreadable"
REFUSAL_CODES: Final = (EMPTY, NOT_AN_IMAGE, CORRUPT, TOO_MANY_BYTES, TOO_MANY_PIXELS, UNSUPPORTED_MODE, DUPLICATE,
                        UNREADABLE, OUTSIDE_FOLDER)

# Modes we can map to RGB faithfully. Anything else (LAB, HSV, F, I;16S, ...) is refused.
_DIRECT_MODES: Final = {"RGB", "L", "P", "CMYK", "YCbCr", "1"}
_ALPHA_MODES: Final = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GRAY_MODES: Final = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class ImageRefused(ValueError):
    """An input that cannot become a canonical RGB image; ``code`` is one of REFUSAL_CODES."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: ``image`` is RGB, ``width``/``height`` in pixels after EXIF transpose;
    ``format`` is the container format Pillow identified (``JPEG``, ``PNG``, ...)."""

    image: Image.Image
    format: str

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


@dataclass(frozen=True)
class ImageItem:
    """An image ready for a model: ``image`` is the RGB :func:`decode_image` of the manifest's
    file, so its pixel grid is the one the manifest's width/height describe."""

    image_id: str
    image: Image.Image


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _DIRECT_MODES:
        return im.convert("RGB")
    if mode in _WIDE_GRAY_MODES:
        arr = np.asarray(im)
        if arr.dtype.kind not in "iu" or arr.size == 0 or arr.min() < 0 or arr.max() > 65535:
            raise ImageRefused(UNSUPPORTED_MODE, f"mode {mode} with values outside 0..65535")
        gray = (arr.astype(np.uint32) >> 8).astype(np.uint8)  # 16-bit → 8-bit, monotone
        return Image.fromarray(gray).convert("RGB")
    raise ImageRefused(UNSUPPORTED_MODE, f"mode {mode}")


def decode_image(data: bytes, *, max_pixels: int, max_bytes: int | None = None) -> DecodedImage:
    """Decode ``data`` to RGB with the EXIF orientation applied.

    ``max_pixels`` bounds width x height from the header, *before* any pixel is decoded
    (decompression bombs: a few kB of PNG can declare 30000 x 30000). The check is done here, per
    call: Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` is never changed; Pillow's own guard
    (its ``DecompressionBombError`` above 2x that value, 178,956,970 pixels, raised by ``open`` or
    ``load``) is caught and refused the same way, so a bomb is a refusal, never a crash, and
    ``DecompressionBombWarning`` is silenced because this limit replaces it. ``max_bytes`` is a
    second line behind the source's own size check (:meth:`ImageSource.read`). Raises
    :class:`ImageRefused` (``too_many_bytes``, ``too_many_pixels``, ``not_an_image``, ...).
    """
    if not data:
        raise ImageRefused(EMPTY, "0 bytes")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageRefused(TOO_MANY_BYTES, f"{len(data)} bytes > max_bytes {max_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im: Image.Image
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise ImageRefused(TOO_MANY_PIXELS, str(err)) from None
        except UnidentifiedImageError:
            raise ImageRefused(NOT_AN_IMAGE, "Pillow cannot identify the format") from None
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageRefused(CORRUPT, f"header: {err}") from None
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageRefused(CORRUPT, f"size {width}x{height}")
        if width * height > max_pixels:
            raise ImageRefused(TOO_MANY_PIXELS,
                               f"{width}x{height} = {width * height} pixels > max_pixels {max_pixels}")
        fmt = im.format or "UNKNOWN"
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
        except Image.DecompressionBombError as err:  # a later frame or tile of a multi-part file
            raise ImageRefused(TOO_MANY_PIXELS, str(err)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ImageRefused(CORRUPT, str(err) or type(err).__name__) from None
    return DecodedImage(image=_to_rgb(im), format=fmt)


def sha256_hex(data: bytes) -> str:
    """An image's id: the SHA-256 of its bytes (the same bytes under two names are one image)."""
    return hashlib.sha256(data).hexdigest()
