"""A wheel carries the shipped models: built from this checkout, installed into a fresh venv outside
the repository, it runs `Predictor()` and `ferkit predict` with the shipped model."""
from __future__ import annotations

import importlib.util
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


def see_dependencies(python: Path) -> None:
    """Make what this interpreter imports its dependencies from importable in the venv of `python`,
    after the venv's own site-packages: a .pth file there lists the folders on this interpreter's
    sys.path, but none of this checkout's own (src/, tests/; a venv inside it, like .ci-venv/, counts).
    A .pth file's folders are added as they are, without running the .pth files inside them, so this
    checkout's editable ferkit (a .pth import hook, or a path into src/) stays out, and `import ferkit`
    finds only what is installed into the venv itself."""
    folders = []
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        checkout = (path == ROOT or ROOT in path.parents) and not {"site-packages", "dist-packages"} & set(path.parts)
        if entry and path.is_dir() and not checkout and str(path) not in folders:
            folders.append(str(path))
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    Path(venv_site, "zz_ferkit_test_dependencies.pth").write_text("".join(f + "\n" for f in folders))


LOCK = ROOT / "requirements" / "constraints.txt"


def _readme_commands() -> list[str]:
    """The README's `pip install ...` command lines, from its ```bash blocks."""
    import re

    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("pip install")]


def test_ci_runs_the_readmes_test_command_from_the_lock():
    """.ci/run makes a fresh venv and runs the README's test command verbatim, and every README install
    command installs from the lock."""
    commands = _readme_commands()
    tests = [c for c in commands if c.endswith("&& python -m pytest")]
    assert len(tests) == 1, commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == tests[0], (ci[-1], tests[0])  # the last thing CI does, character for character
    assert any(" -m venv " in line for line in ci) and any("bin/activate" in line for line in ci)
    assert all(" -c requirements/constraints.txt " in c for c in commands), commands


