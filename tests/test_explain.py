"""Occlusion heatmaps (`ferkit.infer.explain`): a model that looks at one region only is explained by a
heatmap whose maximum lies in that region; batched work equals one face at a time and stays bounded."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from ferkit.infer.explain import (
    CHUNK,
    MAX_FACES,
    PATCH,
    add_heatmaps,
    existing_explanations,
    explain_faces,
    explain_image,
    face_regions,
    heat_rgba,
    occlusion_drops,
    occlusion_maps,
    overlay,
    paint_heatmaps,
    patch_masks,
    png_data_url,
    save_explanations,
)
from ferkit.infer.faces import Found

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
MOUTH = (slice(32, 42), slice(14, 34))  # the only region the synthetic model looks at (rows, columns)


def region_model(crops: np.ndarray) -> np.ndarray:
    """Probabilities that depend on the mean brightness of MOUTH only: bright -> happy, dark -> sad."""
    m = crops[:, MOUTH[0], MOUTH[1]].reshape(len(crops), -1).mean(1) / 255.0
    logits = np.zeros((len(crops), len(CLASSES)))
    logits[:, 3], logits[:, 5] = 10 * (m - 0.5), 10 * (0.5 - m)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def faces(n: int, seed: int = 0) -> np.ndarray:
    """Textured 48x48 faces whose MOUTH is bright (even faces) or dark (odd faces)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(90, 150, (n, 48, 48)).astype(np.uint8)
    for i in range(n):
        out[i, MOUTH[0], MOUTH[1]] = rng.integers(210, 250) if i % 2 == 0 else rng.integers(5, 40)
    return out


def in_region(heatmap: np.ndarray) -> bool:
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return MOUTH[0].start <= y < MOUTH[0].stop and MOUTH[1].start <= x < MOUTH[1].stop


def test_the_heatmaps_maximum_lies_in_the_region_the_model_looks_at():
    crops = faces(6)
    heat = occlusion_maps(crops, region_model)
    assert heat.shape == (6, 48, 48) and heat.dtype == np.float32 and heat.min() >= 0 and heat.max() <= 1
    for h in heat:
        assert in_region(h) and h.max() == 1
        assert h[:20].max() == 0  # no patch that reaches above row 20 touches the mouth: no drop there
    drops, labels = occlusion_drops(crops, region_model)
    assert labels.tolist() == [3, 5, 3, 5, 3, 5]  # happy where bright, sad where dark: each explained


def test_masks_cover_every_pixel():
    masks = patch_masks()
    assert masks.shape == (100, 48, 48) and masks.sum((1, 2)).tolist() == [PATCH * PATCH] * 100
    assert masks.any(0).all() and masks.sum(0).max() == 9
    assert patch_masks(48, 10, 4).any(0).all()  # 48 - 10 is not a multiple of 4: a last position at the edge
    with pytest.raises(ValueError, match="patch must be"):
        patch_masks(48, 60, 4)


