"""Faces followed across video frames: a track id per face and its probabilities smoothed over time.

The detector runs on every `detect_every`-th frame given to `FaceTracker.update`; a detection joins
the track whose last box overlaps it most (IoU at least `iou`), or starts a new track. On the frames
in between, each track follows its face by template matching (normalised cross-correlation of the
face's last appearance within a window around its last box), which costs well under a millisecond
per face instead of a full detection. A track that no detection confirms for `max_missed`
detections in a row ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .faces import Box, Found, as_box, found_from_square

SEARCH = 0.5  # the template search window reaches this fraction of the box size beyond it
MIN_MATCH = 0.5  # a template match below this correlation leaves the box where it was


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: Box
    template: np.ndarray  # the face's grayscale pixels at its last confirmed box (inside the frame)
    history: deque = field(default_factory=deque)  # the last `window` probability vectors
    missed: int = 0  # detections in a row that did not confirm it
    score: float | None = None  # the detector's confidence at its last detection (None: haar)
    landmarks: np.ndarray | None = None  # its last detected landmarks (5, 2), moved with the box since
    offset: tuple[int, int] = (0, 0)  # where the template starts in the box: a box past the frame's edge is cut

    def smoothed(self) -> np.ndarray:
        return np.mean(self.history, axis=0)

    def found(self, shape: tuple[int, ...]) -> Found:
        """The track's face in a frame of `shape`: its box clipped to the frame (for the row), its
        square (for the crop), the last detection's score and the landmarks moved with the box."""
        return found_from_square(self.box, self.score, self.landmarks, shape)

    def move(self, box: Box) -> None:
        """Follow the face to `box` (same size): the landmarks move with it."""
        if self.landmarks is not None:
            self.landmarks = self.landmarks + np.array([box[0] - self.box[0], box[1] - self.box[1]], np.float32)
        self.box = box

    def confirm(self, face: Found | Box) -> None:
        """A detection of this track's face: its box, score and landmarks."""
        self.box, self.score, self.landmarks = _parts(face)
        self.missed = 0


def _parts(face: Found | Box) -> tuple[Box, float | None, np.ndarray | None]:
    """(the square to crop, score, landmarks) of a detection given as a `Found` or a plain box."""
    if isinstance(face, Found):
        return face.crop_box, face.score, face.landmarks
    return as_box(face), None, None


def _follow(gray: np.ndarray, track: Track) -> Box:
    """The track's box moved to where its template matches best near its last position."""
    x, y, w, h = track.box
    H, W = gray.shape
    dx, dy = round(w * SEARCH), round(h * SEARCH)
    x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(W, x + w + dx), min(H, y + h + dy)
    window = gray[y0:y1, x0:x1]
    th, tw = track.template.shape
    if window.shape[0] < th or window.shape[1] < tw:
        return track.box  # at the frame's edge: keep the box
    scores = cv2.matchTemplate(window, track.template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    ox, oy = track.offset
    return (x0 + bx - ox, y0 + by - oy, w, h) if best >= MIN_MATCH else track.box


class FaceTracker:
    """Track ids and smoothed probabilities for the faces of consecutive frames.

    detect_every: run the detector on every k-th frame (1 = every frame, no template following).
    window: probabilities are averaged over a track's last `window` frames (1 = no smoothing).
    iou: the least overlap for a detection to continue a track.
    max_missed: detections in a row without a match after which a track ends.
    """

    def __init__(self, detect_every: int = 5, window: int = 5, iou: float = 0.3, max_missed: int = 2):
        if detect_every < 1 or window < 1 or not 0 < iou <= 1 or max_missed < 0:
            raise ValueError(
                f"detect_every and window must be >= 1, iou in (0, 1], max_missed >= 0 "
                f"(got {detect_every}, {window}, {iou}, {max_missed})"
            )
        self.detect_every, self.window, self.iou, self.max_missed = detect_every, window, iou, max_missed
        self.tracks: list[Track] = []
        self.frames = 0
        self.next_id = 0

    def needs_detection(self) -> bool:
        """Whether the next frame given to `boxes` should be searched by the detector."""
        return self.frames % self.detect_every == 0 or not self.tracks

    def boxes(self, gray: np.ndarray, detected: Sequence[Found | Box] | None) -> list[Track]:
        """This frame's tracks: `detected` faces (when the detector ran: `Found`s, whose squares are
        tracked, or plain boxes) matched to the tracks, or the tracks followed by template matching.
        Call `add_probs` with their probabilities next."""
        self.frames += 1
        if detected is None:
            live = [t for t in self.tracks if t.missed == 0]  # a track the last detection missed waits for the next
            for t in live:
                t.move(_follow(gray, t))
            return live
        squares = [_parts(d)[0] for d in detected]
        pairs = sorted(
            ((iou(t.box, d), i, j) for i, t in enumerate(self.tracks) for j, d in enumerate(squares)), reverse=True
        )
        taken_t, taken_d = set(), set()
        for overlap, i, j in pairs:  # greedy: the largest overlaps first
            if overlap < self.iou or i in taken_t or j in taken_d:
                continue
            taken_t.add(i)
            taken_d.add(j)
            self.tracks[i].confirm(detected[j])
        for i, t in enumerate(self.tracks):
            if i not in taken_t:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for j, d in enumerate(detected):
            if j not in taken_d:
                track = Track(self.next_id, squares[j], np.empty((0, 0), np.uint8), deque(maxlen=self.window))
                track.confirm(d)
                self.tracks.append(track)
                self.next_id += 1
        for t in self.tracks:
            if t.missed == 0:
                x, y, w, h = t.box
                t.template = np.ascontiguousarray(gray[max(0, y) : y + h, max(0, x) : x + w])
                t.offset = (max(0, x) - x, max(0, y) - y)
        return [t for t in self.tracks if t.missed == 0]

    def add_probs(self, tracks: list[Track], probs: np.ndarray) -> list[np.ndarray]:
        """Record this frame's probabilities of `tracks` (as returned by `boxes`); returns each one's
        average over its last `window` frames."""
        for t, p in zip(tracks, probs):
            t.history.append(np.asarray(p, dtype=np.float64))
        return [t.smoothed() for t in tracks]
