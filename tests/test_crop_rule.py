"""Outputs a program can rely on (issue 29, item 6): one crop rule in the Python API and the CLI
(the service's is in test_service.py), and a bad item in an API batch is an error entry."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferkit.cli import main
from ferkit.infer import Predictor

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "ferkit-recommended.pt"


@pytest.fixture(scope="module")
def predictor():
    return Predictor(SHIPPED, backend="torch", bf16=False)


def noise(size: int) -> np.ndarray:
    return np.random.default_rng(size).integers(0, 255, (size, size)).astype(np.uint8)


def test_a_48x48_image_is_a_face_crop_unless_detection_is_asked_for(predictor):
    crop = noise(48)
    as_crop = predictor.predict([crop])[0]
    assert len(as_crop) == 1 and as_crop[0]["box"] == [0, 0, 48, 48] and as_crop[0]["detector_score"] is None
    assert as_crop[0]["probs"] == predictor.predict([crop], )[0][0]["probs"]
    assert predictor.find_faces(crop, detect="always")[0] == []      # searched: no face in noise
    assert predictor.predict([noise(60)])[0] == []                      # not the model's size: searched
    with pytest.raises(ValueError, match="detect must be"):
        Predictor(SHIPPED, backend="torch", detect="maybe")


def test_the_cli_applies_the_same_rule(tmp_path, capsys):
    Image.fromarray(noise(48)).save(tmp_path / "crop.png")
    assert main(["predict", str(tmp_path / "crop.png"), "--ckpt", str(SHIPPED), "--backend", "torch", "--quiet"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["box"] == [0, 0, 48, 48] and rows[0]["faces"] == 1


def test_a_bad_item_in_a_batch_is_an_error_entry_and_the_others_are_answered(predictor, tmp_path):
    Image.fromarray(noise(48)).save(tmp_path / "good.png")
    good, missing = predictor.predict([tmp_path / "good.png", tmp_path / "missing.jpg"])
    assert len(good) == 1 and good[0]["label"] in predictor.class_names
    assert len(missing) == 1 and set(missing[0]) == {"error"} and "missing.jpg" in missing[0]["error"]
    with pytest.raises(Exception, match="missing.jpg"):  # a single image has nothing else to return
        predictor.predict(tmp_path / "missing.jpg")


def test_an_exported_onnx_model_keeps_the_checkpoints_calibration(tmp_path):
    from ferkit.infer.export import export_onnx
    from ferkit.models import read_checkpoint

    out = export_onnx(SHIPPED, tmp_path / "m.onnx")
    calibrated = Predictor(out, backend="onnx")
    assert read_checkpoint(SHIPPED)["calibration"]["temperature"] > 1
    assert calibrated.temperature == Predictor(SHIPPED, backend="torch").temperature
