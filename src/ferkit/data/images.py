"""Decoding one untrusted image file, in one place for the dataset readers and for inference.

`open_image(data, name, max_pixels)` checks the header before any pixel is decoded: an empty
file, a file PIL cannot identify, or an image over `max_pixels` (a decompression bomb: a few
hundred KB of PNG can hold 50 megapixels) is refused with an `ImageError` whose `kind` says why.
`to_8bit(im)` turns 16-bit and float images into 8 bits by scaling, not clipping.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageFile, ImageOps

# 40 megapixels: a 7,300 x 5,500 photo, more than any phone's default output; a 50-megapixel bomb is
# refused. The service and `ferkit predict` take --max-pixels to change it.
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An input that is not a readable image. `kind`: empty, not_image, corrupt, too_large."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@contextmanager
def strict_pil() -> Iterator[None]:
    """Make PIL raise on truncated files (another library may have set the global to True)."""
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def open_image(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Encoded bytes -> a decoded PIL image (EXIF orientation applied), or `ImageError`."""
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)", "empty")
    try:
        im: Image.Image = Image.open(io.BytesIO(data))  # exif_transpose below returns a plain Image
    except Image.DecompressionBombError:  # PIL's own limit (about 179 megapixels), far above ferkit's
        raise ImageError(
            f"{name}: image over PIL's decompression-bomb limit; downscale it first", "too_large"
        ) from None
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError(f"{name}: not an image file PIL can read (jpg, png, bmp, webp, ...)", "not_image") from None
    width, height = im.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f} (--max-pixels); downscale it first",
            "too_large",
        )
    with strict_pil():
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            reason = str(e).split(" <_io.")[0]  # PIL names its BytesIO; the file name is more use
            raise ImageError(f"{name}: truncated or corrupt {im.format} image ({reason})", "corrupt") from None
    return im


def to_8bit(im: Image.Image) -> Image.Image:
    """16-bit ("I;16", "I") and float ("F") images -> 8-bit "L" by scaling their range, not clipping it
    (PIL's convert("L") clips 16-bit values, which turns most of a 16-bit photo white)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or im.mode.startswith("I;16") else 255.0
        return Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0  # floats in [0, 1] or already in [0, 255]
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")
    return im
