"""Reading images for inference: paths, bytes, PIL images and numpy arrays -> uint8 arrays.

Every reader returns a uint8 numpy array, HxW (grayscale) or HxWx3 (RGB), and raises
`ImageReadError` (with a `kind` the web service maps to an HTTP status) for anything else.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ferkit.data.images import MAX_PIXELS, ImageError, open_image, to_8bit

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv"}


class ImageReadError(ImageError):
    """An input that is not a readable image. `kind` is one of:
    missing, empty, not_image, corrupt, too_large, bad_array."""


def decode_image(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes -> uint8 HxW (grayscale source) or HxWx3 (RGB).

    The header is checked first (`ferkit.data.images.open_image`: empty, not an image, over
    `max_pixels`); EXIF orientation is applied (phone photos are stored sideways with a rotate
    tag); 16-bit images are scaled to 8 bits.
    """
    try:
        im = open_image(data, name, max_pixels)
    except ImageError as e:
        raise ImageReadError(str(e), e.kind) from None
    return pil_to_array(im)


def pil_to_array(im: Image.Image) -> np.ndarray:
    """A PIL image -> uint8 HxW for grayscale modes, HxWx3 RGB for the rest (alpha dropped)."""
    im = to_8bit(im)  # 16-bit and float modes become "L", scaled
    if im.mode in ("L", "RGB"):  # as decoded: no conversion, no copy
        return np.asarray(im, dtype=np.uint8)
    if im.mode == "1":
        return np.asarray(im.convert("L"), dtype=np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def check_array(arr: np.ndarray, name: str = "array") -> np.ndarray:
    """Validate a numpy image: uint8, HxW or HxWx3 (RGB) or HxWx4 (RGBA, alpha dropped)."""
    if arr.dtype != np.uint8:
        raise ImageReadError(
            f"{name}: expected a uint8 image array, got {arr.dtype} (scale to 0..255 and use .astype(np.uint8))",
            "bad_array",
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ImageReadError(f"{name}: expected an HxW or HxWx3 (RGB) array, got shape {arr.shape}", "bad_array")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(f"{name}: empty image of shape {arr.shape}", "empty")
    return np.ascontiguousarray(arr)


def load_image(source: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A path, bytes, PIL image or numpy array -> uint8 HxW or HxWx3 (RGB) array."""
    if isinstance(source, np.ndarray):
        return check_array(source)
    if isinstance(source, Image.Image):
        return pil_to_array(ImageOps.exif_transpose(source))
    if isinstance(source, (bytes, bytearray)):
        return decode_image(bytes(source), max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageReadError(f"{path}: no such file", "missing")
        return decode_image(path.read_bytes(), str(path), max_pixels)
    raise ImageReadError(
        f"cannot read an image from a {type(source).__name__}: pass a path, PIL image or numpy array", "bad_array"
    )


def to_gray(image: np.ndarray) -> np.ndarray:
    """HxW or HxWx3 RGB uint8 -> HxW uint8, with PIL's "L" conversion (as the training data was made)."""
    if image.ndim == 2:
        return image
    return np.asarray(Image.fromarray(image, "RGB").convert("L"), dtype=np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """HxW or HxWx3 uint8 -> HxWx3 RGB (for drawing)."""
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def collect_inputs(args: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]], int]:
    """Expand CLI arguments (files, folders searched recursively, globs) into files.

    Returns (files, missing, skipped): `missing` holds (argument, error) for arguments that
    match nothing; `skipped` counts files in folders whose extension is neither an image nor
    a video. Files named explicitly are kept whatever their extension, so that a bad file
    is reported rather than ignored.
    """
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    skipped = 0
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                if f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS:
                    files.append(f)
                else:
                    skipped += 1
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(arg):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True) if Path(m).is_file())
            files.extend(matches)
            if not matches:
                missing.append((arg, "pattern matches no file"))
        else:
            missing.append((arg, "no such file or folder"))
    unique: dict[Path, Path] = {}  # a file named twice (folder and glob) is predicted once
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values()), missing, skipped
