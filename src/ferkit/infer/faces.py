"""What a face detector finds (`Found`) and face crops prepared as the model's training images.

    found = detector.detect_faces(image)        # a `ferkit.infer.detectors` detector: [Found], largest first
    found[0].fields()                           # {"box", "detector_score", "landmarks"}: a result row's keys
    face_crop(gray, found[0], margin, align)    # the model's 48x48 input for that face

The detectors themselves (YuNet, the Haar cascade) and their registry are in `ferkit.infer.detectors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image

from ferkit.data.store import IMAGE_SIZE

FACE_SIZE = IMAGE_SIZE  # the crop the model takes: the training images' size

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of the original image


class Found(NamedTuple):
    """One detected face. `box` is clipped to the image (what a result row reports); `square` is the
    square the face is cropped from, which may run past the image's edges (the crop is padded there)."""

    box: Box
    score: float | None  # the detector's confidence, 0..1 (YuNet); None for the cascade, which has none
    landmarks: (
        np.ndarray | None
    )  # (5, 2) float32 image pixels: right eye, left eye, nose tip, right and left mouth corner
    square: Box | None = None  # None: the same as `box`

    @property
    def crop_box(self) -> Box:
        """The box the face's crop is cut from (`square`, else `box`)."""
        return self.box if self.square is None else self.square

    def fields(self) -> dict:
        """This face's keys in a result row: "box" [x, y, w, h] inside the image, "detector_score"
        (None for the cascade) and "landmarks" [[x, y] x 5] in image pixels, 0.1 px (None without)."""
        return {
            "box": [int(v) for v in self.box],
            "detector_score": None if self.score is None else round(float(self.score), 4),
            "landmarks": None if self.landmarks is None else np.round(self.landmarks.astype(float), 1).tolist(),
        }


def clip_box(box: Box, width: int, height: int) -> Box:
    """`box` (x, y, w, h) cut to the part inside a `width` x `height` image (w or h 0 if none is)."""
    x0, y0 = min(max(int(box[0]), 0), width), min(max(int(box[1]), 0), height)
    x1, y1 = max(min(int(box[0] + box[2]), width), x0), max(min(int(box[1] + box[3]), height), y0)
    return (x0, y0, x1 - x0, y1 - y0)


def as_box(values: Sequence[Any]) -> Box:
    """Four numbers (a list, an array row, a tuple) as a `Box` of ints."""
    x, y, w, h = (int(v) for v in values)
    return (x, y, w, h)


def found_from_square(square: Box, score: float | None, landmarks: np.ndarray | None, shape: tuple[int, ...]) -> Found:
    """A `Found` for a face cropped from `square` in an image of `shape`: its box clipped to the image."""
    box = clip_box(square, shape[1], shape[0])
    x, y, w, h = square
    return Found(box, score, landmarks, None if box == (x, y, w, h) else (x, y, w, h))


def whole_image(shape: tuple[int, ...]) -> Found:
    """The whole image as one face (no detection: the image is a face crop already)."""
    return Found((0, 0, int(shape[1]), int(shape[0])), None, None)


def crop_face(gray: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """Cut the face `box` (plus `margin` x its size on each side) out of `gray`, as 48x48 uint8.

    The square is padded by repeating the border where it leaves the image, so the face is
    never stretched. The resize is PIL's bilinear, exactly what `ferkit.data` does to an
    image that is not 48x48: PIL widens the filter when it shrinks, so it averages like
    INTER_AREA (no aliasing) for large crops and interpolates for small ones.
    """
    x0, y0, cw, ch = crop_region(box, margin)
    x1, y1 = x0 + cw, y0 + ch
    H, W = gray.shape
    crop = gray[max(y0, 0) : min(y1, H), max(x0, 0) : min(x1, W)]
    if crop.size == 0:
        raise ValueError(f"face box {box} lies outside the {W}x{H} image")
    border = (max(0, -y0), max(0, y1 - H), max(0, -x0), max(0, x1 - W))
    if any(border):
        crop = cv2.copyMakeBorder(crop, *border, cv2.BORDER_REPLICATE)
    return resize_face(crop)


def crop_region(box: Box, margin: float) -> Box:
    """The image region (x, y, w, h) that `crop_face(gray, box, margin)` resizes to 48x48: the box
    grown by `margin` x its size on each side (it may run past the image's edges)."""
    x, y, w, h = box
    pad_x, pad_y = round(w * margin), round(h * margin)
    return (x - pad_x, y - pad_y, w + 2 * pad_x, h + 2 * pad_y)


def resize_face(gray: np.ndarray) -> np.ndarray:
    """Any HxW uint8 -> 48x48 uint8 with PIL bilinear (the training data's resize)."""
    if gray.shape == (FACE_SIZE, FACE_SIZE):
        return gray
    im = Image.fromarray(gray, "L").resize((FACE_SIZE, FACE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


# Where YuNet puts the five landmarks on FER-2013's own training images, in 48x48 pixels: the
# median over 904 of 1,000 random train faces that it found (each enlarged 4x on a bordered
# canvas). `python bench/detection.py --template` recomputes it. Aligning a detected face to these
# points frames it as the model's training images are framed, upright.
FER_LANDMARKS = np.array(
    [[15.39, 18.37], [32.40, 18.24], [23.27, 28.17], [17.02, 34.98], [31.06, 34.92]], dtype=np.float32
)


ALIGN_POINTS = [0, 1, 2]  # eyes and nose: the mouth corners move with the expression that is to be read


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that maps points `src` onto `dst` best in least
    squares (closed form, Umeyama 1991 without reflection); deterministic, unlike RANSAC fits."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    s0, d0 = src - src.mean(0), dst - dst.mean(0)
    norm = float((s0**2).sum())
    if norm == 0:
        raise ValueError("the points coincide: no transform")
    a = float((s0 * d0).sum()) / norm
    b = float((s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum()) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dst.mean(0) - rot @ src.mean(0))[:, None]])


def align_face(gray: np.ndarray, landmarks: np.ndarray, template: np.ndarray = FER_LANDMARKS) -> np.ndarray | None:
    """The 48x48 uint8 face whose eyes and nose (`landmarks`, image pixels) land where `template`
    has them (48x48 pixels), by a similarity transform (the face is not sheared); None if the points
    give no transform. Shrinking goes through `resize_face` (PIL bilinear, as the training data), so
    a large face is averaged down, not sampled."""
    try:
        m = similarity(np.asarray(landmarks)[ALIGN_POINTS], template[ALIGN_POINTS])
    except ValueError:
        return None
    scale = float(np.hypot(m[0, 0], m[1, 0]))  # 48x48 pixels per image pixel
    if not np.isfinite(scale) or scale <= 0:
        return None
    side = FACE_SIZE if scale >= 1 else min(4096, int(round(FACE_SIZE / scale)))
    m = m * (side / FACE_SIZE)  # the same framing, drawn at `side` pixels
    out = cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return resize_face(out)


def face_crop(gray: np.ndarray, found: Found, margin: float, align: bool) -> np.ndarray:
    """The model's 48x48 input for one detected face: aligned on its landmarks when asked and the
    detector gave them, else the box crop."""
    if align and found.landmarks is not None:
        aligned = align_face(gray, found.landmarks)
        if aligned is not None:
            return aligned
    return crop_face(gray, found.crop_box, margin)
