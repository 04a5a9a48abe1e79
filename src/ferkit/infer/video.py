"""Videos and live cameras for `ferkit predict`: every N-th frame with its time in seconds, and the
faces of those frames followed by `FaceTracker` (a track id per face, probabilities smoothed over
time), with an annotated copy of a video on request, or an annotated window for a camera.

    for row in track_video(predictor, "clip.mp4"): ...
    for row in track_camera(predictor, "0"): ...        # or "/dev/video0"; q or Esc in the window stops it
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .faces import Found, crop_face, whole_image
from .io import ImageReadError, to_gray
from .tracking import FaceTracker

Frame = tuple[int, float, np.ndarray]  # (frame index, time in seconds, RGB uint8 frame)
WINDOW = "ferkit"  # the camera window's title
STOP_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc in the window


def _read_frames(
    cap: cv2.VideoCapture, name: str, every: int, clock: Callable[[int], float]
) -> Generator[Frame, None, None]:
    """Frames 0, every, 2*every, ... of an open capture (released at the end), timed by `clock(index)`.
    Skipped frames are only grabbed, not decoded into images, which is much cheaper."""
    if every < 1:
        raise ValueError(f"every must be >= 1 (got {every})")
    try:
        index = 0
        while True:
            if index % every == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                yield index, round(clock(index), 3), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif not cap.grab():
                break
            index += 1
        if index == 0:
            raise ImageReadError(f"{name}: no frame could be decoded (corrupt or unsupported video)", "corrupt")
    finally:
        cap.release()


def iter_frames(path: str | Path, every: int = 10) -> Generator[Frame, None, None]:
    """Yield (frame index, time in seconds, RGB uint8 frame) for frames 0, every, 2*every, ... of a file."""
    if every < 1:
        raise ValueError(f"every must be >= 1 (got {every})")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageReadError(f"{path}: cannot open as a video (unsupported codec or not a video file)", "not_image")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    clock = (lambda i: i / fps) if fps > 0 else (lambda i: cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    return _read_frames(cap, str(path), every, clock)


def camera_source(spec: str | int) -> int | str:
    """`--camera` as OpenCV opens it: "0" (a device number) -> 0; a path (/dev/video0, or a video file
    standing in for a camera) -> the path. A path that does not exist is a one-line ValueError."""
    text = str(spec).strip()
    if text.isdigit():
        return int(text)
    if not Path(text).exists():
        raise ValueError(
            f"camera {text}: no such device or file: give a camera number (0, 1, ...) or a device "
            f"path such as /dev/video0 (ls /dev/video*)"
        )
    return text


def open_camera(spec: str | int) -> cv2.VideoCapture:
    """The opened capture of a camera ("0", "/dev/video0", or a video file standing in for one); a
    camera that cannot be opened is a one-line ImageReadError."""
    source = camera_source(spec)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # each backend's failed try is not a warning
    try:
        cap = cv2.VideoCapture(source)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise ImageReadError(
            f"camera {spec}: cannot open it (no such camera, no permission, or another program uses it)", "missing"
        )
    return cap


def video_fps(path: str | Path) -> float:
    """Frames per second a video file declares (0.0 when it declares none)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def track_frames(
    predictor: Any,
    frames: Iterable[Frame],
    detect_every: int = 5,
    window: int = 5,
    chunk: int = 32,
    on_frame: Callable[[np.ndarray, list[dict]], Any] | None = None,
) -> Iterator[dict]:
    """One row per face per frame: {"frame", "time_s", "track", "faces", "face", "box", "detector_score",
    "landmarks", "label", "score", "probs"} with the probabilities averaged over the track's last
    `window` frames, or one {"frame", "time_s", "faces": 0} row for a frame without a face. Boxes lie
    inside the frame; between detections a track keeps its last detection's score and its landmarks
    move with its box. Faces are classified `chunk` frames at a time (one batch; 1 for a live camera);
    `on_frame(frame, faces)` is called for each frame once its faces are known (drawing)."""
    tracker = FaceTracker(detect_every, window)
    pending: list[tuple[int, float, np.ndarray, list]] = []

    def flush() -> Iterator[dict]:
        crops = [c for *_, tracked in pending for _, c in tracked]
        probs = predictor.predict_crops(np.stack(crops)) if crops else np.empty((0, len(predictor.class_names)))
        k = 0
        for index, seconds, frame, tracked in pending:
            smoothed = tracker.add_probs([t for (t, _), _ in tracked], probs[k : k + len(tracked)])
            k += len(tracked)
            found = [f for (_, f), _ in tracked]
            faces = [
                face | f.fields() | {"track": t.id}
                for ((t, f), _), face in zip(tracked, predictor.faces([f.box for f in found], smoothed))
            ]
            if not faces:
                yield {"frame": index, "time_s": seconds, "faces": 0}
            for i, face in enumerate(faces):
                yield {
                    "frame": index,
                    "time_s": seconds,
                    "track": face["track"],
                    "faces": len(faces),
                    "face": i,
                    **{k: v for k, v in face.items() if k != "track"},
                    "score": round(face["score"], 6),
                    "probs": {c: round(p, 6) for c, p in face["probs"].items()},
                }
            if on_frame is not None:
                on_frame(frame, faces)
        pending.clear()

    for index, seconds, frame in frames:
        gray = to_gray(frame)
        detected: list[Found] | None
        if not predictor.detect:
            detected = [whole_image(gray.shape)]
        else:
            detected = predictor.detector.detect_faces(gray) if tracker.needs_detection() else None
        tracks = tracker.boxes(gray, detected)
        # The track objects change as later frames arrive: keep this frame's faces with them.
        tracked = [((t, t.found(gray.shape)), crop_face(gray, t.box, predictor.detector.margin)) for t in tracks]
        pending.append((index, seconds, frame, tracked))
        if len(pending) >= chunk:
            yield from flush()
    yield from flush()


