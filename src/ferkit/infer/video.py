"""Videos for `ferkit predict`: every N-th frame of a file with its time in seconds, and the faces of
those frames followed by `FaceTracker` (a track id per face, probabilities smoothed over time), with
an annotated copy of the video on request."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from .faces import crop_face
from .io import ImageReadError, to_gray
from .tracking import FaceTracker


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


def video_fps(path: str | Path) -> float:
    """Frames per second a video file declares (0.0 when it declares none)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def track_video(predictor: Any, path: str | Path, every: int = 1, detect_every: int = 5, window: int = 5,
                chunk: int = 32, annotate_to: Path | None = None) -> Iterator[dict]:
    """One row per face per processed frame: {"frame", "time_s", "track", "faces", "face", "box",
    "label", "score", "probs"} with the probabilities averaged over the track's last `window` frames,
    or one {"frame", "time_s", "faces": 0} row for a frame without a face. Faces are classified
    `chunk` frames at a time (one batch); with `annotate_to`, the processed frames are written there
    as an MP4 with the boxes, track ids and labels drawn."""
    from ferkit.paths import atomic_path

    from .draw import annotate

    tracker = FaceTracker(detect_every, window)
    pending: list[tuple[int, float, np.ndarray, list, list[tuple[int, tuple]]]] = []
    writer = None
    fps = video_fps(path) / every or 10.0
    # The annotated video is written under a temporary name and renamed once complete (`atomic_path`):
    # an error, or a reader that stops early, leaves no partial video.
    files = contextlib.ExitStack()

    def flush() -> Iterator[dict]:
        nonlocal writer
        crops = [c for *_, frame_crops, _ in pending for c in frame_crops]
        probs = predictor.predict_crops(np.stack(crops)) if crops else np.empty((0, len(predictor.class_names)))
        k = 0
        for index, seconds, frame, frame_crops, tracks in pending:
            smoothed = tracker.add_probs([t for t, _ in tracks], probs[k:k + len(tracks)])
            k += len(tracks)
            faces = [face | {"track": t.id} for (t, box), face in zip(tracks, predictor.faces([b for _, b in tracks], smoothed))]
            if not faces:
                yield {"frame": index, "time_s": seconds, "faces": 0}
            for i, face in enumerate(faces):
                yield {"frame": index, "time_s": seconds, "track": face["track"], "faces": len(faces), "face": i,
                       "box": face["box"], "label": face["label"], "score": round(face["score"], 6),
                       "probs": {c: round(p, 6) for c, p in face["probs"].items()}}
            if annotate_to is not None:
                if writer is None:
                    temp = files.enter_context(atomic_path(annotate_to))
                    writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                             (frame.shape[1], frame.shape[0]))
                    files.callback(writer.release)  # released before the file is renamed
                writer.write(cv2.cvtColor(annotate(frame, faces), cv2.COLOR_RGB2BGR))
        pending.clear()

    with files:
        for index, seconds, frame in iter_frames(path, every):
            gray = to_gray(frame)
            if not predictor.detect:
                detected = [(0, 0, gray.shape[1], gray.shape[0])]
            else:
                detected = predictor.detector.detect(gray) if tracker.needs_detection() else None
            tracks = tracker.boxes(gray, detected)
            # The track objects change as later frames arrive: keep this frame's boxes with them.
            pending.append((index, seconds, frame, [crop_face(gray, t.box, predictor.margin) for t in tracks],
                            [(t, t.box) for t in tracks]))
            if len(pending) == chunk:
                yield from flush()
        yield from flush()
