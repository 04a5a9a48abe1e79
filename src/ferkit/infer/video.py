"""Video frames for `ferkit predict`: every N-th frame of a file, with its time in seconds."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .io import ImageReadError


def iter_frames(path: str | Path, every: int = 10) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame index, time in seconds, RGB uint8 frame) for frames 0, every, 2*every, ...

    Skipped frames are only grabbed, not decoded into images, which is much cheaper.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1 (got {every})")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageReadError(f"{path}: cannot open as a video (unsupported codec or not a video file)", "not_image")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    try:
        index = 0
        while True:
            if index % every == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                seconds = index / fps if fps > 0 else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                yield index, round(seconds, 3), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif not cap.grab():
                break
            index += 1
        if index == 0:
            raise ImageReadError(f"{path}: no frame could be decoded (corrupt or unsupported video)", "corrupt")
    finally:
        cap.release()