class Counting:
    """A predict_fn that records the size of every call."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, crops):
        self.calls.append(len(crops))
        return region_model(crops)


def test_batched_equals_one_face_at_a_time_and_chunks_do_not_matter():
    crops = faces(5, seed=1)
    together = occlusion_maps(crops, region_model)
    alone = np.concatenate([occlusion_maps(c[None], region_model) for c in crops])
    np.testing.assert_array_equal(together, alone)
    small = Counting()
    np.testing.assert_array_equal(occlusion_maps(crops, small, chunk=7), together)
    assert max(small.calls[1:]) == 7 and sum(small.calls) == 5 + 5 * 100  # the whole faces, then every copy


def test_work_is_bounded_by_the_chunk_and_the_face_cap():
    crops = faces(9)
    counting = Counting()
    heat = explain_faces(None, crops, max_faces=MAX_FACES, predict_fn=counting)
    assert heat.shape == (MAX_FACES, 48, 48)
    assert counting.calls[0] == MAX_FACES and sum(counting.calls) == MAX_FACES * 101
    assert max(counting.calls) <= CHUNK
    assert explain_faces(None, crops, max_faces=0, predict_fn=counting).shape == (0, 48, 48)
    assert occlusion_maps(np.zeros((0, 48, 48), np.uint8), counting).shape == (0, 48, 48)
    with pytest.raises(ValueError, match="expected uint8 crops"):
        occlusion_maps(np.zeros((2, 32, 32), np.uint8), counting)
    with pytest.raises(ValueError, match="labels must be 2 class indices"):
        occlusion_drops(crops[:2], counting, labels=[3, 9])


def test_a_model_that_ignores_the_face_gets_an_empty_map():
    flat = lambda crops: np.full((len(crops), 7), 1 / 7, np.float32)  # noqa: E731
    assert not occlusion_maps(faces(2), flat).any()


def test_overlay_colours_hot_parts_and_keeps_cold_ones():
    crop = faces(1)[0]
    heat = np.zeros((48, 48), np.float32)
    heat[MOUTH] = 1.0
    rgb = overlay(crop, heat)
    assert rgb.shape == (48, 48, 3) and rgb.dtype == np.uint8
    assert (rgb[:20] == crop[:20, :, None]).all() and (rgb[36, 24] != crop[36, 24]).any()
    big = overlay(np.zeros((96, 96, 3), np.uint8), heat)  # a larger region: the heatmap is stretched over it
    assert big.shape == (96, 96, 3) and big[:30].max() == 0 and big[72, 48].max() > 50
    rgba = heat_rgba(heat)
    assert rgba.shape == (48, 48, 4) and rgba[0, 0, 3] == 0 and rgba[36, 24, 3] > 100


def test_paint_heatmaps_stays_inside_the_image_and_its_region():
    image = np.full((100, 120, 3), 50, np.uint8)
    heat = np.ones((1, 48, 48), np.float32)
    out = paint_heatmaps(image, [(-20, 60, 60, 60)], heat)  # past the left and bottom edges
    changed = (out != image).any(2)
    assert out.shape == image.shape and changed[60:, :40].all() and not changed[:60].any() and not changed[:, 40:].any()
    assert (paint_heatmaps(image, [None], heat) == image).all()  # an aligned face: not painted


def test_face_regions_follow_the_crop():
    found = Found((0, 0, 40, 44), 0.9, np.zeros((5, 2), np.float32), (-4, 0, 44, 44))
    assert face_regions([found], (44, 40), 0.1) == [(-8, -4, 52, 52)]  # the square with its margin
    assert face_regions([found], (44, 40), 0.1, align=True) == [None]
    assert face_regions([(10, 10, 20, 20)], (44, 40), 0.0) == [(10, 10, 20, 20)]
    assert face_regions([found], (44, 40), 0.1, detect=False) == [(0, 0, 40, 44)]


def onnx_region_model(path):
    """`region_model` as an ONNX file with ferkit's metadata, so that a `Predictor` runs it (backend onnx,
    as the shipped int8 model): mean of the mouth's pixels in [-1, 1] -> happy and sad logits."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((1, 7), np.float32)
    w[0, 3], w[0, 5] = 5.0, -5.0  # (m - 0.5) * 10 with m = (x + 1) / 2
    consts = {"starts": np.array([MOUTH[0].start, MOUTH[1].start], np.int64),
              "ends": np.array([MOUTH[0].stop, MOUTH[1].stop], np.int64), "axes": np.array([2, 3], np.int64),
              "shape": np.array([-1, 1], np.int64), "w": w}
    nodes = [helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["mouth"]),
             helper.make_node("ReduceMean", ["mouth"], ["mean"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["mean", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "region", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 48, 48])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 7])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"class_names": json.dumps(CLASSES)})
    onnx.save(model, str(path))
    return path


def test_through_a_predictor_on_the_onnx_backend(tmp_path):
    from ferkit.infer import Predictor

    p = Predictor(onnx_region_model(tmp_path / "region.onnx"), backend="onnx", detect=False, threads=1)
    crops = faces(4, seed=3)
    heat = explain_faces(p, crops)
    assert all(in_region(h) for h in heat)
    np.testing.assert_allclose(heat, occlusion_maps(crops, region_model), atol=2e-3)  # the same model, in ONNX

    image = np.repeat(np.repeat(crops[0], 2, 0), 2, 1)  # a 96x96 face crop, not detected
    (e,) = explain_image(p, image)
    assert e.region == (0, 0, 96, 96) and in_region(e.heatmap) and 0.2 < e.drop <= 1
    assert existing_explanations(tmp_path / "heat", ["face"]) == []
    paths = save_explanations([e, e], tmp_path / "heat", "face")
    assert [q.name for q in paths] == ["face_face0.png", "face_face1.png"]
    assert Image.open(paths[0]).size == (192, 192)
    assert existing_explanations(tmp_path / "heat", ["face", "other"]) == ["face_face0.png", "face_face1.png"]

    rows = p.predict([crops[0], crops[1]])
    answer = add_heatmaps(p, rows[0] + rows[1], [(0, 0, 48, 48)] * 2, crops[:2], (48, 48), detect=False, max_faces=1)
    assert answer[1]["heatmap"] is None and answer[0]["heatmap_box"] == [0, 0, 48, 48] and answer[0]["heatmap_drop"] > 0.2
    png = Image.open(io.BytesIO(base64.b64decode(answer[0]["heatmap"].split(",", 1)[1])))
    assert png.size == (48, 48) and png.mode == "RGBA"
    assert answer[0]["label"] == rows[0][0]["label"] and answer[0]["probs"] == rows[0][0]["probs"]


def test_png_data_url_round_trips():
    pixels = np.random.default_rng(0).integers(0, 255, (5, 7, 3)).astype(np.uint8)
    url = png_data_url(pixels)
    assert url.startswith("data:image/png;base64,")
    assert (np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))) == pixels).all()
