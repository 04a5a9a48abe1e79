"""`Predictor`: photos in, faces with expression probabilities out.

    from ferkit.infer import Predictor
    p = Predictor()                                  # the shipped model, PyTorch, face detection on
    faces = p.predict(["photo.jpg"])[0]              # one list of faces per image
    faces[0]  # {"box": [x, y, w, h], "label": "happy", "score": 0.91, "probs": {"angry": ..., ...}}

Pipeline per image: read -> grayscale (PIL "L", as the training data) -> face detector (YuNet) ->
square crop with a margin -> 48x48 (PIL bilinear, as the training data) -> [-1, 1] (`to_input`)
-> model -> softmax -> mean over the TTA views -> the checkpoint's calibration (temperature, then an
optional class-prior change) -> label, or `uncertain` below `min_score`. Crops of all images are
classified together in batches.

The pipeline is numpy up to the model: torch loads only for the torch backend, so an install
without it (`pip install 'ferkit[infer]'`) runs the shipped model's ONNX file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import importlib.util

import numpy as np
from PIL import Image

from ferkit.calibration import adjust, prior_ratio, temperature_for
from ferkit.config import Bound
from ferkit.runtime.cpu import cpu_has_amx
from ferkit.runtime.paths import SHIPPED_DIR
from ferkit.tta import tta_mode, tta_views

from .faces import FACE_SIZE, Box, Found, face_crop, make_detector, resize_face, whole_image
from .io import ImageReadError, load_image, to_gray
from .onnx import check_finite

# Measured on upscaled FER-2013 test faces: the cascade's box is ~3.4% smaller than the
# 48x48 crop the face came from (median), so 2% on each side reproduces the training framing.
DEFAULT_MARGIN = 0.02
UNCERTAIN = "uncertain"  # the label of a face whose top probability is below min_score


def default_checkpoint() -> Path:
    """The shipped recommended model, `pretrained/ferkit-recommended.pt` in the repository."""
    path = SHIPPED_DIR / "ferkit-recommended.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped model found at {path}; pass a checkpoint path (e.g. --ckpt runs/<exp>/best.pt)")
    return path


def int8_sibling(checkpoint: Any) -> Path | None:
    """The int8 ONNX model `ferkit export CKPT --int8` wrote next to a .pt checkpoint, if there is one."""
    if not isinstance(checkpoint, (str, Path)) or not str(checkpoint).endswith(".pt"):
        return None
    path = Path(checkpoint).with_suffix(".int8.onnx")
    return path if path.is_file() else None


def is_onnx_file(checkpoint: Any) -> bool:
    """Whether `checkpoint` names a .onnx file (rather than a .pt or a checkpoint dict)."""
    return isinstance(checkpoint, (str, Path)) and str(checkpoint).lower().endswith(".onnx")


def onnx_sibling(checkpoint: Any) -> Path | None:
    """The ONNX model next to a .pt checkpoint: its int8 one (`ferkit export --int8`), else its
    float32 one (`ferkit export`); None without either."""
    int8 = int8_sibling(checkpoint)
    if int8 is not None or not isinstance(checkpoint, (str, Path)) or not str(checkpoint).endswith(".pt"):
        return int8
    fp32 = Path(checkpoint).with_suffix(".onnx")
    return fp32 if fp32.is_file() else None


def without_torch(checkpoint: Any, device: str = "cpu", bf16: bool | str = "auto") -> Path:
    """In an install without torch: the ONNX file to run for `checkpoint` (`onnx_sibling`), or a
    one-line ValueError that says what to install or export."""
    if device != "cpu" or bf16 != "auto":
        raise ValueError(f"device {device!r} and bf16 {bf16!r} are torch settings and this install has no torch: "
                         "pip install 'ferkit[train]', or leave them at cpu and auto")
    onnx = onnx_sibling(checkpoint)
    if onnx is None:
        raise ValueError(f"{checkpoint if isinstance(checkpoint, (str, Path)) else 'this checkpoint'} is a "
                         "PyTorch checkpoint and this install has no torch: pip install 'ferkit[train]', or "
                         "export it where torch is (ferkit export CKPT) and pass the .onnx file")
    return onnx


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


class TorchRunner:
    """A checkpoint's model in PyTorch: model inputs (N,1,48,48) in [-1, 1] -> probabilities (N,C)."""

    def __init__(self, checkpoint: Any, device: str = "cpu", bf16: bool | str = "auto", threads: int | None = None):
        import torch

        from ferkit.runtime.device import bf16_available, set_threads
        from ferkit.runtime.memory import keep_freed_memory
        from ferkit.models import fold_batchnorm, load_model

        if threads is not None:
            set_threads(threads)  # torch's intra-op threads: process-wide
        keep_freed_memory()
        self.device = torch.device(device)
        model, self.info = load_model(checkpoint, map_location="cpu")  # info["calibration"]: the record, if any
        # BatchNorm folded into the convolutions (one pass over the activations fewer), and
        # channels_last: oneDNN's convolutions run about 2x faster on CPU in this layout.
        self.model = fold_batchnorm(model.eval()).to(self.device, memory_format=torch.channels_last).eval()
        self.class_names = list(self.info["class_names"])
        if bf16 not in ("auto", True, False):
            raise ValueError(f"bf16 must be 'auto', True or False (got {bf16!r})")
        self.bf16 = bf16_available(self.device.type) if bf16 == "auto" else bool(bf16)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Model inputs, float32 (N,1,48,48) in [-1, 1] -> probabilities (N,C)."""
        import torch

        t = torch.from_numpy(x).to(self.device, memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(t)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    @property
    def threads(self) -> int:
        import torch
        return torch.get_num_threads()


class Predictor:
    """Detect faces in images and predict their expression.

    checkpoint: a ferkit (or reference-project) .pt, or a .onnx for backend="onnx";
        None = the shipped model (`default_checkpoint()`).
    backend: "auto" (`choose_backend`: the CPU and what is installed decide), "torch", or "onnx"
        (onnxruntime; a .pt is exported on the fly).
    detect: True searches each image for faces, except an image of the model's input size (48x48),
        which is a face crop already (`find_faces`); "always" searches every image; False treats
        each image as an already-cropped face.
    tta: test-time augmentation, as `ferkit eval --tta`: "none" (or False), "flip" (or True:
        the face and its mirror) or "crops" (5 crops x mirror = 10 views, 10x the compute; what
        the shipped models' cards were measured with, see `ferkit.tta`).
    bf16: "auto" = bfloat16 autocast where the device runs it natively (torch backend only).
    detector: "yunet" (the default: bench/detection.py) or "haar"; its settings (None: the
        detector's default) are score_threshold (yunet), scale_factor and min_neighbors (haar),
        min_face and max_side (both): see `YuNetDetector`, `HaarDetector`.
    align: rotate and scale each face so that its eyes and nose sit where the training images have
        them (`align_face`; YuNet gives landmarks, the cascade does not). Off by default: on the
        detection benchmark it did not change expression accuracy (bench/detection.py,
        docs/INFERENCE.md). margin: see `crop_face`.
    batch_size: faces per forward pass (64: measured faster per face than 256 on a 2-core CPU, bench/README.md).
    threads: CPU threads for the model and the detector; None keeps the libraries' defaults
        (one per core). torch's and OpenCV's settings are process-wide. 1 suits a busy machine
        or a server that runs requests in parallel: there, threads of one small forward pass
        wait for each other for whole scheduler slices (here: 250 ms instead of 4 ms per face).
    calibrate: apply the temperature the checkpoint (or the ONNX model's metadata) carries
        (`ferkit posthoc --method temperature`) to the mean of the TTA views, the one fitted on val
        with this `tta` (`temperature_for`); False gives the model's raw probabilities. A model
        without one is run as it is.
    prior: the class frequencies the probabilities should assume: "model" (as trained: no change),
        "train" (FER-2013 train's), "uniform", a dict {class: frequency}, a list (class order) or a
        JSON file of either (`ferkit.calibration.read_prior`); p(y|x) prop. to p(y|x) pi_new(y) / pi_model(y).
    min_score: a face whose (calibrated, prior-adjusted) top probability is below this is labelled
        "uncertain"; its score and probabilities are still given. None: never.
    """

    def __init__(self, checkpoint: str | Path | dict | None = None, backend: str = "auto",
                 detect: bool | str = True, tta: bool | str = False, device: str = "cpu", bf16: bool | str = "auto",
                 margin: float = DEFAULT_MARGIN, detector: str = "yunet", align: bool = False,
                 score_threshold: float | None = None, scale_factor: float | None = None,
                 min_face: int | None = None, min_neighbors: int | None = None, max_side: int | None = None,
                 batch_size: int = 64, threads: int | None = None, calibrate: bool = True,
                 prior: Any = "model", min_score: float | None = None):
        Bound(1).check("threads", threads)  # checked before anything loads or any setting changes
        Bound(1).check("batch_size", batch_size)
        if detect not in (True, False, "always"):
            raise ValueError(f"detect must be True, False or 'always' (got {detect!r})")
        Bound(0, 1).check("min_score", min_score)
        if threads is not None:
            import cv2
            cv2.setNumThreads(threads)  # the detectors' threads (YuNet's ONNX Runtime session reads them): process-wide
        if checkpoint is None:
            checkpoint = default_checkpoint()
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
        if not 0 <= margin <= 1:
            raise ValueError(f"margin is a fraction of the face size per side, 0..1 (got {margin})")
        self.record = self.runner.info.get("calibration") or {}
        self.temperature = temperature_for(self.record, tta_mode(tta)) if calibrate else 1.0
        self.prior = prior if isinstance(prior, str) else "custom"
        self.prior_ratio = prior_ratio(prior, self.runner.class_names, self.record)
        self.min_score = min_score
        # One image through the model now: broken (NaN) weights are refused here, not found in the rows.
        check_finite(self.runner(np.zeros((1, 1, FACE_SIZE, FACE_SIZE), np.float32)), checkpoint)
        self.checkpoint = checkpoint if isinstance(checkpoint, dict) else str(checkpoint)
        self.backend = backend
        self.class_names: list[str] = self.runner.class_names
        self.detect = detect
        self.tta = tta_mode(tta)
        self.margin = margin
        self.batch_size = batch_size
        self.detector = make_detector(detector, score_threshold=score_threshold, scale_factor=scale_factor,
                                      min_face=min_face, min_neighbors=min_neighbors, max_side=max_side)
        self.align = align

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """uint8 face crops (N, 48, 48) -> probabilities (N, num_classes), float32, in batches."""
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if crops.ndim != 3 or crops.shape[1:] != (FACE_SIZE, FACE_SIZE):
            raise ValueError(f"expected uint8 crops of shape (N, {FACE_SIZE}, {FACE_SIZE}), got {crops.shape}")
        out = np.empty((len(crops), len(self.class_names)), dtype=np.float32)
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            views = tta_views(batch, self.tta)  # all views in one forward pass, then the mean softmax
            probs = self.runner(np.concatenate(views) if len(views) > 1 else views[0])
            out[start:start + len(batch)] = probs.reshape(len(views), len(batch), -1).mean(0)
        return check_finite(adjust(out, self.temperature, self.prior_ratio), self.checkpoint)

    def find_faces(self, image: np.ndarray, detect: bool | str | None = None) -> tuple[list[Found], np.ndarray]:
        """uint8 HxW or HxWx3 image -> (boxes, crops (F, 48, 48)); one whole-image face if not detecting
        (`detect`: this call's choice, default the predictor's).

        The crop rule, the same for `predict`, `serve` and this class: an image exactly the model's
        input size (48x48, a FER-2013 crop) is taken as a face crop, not searched, unless detection
        is asked for with detect="always"; detect=False takes every image as a crop."""
        gray = to_gray(image)
        detect = self.detect if detect is None else detect
        if not detect or (detect != "always" and gray.shape == (FACE_SIZE, FACE_SIZE)):
            return [whole_image(gray.shape)], resize_face(gray)[None]
        found = self.detector.detect_faces(image)
        if not found:
            return [], np.empty((0, FACE_SIZE, FACE_SIZE), np.uint8)
        return found, np.stack([face_crop(gray, f, self.margin, self.align) for f in found])

    def predict(self, images: Sequence[Any] | Any) -> list[list[dict]]:
        """Faces and expressions for each image (paths, PIL images, uint8 HxW / HxWx3 RGB arrays).

        Returns one list per image of {"box": [x, y, w, h], "detector_score", "landmarks", "label",
        "score", "probs": {class: p}}. An image that cannot be read gets [{"error": "..."}] (the CLI's
        error row) and the others their faces; a single image (not in a list) is taken as a list of
        one, and raises `ImageReadError` when it cannot be read.
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
            results.append(self.faces(f[0], probs[i:i + len(f[0])]))
            i += len(f[0])
        return results

    def faces(self, boxes: list[Found] | list[Box], probs: np.ndarray, min_score: float | None = None) -> list[dict]:
        """One image's result rows: {"box", "label", "score", "probs"} per face (`find_faces` boxes,
        `predict_crops` probabilities); the label is "uncertain" where the score is below `min_score`
        (default: the predictor's)."""
        min_score = self.min_score if min_score is None else min_score
        rows = []
        for box, p in zip(boxes, probs):
            best = int(np.argmax(p))
            label = UNCERTAIN if min_score is not None and p[best] < min_score else self.class_names[best]
            found = box if isinstance(box, Found) else Found(tuple(int(v) for v in box), None, None)
            rows.append({**found.fields(), "label": label, "score": float(p[best]),
                         "probs": {name: float(v) for name, v in zip(self.class_names, p)}})
        return rows

    def describe(self) -> dict:
        """What this predictor runs, for logs and the service's /health."""
        return {"checkpoint": self.checkpoint if isinstance(self.checkpoint, str) else "<dict>",
                "backend": self.backend + (" int8" if str(self.checkpoint).endswith(".int8.onnx") else ""), "class_names": self.class_names, "detect": self.detect, "detector": self.detector.name,
                "align": self.align, "tta": self.tta, "temperature": self.temperature,
                "calibration": f"T fitted on {self.record.get('fitted_on')}" if self.record else None,
                "prior": self.prior, "min_score": self.min_score, "bf16": getattr(self.runner, "bf16", False), "margin": self.margin,
                **{k: getattr(self.detector, k) for k in ("score_threshold", "scale_factor", "min_face", "max_side")
                   if hasattr(self.detector, k)},
                "threads": self.runner.threads}
