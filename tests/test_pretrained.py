"""Shipping a model: `ferkit pack` writes a float16 checkpoint whose card `ferkit eval` reproduces."""
import json

import numpy as np
import torch
from synth import make_image_folders

from ferkit.cli import main


def _tiny_run(tmp_path):
    data = make_image_folders(tmp_path / "fer", {s: {c: 4 for c in ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]}
                                                 for s in ("train", "val", "test")})
    runs = tmp_path / "runs"
    assert main(["train", "--data_root", str(data), "--epochs", "1", "--batch_size", "8", "--exp", "r",
                 "--runs_dir", str(runs)]) == 0
    return runs


def test_pack_then_eval_reproduces_the_card(tmp_path):
    runs = _tiny_run(tmp_path)
    out = tmp_path / "pretrained" / "m.pt"
    assert main(["pack", str(runs / "r" / "best.pt"), "--out", str(out)]) == 0
    ckpt = torch.load(out, weights_only=False)
    assert "optimizer" not in ckpt and all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert out.stat().st_size < (runs / "r" / "best.pt").stat().st_size * 0.6
    card = json.loads((tmp_path / "pretrained" / "m.pt.metrics.json").read_text())
    text = (tmp_path / "pretrained" / "m.md").read_text()
    assert f"{card['test']['macro_f1']:.4f}" in text and "ferkit train" in text
    assert main(["eval", str(out), "--out", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["macro_f1"] == card["test"]["macro_f1"] and again["accuracy"] == card["test"]["accuracy"]


def test_pack_chooses_tta_on_val_and_eval_uses_it(tmp_path):
    runs = _tiny_run(tmp_path)
    out = tmp_path / "m.pt"
    assert main(["pack", str(runs / "r" / "best.pt"), "--out", str(out), "--tta", "auto"]) == 0
    ckpt = torch.load(out, weights_only=False)
    scores = ckpt["tta_selection"]
    assert set(scores) == {"none", "flip", "crops"}
    assert scores[ckpt["config"]["tta"]] == max(scores.values())
    card = json.loads((tmp_path / "m.pt.metrics.json").read_text())
    assert card["config"]["tta"] == ckpt["config"]["tta"] and "--tta auto" in (tmp_path / "m.md").read_text()
    assert main(["eval", str(out), "--out", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["tta"] == ckpt["config"]["tta"] and again["macro_f1"] == card["test"]["macro_f1"]


def _tables(text: str) -> list[list[list[str]]]:
    """The markdown tables of a text, in order: each a list of rows of cells (the header row first)."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            tables, rows = tables + [rows], []
    return tables


def test_pack_records_the_tta_given_single_view_by_default_and_the_card_headlines_it(tmp_path):
    """The TTA a packed model records is what predict, serve and Predictor run by default, so the card's
    first metrics table is at it; the other modes are a second, labelled table, which `ferkit eval --tta` repeats."""
    runs = _tiny_run(tmp_path)
    for args, mode, other in (([], "none", "crops"), (["--tta", "crops"], "crops", "none")):
        out = tmp_path / mode / "m.pt"
        assert main(["pack", str(runs / "r" / "best.pt"), "--out", str(out), *args]) == 0
        assert torch.load(out, weights_only=False)["config"]["tta"] == mode
        card = json.loads((tmp_path / mode / "m.pt.metrics.json").read_text())
        assert card["tta"] == card["config"]["tta"] == mode and set(card["tta_figures"]) == {"none", "flip", "crops"} - {mode}
        text = (tmp_path / mode / "m.md").read_text()
        headline, *rest = _tables(text.split("## Metrics")[1])
        assert headline[0][:2] == ["TTA", "precision"] and headline[1][:2] == [mode, "float32 (reference)"]
        assert headline[1][-1] == f"{card['test']['macro_f1']:.4f}" and len(headline) == 2
        assert "run by default" in text and ("single view (TTA `none`)" in text) == (mode == "none")
        second = _tables(text.split("### Other test-time augmentation")[1])[0]
        row = next(r for r in second if r[0] == other)
        assert row[-1] == f"{card['tta_figures'][other]['test']['macro_f1']:.4f}", row
        assert ("--tta crops" in text.split("```bash")[1].split("```")[0]) == (mode == "crops")
        assert main(["eval", str(out), "--tta", other, "--out", str(tmp_path / f"ev-{mode}")]) == 0
        again = json.loads((tmp_path / f"ev-{mode}" / "metrics.json").read_text())
        assert again["macro_f1"] == card["tta_figures"][other]["test"]["macro_f1"]


def test_card_of_a_posthoc_model_gives_every_command(tmp_path):
    runs = _tiny_run(tmp_path)
    adjusted = runs / "r" / "la.pt"
    assert main(["posthoc", str(runs / "r" / "best.pt"), "--method", "la", "--out", str(adjusted)]) == 0
    assert main(["pack", str(adjusted), "--out", str(tmp_path / "m.pt")]) == 0
    text = (tmp_path / "m.md").read_text()
    assert f"ferkit posthoc {runs}/r/best.pt --method la --out {adjusted}" in text
    assert f"ferkit pack {adjusted} --out {tmp_path / 'm.pt'}" in text and "Post-hoc adjustment, tuned on val only: `la`" in text


AVX2_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "FERKIT_CPU_BF16": "0"}


def test_shipped_models_reproduce_their_cards_on_the_real_test_split(real_zip, tmp_path):
    """`ferkit quickstart` says "reproduced" for every pretrained/*.pt on the real PrivateTest split,
    run with PyTorch held to its AVX2 kernels and no bfloat16: whichever CPU runs the tests (AVX2,
    AVX-512 or AMX), the cards must hold on the common one too."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from ferkit.data import load_data
    from ferkit.metrics import compute_metrics
    from ferkit.pretrained import shipped_models

    shipped = shipped_models()
    assert shipped, "no shipped model under pretrained/"
    r = subprocess.run([sys.executable, "-m", "ferkit", "quickstart", str(real_zip), "--runs_dir", str(tmp_path)],
                       env={**os.environ, **AVX2_KERNELS}, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for path in shipped:
        assert f"{path.name}: test accuracy" in r.stdout and "reproduced" in r.stdout.split(f"{path.name}: test accuracy")[1].splitlines()[0]
    # Each card's figures are those of its own committed predictions (the README's table is rendered
    # from the cards and checked by `python tools/report.py --check`, tests/test_results.py).
    labels = load_data(real_zip).splits["test"].labels
    for path in shipped:
        card = json.loads(Path(str(path) + ".metrics.json").read_text())
        assert card["precision"] == "float32" and len(card["test_predictions"]) == 3589
        m = compute_metrics(labels, [int(c) for c in card["test_predictions"]], list(card["test"]["per_class_f1"]))
        assert m["macro_f1"] == card["test"]["macro_f1"] and m["accuracy"] == card["test"]["accuracy"], path.name


def test_the_shipped_int8_file_keeps_the_cards_float32_labels(real_zip):
    """Issue 27: the shipped int8 model (with its float32 copy for close calls) gives the card's
    float32 test label on all but at most 3 of the 3,589 test faces, and no exact top-two tie."""
    from ferkit import Predictor
    from ferkit.data import load_data
    from ferkit.infer.onnx import top_two_margin
    from ferkit.runtime.paths import SHIPPED_DIR

    card = json.loads((SHIPPED_DIR / "ferkit-recommended.pt.metrics.json").read_text())
    int8 = Predictor(SHIPPED_DIR / "ferkit-recommended.int8.onnx", backend="onnx", detect=False, tta=card["tta"])
    probs = int8.predict_crops(load_data(real_zip).splits["test"].images)
    float32 = np.array([int(c) for c in card["test_predictions"]])
    assert (probs.argmax(1) != float32).sum() <= 3  # >= 99.9%; the issue asks 99.5%, the export aims at 99.9% on val
    assert (top_two_margin(probs) == 0).sum() == 0
