"""Face detectors (YuNet, Haar), landmark alignment, and the detection benchmark's scenes."""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkit.infer.detectors import DETECTORS, YUNET_FILE, Haar, YuNet, make_detector
from ferkit.infer.faces import (
    FACE_SIZE,
    FER_LANDMARKS,
    align_face,
    clip_box,
    crop_face,
    face_crop,
    found_from_square,
    similarity,
    whole_image,
)
from ferkit.infer.io import decode_image, to_gray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import scenes  # noqa: E402


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib's sample photo grace_hopper.jpg is not installed")
    return decode_image(path.read_bytes())


def test_yunet_ships_inside_ferkit_with_its_licence():
    assert YUNET_FILE.is_file() and 200_000 < YUNET_FILE.stat().st_size < 300_000
    assert "MIT" in (YUNET_FILE.parent / "LICENSE-YuNet.txt").read_text() or "Permission is hereby granted" in (
        YUNET_FILE.parent / "LICENSE-YuNet.txt").read_text()


def test_yunet_decodes_as_opencvs_own_yunet(portrait):
    """ferkit runs YuNet in ONNX Runtime and decodes its outputs itself; OpenCV's FaceDetectorYN, on
    the same (shipped) network, finds the same faces, boxes, landmarks and scores. The scene holds
    the portrait at two scales and a FER face, on a grey canvas."""
    rng = np.random.default_rng(0)
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[:300, :256] = cv2.resize(portrait, (256, 300))
    canvas[200:440, 300:505] = cv2.resize(portrait, (205, 240))
    face = cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (3, 3), 0)
    canvas[20:116, 540:636] = cv2.cvtColor(cv2.resize(face, (96, 96)), cv2.COLOR_GRAY2BGR)
    detector = make_detector("yunet")
    for bgr in (canvas, cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR)):
        ours = detector.raw_faces(bgr)
        net = cv2.FaceDetectorYN.create(str(YUNET_FILE), "", (bgr.shape[1], bgr.shape[0]), detector.score_threshold,
                                        detector.nms_threshold, 5000)
        theirs = net.detect(bgr)[1]
        theirs = np.zeros((0, 15), np.float32) if theirs is None else theirs
        assert len(ours) == len(theirs) >= 1
        order = lambda rows: rows[np.lexsort(rows[:, :2].T)]  # noqa: E731
        np.testing.assert_allclose(order(ours), order(theirs), atol=0.01)


