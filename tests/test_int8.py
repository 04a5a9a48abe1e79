"""int8 export keeps the classifier and the softmax in float32, so the int8 model's logits are not on
a uint8 grid and its top two classes do not tie where float32's do not."""
from pathlib import Path

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


def test_refine_threshold_leaves_at_most_the_allowed_disagreements():
    from ferkit.infer.int8 import MIN_REFINE, refine_threshold

    n = 1000
    p32 = np.tile([0.6, 0.4], (n, 1))
    p8 = p32.copy()
    flipped = {0: 0.02, 1: 0.05, 2: 0.01}  # face -> int8 margin, where int8 picks the other class
    for i, m in flipped.items():
        p8[i] = [0.5 - m / 2, 0.5 + m / 2]
    p32[3], p8[3] = [0.4, 0.6], [0.5, 0.5]  # an exact int8 tie, which goes to class 0; float32 says 1
    # 99.9% of 1,000: one disagreement may stay, the widest (0.05); the threshold refines the rest
    below = refine_threshold(p32, p8, 0.999)
    assert 0.02 < below <= np.nextafter(0.02, 1) + 1e-12
    assert refine_threshold(p32, p8, 1.0) > 0.05  # all four refined
    assert refine_threshold(p32, p8, 0.99) == MIN_REFINE  # ten may stay: only exact ties are refined
    assert refine_threshold(p32, p32, 1.0) == MIN_REFINE
    p8[5], p32[5] = [1.0, 0.0], [0.0, 1.0]  # a disagreement at int8 margin 1: every face refined, no more
    assert refine_threshold(p32, p8, 1.0) == 1.0


def _merged(tmp_path, below: float) -> tuple[bytes, Path]:
    from ferkit.infer.export import with_float_refine

    fp32 = _tiny_fp32()
    images = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    plain = quantize_int8(fp32, images, tmp_path / "plain.int8.onnx")
    out = tmp_path / "m.int8.onnx"
    out.write_bytes(with_float_refine(plain, fp32, below))
    return fp32, out


@pytest.mark.slow
def test_an_int8_file_with_its_float_copy_reruns_close_faces_in_float32(tmp_path):
    from ferkit.infer.onnx import OnnxRunner, top_two_margin
    from ferkit.tta import tta_views

    fp32, merged = _merged(tmp_path, 0.999)  # every face is "close": all run again in float32
    x = tta_views(np.random.default_rng(1).integers(0, 256, (40, 48, 48), dtype=np.uint8), "none")[0]
    (tmp_path / "fp32.onnx").write_bytes(fp32)
    float32 = OnnxRunner(tmp_path / "fp32.onnx")(x)
    runner = OnnxRunner(merged)
    assert runner.class_names == CLASSES and runner.refine_below == 0.999
    np.testing.assert_allclose(runner(x), float32, atol=1e-6)
    assert (runner.views, runner.refined) == (40, 40)

    plain = OnnxRunner(tmp_path / "plain.int8.onnx")(x)
    below = float(np.median(top_two_margin(plain)))  # about half the faces run again
    from ferkit.infer.export import with_float_refine

    merged.write_bytes(with_float_refine(tmp_path / "plain.int8.onnx", fp32, below))
    runner = OnnxRunner(merged)
    got, close = runner(x), top_two_margin(plain) < below
    np.testing.assert_allclose(got[close], float32[close], atol=1e-6)
    np.testing.assert_array_equal(got[~close], plain[~close])
    assert runner.refined == close.sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("value", ["nan", "2", "lots", "0", "-0.0", None])
def test_a_tampered_refine_entry_is_one_line(tmp_path, value):
    from ferkit.infer.onnx import ModelError, OnnxRunner
    from ferkit.infer.records import REFINE_KEY

    _, merged = _merged(tmp_path, 0.01)
    model = onnx.load(str(merged))
    entry = next(p for p in model.metadata_props if p.key == REFINE_KEY)
    if value is None:  # the entry removed, the float32 copy left in the graph
        model.metadata_props.remove(entry)
    else:
        entry.value = value
    merged.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=f"{REFINE_KEY} entry in \\(0, 1\\].*export it again") as e:
        OnnxRunner(merged)
    assert "\n" not in str(e.value)
    plain = onnx.load(str(tmp_path / "plain.int8.onnx"))  # the entry, without the float32 copy
    entry = plain.metadata_props.add()
    entry.key, entry.value = REFINE_KEY, "0.01"
    merged.write_bytes(plain.SerializeToString())
    with pytest.raises(ModelError, match="float32/input"):
        OnnxRunner(merged)


@pytest.mark.slow
def test_export_int8_refines_to_the_agreement_asked_on_val(tmp_path, synth_folders):
    import json

    from ferkit.cli import main
    from ferkit.infer.onnx import OnnxRunner

    torch.manual_seed(0)
    model = build_model("fer-resnet-slim", "softmax", 7)
    ckpt = tmp_path / "m.pt"
    torch.save({"format": "ferkit", "version": 1, "arch": "fer-resnet-slim", "head": "softmax", "head_kwargs": {},
                "class_names": CLASSES, "model": model.state_dict(), "config": {}}, ckpt)
    assert main(["export", str(ckpt), "--int8", "--data_root", str(synth_folders), "--calib", "7"]) == 0
    report = json.loads((tmp_path / "m.int8.onnx.metrics.json").read_text())
    assert report["refine"]["below"] > 0 and report["refine"]["chosen_on"] == "val, single view"
    assert report["val"]["changed_predictions"] == 0  # 7 val faces: 99.9% allows none to differ
    assert OnnxRunner(tmp_path / "m.int8.onnx").refine_below == report["refine"]["below"]
    out = tmp_path / "plain.int8.onnx"
    assert main(["export", str(ckpt), "--int8", "--data_root", str(synth_folders), "--calib", "7",
                 "--agreement", "0", "--out", str(out)]) == 0
    assert OnnxRunner(out).refine_below == 0.0
    assert json.loads((tmp_path / "plain.int8.onnx.metrics.json").read_text())["refine"]["below"] == 0.0
