"""Boxes and labels drawn onto a copy of an image (`ferkit predict --annotate`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferkit.runtime.paths import atomic_write

from .io import to_rgb

# One colour per class (RGB), in ferkit's alphabetical class order; the web page uses the same.
CLASS_COLORS = {
    "angry": (220, 50, 47),
    "disgust": (133, 153, 0),
    "fear": (108, 113, 196),
    "happy": (238, 180, 0),
    "neutral": (147, 161, 161),
    "sad": (38, 139, 210),
    "surprise": (211, 54, 130),
}


def annotate(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """A copy of `image` (RGB) with each face's box and "index label score" drawn on it (a tracked
    face's "#track label score")."""
    out = np.ascontiguousarray(to_rgb(image).copy())
    thick = max(1, round(max(out.shape[:2]) / 400))
    font_scale = max(0.4, max(out.shape[:2]) / 1200)
    for i, face in enumerate(faces):
        x, y, w, h = face["box"]
        color = CLASS_COLORS.get(face["label"], (0, 200, 0))
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick)
        text = f"{'#' + str(face['track']) if 'track' in face else i} {face['label']} {face['score']:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        top = y - th - base - 2 if y - th - base - 2 >= 0 else y + h  # above the box, else below
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 2), color, -1)
        cv2.putText(
            out, text, (x + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thick, cv2.LINE_AA
        )
    return out


# What an annotated copy of an image can be written as (PIL's format for the suffix); others become .png.
IMAGE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def save_annotated(image: np.ndarray, faces: list[dict], path: Path, overwrite: bool = True) -> Path:
    """Save the annotated copy of `image` at `path` (its name from `annotation_names`), whole or not
    at all. Not flushed to the disk one by one: copies are many, small and can be made again."""
    drawn = Image.fromarray(annotate(image, faces))
    return atomic_write(
        path, lambda f: drawn.save(f, format=IMAGE_FORMATS[path.suffix.lower()]), overwrite=overwrite, durable=False
    )