def test_both_detectors_find_the_portraits_face_in_the_same_place(portrait):
    yunet = make_detector("yunet").detect_faces(portrait)
    haar = make_detector("haar").detect_faces(portrait)
    assert len(yunet) == 1 and len(haar) == 1
    assert scenes.iou(yunet[0].box, haar[0].box) > 0.5
    (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = yunet[0].landmarks
    assert rx < nx < lx and max(ry, ly) < ny < min(mry, mly) and mrx < mlx  # an upright face, as drawn
    assert 0.4 <= yunet[0].score <= 1 and haar[0].landmarks is None
    # gray or colour, the same face (the service and the CLI may give either)
    assert scenes.iou(make_detector("yunet").detect(to_gray(portrait))[0], yunet[0].box) > 0.8


def test_max_side_shrinks_for_detection_only(portrait):
    big = cv2.resize(portrait, None, fx=2, fy=2)
    full = make_detector("yunet", max_side=2000).detect(big)[0]
    small = make_detector("yunet", max_side=320).detect(big)[0]
    assert scenes.iou(full, small) > 0.7  # boxes in the original image's pixels either way


def test_detector_settings_are_checked():
    with pytest.raises(ValueError, match="^scale_factor is a haar setting, not yunet's$"):
        make_detector("yunet", scale_factor=1.1)
    with pytest.raises(ValueError, match="^align is a yunet setting, not haar's$"):
        make_detector("haar", align=True)
    with pytest.raises(ValueError, match="^shape is no detector's setting, not haar's$"):
        make_detector("haar", shape=3)
    with pytest.raises(ValueError, match="unknown detector 'mtcnn'"):
        make_detector("mtcnn")
    with pytest.raises(ValueError, match="score_threshold must be in"):
        make_detector("yunet", score_threshold=1.5)
    with pytest.raises(ValueError, match="scale_factor must be > 1"):
        Haar(scale_factor=1.0)
    with pytest.raises(ValueError, match="margin is a fraction"):
        YuNet(margin=2)
    assert make_detector("haar", scale_factor=None).scale_factor == 1.2  # None: the detector's default


def test_the_registry_holds_each_detector_class_with_its_own_settings():
    assert DETECTORS == {"yunet": YuNet, "haar": Haar} and all(DETECTORS[n].name == n for n in DETECTORS)
    assert YuNet().settings() == {"score_threshold": 0.4, "min_face": 20, "max_side": 640, "align": False,
                                  "margin": 0.02, "nms_threshold": 0.3}
    assert Haar(min_face=30).settings() == {"margin": 0.02, "align": False, "scale_factor": 1.2, "min_neighbors": 5,
                                            "min_face": 30, "max_side": 1024}


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = np.deg2rad(25), 0.3, np.array([7.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity(src, src @ rot.T + shift)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], shift)
    with pytest.raises(ValueError, match="coincide"):
        similarity(np.ones((3, 2)), src[:3])


def test_align_face_undoes_rotation_and_scale():
    """A 48x48 face drawn 4x larger and turned by 20 degrees comes back upright at 48x48."""
    rng = np.random.default_rng(1)
    face = cv2.GaussianBlur(rng.integers(0, 256, (FACE_SIZE, FACE_SIZE)).astype(np.uint8), (5, 5), 0)
    angle = 20.0
    m = cv2.getRotationMatrix2D((24, 24), angle, 4.0)
    m[:, 2] += [200 - 24, 200 - 24]  # centre the face in a 400x400 image
    big = cv2.warpAffine(face, m, (400, 400), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    landmarks = np.hstack([FER_LANDMARKS, np.ones((5, 1), np.float32)]) @ m.T
    aligned = align_face(big, landmarks)
    assert aligned.shape == (FACE_SIZE, FACE_SIZE) and aligned.dtype == np.uint8
    inner = slice(6, 42)  # the border is interpolated from outside the face
    error = np.abs(aligned[inner, inner].astype(int) - face[inner, inner]).mean()
    unaligned = cv2.resize(big[104:296, 104:296], (48, 48), interpolation=cv2.INTER_AREA)  # the square around it
    assert error < 12 and error < 0.5 * np.abs(unaligned[inner, inner].astype(int) - face[inner, inner]).mean()


def test_face_crop_falls_back_to_the_box_without_landmarks(portrait):
    gray = to_gray(portrait)
    haar = make_detector("haar").detect_faces(portrait)[0]
    assert np.array_equal(face_crop(gray, haar, 0.02, align=True), face_crop(gray, haar, 0.02, align=False))
    yunet = make_detector("yunet").detect_faces(portrait)[0]
    assert not np.array_equal(face_crop(gray, yunet, 0.02, align=True), face_crop(gray, yunet, 0.02, align=False))


def test_scenes_are_reproducible_and_their_boxes_fit():
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(10)]
    a = scenes.make_scenes(faces, list(range(7)) + [0, 1, 2], 20, seed=3)
    b = scenes.make_scenes(faces, list(range(7)) + [0, 1, 2], 20, seed=3)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    for s in a:
        assert s.image.shape == (scenes.HEIGHT, scenes.WIDTH) and s.image.dtype == np.uint8
        assert 1 <= len(s.faces) <= 4 and s.lighting in scenes.LIGHTINGS and s.background in scenes.BACKGROUNDS
        for i, f in enumerate(s.faces):
            x, y, w, h = f.box
            assert w == h and w in scenes.SIDES and 0 <= x <= scenes.WIDTH - w and 0 <= y <= scenes.HEIGHT - h
            assert -30 <= f.angle <= 30
            assert all(scenes.iou(f.box, g.box) == 0 for g in s.faces[i + 1:])
    with pytest.raises(ValueError, match="one label per face"):
        scenes.make_scenes(faces, [0], 1)


def test_matching_is_one_to_one_best_first():
    truth = [(0, 0, 100, 100), (200, 0, 100, 100)]
    found = [(5, 5, 100, 100), (0, 0, 100, 100), (400, 400, 50, 50)]
    assert sorted(scenes.match(truth, found)) == [(0, 1)]  # the exact box wins; one detection per face
    assert scenes.match(truth, [(210, 0, 100, 100)]) == [(1, 0)]
    assert scenes.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_boxes_are_clipped_to_the_image_and_the_crop_keeps_its_square(portrait):
    """A face that fills its image (as a FER crop does) has a detector square that runs past the edges:
    the reported box is cut to the image, the crop is still cut from the square (padded outside)."""
    x, y, w, h = make_detector("yunet").detect_faces(portrait)[0].box
    for tight in (portrait[y + 15:y + h - 15, x + 15:x + w - 15], cv2.resize(portrait[y:y + h, x:x + w], (48, 48))):
        gray = to_gray(tight)
        H, W = gray.shape
        found = make_detector("yunet", min_face=10).detect_faces(tight)
        assert found, "YuNet finds the face that fills the image"
        for f in found:
            bx, by, bw, bh = f.box
            assert 0 <= bx and 0 <= by and bx + bw <= W and by + bh <= H and bw > 0 and bh > 0
            sx, sy, side, side2 = f.crop_box
            assert side == side2 and (sx < 0 or sy < 0 or sx + side > W or sy + side > H) and f.square is not None
            assert np.array_equal(face_crop(gray, f, 0.02, align=False), crop_face(gray, f.square, 0.02))
            row = f.fields()
            assert row["box"] == list(f.box) and 0.4 <= row["detector_score"] <= 1
            assert np.array(row["landmarks"]).shape == (5, 2)


def test_clip_box_and_a_box_inside_the_image():
    assert clip_box((-3, -1, 58, 58), 48, 48) == (0, 0, 48, 48)
    assert clip_box((10, 20, 30, 40), 100, 50) == (10, 20, 30, 30)
    assert clip_box((200, 5, 10, 10), 100, 50) == (100, 5, 0, 10)  # outside: empty, never negative
    inside = found_from_square((5, 5, 20, 20), 0.9, None, (48, 48))
    assert inside.box == inside.crop_box == (5, 5, 20, 20) and inside.square is None


def test_haar_has_no_detector_score_and_no_landmarks(portrait):
    f = make_detector("haar").detect_faces(portrait)[0]
    assert f.score is None and f.landmarks is None
    assert f.fields() == {"box": list(f.box), "detector_score": None, "landmarks": None}
    (rx, ry), (lx, ly), *_ = make_detector("yunet").detect_faces(portrait)[0].fields()["landmarks"]
    x, y, w, h = f.box
    assert x < rx < lx < x + w and y < ry < y + h  # YuNet's eyes inside the cascade's box: image pixels


def test_whole_image_is_one_face_without_score():
    assert whole_image((48, 64)) == ((0, 0, 64, 48), None, None, None)
