"""`Predictor`: photos in, faces with expression probabilities out.

    from ferkit.infer import Predictor
    p = Predictor()                                  # the shipped model, face detection on (YuNet)
    p = Predictor(detector=Haar(min_face=30))        # any registered detector, with its own settings
    faces = p.predict(["photo.jpg"])[0]              # one list of faces per image
    faces[0]  # {"box": [x, y, w, h], "label": "happy", "score": 0.91, "probs": {"angry": ..., ...}}

Pipeline per image: read -> grayscale (PIL "L", as the training data) -> face detector
(`ferkit.infer.detectors`: YuNet unless asked otherwise) ->
square crop with a margin -> 48x48 (PIL bilinear, as the training data) -> [-1, 1] (`to_input`)
-> model -> softmax -> mean over the TTA views -> the checkpoint's calibration (temperature, then an
optional class-prior change) -> label, or `uncertain` below `min_score`. Crops of all images are
classified together in batches.

The pipeline is numpy up to the model: torch loads only for the torch backend, so an install
without it (`pip install 'ferkit[infer]'`) runs the shipped model's ONNX file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ferkit.calibration import adjust, prior_ratio, temperature_for
from ferkit.config import Bound
from ferkit.runtime.cpu import cpu_has_amx
from ferkit.tta import tta_mode, tta_views

from .detectors import DETECTORS, Detector, make_detector
from .faces import FACE_SIZE, Box, Found, as_box, face_crop, resize_face, whole_image
from .io import ImageReadError, load_image, to_gray
from .model_files import default_checkpoint, int8_sibling, is_onnx_file, without_torch
from .onnx import check_finite
from .records import own_tta
from .torch_runner import TorchRunner

UNCERTAIN = "uncertain"  # the label of a face whose top probability is below min_score


class Runner(Protocol):
    """What a backend offers (`TorchRunner`, `OnnxRunner`): model inputs (N,1,48,48) float32 in [-1, 1]
    -> probabilities (N,C), its class names, its checkpoint's info and its CPU threads."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def info(self) -> dict[str, Any]: ...

    @property
    def threads(self) -> int: ...


def installed(module: str) -> bool:
    """Whether `module` can be imported here (without importing it)."""
    return importlib.util.find_spec(module) is not None


def choose_backend(checkpoint: Any, device: str = "cpu", bf16: bool | str = "auto") -> tuple[str, Any]:
    """backend="auto": (backend, model to load) from what is installed and what the CPU has.

    A .onnx file runs on ONNX Runtime. Without torch installed, a .pt runs as the int8 ONNX model
    that `ferkit export --int8` wrote next to it (the shipped model has one), else as its float32
    `.onnx` sibling. With torch: on a CPU with AMX, torch in bfloat16 is the fastest batched path
    (2,893 against 2,052 faces/s for int8 on an AMX Xeon); on any other CPU the int8 ONNX model
    (when there is one and onnxruntime is installed) is the fastest (3,970 against 2,198 faces/s for
    bfloat16 torch on an AMD EPYC Zen 4 with AVX-512 BF16, and 2-3x float32 elsewhere;
    docs/INFERENCE.md "Speed"); anything else runs in torch. Asking for bf16 (True or False) or a GPU
    keeps torch."""
    if is_onnx_file(checkpoint):
        return "onnx", checkpoint
    if not installed("torch"):
        return "onnx", without_torch(checkpoint, device, bf16)
    int8 = int8_sibling(checkpoint)
    if device != "cpu" or bf16 != "auto" or int8 is None or not installed("onnxruntime") or amx_in_torch():
        return "torch", checkpoint
    return "onnx", int8


def amx_in_torch() -> bool:
    """The CPU has AMX and torch runs bfloat16 on it (torch is imported only when the flag is there)."""
    if not cpu_has_amx():
        return False
    from ferkit.runtime.device import bf16_available

    return bf16_available("cpu")