def track_video(
    predictor: Any,
    path: str | Path,
    every: int = 1,
    detect_every: int = 5,
    window: int = 5,
    chunk: int = 32,
    annotate_to: Path | None = None,
) -> Iterator[dict]:
    """`track_frames` over a video file's every `every`-th frame; with `annotate_to`, the processed
    frames are written there as an MP4 with the boxes, track ids and labels drawn."""
    from ferkit.runtime.paths import atomic_path

    from .draw import annotate

    writer = None
    fps = video_fps(path) / every or 10.0

    def write(frame: np.ndarray, faces: list[dict]) -> None:
        nonlocal writer
        if writer is None:
            assert annotate_to is not None  # `write` is passed on only with annotate_to
            temp = files.enter_context(atomic_path(annotate_to))
            writer = cv2.VideoWriter(str(temp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
            files.callback(writer.release)  # released before the file is renamed
        writer.write(cv2.cvtColor(annotate(frame, faces), cv2.COLOR_RGB2BGR))

    # The annotated video is written under a temporary name and renamed once complete (`atomic_path`):
    # an error, or a reader that stops early, leaves no partial video.
    with contextlib.ExitStack() as files:
        yield from track_frames(
            predictor, iter_frames(path, every), detect_every, window, chunk, None if annotate_to is None else write
        )


def has_display() -> bool:
    """Whether a window can be shown: a display is set (DISPLAY or WAYLAND_DISPLAY) and this OpenCV was
    built with a GUI (opencv-python-headless, ferkit's dependency, has none)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return gui is not None and gui.group(1).upper() != "NONE"


class Stop(Exception):
    """The user closed the camera window or pressed q or Esc."""


def show_frame(frame: np.ndarray, faces: list[dict]) -> None:
    """Draw one answered frame in the camera window; raise `Stop` on q, Esc or a closed window."""
    from .draw import annotate

    cv2.imshow(WINDOW, cv2.cvtColor(annotate(frame, faces), cv2.COLOR_RGB2BGR))
    key = cv2.waitKey(1) & 0xFF
    if key in STOP_KEYS or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
        raise Stop


def track_camera(
    predictor: Any, spec: str | int, every: int = 1, detect_every: int = 5, window: int = 5, show: bool | None = None
) -> Generator[dict, None, None]:
    """`track_frames` over a live camera ("0", "/dev/video0", or a video file standing in for one), one
    frame at a time, until the stream ends, q or Esc is pressed in the window, or Ctrl-C: each ends
    the rows cleanly (the camera released, the window closed). `show`: an annotated window (None: when
    `has_display()`). Rows carry the time in seconds since the camera opened."""
    cap = open_camera(spec)
    start = time.monotonic()
    frames = _read_frames(cap, f"camera {spec}", every, lambda _: time.monotonic() - start)
    show = has_display() if show is None else show
    try:
        yield from track_frames(predictor, frames, detect_every, window, 1, show_frame if show else None)
    except (Stop, KeyboardInterrupt):
        pass
    finally:
        frames.close()
        cap.release()
        if show:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(WINDOW)
                cv2.waitKey(1)


def run_camera(
    predictor: Any,
    spec: str | int,
    write: Callable[[dict], Any],
    every: int = 1,
    detect_every: int = 5,
    window: int = 5,
    show: bool | None = None,
) -> int:
    """`write(row)` for every row of `track_camera` until the camera stops (q, Esc, the stream's end
    or Ctrl-C, which ends it cleanly here too); returns the number of frames processed."""
    rows = track_camera(predictor, spec, every, detect_every, window, show)
    frames = 0
    try:
        for row in rows:
            write(row)
            frames += row.get("face", 0) == 0  # a frame's first row
    except KeyboardInterrupt:
        pass
    finally:
        rows.close()
    return frames
