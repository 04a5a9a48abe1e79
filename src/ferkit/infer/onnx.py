"""An onnxruntime runner for `Predictor(backend="onnx")`, without torch: a .onnx file that
`ferkit export` wrote (`ferkit.infer.export`) in, probabilities out.

The graph takes `input`: float32 (N, 1, 48, 48) in [-1, 1] with a dynamic batch axis, and returns
`probs`: float32 (N, num_classes), in the class order of its metadata (`class_names`, JSON).
A calibrated model's metadata also holds its checkpoint's `calibration` record (JSON, under
`ferkit.calibration.ONNX_KEY`), which `Predictor` applies as it does the checkpoint's
(`ferkit.pretrained.write_onnx_calibration` adds it to an existing file, graph and weights unchanged),
and the TTA the checkpoint recorded (`ferkit.infer.records.TTA_KEY`; none: "none").

An int8 model from `ferkit export --int8` also carries a float32 copy of itself, with its own input
and output (`REFINE_INPUT`, `REFINE_OUTPUT`), and a margin (`REFINE_KEY`): the faces whose int8
probabilities put the top two classes closer than that run again through the copy, so int8 keeps
float32's decisions where its rounding could flip them (`ferkit.infer.int8.refine_threshold`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .records import REFINE_INPUT, REFINE_KEY, REFINE_OUTPUT, info_from_metadata


class ModelError(ValueError):
    """A model that cannot be run: a corrupt .onnx file, or one whose outputs are NaN (broken weights).
    One line that names the file."""


def check_finite(probs: np.ndarray, source: Any) -> np.ndarray:
    """`probs` if every value is finite; else a ModelError: NaN weights make every output NaN, and a
    row must never say "score": NaN (not JSON, and not a prediction)."""
    if not np.isfinite(probs).all():
        name = source if isinstance(source, (str, Path)) else "the model"
        raise ModelError(
            f"{name} gives NaN or infinite outputs (its weights are broken): retrain or re-export "
            f"it, or use another checkpoint"
        )
    return probs


def top_two_margin(probs: np.ndarray) -> np.ndarray:
    """Each row's highest probability minus its second highest: 0 for an exact tie."""
    top = np.partition(probs, -2, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def _first_line(e: Exception, width: int = 160) -> str:
    line = next((text.strip() for text in str(e).splitlines() if text.strip()), type(e).__name__)
    return line if len(line) <= width else line[: width - 4] + " ..."


class OnnxRunner:
    """onnxruntime on a .onnx file (or a .pt / checkpoint dict exported in memory first)."""

    def __init__(self, source: Any, threads: int = 0):
        import onnxruntime as ort

        self.source = source if isinstance(source, (str, Path)) else "the model"
        if isinstance(source, (str, Path)) and Path(source).suffix.lower() == ".onnx":
            if not Path(source).is_file():
                raise FileNotFoundError(f"no ONNX model at {source}: make one with `ferkit export CKPT --out {source}`")
            model: bytes | str = str(source)
            self.info: dict[str, Any] = {}
        else:
            from .export import export_bytes  # a .pt is exported in memory first: that needs torch

            model, self.info = export_bytes(source)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0 = onnxruntime's default (one per core)
        self.threads = threads or (os.cpu_count() or 1)
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for a bad file
            raise ModelError(
                f"{source} is not a valid ONNX model ({_first_line(e)}): export it again with `ferkit export`"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "class_names" not in meta:
            raise ValueError(
                f"{source}: ONNX model without ferkit class_names metadata: export it with `ferkit export`"
            )
        self.info = self.info or info_from_metadata(meta)  # a .pt exported in memory: its checkpoint's own info
        self.class_names = list(self.info["class_names"])
        self.refine_below = self._refine_below(source, meta)
        # counts, for benchmarks: views run (a face is one per TTA view), and how many again in float32
        self.views = self.refined = 0

    def _refine_below(self, source: Any, meta: dict[str, str]) -> float:
        """The refinement margin, checked where the metadata names one or the graph has the float32
        copy's input: both there, a number in (0, 1], the copy's output, no other input. 0: plain int8."""
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if REFINE_KEY not in meta and REFINE_INPUT not in inputs:
            return 0.0
        try:
            below = float(meta.get(REFINE_KEY, "nan"))
        except ValueError:
            below = float("nan")
        if not (0.0 < below <= 1.0 and inputs == {"input", REFINE_INPUT} and REFINE_OUTPUT in outputs):
            raise ModelError(
                f"{source}: an int8 model with a float32 copy needs a {REFINE_KEY} entry in (0, 1] (it has "
                f"{meta.get(REFINE_KEY, 'none')[:40]!r}), the inputs 'input' and {REFINE_INPUT!r} and the output "
                f"{REFINE_OUTPUT!r}: export it again with `ferkit export --int8`"
            )
        return below

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Model inputs, float32 (N,1,48,48) in [-1, 1] (`ferkit.models.to_input`) -> probabilities (N,C).

        With a refinement margin, rows whose top two probabilities are closer than it are replaced by
        the float32 copy's (each call feeds the other input an empty batch: the graph needs both, and
        ONNX Runtime runs both parts on every call)."""
        x = np.ascontiguousarray(x, np.float32)
        self.views += len(x)
        if not self.refine_below:
            return self.session.run(["probs"], {"input": x})[0]
        none = x[:0]
        probs = self.session.run(["probs"], {"input": x, REFINE_INPUT: none})[0]
        rows = np.flatnonzero(top_two_margin(probs) < self.refine_below)
        if rows.size:
            again = self.session.run([REFINE_OUTPUT], {"input": none, REFINE_INPUT: x[rows]})[0]
            if again.shape != (rows.size, probs.shape[1]):
                raise ModelError(
                    f"{self.source}: its float32 copy gave {again.shape} for {rows.size} faces: export it again "
                    "with `ferkit export --int8`"
                )
            probs[rows] = again
            self.refined += int(rows.size)
        return probs
