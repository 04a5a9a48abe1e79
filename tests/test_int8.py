"""int8 export keeps the classifier and the softmax in float32, so the int8 model's logits are not on
a uint8 grid and its top two classes do not tie where float32's do not."""
import numpy as np
import onnx
import pytest
import torch

from ferkit.infer.export import export_bytes, float_nodes, quantize_int8
from ferkit.models import build_model

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


@pytest.mark.slow
def test_int8_leaves_the_classifier_and_softmax_in_float(tmp_path):
    torch.manual_seed(0)
    model = build_model("fer-resnet-slim", "softmax", 7)
    ckpt = {"format": "ferkit", "version": 1, "arch": "fer-resnet-slim", "head": "softmax", "head_kwargs": {},
            "class_names": CLASSES, "model": model.state_dict(), "config": {}}
    fp32 = export_bytes(ckpt)[0]
    assert len(float_nodes(onnx.load_from_string(fp32))) == 2  # the classifier and the softmax
    images = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    out = quantize_int8(fp32, images[:32], tmp_path / "m.int8.onnx")
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    softmax = next(n for n in graph.node if n.op_type == "Softmax")
    before = producer[softmax.input[0]]
    assert before.op_type in ("Gemm", "MatMul", "Add"), before.op_type  # float logits, no Q/DQ pair between
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)  # the rest is int8

    from ferkit import Predictor
    probs = Predictor(out, backend="onnx", detect=False, tta="none").predict_crops(images)
    top = np.sort(probs, axis=1)[:, -2:]
    assert (top[:, 0] == top[:, 1]).sum() == 0


def _tiny_fp32() -> bytes:
    """The float32 ONNX export of an untrained fer-resnet-slim (no FER data)."""
    torch.manual_seed(0)
    model = build_model("fer-resnet-slim", "softmax", 7)
    ckpt = {"format": "ferkit", "version": 1, "arch": "fer-resnet-slim", "head": "softmax", "head_kwargs": {},
            "class_names": CLASSES, "model": model.state_dict(), "config": {}}
    return export_bytes(ckpt)[0]


def _weight_source(graph, conv_name: str) -> str:
    """What feeds a Conv's weights: 'DequantizeLinear' (int8 weights) or 'initializer' (float32)."""
    producer = {o: n for n in graph.node for o in n.output}
    conv = next(n for n in graph.node if n.name == conv_name)
    return producer[conv.input[1]].op_type if conv.input[1] in producer else "initializer"


@pytest.mark.slow
def test_int8_keeps_named_nodes_in_float(tmp_path):
    fp32 = _tiny_fp32()
    convs = [n.name for n in onnx.load_from_string(fp32).graph.node if n.op_type == "Conv"]
    images = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    plain = onnx.load(str(quantize_int8(fp32, images, tmp_path / "plain.int8.onnx"))).graph
    kept = onnx.load(str(quantize_int8(fp32, images, tmp_path / "kept.int8.onnx", keep_nodes=(convs[1],)))).graph
    assert _weight_source(plain, convs[1]) == "DequantizeLinear"  # int8 by default
    assert _weight_source(kept, convs[1]) == "initializer"  # named: its weights stay float32
    floats = {t.name for t in kept.initializer if t.data_type == onnx.TensorProto.FLOAT}
    conv = next(n for n in kept.node if n.name == convs[1])
    assert conv.input[1] in floats
    assert all(_weight_source(kept, c) == "DequantizeLinear" for c in convs if c != convs[1])  # the rest is int8
    with pytest.raises(ValueError, match="no node named nope"):
        quantize_int8(fp32, images, tmp_path / "bad.int8.onnx", keep_nodes=("nope",))
