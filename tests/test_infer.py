"""ferkit.infer: the Predictor API, face detection and crops, ONNX, and `ferkit predict/export`.

Real faces come from the FER-2013 zip (skipped without it) and from the Grace Hopper portrait
that matplotlib ships. FER images are 48x48 crops, too small for the Haar cascade, so the
detection tests paste them, enlarged to 200x200, on a 640x480 gray canvas.
"""
from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ferkit.commands import export, predict
from ferkit.infer import ImageReadError, Predictor, default_checkpoint
from ferkit.infer.faces import crop_face
from ferkit.models import build_model, load_model, to_input
from ferkit.runtime.device import bf16_available

add_export_args, run_export, add_predict_args, run_predict = export.add_arguments, export.run, predict.add_arguments, predict.run

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
PLACE = (220, 140, 200)  # where face_scene puts the face: x, y, side


# ---------------------------------------------------------------- helpers (also used by test_service/test_browser)

def make_checkpoint(path: Path, seed: int = 0, arch: str = "seed-cnn", offset: list[float] | None = None) -> Path:
    """A randomly initialised seed-cnn saved in ferkit's checkpoint format.

    Its linear layers are scaled up, so that its outputs differ clearly between inputs (at
    PyTorch's initialisation every input gets about 1/7 for every class)."""
    torch.manual_seed(seed)
    model = build_model(arch, "softmax", len(CLASSES))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(6.0)
    ckpt = {"format": "ferkit", "version": 1, "arch": arch, "head": "softmax", "head_kwargs": {},
            "class_names": CLASSES, "config": {}, "model": model.state_dict(), "epoch": 0, "val_metrics": {}}
    if offset is not None:  # a logit adjustment, as `ferkit posthoc` saves it
        ckpt["posthoc"] = {"method": "la", "offset": offset}
    torch.save(ckpt, path)
    return path


def fer_faces(zip_path: Path, n: int, cls: str = "happy") -> list[np.ndarray]:
    """The first n images (by name) of fer2013/test/<cls>/ as uint8 48x48 arrays."""
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(x for x in z.namelist() if x.startswith(f"fer2013/test/{cls}/"))[:n]
        return [np.asarray(Image.open(io.BytesIO(z.read(x))).convert("L")) for x in names]


def face_scene(face: np.ndarray, place: tuple[int, int, int] = PLACE) -> np.ndarray:
    """A 640x480 gray canvas with `face` enlarged to side x side at (x, y)."""
    x, y, side = place
    canvas = np.full((480, 640), 128, np.uint8)
    canvas[y:y + side, x:x + side] = np.asarray(Image.fromarray(face).resize((side, side), Image.BILINEAR))
    return canvas


def found_at(box: list[int], place: tuple[int, int, int] = PLACE, tol: float = 0.15) -> bool:
    """True when `box` is centred on the placed face and about its size."""
    x, y, side = place
    bx, by, bw, bh = box
    centre_ok = abs(bx + bw / 2 - (x + side / 2)) < tol * side and abs(by + bh / 2 - (y + side / 2)) < tol * side
    return centre_ok and abs(bw - side) < 2 * tol * side


