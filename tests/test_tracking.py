"""Faces followed across video frames: ids, template following, smoothing, and `ferkit predict` on a clip."""
import json

import cv2
import numpy as np
import pytest

from ferkit.infer.tracking import FaceTracker, iou


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_detections_keep_their_track_ids_and_lost_faces_end():
    t = FaceTracker(detect_every=1, window=1, max_missed=1)
    gray = np.zeros((200, 300), np.uint8)
    ids = []
    for step in range(6):  # two faces drifting apart by 4 px a frame: each keeps its id
        tracks = t.boxes(gray, [(40 - 4 * step, 50, 40, 40), (200 + 4 * step, 60, 40, 40)])
        ids.append(sorted((tr.box[0], tr.id) for tr in tracks))
    assert all([i for _, i in frame] == [0, 1] for frame in ids)
    assert [tr.id for tr in t.boxes(gray, [(200 + 24, 60, 40, 40), (120, 120, 30, 30)])] == [1, 2]  # a new face
    assert [tr.id for tr in t.boxes(gray, [(228, 60, 40, 40)])] == [1]  # face 0 missed twice: ended
    assert {tr.id for tr in t.tracks} == {1, 2}  # face 2 missed once: waits for the next detection


def _frame(x, y, patch, size=(240, 320)):
    frame = np.full(size, 90, np.uint8)
    frame[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return frame


def test_between_detections_a_track_follows_its_face_by_template():
    patch = np.random.default_rng(0).integers(0, 255, (40, 40)).astype(np.uint8)
    t = FaceTracker(detect_every=5, window=1)
    for step in range(12):
        x, y = 30 + 5 * step, 60 + 2 * step  # 5 px right and 2 px down each frame
        gray = _frame(x, y, patch)
        detected = [(x, y, 40, 40)] if t.needs_detection() else None
        (track,) = t.boxes(gray, detected)
        assert abs(track.box[0] - x) <= 1 and abs(track.box[1] - y) <= 1, (step, track.box, (x, y))
        assert track.id == 0


def test_probabilities_are_averaged_over_the_window():
    t = FaceTracker(detect_every=1, window=2)
    gray = np.zeros((100, 100), np.uint8)
    outs = []
    for p in ([1.0, 0.0], [0.0, 1.0], [0.0, 1.0]):
        tracks = t.boxes(gray, [(10, 10, 30, 30)])
        outs.append(t.add_probs(tracks, np.array([p]))[0].tolist())
    assert outs == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]


def test_bad_tracker_settings_are_refused():
    with pytest.raises(ValueError, match="detect_every"):
        FaceTracker(detect_every=0)