def test_the_lock_pins_every_dependency_inside_pyprojects_ranges():
    """requirements/constraints.txt pins one version of every dependency of every extra, and each
    pinned version is one that pyproject.toml's ranges admit (the lock pins, pyproject states what fits)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and name == name.strip(), line  # name==version, nothing else
            pins[canonicalize_name(name)] = Version(version)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for req in requirements:
        name = canonicalize_name(req.name)
        if name == "ferkit":
            continue
        assert name in pins, f"{req.name} is not in {LOCK.name}: run tools/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (str(req), str(pins[name]))
    readme_torch = {c.split("torch==")[1].split()[0] for c in _readme_commands() if "torch==" in c}
    assert readme_torch == {str(pins["torch"])}  # the README installs the torch that the lock pins
    assert "pytest" in pins and "setuptools" in pins  # the test runner, and what builds the wheel below


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_the_shipped_model(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True)
    wheel = next(wheels.glob("ferkit-*.whl"))
    venv = tmp_path / "venv"
    # A plain venv that sees the dependencies installed for this interpreter (numpy, OpenCV, ...),
    # whichever way Python was installed, but gets its own ferkit, from the wheel.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, ferkit = venv / "bin" / "python", venv / "bin" / "ferkit"
    see_dependencies(python)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import json, numpy as np, ferkit\nfrom ferkit import Predictor\np = Predictor(detect=False)\n"
            "faces = p.predict([np.full((48, 48), 128, np.uint8)])[0]\n"
            "from ferkit.infer.detectors import YUNET_FILE, make_detector\n"
            "make_detector('yunet').detect(np.full((120, 160), 128, np.uint8))  # the shipped detector loads\n"
            "print(json.dumps([ferkit.__file__, p.checkpoint, faces[0]['label'], str(YUNET_FILE)]))")
    out = subprocess.run([str(python), "-c", code], cwd=elsewhere, capture_output=True, text=True, check=True).stdout
    module, checkpoint, label, yunet = json.loads(out.splitlines()[-1])
    assert module.startswith(str(venv)) and checkpoint.startswith(str(venv)), (module, checkpoint)
    assert yunet.startswith(str(venv)) and yunet.endswith("face_detection_yunet_2023mar.onnx")
    # the shipped model, as its .pt or (auto backend, a CPU without AMX) its int8 ONNX file
    assert checkpoint.rsplit("/", 1)[0].endswith("ferkit/shipped") and "ferkit-recommended." in checkpoint and label
    from PIL import Image
    Image.new("L", (48, 48), 128).save(elsewhere / "face.png")
    r = subprocess.run([str(ferkit), "predict", "face.png", "--no-detect", "--out", "p.jsonl"], cwd=elsewhere,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((elsewhere / "p.jsonl").read_text().splitlines()[0])["faces"] == 1


NO_TORCH = ("import sys\n"
            "class Block:  # an install without torch, matplotlib, scikit-learn, tensorboard and onnx\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'sklearn', 'matplotlib', 'tensorboard', 'onnx'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import importlib.util\n"
            "_find = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, package=None: None if name.split('.')[0] in "
            "('torch', 'sklearn', 'matplotlib', 'tensorboard', 'onnx') else _find(name, package)\n")


def run_without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], cwd=cwd, capture_output=True, text=True)


def test_the_inference_path_runs_without_torch(tmp_path):
    """Predictor, `ferkit predict` and the service's module run with torch unimportable; the shipped
    .pt runs as its int8 ONNX model, with every TTA mode."""
    code = ("import json, numpy as np\nfrom ferkit import Predictor\nimport ferkit.infer.service\n"
            "out = {}\nfor tta in ('none', 'flip', 'crops'):\n"
            "    p = Predictor(detect=False, tta=tta)\n"
            "    out[tta] = p.predict(np.full((48, 48), 128, np.uint8))[0][0]['probs']\n"
            "out['backend'] = p.describe()['backend']\n"
            "out['torch'] = 'torch' in sys.modules\nprint(json.dumps(out))")
    r = run_without_torch(code, tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["backend"] == "onnx int8" and out["torch"] is False
    assert all(abs(sum(out[t].values()) - 1) < 1e-4 for t in ("none", "flip", "crops"))


@pytest.mark.parametrize("argv, says", [
    (["train", "--data_root", "x"], "pip install 'ferkit[train]'"),
    (["predict", "face.png", "--backend", "torch"], "pip install 'ferkit[train]'"),
    (["predict", "face.png", "--ckpt", "model.pt"], "has no torch"),
])
def test_without_torch_a_command_that_needs_it_says_which_extra(tmp_path, argv, says):
    from PIL import Image
    Image.new("L", (48, 48), 128).save(tmp_path / "face.png")
    (tmp_path / "model.pt").write_bytes(b"not read")
    r = run_without_torch(f"from ferkit.cli import main\nsys.exit(main({argv!r}))", tmp_path)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "model.pt"]  # nothing written


@pytest.mark.slow
def test_the_infer_extra_in_a_fresh_venv_predicts_without_torch(tmp_path, monkeypatch):
    """`pip install '.[infer]'` into a fresh venv (no system packages): torch is not installed, and
    a cold `ferkit predict` and `Predictor` predict a face with the shipped model (bench/light_install.py
    reports the size and the time to the first prediction)."""
    spec = importlib.util.spec_from_file_location("light_install", ROOT / "bench" / "light_install.py")
    sys.path.insert(0, str(ROOT / "bench"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    venv = tmp_path / "venv"
    monkeypatch.setenv("PIP_CONSTRAINT", str(ROOT / "requirements" / "constraints.txt"))  # the lock's versions
    light = bench.make_light_venv(venv)
    assert not light["torch_installed"] and "onnxruntime" in light["packages"] and "fastapi" in light["packages"]
    first = bench.first_prediction(venv / "bin" / "python", venv / "bin" / "ferkit", tmp_path / "work", repeats=1)
    assert first["label"] and first["imported_torch"] is False
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import ferkit.infer.service"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # the service's dependencies came with the extra
    r = subprocess.run([str(venv / "bin" / "ferkit"), "train", "--data_root", "x"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'ferkit[train]'" in r.stderr, r.stderr
