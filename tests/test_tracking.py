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
