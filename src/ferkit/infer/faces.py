"""Face detection (OpenCV Haar cascade) and face crops prepared as the model's training images.

The cascade files ship inside opencv-python-headless (`cv2.data.haarcascades`): nothing is
downloaded. OpenCV 5 dropped the cascade classifier, hence the `<5` pin.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
from PIL import Image

from ferkit.data.store import IMAGE_SIZE

FACE_SIZE = IMAGE_SIZE  # the crop the model takes: the training images' size
CASCADE_FILE = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of the original image


class FaceDetector:
    """Frontal-face Haar cascade with the settings that decide speed and recall.

    scale_factor: step between the scanned face sizes (1.1 finds more faces, about 2.5x slower).
    min_neighbors: overlapping hits needed to keep a face (higher = fewer false faces).
    min_face: smallest face side, in pixels of the original image.
    max_side: images larger than this (longer side) are shrunk for detection only, so a
        12-megapixel photo costs about what a 1024-pixel one does; crops use full resolution.
    """

    def __init__(self, scale_factor: float = 1.2, min_neighbors: int = 5, min_face: int = 48,
                 max_side: int = 1024):
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1 (got {scale_factor}): try 1.1 or 1.2")
        if min_face < 1 or max_side < 64:
            raise ValueError(f"min_face must be >= 1 and max_side >= 64 (got {min_face}, {max_side})")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face = min_face
        self.max_side = max_side
        # One classifier per thread: the web service detects in several threads at once,
        # and OpenCV does not promise that one CascadeClassifier may be shared.
        self._local = threading.local()

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            path = cv2.data.haarcascades + CASCADE_FILE
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise RuntimeError(f"cannot load the Haar cascade {path}: reinstall opencv-python-headless<5")
            self._local.cascade = cascade
        return cascade

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces in a uint8 HxW image, largest first, as (x, y, w, h) ints."""
        h, w = gray.shape
        scale = min(1.0, self.max_side / max(h, w))
        small = gray if scale == 1.0 else cv2.resize(gray, (round(w * scale), round(h * scale)),
                                                    interpolation=cv2.INTER_AREA)
        min_side = max(24, round(self.min_face * scale))  # 24x24 is the cascade's own window
        found = self._cascade().detectMultiScale(small, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors,
                                                 minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / scale)) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: -b[2] * b[3])


def crop_face(gray: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """Cut the face `box` (plus `margin` x its size on each side) out of `gray`, as 48x48 uint8.

    The square is padded by repeating the border where it leaves the image, so the face is
    never stretched. The resize is PIL's bilinear, exactly what `ferkit.data` does to an
    image that is not 48x48: PIL widens the filter when it shrinks, so it averages like
    INTER_AREA (no aliasing) for large crops and interpolates for small ones.
    """
    x, y, w, h = box
    pad_x, pad_y = round(w * margin), round(h * margin)
    x0, y0, x1, y1 = x - pad_x, y - pad_y, x + w + pad_x, y + h + pad_y
    H, W = gray.shape
    crop = gray[max(y0, 0):min(y1, H), max(x0, 0):min(x1, W)]
    if crop.size == 0:
        raise ValueError(f"face box {box} lies outside the {W}x{H} image")
    border = (max(0, -y0), max(0, y1 - H), max(0, -x0), max(0, x1 - W))
    if any(border):
        crop = cv2.copyMakeBorder(crop, *border, cv2.BORDER_REPLICATE)
    return resize_face(crop)


def resize_face(gray: np.ndarray) -> np.ndarray:
    """Any HxW uint8 -> 48x48 uint8 with PIL bilinear (the training data's resize)."""
    if gray.shape == (FACE_SIZE, FACE_SIZE):
        return gray
    im = Image.fromarray(gray, "L").resize((FACE_SIZE, FACE_SIZE), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)
