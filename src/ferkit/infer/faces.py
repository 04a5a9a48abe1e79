"""Face detectors (YuNet, the Haar cascade) and face crops prepared as the model's training images.

    detector = make_detector("yunet")           # or "haar"; DETECTORS lists them
    found = detector.detect_faces(image)        # [Found(box, score, landmarks, square)], largest first
    found[0].fields()                           # {"box", "detector_score", "landmarks"}: a result row's keys

Nothing is downloaded. YuNet (Wu et al. 2023, opencv_zoo, MIT licence: weights/LICENSE-YuNet.txt)
ships inside ferkit as its 230 KB ONNX file and runs in ONNX Runtime, decoded as OpenCV's
`cv2.FaceDetectorYN` decodes it (3x faster than OpenCV's dnn here);
it finds rotated, small, dark and partly hidden faces that the cascade misses, and gives five
landmarks (eyes, nose, mouth corners) that `align_face` uses. The Haar cascade files ship inside
opencv-python-headless (`cv2.data.haarcascades`); OpenCV 5 dropped the cascade, hence the `<5` pin.
`bench/detection.py` measures both (docs/INFERENCE.md, "Face detection").
"""
from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from ferkit.data.store import IMAGE_SIZE

FACE_SIZE = IMAGE_SIZE  # the crop the model takes: the training images' size
CASCADE_FILE = "haarcascade_frontalface_default.xml"
YUNET_FILE = Path(__file__).parent / "weights" / "face_detection_yunet_2023mar.onnx"

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of the original image


class Found(NamedTuple):
    """One detected face. `box` is clipped to the image (what a result row reports); `square` is the
    square the face is cropped from, which may run past the image's edges (the crop is padded there)."""

    box: Box
    score: float | None           # the detector's confidence, 0..1 (YuNet); None for the cascade, which has none
    landmarks: np.ndarray | None  # (5, 2) float32 image pixels: right eye, left eye, nose tip, right and left mouth corner
    square: Box | None = None     # None: the same as `box`

    @property
    def crop_box(self) -> Box:
        """The box the face's crop is cut from (`square`, else `box`)."""
        return self.box if self.square is None else self.square

    def fields(self) -> dict:
        """This face's keys in a result row: "box" [x, y, w, h] inside the image, "detector_score"
        (None for the cascade) and "landmarks" [[x, y] x 5] in image pixels, 0.1 px (None without)."""
        return {"box": [int(v) for v in self.box],
                "detector_score": None if self.score is None else round(float(self.score), 4),
                "landmarks": None if self.landmarks is None else np.round(self.landmarks.astype(float), 1).tolist()}


def clip_box(box: Box, width: int, height: int) -> Box:
    """`box` (x, y, w, h) cut to the part inside a `width` x `height` image (w or h 0 if none is)."""
    x0, y0 = min(max(int(box[0]), 0), width), min(max(int(box[1]), 0), height)
    x1, y1 = max(min(int(box[0] + box[2]), width), x0), max(min(int(box[1] + box[3]), height), y0)
    return (x0, y0, x1 - x0, y1 - y0)


def found_from_square(square: Box, score: float | None, landmarks: np.ndarray | None, shape: tuple[int, ...]) -> Found:
    """A `Found` for a face cropped from `square` in an image of `shape`: its box clipped to the image."""
    box = clip_box(square, shape[1], shape[0])
    return Found(box, score, landmarks, None if box == tuple(square) else tuple(square))


def whole_image(shape: tuple[int, ...]) -> Found:
    """The whole image as one face (no detection: the image is a face crop already)."""
    return Found((0, 0, int(shape[1]), int(shape[0])), None, None)


def _shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so that its longer side is at most `max_side` (for detection only), and the scale."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), scale


