"""Face detectors by name: `DETECTORS` = {"yunet": YuNet, "haar": Haar}, each a small class that holds
its own settings, their defaults and their checks.

    detector = YuNet(score_threshold=0.3)       # or DETECTORS["haar"](scale_factor=1.1), make_detector("haar")
    found = detector.detect_faces(image)        # [Found(box, score, landmarks, square)], largest first
    Predictor(detector=detector)                # or Predictor(detector="haar"): its default settings

A new detector is one class (a `Detector` with `name` and `detect_faces`) and one line in `DETECTORS`:
`Predictor`, `ferkit predict --detector` and `ferkit serve --detector` take it from there.

Nothing is downloaded. YuNet (Wu et al. 2023, opencv_zoo, MIT licence: weights/LICENSE-YuNet.txt)
ships inside ferkit as its 230 KB ONNX file and runs in ONNX Runtime, decoded as OpenCV's
`cv2.FaceDetectorYN` decodes it (3x faster than OpenCV's dnn here); it finds rotated, small, dark
and partly hidden faces that the cascade misses, and gives five landmarks (eyes, nose, mouth
corners) that `align_face` uses. The Haar cascade files ship inside opencv-python-headless
(`cv2.data.haarcascades`); OpenCV 5 dropped the cascade, hence the `<5` pin.
`bench/detection.py` measures both (docs/INFERENCE.md, "Face detection").

OpenCV (and `ferkit.infer.faces`, which needs it) load when a detector first runs, not when this
module is imported: the CLI reads `DETECTORS` for its --detector choices on every start.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from .faces import Box, Found

CASCADE_FILE = "haarcascade_frontalface_default.xml"
YUNET_FILE = Path(__file__).parent / "weights" / "face_detection_yunet_2023mar.onnx"

# Measured on upscaled FER-2013 test faces: the cascade's box is ~3.4% smaller than the
# 48x48 crop the face came from (median), so 2% on each side reproduces the training framing.
DEFAULT_MARGIN = 0.02


def _check_crop(margin: float, min_face: int, max_side: int) -> None:
    """The checks that YuNet and Haar share: one-line ValueErrors."""
    if not 0 <= margin <= 1:
        raise ValueError(f"margin is a fraction of the face size per side, 0..1 (got {margin})")
    if min_face < 1 or max_side < 64:
        raise ValueError(f"min_face must be >= 1 and max_side >= 64 (got {min_face}, {max_side})")


def _shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so that its longer side is at most `max_side` (for detection only), and the scale."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), scale


class Detector:
    """What every detector offers. A subclass sets `name` and implements `detect_faces`; a dataclass
    subclass lists its settings as fields (`settings`, and the CLI's flags, read them from there).

    Attributes
    ----------
    name : str
        The detector's name in `DETECTORS` (and `--detector`).
    margin : float
        How much of the face's size each crop adds on each side (`crop_face`); 0.02 here.
    align : bool
        Whether crops are aligned on the detector's landmarks (`align_face`); False here.
    """

    name: ClassVar[str] = ""
    margin = DEFAULT_MARGIN  # class defaults: a detector without these settings crops as YuNet's and Haar's defaults do
    align = False

    def detect_faces(self, image: np.ndarray) -> list[Found]:
        """Faces in an image, largest first.

        Parameters
        ----------
        image : np.ndarray
            uint8, HxW (grey) or HxWx3 (RGB).

        Returns
        -------
        list[Found]
            One per face: its box clipped to the image, score, landmarks and the square it is cropped from.
        """
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Box]:
        """`detect_faces`' boxes only: (x, y, w, h) ints inside the image, largest first."""
        return [f.box for f in self.detect_faces(image)]

    def settings(self) -> dict[str, Any]:
        """This detector's settings by name (the dataclass fields, plus margin and align)."""
        own: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)} if is_dataclass(self) else {}
        return {"margin": self.margin, "align": self.align, **own}


