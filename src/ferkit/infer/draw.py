"""Boxes and labels drawn onto a copy of an image (`ferkit predict --annotate`)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .io import to_rgb

# One colour per class (RGB), in ferkit's alphabetical class order; the web page uses the same.
CLASS_COLORS = {
    "angry": (220, 50, 47), "disgust": (133, 153, 0), "fear": (108, 113, 196), "happy": (238, 180, 0),
    "neutral": (147, 161, 161), "sad": (38, 139, 210), "surprise": (211, 54, 130),
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
        cv2.putText(out, text, (x + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return out


def save_annotated(image: np.ndarray, faces: list[dict], out_dir: Path, name: str, used: set[str]) -> Path:
    """Save the annotated image as out_dir/name, adding _1, _2 ... when a name repeats in a run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        suffix = ".png"
    candidate, k = f"{stem}{suffix}", 0
    while candidate in used:
        k += 1
        candidate = f"{stem}_{k}{suffix}"
    used.add(candidate)
    path = out_dir / candidate
    Image.fromarray(annotate(image, faces)).save(path)
    return path
