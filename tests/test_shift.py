"""bench/shift.py: every shift is a deterministic uint8 48x48 -> uint8 48x48 function that changes the
face, and the benchmark runs end to end on a tiny synthetic dataset with a tiny model."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from synth import CLASSES, default_counts, make_image_folders, pixels
from test_infer import make_checkpoint

BENCH = Path(__file__).resolve().parent.parent / "bench"
_spec = importlib.util.spec_from_file_location("shift_bench", BENCH / "shift.py")
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)


def faces(n: int = 4) -> np.ndarray:
    """Random-pixel 48x48 faces (any content would do: the shifts do not look at it)."""
    return np.stack([pixels(f"face{i}") for i in range(n)])


def smooth_face() -> np.ndarray:
    """A smooth gradient with a dark blob: what blur, noise or JPEG change less than random pixels."""
    y, x = np.mgrid[:48, :48]
    return np.clip(60 + 3 * x + 40 * np.exp(-((x - 24) ** 2 + (y - 20) ** 2) / 50.0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(sb.SHIFTS))
def test_each_shift_is_deterministic_keeps_shape_and_changes_the_face(name):
    fn = sb.SHIFTS[name]
    for img in [*faces(3), smooth_face()]:
        before = img.copy()
        a = fn(img, np.random.default_rng(7))
        b = fn(img, np.random.default_rng(7))
        np.testing.assert_array_equal(img, before)  # the input is not modified
        assert a.shape == (48, 48) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert np.array_equal(a, img) == (name == "clean")


@pytest.mark.parametrize("name", list(sb.SHIFTS))
def test_apply_shift_repeats_and_draws_per_image(name):
    same = np.repeat(smooth_face()[None], 6, 0)
    a = sb.apply_shift(name, same, seed=3, split="val")
    np.testing.assert_array_equal(a, sb.apply_shift(name, same, seed=3, split="val"))
    assert a.shape == same.shape and a.dtype == np.uint8
    random_draws = name in ("framing", "rotation", "blur", "noise", "occlude-eyes", "occlude-mouth")
    # the same face at different indices gets different draws, and another seed other draws (photo:
    # the detector finds no face in a smooth gradient, wherever it is pasted; test_photo_* below)
    if name != "photo":
        assert (len({x.tobytes() for x in a}) > 1) == random_draws
        assert (not np.array_equal(a, sb.apply_shift(name, same, seed=4, split="val"))) == random_draws
    assert sb.apply_shift(name, same[:0]).shape == (0, 48, 48)


def test_scores_match_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(10):
        y = rng.integers(0, 7, 300)
        p = np.where(rng.random(300) < 0.5, y, rng.integers(0, 6, 300))  # class 6 rarely predicted
        s = sb.scores(y, p, 7)
        assert s["macro_f1"] == pytest.approx(f1_score(y, p, labels=range(7), average="macro", zero_division=0))
        assert s["accuracy"] == pytest.approx(accuracy_score(y, p))


class FakeDetector:
    """Finds the one face pasted into a scene where `photo` pasted it (its box recorded by a spy on
    scenes.paste), or nothing."""
    margin, align = 0.0, False

    def __init__(self, finds: bool):
        self.finds, self.boxes = finds, []

    def detect_faces(self, image):
        from ferkit.infer.faces import Found
        return [Found(self.boxes[-1], 0.9, None)] if self.finds else []


@pytest.mark.parametrize("finds", [True, False])
def test_photo_pastes_the_face_into_a_scene_and_crops_what_the_detector_found(monkeypatch, finds):
    import scenes

    detector = FakeDetector(finds)
    paste = scenes.paste
    monkeypatch.setattr(scenes, "paste", lambda canvas, face, box, angle: (detector.boxes.append(box),
                                                                            paste(canvas, face, box, angle)))
    monkeypatch.setattr(sb, "_DETECTOR", [detector])
    face = smooth_face()
    crops = [sb.photo(face, np.random.default_rng(i)) for i in range(4)]
    sides = [b[2] for b in detector.boxes]
    assert all(120 <= s <= 300 for s in sides) and len(set(sides)) > 1  # 120-300 px, drawn per face
    for crop in crops:
        assert crop.shape == (48, 48) and crop.dtype == np.uint8
        if finds:  # the face back, through an enlarge, a paste (feathered edges) and a shrink
            assert np.abs(crop[8:40, 8:40].astype(int) - face[8:40, 8:40]).mean() < 4
        else:
            np.testing.assert_array_equal(crop, sb.MISSED)


def test_scores_count_a_missed_face_as_wrong_for_its_class():
    y = np.array([0, 0, 1, 1])
    s = sb.scores(y, np.array([0, 7, 1, 1]), 7)  # 7 = no answer
    assert s["accuracy"] == 0.75
    assert s["per_class_f1"][:2] == [pytest.approx(2 / 3, abs=1e-4), 1.0]  # class 0: recall 1/2, precision 1


def test_main_runs_end_to_end_on_a_synthetic_store(tmp_path, capsys):
    root = make_image_folders(tmp_path / "fer2013", default_counts(3))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    models = [str(make_checkpoint(tmp_path / d / "best.pt", seed=i)) for i, d in enumerate("ab")]
    out = tmp_path / "shift.json"
    report = sb.main(["--models", *models, "--data", str(root), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["faces"] == {"val": 21, "test": 21} and set(report["shifts"]) == set(sb.SHIFTS)
    assert [m["name"] for m in report["models"]] == ["a/best", "b/best"]  # two best.pt told apart
    for m in report["models"]:
        assert m["backend"].startswith("torch") and m["ran_as"]["file"].endswith(".pt") and m["ran_as"]["sha256"]
        for split in ("val", "test"):
            rows = m["splits"][split]
            assert list(rows) == [*sb.SHIFTS, "mean_over_shifts"]
            assert rows["clean"]["same_label_as_clean"] == 1.0
            for name in sb.SHIFTS:
                assert 0 <= rows[name]["macro_f1"] <= 1 and 0 <= rows[name]["accuracy"] <= 1
                assert len(rows[name]["per_class_f1"]) == len(CLASSES)
            others = [rows[s]["macro_f1"] for s in sb.SHIFTS if s != "clean"]
            assert rows["mean_over_shifts"]["macro_f1"] == pytest.approx(np.mean(others))
    printed = capsys.readouterr().out
    assert "mean of shifts" in printed and "occlude-mouth" in printed and "val-clean" in printed
    # the same run again gives the same figures (the shifts are seeded, the model deterministic)
    again = sb.main(["--models", models[0], "--data", str(root), "--out", str(out),
                     "--shifts", "blur", "framing"])
    assert list(again["shifts"]) == ["clean", "blur", "framing"]
    assert again["models"][0]["splits"] == {
        s: {k: v for k, v in report["models"][0]["splits"][s].items() if k in ("clean", "blur", "framing")}
        | {"mean_over_shifts": again["models"][0]["splits"][s]["mean_over_shifts"]} for s in ("val", "test")}


def test_limit_keeps_every_class(tmp_path):
    root = make_image_folders(tmp_path / "fer2013", default_counts(4))
    model = str(make_checkpoint(tmp_path / "a.pt"))
    report = sb.main(["--models", model, "--data", str(root), "--splits", "val", "--limit", "7",
                      "--shifts", "clean", "--out", str(tmp_path / "s.json")])
    assert report["faces"] == {"val": 7}
    assert report["class_counts"] == {"val": [1] * 7}  # evenly spaced over a store sorted by class
    assert "mean_over_shifts" not in report["models"][0]["splits"]["val"]  # no shift besides clean
