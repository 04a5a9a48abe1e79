"""Inference from registries (issue 30, item 5): detectors by name from `DETECTORS` (a new one is one
class and one registry line), the CLI's detector flags checked against the chosen detector, the TTA a
model records as Predictor's default, and `ferkit predict --out`'s closing line."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from test_infer import make_checkpoint

from ferkit import cli
from ferkit.infer import Predictor
from ferkit.infer import predictor as predictor_module
from ferkit.infer.detectors import DETECTORS, Detector, Haar, YuNet, check_settings, make_detector
from ferkit.infer.export import export_onnx
from ferkit.infer.faces import found_from_square
from ferkit.infer.records import TTA_KEY, checkpoint_tta


@dataclass
class Centre(Detector):
    """A toy detector: one face, the central square of `side` pixels (or the image's shorter side)."""

    name: ClassVar[str] = "centre"
    side: int = 48

    def detect_faces(self, image: np.ndarray) -> list:
        h, w = image.shape[:2]
        s = min(self.side, h, w)
        return [found_from_square(((w - s) // 2, (h - s) // 2, s, s), 1.0, None, image.shape)]


@pytest.fixture
def centre(monkeypatch):
    monkeypatch.setitem(DETECTORS, "centre", Centre)  # the one registry line


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("registries") / "model.pt")


def recording(path: Path, tta: str | None, calibration: dict | None = None) -> Path:
    """A copy of a tiny checkpoint whose config records `tta` (None: no "tta" key)."""
    ckpt = torch.load(make_checkpoint(path), weights_only=False)
    ckpt["config"] = {} if tta is None else {"tta": tta}
    if calibration:
        ckpt["calibration"] = calibration
    torch.save(ckpt, path)
    return path


def test_a_new_detector_is_one_class_and_one_registry_line(centre, ckpt):
    image = np.full((200, 300), 90, np.uint8)
    by_name = Predictor(ckpt, bf16=False, detector="centre")
    assert isinstance(by_name.detector, Centre) and by_name.describe()["detector"] == "centre"
    assert by_name.predict(image)[0][0]["box"] == [126, 76, 48, 48]
    by_object = Predictor(ckpt, bf16=False, detector=Centre(side=100))
    assert by_object.predict(image)[0][0]["box"] == [100, 50, 100, 100] and by_object.describe()["side"] == 100
    assert make_detector("centre", side=30).side == 30
    with pytest.raises(ValueError, match="^min_face is a yunet and haar setting, not centre's$"):
        make_detector("centre", min_face=30)


def test_predictor_takes_a_name_or_a_detector_with_its_settings(ckpt):
    assert Predictor(ckpt, bf16=False).detector == YuNet()  # the default
    p = Predictor(ckpt, bf16=False, detector=Haar(min_face=30, margin=0.1))
    assert p.describe()["detector"] == "haar" and p.describe()["min_face"] == 30 and p.detector.margin == 0.1
    with pytest.raises(ValueError, match="unknown detector 'mtcnn'"):
        Predictor(ckpt, detector="mtcnn")
    with pytest.raises(ValueError, match="detector must be a name"):
        Predictor(ckpt, detector=3)


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_detector_choices_are_the_registrys(command, centre):
    action = next(a for a in subcommand(command)._actions if a.dest == "detector")
    assert list(action.choices) == list(DETECTORS) and "centre" in action.choices and action.default == "yunet"


@pytest.mark.parametrize("flags, says", [
    (["--scale-factor", "1.1"], "--scale-factor is a haar setting, not yunet's"),
    (["--detector", "haar", "--score-threshold", "0.5"], "--score-threshold is a yunet setting, not haar's"),
    (["--detector", "haar", "--align"], "--align is a yunet setting, not haar's"),
])
def test_a_setting_of_another_detector_is_one_line_exit_2(flags, says, ckpt, tmp_path, capsys):
    Image.new("L", (48, 48), 128).save(tmp_path / "face.png")
    code = cli.main(["predict", str(tmp_path / "face.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "o.jsonl"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"ferkit predict: error: {says}"]
    assert not (tmp_path / "o.jsonl").exists()


def test_check_settings_spells_flags_for_the_cli():
    check_settings("haar", ["min_face", "max_side", "margin", "scale_factor"])  # all haar's: no error
    with pytest.raises(ValueError, match="^--nms-threshold is a yunet setting, not haar's$"):
        check_settings("haar", ["nms_threshold"], spell=lambda k: "--" + k.replace("_", "-"))


CALIBRATION = {"method": "temperature", "temperature": 2.0, "temperatures": {"none": 1.5, "flip": 1.25},
               "fitted_on": "val"}


def test_tta_left_out_is_the_one_the_checkpoint_records(tmp_path):
    flip = recording(tmp_path / "flip.pt", "flip", CALIBRATION)
    p = Predictor(flip, backend="torch", bf16=False, detect=False)
    assert p.tta == "flip" and p.temperature == 1.25  # the temperature fitted with the TTA used
    chosen = Predictor(flip, backend="torch", bf16=False, detect=False, tta="none")
    assert chosen.tta == "none" and chosen.temperature == 1.5
    assert Predictor(recording(tmp_path / "plain.pt", None), backend="torch", bf16=False).tta == "none"
    assert checkpoint_tta(flip) == "flip" and checkpoint_tta(tmp_path / "plain.pt") is None


def test_an_exported_model_records_its_tta_and_runs_with_it(tmp_path):
    import onnx

    flip = recording(tmp_path / "flip.pt", "flip", CALIBRATION)
    out = export_onnx(flip, tmp_path / "flip.onnx")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta[TTA_KEY] == "flip"
    p = Predictor(out, backend="onnx", detect=False)
    assert p.tta == "flip" and p.temperature == 1.25
    np.testing.assert_allclose(p.predict_crops(np.full((2, 48, 48), 100, np.uint8)),
                               Predictor(flip, backend="torch", bf16=False, detect=False).predict_crops(
                                   np.full((2, 48, 48), 100, np.uint8)), atol=1e-4)
    model = onnx.load(str(out))  # an ONNX file without the entry (exported before it was written): one view
    kept = [p for p in model.metadata_props if p.key != TTA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "old.onnx"))
    assert Predictor(tmp_path / "old.onnx", backend="onnx", detect=False).tta == "none"


def test_an_onnx_sibling_run_by_auto_uses_the_pts_record(tmp_path, monkeypatch):
    """backend "auto" runs a .pt's int8 ONNX sibling on a CPU without AMX: the TTA is the .pt's
    record, read without torch, even where the sibling records another (an older export)."""
    export_onnx(recording(tmp_path / "older.pt", "none"), tmp_path / "model.int8.onnx")
    recording(tmp_path / "model.pt", "flip")
    monkeypatch.setattr(predictor_module, "amx_in_torch", lambda: False)
    p = Predictor(tmp_path / "model.pt", detect=False)
    assert p.describe()["backend"] == "onnx int8" and p.tta == "flip"


def test_predict_out_ends_with_what_it_wrote(ckpt, tmp_path, capsys):
    Image.new("L", (48, 48), 128).save(tmp_path / "face.png")  # a face crop (the crop rule): one face
    Image.new("L", (200, 160), 128).save(tmp_path / "blank.png")  # no face
    (tmp_path / "bad.jpg").write_text("not an image")
    out = tmp_path / "rows.jsonl"
    code = cli.main(["predict", str(tmp_path / "face.png"), str(tmp_path / "blank.png"), str(tmp_path / "bad.jpg"),
                     "--ckpt", str(ckpt), "--out", str(out), "--quiet"])
    assert code == 0 and len(out.read_text().splitlines()) == 3
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"ferkit predict: wrote 3 rows (1 face, 1 image without a face, 1 unreadable) to {out}"