class Detector:
    """What every detector offers: `detect_faces(image) -> [Found]`, largest first, and its `name`."""

    name = ""

    def detect_faces(self, image: np.ndarray) -> list[Found]:
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in a uint8 HxW (or HxWx3 RGB) image, largest first, as (x, y, w, h) ints inside the image."""
        return [f.box for f in self.detect_faces(image)]


class HaarDetector(Detector):
    """Frontal-face Haar cascade (Viola and Jones 2001) with the settings that decide speed and recall.

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

    name = "haar"

    def detect_faces(self, image: np.ndarray) -> list[Found]:
        """`detect` as `Found` rows (no score, no landmarks: the cascade gives neither)."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        small, scale = _shrink(gray, self.max_side)
        min_side = max(24, round(self.min_face * scale))  # 24x24 is the cascade's own window
        found = self._cascade().detectMultiScale(small, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors,
                                                 minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / scale)) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        return [found_from_square(b, None, None, gray.shape) for b in sorted(boxes, key=lambda b: -b[2] * b[3])]


class YuNetDetector(Detector):
    """YuNet, a 75k-parameter CNN face detector (Wu et al. 2023), run by ONNX Runtime.

    The network is OpenCV Zoo's, with its input size made free (tools/yunet_dynamic.py), so that it
    runs at each image's own size; its outputs are decoded here as OpenCV's `FaceDetectorYN` decodes
    them (the same faces to 0.001 pixel on the detection benchmark's scenes; tests/test_faces.py checks 0.01), and ONNX Runtime runs
    the network about 3x faster than OpenCV's dnn on these CPUs (bench/detection.py).

    score_threshold: keep faces scored at least this (0..1; lower finds more, and more false faces).
        0.4 is the setting of best recall whose precision stays at 0.94 or more on the detection
        benchmark (bench/detection.py, val faces); 0.3 finds 4 points more faces at precision 0.92.
    min_face: smallest face side kept, in pixels of the original image.
    max_side: images larger than this (longer side) are shrunk for detection; YuNet still finds
        faces of about 10 pixels there, and its time grows with the pixels it sees.
    The network's threads are OpenCV's (`cv2.getNumThreads()`, which `Predictor(threads=...)` sets)
    when it is first used.
    """

    name = "yunet"
    strides = (8, 16, 32)  # the network's three heads: one cell per 8, 16 and 32 pixels

    def __init__(self, score_threshold: float = 0.4, min_face: int = 20, max_side: int = 640,
                 nms_threshold: float = 0.3):
        if not 0 < score_threshold < 1:
            raise ValueError(f"score_threshold must be in (0, 1) (got {score_threshold}): try 0.6")
        if min_face < 1 or max_side < 64:
            raise ValueError(f"min_face must be >= 1 and max_side >= 64 (got {min_face}, {max_side})")
        self.score_threshold, self.min_face, self.max_side, self.nms_threshold = score_threshold, min_face, max_side, nms_threshold
        self._net, self._lock = None, threading.Lock()  # one session: ONNX Runtime runs it from any thread

    def _session(self):
        """(the ONNX Runtime session, its output names), made on first use; later calls take no lock."""
        if self._net is None:
            with self._lock:
                if self._net is None:
                    import onnxruntime as ort

                    if not YUNET_FILE.is_file():
                        raise RuntimeError(f"YuNet's weights are missing ({YUNET_FILE}): reinstall ferkit")
                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads, opts.inter_op_num_threads = max(1, cv2.getNumThreads()), 1
                    session = ort.InferenceSession(str(YUNET_FILE), opts, providers=["CPUExecutionProvider"])
                    self._net = session, [o.name for o in session.get_outputs()]
        return self._net

    def raw_faces(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet's faces in a BGR uint8 image, as `cv2.FaceDetectorYN.detect` gives them: float32 rows
        (x, y, w, h, 5 landmarks (x, y), score), after non-maximum suppression."""
        h, w = bgr.shape[:2]
        net, names = self._session()
        blob = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)  # zero-padded to the heads' grid
        blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        out = dict(zip(names, net.run(None, {"input": blob})))
        rows = []
        for s in self.strides:
            cols = blob.shape[3] // s
            score = np.sqrt(np.clip(out[f"cls_{s}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{s}"][0, :, 0], 0, 1))
            keep = np.flatnonzero(score >= self.score_threshold)
            r, c = np.divmod(keep, cols)  # the cell of each kept face
            box, kps = out[f"bbox_{s}"][0, keep], out[f"kps_{s}"][0, keep]
            cx, cy = (c + box[:, 0]) * s, (r + box[:, 1]) * s
            bw, bh = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
            points = np.stack([(kps[:, 0::2] + c[:, None]) * s, (kps[:, 1::2] + r[:, None]) * s], 2).reshape(-1, 10)
            rows.append(np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, points, score[keep]]))
        rows = np.concatenate(rows).astype(np.float32)
        if len(rows) < 2:
            return rows
        # OpenCV suppresses on integer boxes (its decode truncates them to Rect2i first)
        keep = cv2.dnn.NMSBoxes(rows[:, :4].astype(np.int32).tolist(), rows[:, 14].tolist(), self.score_threshold,
                                self.nms_threshold, top_k=5000)
        return rows[np.asarray(keep, int).reshape(-1)]

    def detect_faces(self, image: np.ndarray) -> list[Found]:
        """Faces with their score and five landmarks (in original-image pixels), largest first."""
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        small, scale = _shrink(bgr, self.max_side)
        found = []
        for row in self.raw_faces(small):
            x, y, w, h = (float(v) / scale for v in row[:4])
            if min(w, h) < self.min_face:
                continue
            side = max(w, h)  # a square around YuNet's box: the crop is square, as the training images
            box = (int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), int(round(side)), int(round(side)))
            found.append(found_from_square(box, float(row[14]), (row[4:14].reshape(5, 2) / scale).astype(np.float32), bgr.shape))
        return sorted(found, key=lambda f: -f.crop_box[2] * f.crop_box[3])