class Predictor:
    """Detect faces in images and predict their expression.

    Parameters
    ----------
    checkpoint : str, Path, dict or None
        A ferkit (or reference-project) .pt, or a .onnx (`ferkit export`); None: the shipped model
        (`default_checkpoint()`).
    backend : str
        "auto" (`choose_backend`: the CPU and what is installed decide), "torch", or "onnx"
        (onnxruntime; a .pt is exported in memory).
    detect : bool or str
        True searches each image for faces, except an image of the model's input size (48x48),
        which is a face crop already (`find_faces`); "always" searches every image; False takes
        each image as an already-cropped face.
    tta : bool, str or None
        Test-time augmentation, as `ferkit eval --tta`: "none" (or False), "flip" (or True: the
        face and its mirror) or "crops" (5 crops x mirror = 10 views, 10x the compute; `ferkit.tta`).
        None (the default): the model's own, the TTA its checkpoint records (`config["tta"]`, set by
        `ferkit pack`; an ONNX model's metadata, `ferkit export`), "none" where it records none. A .pt
        run as its ONNX sibling (backend "auto") uses the .pt's record.
    device : str
        "cpu" or "cuda" (torch backend).
    bf16 : bool or str
        bfloat16 autocast (torch backend); "auto": where the device runs it natively.
    detector : str or Detector
        A name in `DETECTORS` ("yunet", the default: bench/detection.py; "haar"), with its default
        settings, or a detector object that holds its own (`YuNet(score_threshold=0.3)`,
        `Haar(scale_factor=1.1)`; margin and align are detector settings too).
    batch_size : int
        Faces per forward pass (64: faster per face than 256 on a 2-core CPU, bench/README.md).
    threads : int or None
        CPU threads for the model and the detector; None keeps the libraries' defaults (one per
        core). torch's and OpenCV's settings are process-wide. 1 suits a busy machine or a server
        that runs requests in parallel: there, threads of one small forward pass wait for each
        other for whole scheduler slices (here: 250 ms instead of 4 ms per face).
    calibrate : bool
        Apply the temperature the checkpoint (or the ONNX model's metadata) carries (`ferkit posthoc
        --method temperature`) to the mean of the TTA views: the one fitted on val with the TTA
        used (`temperature_for`). False: the model's raw probabilities. A model without one runs as it is.
    prior : str, dict, list or Path
        The class frequencies the probabilities should assume: "model" (as trained: no change),
        "train" (FER-2013 train's), "uniform", a dict {class: frequency}, a list (class order) or a
        JSON file of either (`ferkit.calibration.read_prior`); p(y|x) prop. to p(y|x) pi_new(y) / pi_model(y).
    min_score : float or None
        A face whose (calibrated, prior-adjusted) top probability is below this is labelled
        "uncertain"; its score and probabilities are still given. None: never.

    Raises
    ------
    ValueError
        A bad setting (ConfigError for a number out of range), an unknown detector or backend, or a
        model that cannot run here (CheckpointError, ModelError: NaN weights, a corrupt file); one line.
    FileNotFoundError
        No model at `checkpoint` (or no shipped model).
    """

    def __init__(
        self,
        checkpoint: str | Path | dict | None = None,
        backend: str = "auto",
        detect: bool | str = True,
        tta: bool | str | None = None,
        device: str = "cpu",
        bf16: bool | str = "auto",
        detector: str | Detector = "yunet",
        batch_size: int = 64,
        threads: int | None = None,
        calibrate: bool = True,
        prior: Any = "model",
        min_score: float | None = None,
    ):
        Bound(1).check("threads", threads)  # checked before anything loads or any setting changes
        Bound(1).check("batch_size", batch_size)
        if detect not in (True, False, "always"):
            raise ValueError(f"detect must be True, False or 'always' (got {detect!r})")
        Bound(0, 1).check("min_score", min_score)
        self.detector: Detector = make_detector(detector) if isinstance(detector, str) else detector
        if not isinstance(self.detector, Detector):
            raise ValueError(f"detector must be a name ({', '.join(DETECTORS)}) or a Detector (got {detector!r})")
        if threads is not None:
            import cv2

            cv2.setNumThreads(threads)  # the detectors' threads (YuNet's ONNX Runtime session reads them): process-wide
        if checkpoint is None:
            checkpoint = default_checkpoint()
        source = checkpoint  # the .pt whose record counts when "auto" runs its ONNX sibling
        self.runner: Runner
        if backend == "auto":
            backend, checkpoint = choose_backend(checkpoint, device, bf16)
        if backend == "torch":
            if is_onnx_file(checkpoint):
                raise ValueError(f"{checkpoint} is an ONNX model: use backend='onnx' (--backend onnx)")
            self.runner = TorchRunner(checkpoint, device, bf16, threads)
        elif backend == "onnx":
            from .onnx import OnnxRunner

            if not is_onnx_file(checkpoint) and not installed("torch"):
                checkpoint = without_torch(checkpoint, device, bf16)  # a .pt is exported in memory where torch is
            self.runner = OnnxRunner(checkpoint, threads=threads or 0)
        else:
            raise ValueError(f"unknown backend {backend!r}: use 'auto', 'torch' or 'onnx'")
        self.tta = tta_mode(tta) if tta is not None else own_tta(source, checkpoint, self.runner.info)
        self.record = self.runner.info.get("calibration") or {}
        self.temperature = temperature_for(self.record, self.tta) if calibrate else 1.0  # T of the TTA used
        self.prior = prior if isinstance(prior, str) else "custom"
        self.prior_ratio = prior_ratio(prior, self.runner.class_names, self.record)
        self.min_score = min_score
        # One image through the model now: broken (NaN) weights are refused here, not found in the rows.
        check_finite(self.runner(np.zeros((1, 1, FACE_SIZE, FACE_SIZE), np.float32)), checkpoint)
        self.checkpoint = checkpoint if isinstance(checkpoint, dict) else str(checkpoint)
        self.backend = backend
        self.class_names: list[str] = self.runner.class_names
        self.detect = detect
        self.batch_size = batch_size

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Expression probabilities of face crops, in batches of `batch_size`, with the TTA, temperature
        and prior of this predictor.

        Parameters
        ----------
        crops : np.ndarray
            uint8 (N, 48, 48) face crops, as `find_faces` makes them.

        Returns
        -------
        np.ndarray
            float32 (N, number of classes), rows summing to 1, in `class_names` order.

        Raises
        ------
        ValueError
            Crops of another shape.
        """
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if crops.ndim != 3 or crops.shape[1:] != (FACE_SIZE, FACE_SIZE):
            raise ValueError(f"expected uint8 crops of shape (N, {FACE_SIZE}, {FACE_SIZE}), got {crops.shape}")
        out = np.empty((len(crops), len(self.class_names)), dtype=np.float32)
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start : start + self.batch_size]
            views = tta_views(batch, self.tta)  # all views in one forward pass, then the mean softmax
            probs = self.runner(np.concatenate(views) if len(views) > 1 else views[0])
            out[start : start + len(batch)] = probs.reshape(len(views), len(batch), -1).mean(0)
        return check_finite(adjust(out, self.temperature, self.prior_ratio), self.checkpoint)

    def find_faces(self, image: np.ndarray, detect: bool | str | None = None) -> tuple[list[Found], np.ndarray]:
        """The faces of one image and their crops, by the crop rule.

        The crop rule, the same for `predict`, `serve` and this class: an image exactly the model's
        input size (48x48, a FER-2013 crop) is taken as a face crop, not searched, unless detection
        is asked for with detect="always"; detect=False takes every image as a crop.

        Parameters
        ----------
        image : np.ndarray
            uint8 HxW (grey) or HxWx3 (RGB).
        detect : bool, str or None
            This call's choice (True, False, "always"); None: the predictor's.

        Returns
        -------
        tuple[list[Found], np.ndarray]
            The faces (largest first; the whole image as one face when not detecting) and their
            crops, uint8 (F, 48, 48), cut by the detector's margin or aligned as it says.
        """
        gray = to_gray(image)
        detect = self.detect if detect is None else detect
        if not detect or (detect != "always" and gray.shape == (FACE_SIZE, FACE_SIZE)):
            return [whole_image(gray.shape)], resize_face(gray)[None]
        found = self.detector.detect_faces(image)
        if not found:
            return [], np.empty((0, FACE_SIZE, FACE_SIZE), np.uint8)
        return found, np.stack([face_crop(gray, f, self.detector.margin, self.detector.align) for f in found])

    def predict(self, images: Sequence[Any] | Any) -> list[list[dict]]:
        """Faces and expressions for each image.

        Parameters
        ----------
        images : sequence, or one image
            Paths, PIL images, bytes, or uint8 HxW / HxWx3 RGB arrays; a single image (not in a list)
            is taken as a list of one.

        Returns
        -------
        list[list[dict]]
            One list per image of {"box": [x, y, w, h], "detector_score", "landmarks", "label",
            "score", "probs": {class: p}}, largest face first. An image in a list that cannot be read
            gets [{"error": "..."}] (the CLI's error row) and the others their faces.

        Raises
        ------
        ImageReadError
            A single image (not in a list) that cannot be read.
        """
        if isinstance(images, (str, Path, np.ndarray, bytes, Image.Image)):
            return self.predict([load_image(images)])
        found: list[Any] = []
        for im in images:
            try:
                found.append(self.find_faces(load_image(im)))
            except (ImageReadError, OSError) as e:
                found.append(str(e))
        crops = [f[1] for f in found if not isinstance(f, str) and len(f[1])]
        probs = self.predict_crops(np.concatenate(crops)) if crops else np.empty((0, len(self.class_names)))
        results, i = [], 0
        for f in found:
            if isinstance(f, str):
                results.append([{"error": f}])
                continue
            results.append(self.faces(f[0], probs[i : i + len(f[0])]))
            i += len(f[0])
        return results

    def faces(self, boxes: list[Found] | list[Box], probs: np.ndarray, min_score: float | None = None) -> list[dict]:
        """One image's result rows from its faces and their probabilities.

        Parameters
        ----------
        boxes : list of Found or of (x, y, w, h)
            The faces (`find_faces`).
        probs : np.ndarray
            Their probabilities (`predict_crops`).
        min_score : float or None
            "uncertain" below this top probability; None: the predictor's.

        Returns
        -------
        list[dict]
            {"box", "detector_score", "landmarks", "label", "score", "probs"} per face.
        """
        min_score = self.min_score if min_score is None else min_score
        rows = []
        for box, p in zip(boxes, probs):
            best = int(np.argmax(p))
            label = UNCERTAIN if min_score is not None and p[best] < min_score else self.class_names[best]
            found = box if isinstance(box, Found) else Found(as_box(box), None, None)
            rows.append(
                {
                    **found.fields(),
                    "label": label,
                    "score": float(p[best]),
                    "probs": {name: float(v) for name, v in zip(self.class_names, p)},
                }
            )
        return rows

    def describe(self) -> dict:
        """What this predictor runs, for logs and the service's /health.

        Returns
        -------
        dict
            The model, backend, TTA, calibration, ..., "detector" (its name) and its settings.
        """
        return {
            "checkpoint": self.checkpoint if isinstance(self.checkpoint, str) else "<dict>",
            "backend": self.backend + (" int8" if str(self.checkpoint).endswith(".int8.onnx") else ""),
            "class_names": self.class_names,
            "detect": self.detect,
            "tta": self.tta,
            "temperature": self.temperature,
            "calibration": f"T fitted on {self.record.get('fitted_on')}" if self.record else None,
            "prior": self.prior,
            "min_score": self.min_score,
            "bf16": getattr(self.runner, "bf16", False),
            "detector": self.detector.name,
            **self.detector.settings(),
            "threads": self.runner.threads,
        }