@dataclass
class YuNet(Detector):
    """YuNet, a 75k-parameter CNN face detector (Wu et al. 2023), run by ONNX Runtime.

    The network is OpenCV Zoo's, with its input size made free (tools/yunet_dynamic.py), so that it
    runs at each image's own size; its outputs are decoded here as OpenCV's `FaceDetectorYN` decodes
    them (the same faces to 0.001 pixel on the detection benchmark's scenes; tests/test_faces.py
    checks 0.01). The network's threads are OpenCV's (`cv2.getNumThreads()`, which
    `Predictor(threads=...)` sets) when it is first used.

    Parameters
    ----------
    score_threshold : float
        Keep faces scored at least this, in (0, 1); lower finds more, and more false faces. 0.4 is
        the setting of best recall whose precision stays at 0.94 or more on the detection benchmark
        (bench/detection.py, val faces); 0.3 finds 4 points more faces at precision 0.92.
    min_face : int
        Smallest face side kept, in pixels of the original image (20).
    max_side : int
        Images longer than this are shrunk for detection only (640); YuNet still finds faces of
        about 10 pixels there, and its time grows with the pixels it sees.
    align : bool
        Rotate and scale each face by its eyes and nose to the training images' framing
        (`align_face`) instead of cropping its box; off: no measured gain (docs/INFERENCE.md).
    margin : float
        Crop margin per side, a fraction of the face's size, 0..1 (0.02).
    nms_threshold : float
        Overlap above which the lower-scored of two faces is dropped (0.3, OpenCV's default).

    Raises
    ------
    ValueError
        A setting out of its range (one line).
    """

    name: ClassVar[str] = "yunet"
    strides: ClassVar[tuple[int, ...]] = (8, 16, 32)  # the network's three heads: one cell per 8, 16 and 32 pixels

    score_threshold: float = 0.4
    min_face: int = 20
    max_side: int = 640
    align: bool = False
    margin: float = DEFAULT_MARGIN
    nms_threshold: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.score_threshold < 1:
            raise ValueError(f"score_threshold must be in (0, 1) (got {self.score_threshold}): try 0.6")
        if not 0 < self.nms_threshold <= 1:
            raise ValueError(f"nms_threshold must be in (0, 1] (got {self.nms_threshold})")
        _check_crop(self.margin, self.min_face, self.max_side)
        # one session, made once: ONNX Runtime runs it from any thread
        self._net: tuple[Any, list[str]] | None = None
        self._lock = threading.Lock()

    def _session(self) -> tuple[Any, list[str]]:
        """(the ONNX Runtime session, its output names), made on first use; later calls take no lock."""
        if self._net is None:
            with self._lock:
                if self._net is None:
                    import cv2
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
        import cv2

        h, w = bgr.shape[:2]
        net, names = self._session()
        blob = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)  # zero-padded to the heads' grid
        blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        out = dict(zip(names, net.run(None, {"input": blob})))
        parts = []
        for s in self.strides:
            cols = blob.shape[3] // s
            score = np.sqrt(np.clip(out[f"cls_{s}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{s}"][0, :, 0], 0, 1))
            keep = np.flatnonzero(score >= self.score_threshold)
            r, c = np.divmod(keep, cols)  # the cell of each kept face
            box, kps = out[f"bbox_{s}"][0, keep], out[f"kps_{s}"][0, keep]
            cx, cy = (c + box[:, 0]) * s, (r + box[:, 1]) * s
            bw, bh = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
            points = np.stack([(kps[:, 0::2] + c[:, None]) * s, (kps[:, 1::2] + r[:, None]) * s], 2).reshape(-1, 10)
            parts.append(np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, points, score[keep]]))
        rows = np.concatenate(parts).astype(np.float32)
        if len(rows) < 2:
            return rows
        # OpenCV suppresses on integer boxes (its decode truncates them to Rect2i first)
        kept = cv2.dnn.NMSBoxes(
            rows[:, :4].astype(np.int32).tolist(),
            rows[:, 14].tolist(),
            self.score_threshold,
            self.nms_threshold,
            top_k=5000,
        )
        return rows[np.asarray(kept, int).reshape(-1)]

    def detect_faces(self, image: np.ndarray) -> list[Found]:
        """Faces with their score and five landmarks (in original-image pixels), largest first; see
        `Detector.detect_faces`."""
        import cv2

        from .faces import found_from_square

        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        small, scale = _shrink(bgr, self.max_side)
        found = []
        for row in self.raw_faces(small):
            x, y, w, h = (float(v) / scale for v in row[:4])
            if min(w, h) < self.min_face:
                continue
            side = max(w, h)  # a square around YuNet's box: the crop is square, as the training images
            box = (
                int(round(x + w / 2 - side / 2)),
                int(round(y + h / 2 - side / 2)),
                int(round(side)),
                int(round(side)),
            )
            found.append(
                found_from_square(box, float(row[14]), (row[4:14].reshape(5, 2) / scale).astype(np.float32), bgr.shape)
            )
        return sorted(found, key=lambda f: -f.crop_box[2] * f.crop_box[3])