DETECTORS = {"yunet": YuNetDetector, "haar": HaarDetector}


def make_detector(name: str, **settings) -> Detector:
    """A detector by name ("yunet" or "haar"). Settings left at None take the detector's default;
    one that this detector does not have is an error (not silently dropped)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}: one of {', '.join(DETECTORS)}")
    cls = DETECTORS[name]
    given = {k: v for k, v in settings.items() if v is not None}
    known = inspect.signature(cls).parameters
    other = [k for k in given if k not in known]
    if other:
        owners = [n for n, c in DETECTORS.items() if other[0] in inspect.signature(c).parameters]
        hint = f": it is a setting of {' and '.join(owners)} (--detector {owners[0]})" if owners else ""
        flag = "--" + other[0].replace("_", "-")
        raise ValueError(f"the {name} detector has no setting {other[0]} ({flag}){hint}")
    return cls(**given)


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
    crop = gray[max(y0, 0):min(y1, H), max(x0, 0):min(x1, W)]
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
    im = Image.fromarray(gray, "L").resize((FACE_SIZE, FACE_SIZE), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


# Where YuNet puts the five landmarks on FER-2013's own training images, in 48x48 pixels: the
# median over 904 of 1,000 random train faces that it found (each enlarged 4x on a bordered
# canvas). `python bench/detection.py --template` recomputes it. Aligning a detected face to these
# points frames it as the model's training images are framed, upright.
FER_LANDMARKS = np.array([[15.39, 18.37], [32.40, 18.24], [23.27, 28.17], [17.02, 34.98], [31.06, 34.92]],
                         dtype=np.float32)


ALIGN_POINTS = [0, 1, 2]  # eyes and nose: the mouth corners move with the expression that is to be read


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that maps points `src` onto `dst` best in least
    squares (closed form, Umeyama 1991 without reflection); deterministic, unlike RANSAC fits."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    s0, d0 = src - src.mean(0), dst - dst.mean(0)
    norm = float((s0 ** 2).sum())
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