def test_predict_video_writes_track_ids_and_an_annotated_video(tmp_path):
    """A clip given whole (--no-detect: each frame is the face) gives one track; --annotate writes an
    MP4 with a frame per processed frame."""
    import torch

    from ferkit.cli import main
    from ferkit.models import build_model

    ckpt = tmp_path / "m.pt"
    model = build_model("seed-cnn", "softmax", 7)
    torch.save({"format": "ferkit", "version": 1, "arch": "seed-cnn", "head": "softmax", "head_kwargs": {},
                "class_names": ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"],
                "config": {}, "model": model.state_dict()}, ckpt)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 96))
    rng = np.random.default_rng(1)
    for _ in range(12):
        writer.write(cv2.cvtColor(rng.integers(0, 255, (96, 96)).astype(np.uint8), cv2.COLOR_GRAY2BGR))
    writer.release()
    out = tmp_path / "rows.jsonl"
    assert main(["predict", str(clip), "--ckpt", str(ckpt), "--no-detect", "--every", "2", "--smooth", "3",
                 "--annotate", str(tmp_path / "ann"), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 2, 4, 6, 8, 10] and {r["track"] for r in rows} == {0}
    assert [r["time_s"] for r in rows[:2]] == [0.0, 0.2]
    video = cv2.VideoCapture(str(tmp_path / "ann" / "clip.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    video.release()


# ---------------------------------------------------------------- the live camera, a video file standing in for it

@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """A 20-frame clip of a real face (matplotlib's portrait, 110 px) moving 4 px a frame over a grey
    background, the face partly past the left edge at first: what a webcam might send."""
    matplotlib = pytest.importorskip("matplotlib")
    from pathlib import Path

    from ferkit.infer.io import decode_image

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib's sample photo grace_hopper.jpg is not installed")
    face = cv2.resize(decode_image(photo.read_bytes())[90:400, 110:420], (110, 110))
    clip = tmp_path_factory.mktemp("camera") / "standin.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (240, 180))
    for step in range(20):
        frame = np.full((180, 240, 3), 120, np.uint8)
        x = -20 + 4 * step
        frame[30:140, max(0, x):x + 110] = face[:, max(0, -x):]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return clip


@pytest.fixture(scope="module")
def predictor():
    from ferkit.infer import Predictor
    return Predictor(threads=1)  # the shipped model, as `ferkit predict --camera` runs it


def test_camera_rows_carry_track_ids_detector_scores_and_landmarks(face_clip, predictor):
    from ferkit.infer.video import run_camera

    rows = []
    assert run_camera(predictor, str(face_clip), rows.append, detect_every=5, window=3, show=False) == 20
    assert [r["frame"] for r in rows] == list(range(20)) and {r["track"] for r in rows} == {0}
    times = [r["time_s"] for r in rows]
    assert times == sorted(times) and times[0] >= 0  # seconds since the camera opened
    for r in rows:
        x, y, w, h = r["box"]
        assert 0 <= x and 0 <= y and x + w <= 240 and y + h <= 180  # inside the frame, also where the face leaves it
        assert 0.4 <= r["detector_score"] <= 1 and len(r["landmarks"]) == 5 and r["label"] in r["probs"]
    # between detections (frames 1-4) the landmarks move with the face: 4 px a frame
    eye = [r["landmarks"][0][0] for r in rows[:5]]
    assert np.diff(eye) == pytest.approx([4, 4, 4, 4], abs=1.5)


class FakeWindow:
    """cv2's window calls, recorded: `keys` are what waitKey returns, frame by frame (or an exception)."""

    def __init__(self, keys):
        self.keys, self.shown, self.closed = list(keys), 0, False

    def install(self, monkeypatch):
        monkeypatch.setattr(cv2, "imshow", self.imshow)
        monkeypatch.setattr(cv2, "waitKey", self.wait_key)
        monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
        monkeypatch.setattr(cv2, "destroyWindow", self.destroy)

    def imshow(self, name, image):
        assert image.ndim == 3 and image.dtype == np.uint8
        self.shown += 1

    def wait_key(self, delay):
        if self.closed:
            return -1
        key = self.keys.pop(0) if self.keys else -1
        if isinstance(key, BaseException):
            raise key
        return key

    def destroy(self, name):
        self.closed = True


@pytest.mark.parametrize("stop", [ord("q"), 27, KeyboardInterrupt()], ids=["q", "esc", "ctrl-c"])
def test_the_camera_window_stops_on_q_esc_and_ctrl_c(face_clip, predictor, monkeypatch, stop):
    from ferkit.infer.video import run_camera

    window = FakeWindow([-1, -1, stop])
    window.install(monkeypatch)
    rows = []
    assert run_camera(predictor, str(face_clip), rows.append, show=True) == 3
    assert [r["frame"] for r in rows] == [0, 1, 2] and window.shown == 3 and window.closed


def test_ctrl_c_while_rows_are_written_ends_cleanly(face_clip, predictor):
    from ferkit.infer.video import run_camera

    written = []

    def write(row):
        if row["frame"] == 4:
            raise KeyboardInterrupt
        written.append(row["frame"])
    assert run_camera(predictor, str(face_clip), write, show=False) == 4 and written == [0, 1, 2, 3]


def test_camera_sources_and_displays(tmp_path, monkeypatch):
    from ferkit.infer.io import ImageReadError
    from ferkit.infer.video import camera_source, has_display, open_camera

    assert camera_source("0") == 0 and camera_source(" 2 ") == 2 and camera_source(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="camera /dev/video99: no such device.*ls /dev/video"):
        camera_source("/dev/video99")
    with pytest.raises(ImageReadError, match="camera 97: cannot open it"):
        open_camera("97")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not has_display()
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           NONE\n")
    assert not has_display()  # opencv-python-headless: rows, no window
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           GTK3\n")
    assert has_display()


def test_a_track_past_the_frames_edge_follows_its_face_without_a_jump():
    """A box that runs past the left edge keeps only the visible part as its template; following it
    moves the box by the face's motion, not by the part cut off."""
    patch = np.random.default_rng(2).integers(0, 255, (40, 40)).astype(np.uint8)
    t = FaceTracker(detect_every=5, window=1)
    for step in range(5):
        x = 10 + 3 * step  # the square starts 10 px past the left edge (detection at step 0 only)
        gray = _frame(x, 60, patch)
        (track,) = t.boxes(gray, [(x - 20, 50, 60, 60)] if step == 0 else None)
        assert track.box == (x - 20, 50, 60, 60), (step, track.box)
