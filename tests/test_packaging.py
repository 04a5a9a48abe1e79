"""A wheel carries the shipped models: built from this checkout, installed into a fresh venv outside
the repository, it runs `Predictor()` and `ferkit predict` with the shipped model."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT / "src").parts) for p in (ROOT / "src").rglob("__init__.py")}
    assert found | {"ferkit.shipped"} == listed


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_the_shipped_model(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True)
    wheel = next(wheels.glob("ferkit-*.whl"))
    venv = tmp_path / "venv"
    # The venv sees this machine's installed dependencies (torch, OpenCV, ...) but gets its own ferkit.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python, ferkit = venv / "bin" / "python", venv / "bin" / "ferkit"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import json, numpy as np, ferkit\nfrom ferkit import Predictor\np = Predictor(detect=False)\n"
            "faces = p.predict([np.full((48, 48), 128, np.uint8)])[0]\n"
            "from ferkit.infer.faces import YUNET_FILE, make_detector\n"
            "make_detector('yunet').detect(np.full((120, 160), 128, np.uint8))  # the shipped detector loads\n"
            "print(json.dumps([ferkit.__file__, p.checkpoint, faces[0]['label'], str(YUNET_FILE)]))")
    out = subprocess.run([str(python), "-c", code], cwd=elsewhere, capture_output=True, text=True, check=True).stdout
    module, checkpoint, label, yunet = json.loads(out.splitlines()[-1])
    assert module.startswith(str(venv)) and checkpoint.startswith(str(venv)), (module, checkpoint)
    assert yunet.startswith(str(venv)) and yunet.endswith("face_detection_yunet_2023mar.onnx")
    assert checkpoint.endswith("ferkit/shipped/ferkit-recommended.pt") and label
    from PIL import Image
    Image.new("L", (48, 48), 128).save(elsewhere / "face.png")
    r = subprocess.run([str(ferkit), "predict", "face.png", "--no-detect", "--out", "p.jsonl"], cwd=elsewhere,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((elsewhere / "p.jsonl").read_text().splitlines()[0])["faces"] == 1