def grace_hopper() -> Path:
    """A real portrait photo (512x600 JPEG, one frontal face) shipped with matplotlib."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib's sample photo grace_hopper.jpg is not installed")
    return path


def detectable_faces(real_zip: Path, n: int) -> list[np.ndarray]:
    """n FER test faces that the default detector finds when enlarged on a canvas."""
    from ferkit.infer.detectors import make_detector

    detector = make_detector("yunet")
    faces = [f for f in fer_faces(real_zip, 20) if any(found_at(list(b)) for b in detector.detect(face_scene(f)))]
    assert len(faces) >= n, f"only {len(faces)} of 20 FER faces were detected"
    return faces[:n]


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="session")
def predictor(ckpt) -> Predictor:
    return Predictor(ckpt, bf16=False)


def reference_probs(ckpt: Path, crops: np.ndarray) -> np.ndarray:
    """Probabilities computed directly with the model, float32, no Predictor."""
    model, _ = load_model(ckpt)
    with torch.no_grad():
        return torch.softmax(model(to_input(torch.from_numpy(crops))), 1).numpy()


def run_cli(add, run, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add(parser)
    return run(parser.parse_args(argv))


# ---------------------------------------------------------------- Predictor API

def test_default_checkpoint_is_the_shipped_model_or_a_clear_error():
    expected = Path(__file__).resolve().parents[1] / "pretrained" / "ferkit-recommended.pt"
    if expected.is_file():
        assert default_checkpoint() == expected
    else:
        with pytest.raises(FileNotFoundError, match="no shipped model found at .*pass a checkpoint path"):
            Predictor()


def test_crops_give_the_models_own_probabilities(ckpt, predictor):
    crops = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    results = Predictor(ckpt, detect=False, bf16=False).predict(list(crops))
    want = reference_probs(ckpt, crops)
    for faces, p in zip(results, want):
        assert len(faces) == 1 and faces[0]["box"] == [0, 0, 48, 48]
        got = np.array([faces[0]["probs"][c] for c in CLASSES])
        np.testing.assert_allclose(got, p, atol=1e-5)
        assert faces[0]["label"] == CLASSES[int(p.argmax())] and faces[0]["score"] == pytest.approx(p.max(), abs=1e-5)
    assert np.abs(want - want[0]).max() > 0.005  # the inputs really get different answers


def test_every_input_type_gives_the_same_answer(ckpt, tmp_path):
    face = np.random.default_rng(1).integers(0, 256, (60, 60), dtype=np.uint8)
    Image.fromarray(face).save(tmp_path / "face.png")
    rgb = np.repeat(face[:, :, None], 3, axis=2)
    p = Predictor(ckpt, detect=False, bf16=False)
    results = p.predict([tmp_path / "face.png", str(tmp_path / "face.png"), Image.fromarray(face), face, rgb,
                         Image.fromarray(rgb)])
    first = results[0][0]["probs"]
    for faces in results[1:]:
        assert faces[0]["probs"] == pytest.approx(first, abs=1e-6)
    assert p.predict(face) == p.predict([face])  # a single image is a list of one


def test_batching_and_order_do_not_change_results(ckpt):
    crops = np.random.default_rng(2).integers(0, 256, (37, 48, 48), dtype=np.uint8)
    one_batch = Predictor(ckpt, bf16=False).predict_crops(crops)
    small_batches = Predictor(ckpt, bf16=False, batch_size=8).predict_crops(crops)
    single = Predictor(ckpt, bf16=False)
    singles = np.concatenate([single.predict_crops(c[None]) for c in crops[:5]])
    np.testing.assert_allclose(small_batches, one_batch, atol=1e-5)
    np.testing.assert_allclose(singles, one_batch[:5], atol=1e-5)
    np.testing.assert_allclose(one_batch.sum(1), 1, atol=1e-5)


def test_tta_averages_the_mirror(ckpt):
    crops = np.random.default_rng(3).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    want = (reference_probs(ckpt, crops) + reference_probs(ckpt, crops[:, :, ::-1].copy())) / 2
    np.testing.assert_allclose(Predictor(ckpt, tta=True, bf16=False).predict_crops(crops), want, atol=1e-5)


def test_crop_tta_is_the_evaluation_tta(ckpt):
    """Predictor's "crops" views are ferkit eval's: the same probabilities as predict_proba."""
    from ferkit.evaluate import predict_proba

    crops = np.random.default_rng(3).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    model, _ = load_model(ckpt)
    want = predict_proba(model, crops, tta="crops")
    got = Predictor(ckpt, tta="crops", bf16=False).predict_crops(crops)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, Predictor(ckpt, tta="flip", bf16=False).predict_crops(crops), atol=1e-4)
    with pytest.raises(ValueError, match="choose none, flip or crops"):
        Predictor(ckpt, tta="rotate")


def test_bf16_auto_follows_the_cpu_and_stays_close(ckpt):
    crops = np.random.default_rng(4).integers(0, 256, (16, 48, 48), dtype=np.uint8)
    auto = Predictor(ckpt)
    assert auto.runner.bf16 == bf16_available("cpu")
    forced = Predictor(ckpt, bf16=True).predict_crops(crops)
    np.testing.assert_allclose(forced, reference_probs(ckpt, crops), atol=0.03)  # bf16 keeps ~3 digits
    with pytest.raises(ValueError, match="bf16 must be"):
        Predictor(ckpt, bf16="yes")


def test_threads_option_sets_torch_and_opencv(ckpt):
    before = (torch.get_num_threads(), cv2.getNumThreads())
    try:
        assert Predictor(ckpt, threads=1).describe()["threads"] == 1 and cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    from ferkit.commands.serve import add_arguments as add_serve_args
    parser = argparse.ArgumentParser()
    add_serve_args(parser)
    assert parser.parse_args([]).threads == 1  # the server runs requests in parallel instead


def test_bad_images_raise_clear_errors(tmp_path, predictor):
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(jpeg.getvalue()[:2000])
    for name, kind in [("text.jpg", "not_image"), ("empty.jpg", "empty"), ("cut.jpg", "corrupt"),
                       ("absent.jpg", "missing")]:
        with pytest.raises(ImageReadError) as err:  # one image: raised
            predictor.predict(tmp_path / name)
        assert err.value.kind == kind and name in str(err.value)
        assert predictor.predict([tmp_path / name]) == [[{"error": str(err.value)}]]  # in a batch: an error entry
    with pytest.raises(ImageReadError, match="uint8"):
        predictor.predict(np.zeros((48, 48), np.float32))


# ---------------------------------------------------------------- detection and crops

def test_no_face_gives_an_empty_list(predictor):
    assert predictor.predict([np.full((480, 640), 128, np.uint8), np.zeros((300, 300, 3), np.uint8)]) == [[], []]


def test_faces_are_found_where_they_were_put(real_zip, predictor):
    """Default settings find most enlarged FER faces, in place, with few false faces."""
    faces = fer_faces(real_zip, 20)
    results = predictor.predict([face_scene(f) for f in faces])
    hits = sum(any(found_at(face["box"]) for face in r) for r in results)
    false = sum(not found_at(face["box"]) for r in results for face in r)
    assert hits >= 11, f"only {hits}/20 faces found"  # 13/20 with OpenCV 4.14 (FER has hard faces)
    assert false <= 2
    assert all(isinstance(v, int) for r in results for face in r for v in face["box"])


def test_real_photo_and_its_enlargement(predictor):
    """One face in a real portrait; a 4x larger copy is detected on a shrunk copy, boxes scaled back."""
    photo = np.asarray(Image.open(grace_hopper()).convert("RGB"))
    [[face]] = predictor.predict([photo])
    x, y, w, h = face["box"]
    assert 130 < x < 190 and 80 < y < 140 and 180 < w < 260 and w == h  # the face, not the uniform
    big = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)
    [[big_face]] = predictor.predict([big])
    bx, by, bw, bh = big_face["box"]
    assert abs(bx + bw / 2 - 4 * (x + w / 2)) < 0.05 * 4 * w and abs(by + bh / 2 - 4 * (y + h / 2)) < 0.05 * 4 * w
    assert 1 / 1.25 < bw / (4 * w) < 1.25  # sizes come in steps of scale_factor (1.2)


def test_exif_rotated_photo_is_turned_upright(predictor, tmp_path):
    """Phones store photos sideways with an orientation tag; the face is found as displayed."""
    upright = Image.open(grace_hopper())
    exif = upright.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright.rotate(90, expand=True).save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    [[face]] = predictor.predict([tmp_path / "sideways.jpg"])
    [[want]] = predictor.predict([np.asarray(upright)])
    np.testing.assert_allclose(face["box"], want["box"], atol=8)


def test_crop_adds_the_margin_and_pads_at_the_border():
    gray = np.zeros((100, 100), np.uint8)
    gray[20:80, 20:80] = 255  # a white square "face"
    inner = crop_face(gray, (20, 20, 60, 60), margin=0.0)
    assert inner.shape == (48, 48) and inner.min() == 255
    framed = crop_face(gray, (20, 20, 60, 60), margin=0.25)  # 15 px of black on each side
    assert framed[24, 24] == 255 and framed[0, 24] == 0 and framed[24, 0] == 0
    corner = crop_face(gray, (0, 0, 60, 60), margin=0.25)  # leaves the image: border repeated
    assert corner.shape == (48, 48) and corner[0, 0] == 0 and corner[20, 20] == 255


# ---------------------------------------------------------------- ONNX

def test_onnx_matches_pytorch(ckpt, tmp_path):
    out = tmp_path / "model.onnx"
    assert run_cli(add_export_args, run_export, [str(ckpt), "--out", str(out)]) == 0
    crops = np.random.default_rng(5).integers(0, 256, (40, 48, 48), dtype=np.uint8)
    torch_probs = Predictor(ckpt, bf16=False).predict_crops(crops)
    from_file = Predictor(out, backend="onnx")
    assert from_file.class_names == CLASSES
    np.testing.assert_allclose(from_file.predict_crops(crops), torch_probs, atol=1e-4)
    on_the_fly = Predictor(ckpt, backend="onnx", tta=True)  # a .pt is exported in memory
    np.testing.assert_allclose(on_the_fly.predict_crops(crops),
                               Predictor(ckpt, bf16=False, tta=True).predict_crops(crops), atol=1e-4)
    with pytest.raises(FileNotFoundError, match="ferkit export"):
        Predictor(tmp_path / "absent.onnx", backend="onnx")
    with pytest.raises(ValueError, match="backend='onnx'"):
        Predictor(out, backend="torch")
    assert Predictor(out).backend == "onnx"  # auto: a .onnx file runs on ONNX Runtime


def test_onnx_export_covers_every_arch_and_logit_adjustment(tmp_path):
    from ferkit.models import ARCHS

    crops = np.random.default_rng(6).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    for arch in ARCHS:
        plain = make_checkpoint(tmp_path / f"{arch}.pt", arch=arch)
        adjusted = make_checkpoint(tmp_path / f"{arch}-la.pt", arch=arch, offset=[2.0, -1.0, 0, 0, 0, 0, 0])
        want = Predictor(adjusted, bf16=False).predict_crops(crops)
        assert np.abs(want - Predictor(plain, bf16=False).predict_crops(crops)).max() > 0.01  # offset applied
        np.testing.assert_allclose(Predictor(adjusted, backend="onnx").predict_crops(crops), want, atol=1e-4)


# ---------------------------------------------------------------- CLI

@pytest.fixture
def photo_folder(tmp_path, real_zip) -> Path:
    """Two scenes with a face, a small 48x48 image in which no face is found (YuNet does find many
    48x48 FER crops themselves), three broken files and a text file in subfolders."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    faces = detectable_faces(real_zip, 2)
    Image.fromarray(face_scene(faces[0])).save(root / "a.png")
    Image.fromarray(face_scene(faces[1])).convert("RGB").save(root / "sub" / "b.jpg", quality=95)
    Image.fromarray(np.random.default_rng(0).integers(100, 130, (48, 48), dtype=np.uint8)).save(root / "crop48.png")
    (root / "bad.jpg").write_text("not an image")
    (root / "sub" / "empty.jpg").write_bytes(b"")
    data = (root / "sub" / "b.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[:len(data) // 3])
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_folder_reports_every_file(ckpt, photo_folder, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code = run_cli(add_predict_args, run_predict, [str(photo_folder), "--ckpt", str(ckpt), "--out", str(out),
                                                   "--annotate", str(tmp_path / "ann")])
    assert code == 0
    rows = {Path(r["file"]).name: r for r in read_jsonl(out)}
    assert set(rows) == {"a.png", "b.jpg", "crop48.png", "bad.jpg", "empty.jpg", "cut.jpg"}
    for name in ("a.png", "b.jpg"):
        assert rows[name]["faces"] == 1 and rows[name]["face"] == 0 and found_at(rows[name]["box"])
        assert set(rows[name]["probs"]) == set(CLASSES) and rows[name]["label"] in CLASSES
    crop = rows["crop48.png"]  # the crop rule: a 48x48 image is a face crop, not searched
    assert crop["faces"] == 1 and crop["box"] == [0, 0, 48, 48] and crop["detector_score"] is None
    assert "not an image" in rows["bad.jpg"]["error"] and "empty" in rows["empty.jpg"]["error"]
    assert "truncated" in rows["cut.jpg"]["error"]
    err = capsys.readouterr().err
    assert "ignored 1 file" in err and "6/6" in err  # the progress bar ran to the end
    drawn = np.asarray(Image.open(tmp_path / "ann" / "a.png").convert("RGB"))
    assert drawn.shape == (480, 640, 3) and (drawn[:, :, 0] != drawn[:, :, 1]).any()  # coloured box on gray
    assert (tmp_path / "ann" / "crop48.png").is_file()


def test_predict_csv_globs_no_detect_and_missing(ckpt, photo_folder, tmp_path, capsys):
    code = run_cli(add_predict_args, run_predict, [str(photo_folder / "*.png"), str(tmp_path / "nothing.jpg"),
                                                   "--ckpt", str(ckpt), "--format", "csv", "--no-detect"])
    assert code == 0
    import csv
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [Path(r["file"]).name for r in rows] == ["nothing.jpg", "a.png", "crop48.png"]
    assert "no such file" in rows[0]["error"]
    assert rows[2]["faces"] == "1" and (rows[2]["x"], rows[2]["w"]) == ("0", "48")
    assert sum(float(rows[2][f"p_{c}"]) for c in CLASSES) == pytest.approx(1, abs=1e-4)


def test_predict_fails_only_when_nothing_was_read(ckpt, tmp_path, capsys):
    (tmp_path / "bad.jpg").write_text("no")
    assert run_cli(add_predict_args, run_predict, [str(tmp_path / "bad.jpg"), "--ckpt", str(ckpt)]) == 2
    out, err = capsys.readouterr()
    assert "error" in json.loads(out)  # the row is written as for any unreadable input
    assert err.count("\n") == 1 and f"nothing could be read: {tmp_path / 'bad.jpg'}: not an image" in err
    assert run_cli(add_predict_args, run_predict, [str(tmp_path / "gone.jpg"), "--ckpt", str(ckpt)]) == 2
    assert f"nothing could be read: {tmp_path / 'gone.jpg'}: no such file" in capsys.readouterr().err


def test_predict_video_every_nth_frame(ckpt, real_zip, tmp_path):
    scene = cv2.cvtColor(face_scene(detectable_faces(real_zip, 1)[0]), cv2.COLOR_GRAY2BGR)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    for _ in range(25):
        writer.write(scene)
    writer.release()
    out = tmp_path / "video.jsonl"
    assert run_cli(add_predict_args, run_predict, [str(path), "--ckpt", str(ckpt), "--every", "10",
                                                   "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert [(r["frame"], r["time_s"]) for r in rows] == [(0, 0.0), (10, 1.0), (20, 2.0)]
    assert all(r["faces"] == 1 and found_at(r["box"]) for r in rows)


@pytest.mark.parametrize("amx, bf16, device, has_int8, want", [
    (False, "auto", "cpu", True, "onnx"),    # no AMX (AVX2, or AVX-512 with or without BF16): the int8 model
    (True, "auto", "cpu", True, "torch"),    # AMX: torch in bfloat16
    (False, False, "cpu", True, "torch"),    # float32 asked for
    (False, True, "cpu", True, "torch"),     # bfloat16 asked for
    (False, "auto", "cuda", True, "torch"),  # a GPU
    (False, "auto", "cpu", False, "torch"),  # no int8 model next to the checkpoint
])
def test_auto_backend_follows_the_cpu_and_the_files(monkeypatch, tmp_path, amx, bf16, device, has_int8, want):
    """The choice is a function of (the CPU's AMX, the arguments, the files), tested here for both
    kinds of CPU whatever CPU runs the test."""
    from ferkit.infer import predictor

    monkeypatch.setattr(predictor, "amx_in_torch", lambda: amx)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    if has_int8:
        (tmp_path / "m.int8.onnx").write_bytes(b"")
    backend, model = predictor.choose_backend(ckpt, device, bf16)
    assert backend == want and model == (tmp_path / "m.int8.onnx" if want == "onnx" else ckpt)
    assert predictor.choose_backend(tmp_path / "x.onnx") == ("onnx", tmp_path / "x.onnx")


def test_without_torch_auto_runs_an_onnx_sibling_or_says_how_to_get_one(monkeypatch, tmp_path):
    """No torch installed (`pip install 'ferkit[infer]'`): a .pt runs as its int8 ONNX sibling, else
    its float32 one; with neither, a one-line error names the extra and `ferkit export`."""
    from ferkit.infer import predictor

    monkeypatch.setattr(predictor, "installed", lambda module: module != "torch")
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match=r"no torch: pip install 'ferkit\[train\]'.*ferkit export"):
        predictor.choose_backend(ckpt)
    (tmp_path / "m.onnx").write_bytes(b"")
    assert predictor.choose_backend(ckpt) == ("onnx", tmp_path / "m.onnx")
    (tmp_path / "m.int8.onnx").write_bytes(b"")
    assert predictor.choose_backend(ckpt) == ("onnx", tmp_path / "m.int8.onnx")
    with pytest.raises(ValueError, match="torch settings and this install has no torch"):
        predictor.choose_backend(ckpt, "cuda")  # not silently run on the CPU


def test_on_a_cpu_without_amx_the_shipped_model_predicts_without_importing_torch(tmp_path):
    """In a full install too, the auto backend on a CPU without AMX (forced here, whatever the CPU)
    runs the int8 ONNX model and never imports torch (its import costs seconds)."""
    import os
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom ferkit import Predictor\np = Predictor(threads=1)\n"
            "faces = p.predict(np.full((48, 48), 128, np.uint8))\n"
            "print(p.describe()['backend'], 'torch' in sys.modules)")
    env = {**os.environ, "FERKIT_CPU_AMX": "0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["onnx", "int8", "False"]
