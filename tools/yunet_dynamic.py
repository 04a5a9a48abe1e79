"""Regenerate ferkit's shipped YuNet file from OpenCV Zoo's: the same network with its input's height
and width made symbolic, so that ONNX Runtime runs it at each image's own size (the original fixes
640x640; OpenCV's dnn reshapes it itself). Weights and operators are unchanged; the stored shapes
of the intermediate tensors, which held 640x640 sizes, are dropped (ONNX Runtime infers them).

    python tools/yunet_dynamic.py face_detection_yunet_2023mar.onnx src/ferkit/infer/weights/face_detection_yunet_2023mar.onnx

Input: opencv_zoo's face_detection_yunet_2023mar.onnx, sha256 8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4
(MIT, see src/ferkit/infer/weights/LICENSE-YuNet.txt). Needs the `onnx` package (ferkit[train]).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import onnx

ORIGINAL_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


def make_dynamic(src: Path, out: Path) -> str:
    """Write the symbolic-size copy of `src` to `out`; returns its sha256."""
    data = src.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != ORIGINAL_SHA256:
        raise SystemExit(f"{src}: sha256 {got}, expected OpenCV Zoo's face_detection_yunet_2023mar.onnx ({ORIGINAL_SHA256})")
    model = onnx.load_from_string(data)
    dims = model.graph.input[0].type.tensor_type.shape.dim  # (1, 3, 640, 640)
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:  # (1, cells, k): the cells follow the size
        output.type.tensor_type.shape.dim[1].dim_param = f"cells_{output.name.split('_')[-1]}"
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    blob = model.SerializeToString()
    out.write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(make_dynamic(Path(sys.argv[1]), Path(sys.argv[2])))