@dataclass
class Haar(Detector):
    """Frontal-face Haar cascade (Viola and Jones 2001), with the settings that decide speed and recall.
    It gives no score and no landmarks (so no alignment).

    Parameters
    ----------
    scale_factor : float
        Step between the scanned face sizes, > 1 (1.2; 1.1 finds more faces, about 2.5x slower).
    min_neighbors : int
        Overlapping hits needed to keep a face, >= 0 (5; higher = fewer false faces).
    min_face : int
        Smallest face side, in pixels of the original image (48).
    max_side : int
        Images longer than this are shrunk for detection only (1024), so a 12-megapixel photo costs
        about what a 1024-pixel one does; crops use full resolution.
    margin : float
        Crop margin per side, a fraction of the face's size, 0..1 (0.02: the cascade's box is a
        little smaller than the training crops).

    Raises
    ------
    ValueError
        A setting out of its range (one line).
    """

    name: ClassVar[str] = "haar"

    scale_factor: float = 1.2
    min_neighbors: int = 5
    min_face: int = 48
    max_side: int = 1024
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if self.scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1 (got {self.scale_factor}): try 1.1 or 1.2")
        if self.min_neighbors < 0:
            raise ValueError(f"min_neighbors must be >= 0 (got {self.min_neighbors})")
        _check_crop(self.margin, self.min_face, self.max_side)
        # One classifier per thread: the web service detects in several threads at once,
        # and OpenCV does not promise that one CascadeClassifier may be shared.
        self._local = threading.local()

    def _cascade(self) -> Any:
        import cv2

        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            path = cv2.data.haarcascades + CASCADE_FILE  # type: ignore[attr-defined]  # cv2's stubs lack cv2.data
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise RuntimeError(f"cannot load the Haar cascade {path}: reinstall opencv-python-headless<5")
            self._local.cascade = cascade
        return cascade

    def detect_faces(self, image: np.ndarray) -> list[Found]:
        """Faces, largest first, without score or landmarks; see `Detector.detect_faces`."""
        import cv2

        from .faces import found_from_square

        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        small, scale = _shrink(gray, self.max_side)
        min_side = max(24, round(self.min_face * scale))  # 24x24 is the cascade's own window
        found = self._cascade().detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_side, min_side)
        )
        boxes: list[Box] = [
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for x, y, w, h in np.asarray(found).reshape(-1, 4).tolist()
        ]
        return [found_from_square(b, None, None, gray.shape) for b in sorted(boxes, key=lambda b: -b[2] * b[3])]


DETECTORS: dict[str, type[Detector]] = {"yunet": YuNet, "haar": Haar}  # a new detector: one line here


def setting_names(cls: type[Detector]) -> list[str]:
    """The settings a detector class takes (its constructor's parameters)."""
    return list(inspect.signature(cls).parameters)


def check_settings(name: str, settings: list[str], spell: Any = str) -> None:
    """A one-line ValueError for the first of `settings` that detector `name` does not take, saying
    whose setting it is; `spell` writes a setting's name (the CLI gives its flag)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}: one of {', '.join(DETECTORS)}")
    known = setting_names(DETECTORS[name])
    for key in settings:
        if key not in known:
            owners = [n for n, c in DETECTORS.items() if key in setting_names(c)]
            whose = f"a {' and '.join(owners)} setting" if owners else "no detector's setting"
            raise ValueError(f"{spell(key)} is {whose}, not {name}'s")


def make_detector(name: str, **settings: Any) -> Detector:
    """A registered detector by name, with `settings` (those left at None take its defaults).

    Parameters
    ----------
    name : str
        A key of `DETECTORS` ("yunet", "haar").
    **settings
        The detector's settings (see its class); one that it does not take is an error, not dropped.

    Returns
    -------
    Detector

    Raises
    ------
    ValueError
        An unknown name, a setting of another detector, or a setting out of its range (one line).
    """
    given = {k: v for k, v in settings.items() if v is not None}
    check_settings(name, list(given))
    return DETECTORS[name](**given)
