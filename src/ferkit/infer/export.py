"""ONNX export of a checkpoint (PyTorch's exporter) and post-training int8 (ONNX Runtime's
quantisation): the torch side of the ONNX backend. `ferkit.infer.onnx` runs the result, without torch.

The exported graph takes `input`: float32 (N, 1, 48, 48) in [-1, 1] (`ferkit.models.to_input`),
with a dynamic batch axis, and returns `probs`: float32 (N, num_classes) softmax
probabilities, in the class order stored in the model's metadata (`class_names`, JSON), with the
checkpoint's recorded TTA and calibration (`ferkit.infer.records.onnx_metadata`).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferkit.data.store import IMAGE_SIZE
from ferkit.runtime.paths import OutputError, atomic_write, check_output

from .records import REFINE_INPUT, REFINE_KEY, REFINE_OUTPUT, onnx_metadata

OPSET = 17


class ProbabilityModel(torch.nn.Module):
    """model -> softmax, so that the exported graph is complete on its own."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def export_bytes(checkpoint: Any, opset: int = OPSET) -> tuple[bytes, dict]:
    """A ferkit checkpoint (path or dict) -> (ONNX model bytes, checkpoint info)."""
    import onnx

    from ferkit.models import load_model

    model, info = load_model(checkpoint, map_location="cpu")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # dynamo=False: the TorchScript exporter needs no onnxscript and handles this CNN;
        # torch warns that it is deprecated.
        warnings.simplefilter("ignore")
        # torch's stubs type `f` as a path only; the TorchScript exporter writes to a file object too
        torch.onnx.export(
            ProbabilityModel(model).eval(),
            (torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE),),
            buf,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["probs"],
            dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    # class names, and the records of how to run it (TTA, calibration): `ferkit.infer.records`
    for key, value in onnx_metadata(info).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString(), info


def check_onnx_out(checkpoint: Any, out: str | Path, force: bool = False, data_root: str | None = None) -> Path:
    """Before any work: `out` ends in .onnx (a Predictor tells the formats apart by it), is not the
    checkpoint or the data, and replaces an existing file only with `force` (`check_output`)."""
    inputs = [checkpoint if isinstance(checkpoint, (str, Path)) else None, data_root]
    out = check_output(out, inputs=inputs, force=force)
    if out.suffix.lower() != ".onnx":
        raise OutputError(f"--out {out} must end in .onnx")
    return out


def export_onnx(checkpoint: Any, out: str | Path, opset: int = OPSET, force: bool = False) -> Path:
    """Write `checkpoint` as an ONNX file at `out`; returns the path. `out` is checked first
    (`check_onnx_out`) and written whole or not at all (`atomic_write`)."""
    out = check_onnx_out(checkpoint, out, force)
    data, _ = export_bytes(checkpoint, opset)
    return atomic_write(out, lambda f: f.write(data), overwrite=force)


def float_nodes(model) -> list[str]:
    """The nodes int8 leaves in float32: the classifier (the last Gemm or MatMul) and the softmax.

    Quantised, the softmax's output came in steps of 1/255 (probabilities that did not sum to 1,
    small ones read 0), and the classifier's logits on a uint8 grid turned near-ties into exact
    ties between the top two classes (82 of 3,589 test faces of the shipped model, where float32
    has none; a tie went to the class first in the alphabet). The classifier is a few thousand of
    the model's millions of multiply-adds."""
    nodes = model.graph.node
    classifier = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")][-1:]
    return classifier + [n.name for n in nodes if n.op_type == "Softmax"]


def quantize_int8(
    fp32: bytes,
    calibration: np.ndarray,
    out: str | Path,
    batch: int = 64,
    *,
    method: str = "MinMax",
    activations: str = "QUInt8",
    keep_float: tuple[str, ...] = (),
    keep_nodes: tuple[str, ...] = (),
) -> Path:
    """Post-training static int8 of an exported model with ONNX Runtime: int8 weights per output
    channel, uint8 activations whose ranges are the min/max seen on `calibration` (uint8 images
    (N, 48, 48), train images only), QDQ format, the classifier and softmax in float32 (`float_nodes`). Keeps the model's
    ferkit metadata.

    `method` (an ONNX Runtime `CalibrationMethod` name), `activations` (a `QuantType` name) and
    `keep_float` (op types, e.g. "Add", left in float32 too) exist for bench/int8_variants.py, which
    measured the alternatives on val: none kept more float32 decisions at a usable speed.
    `keep_nodes` (node names of the exported graph, e.g. "/model/backbone/features/features.0/features.0.0/Conv")
    leaves those nodes in float32 as well (bench/int8_variants.py's per-layer sensitivity); a name
    the graph lacks is a ValueError."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ferkit.models import to_input

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                [
                    to_input(torch.from_numpy(calibration[i : i + batch])).numpy()
                    for i in range(0, len(calibration), batch)
                ]
            )

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"input": x}

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, q = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre))  # shape inference and graph clean-up, as ORT recommends
        graph = onnx.load(str(pre))
        keep = float_nodes(graph) + [n.name for n in graph.graph.node if n.op_type in keep_float]
        missing = sorted(set(keep_nodes) - {n.name for n in graph.graph.node})
        if missing:
            raise ValueError(f"keep_nodes: no node named {', '.join(missing)} in the graph")
        keep += [name for name in keep_nodes if name not in keep]
        symmetric = {"ActivationSymmetric": True} if activations == "QInt8" else {}
        quantize_static(
            str(pre),
            str(q),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType[activations],
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod[method],
            nodes_to_exclude=keep,
            extra_options=symmetric,
        )
        proto = onnx.load(str(q))
    meta = {p.key: p.value for p in onnx.load_from_string(fp32).metadata_props}
    del proto.metadata_props[:]
    meta |= {
        "precision": "int8 (ONNX Runtime static quantization, QDQ)",
        "calibration": f"{len(calibration)} train images, " + ("min/max" if method == "MinMax" else method),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return atomic_write(out, lambda f: f.write(proto.SerializeToString()))


def with_float_refine(int8: str | Path, fp32: bytes, below: float) -> bytes:
    """One ONNX model holding the int8 graph at `int8` and a float32 copy of it (`fp32`), side by
    side: the copy's input and output are renamed `REFINE_INPUT` and `REFINE_OUTPUT`, and its batch
    axis has a name of its own (the two run on different numbers of faces). The int8 model's
    metadata gains `REFINE_KEY` = `below`, which `ferkit.infer.onnx.OnnxRunner` reads.

    One file rather than two, so that the int8 model can never be paired with another model's copy."""
    import onnx
    from onnx import compose

    quantised = onnx.load(str(int8))
    copy = compose.add_prefix(onnx.load_from_string(fp32), "float32/")
    if [i.name for i in copy.graph.input] != [REFINE_INPUT] or [o.name for o in copy.graph.output] != [REFINE_OUTPUT]:
        raise ValueError("with_float_refine: fp32 must be one `export_bytes` graph (input 'input', output 'probs')")
    for value in [*copy.graph.input, *copy.graph.output, *copy.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = "float32_" + dim.dim_param
    copy.ir_version = quantised.ir_version
    del copy.metadata_props[:]
    merged = compose.merge_models(quantised, copy, io_map=[])
    del merged.metadata_props[:]  # merge_models keeps both; the int8 model's are the model's
    for prop in quantised.metadata_props:
        merged.metadata_props.add().CopyFrom(prop)
    entry = merged.metadata_props.add()
    entry.key, entry.value = REFINE_KEY, repr(float(below))
    return merged.SerializeToString()
