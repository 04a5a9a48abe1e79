"""`ferkit export CKPT --int8`: an int8 ONNX model calibrated on train images, and its measured cost.

The cost is measured the way the model's numbers are: on val and test, with the checkpoint's own
test-time augmentation, against float32 PyTorch (`ferkit.evaluate.predict_proba`, the model card's
evaluation). It is written next to the model as `<model>.metrics.json`: the calibration, both
precisions' accuracy and macro-F1, the int8 - float32 macro-F1 difference and how many predictions
changed. Choices (here: the calibration set and the refinement margin) never look at test; test is
reported, not used.

Rounding flips a face's label where float32's top two classes are close: no per-layer choice of
int8 fixed that at int8's speed (bench/int8_variants.py). So the int8 file carries a float32 copy,
and the faces whose int8 top-two margin is below a threshold run again in float32
(`ferkit.infer.export.with_float_refine`). The threshold is the smallest that makes int8 agree with
float32 on `agreement` of val's labels (`refine_threshold`); `agreement=0` writes plain int8.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_SEED = 0
AGREEMENT = 0.999  # of val labels, int8 (refined) against float32: at most 3 of FER-2013's 3,589
MIN_REFINE = 1e-6  # the least margin refined, whatever val says: an exact tie always runs in float32


def refine_threshold(p32: np.ndarray, p8: np.ndarray, agreement: float) -> float:
    """The smallest int8 top-two margin below which re-running faces in float32 makes int8's labels
    agree with float32's (`p32`, `p8`: probabilities (N, C) of the same faces) on at least
    `agreement` of them; at least `MIN_REFINE`. A refined face takes float32's label, so the
    disagreements left are those whose int8 margin is at or above the threshold."""
    from .onnx import top_two_margin

    margins = np.sort(top_two_margin(p8)[p32.argmax(1) != p8.argmax(1)])[::-1]
    allowed = int(np.floor((1.0 - agreement) * len(p8) + 1e-9))
    if len(margins) <= allowed:
        return MIN_REFINE
    return min(max(float(np.nextafter(margins[allowed], np.inf)), MIN_REFINE), 1.0)  # 1.0: every face


def _run(runner, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """A runner's raw probabilities of uint8 images (N, 48, 48), one view, in batches."""
    from ferkit.tta import tta_views

    return np.concatenate([runner(tta_views(images[i : i + batch], "none")[0]) for i in range(0, len(images), batch)])


def export_int8(
    checkpoint: str | Path,
    out: Path,
    data_root: str | None = None,
    calib: int = 512,
    log=print,
    force: bool = False,
    agreement: float = AGREEMENT,
) -> dict:
    """Quantise `checkpoint` to `out` (with its float32 copy for the faces below the margin that
    `refine_threshold` picks on val for `agreement`; 0: none) and write `out`.metrics.json; returns
    those metrics. Both outputs are checked before any work (`check_onnx_out`) and written whole or
    not at all."""
    from ferkit.config import ConfigError
    from ferkit.data import load_data
    from ferkit.evaluate import match_classes, predict_proba
    from ferkit.metrics import compute_metrics
    from ferkit.models import load_model, read_checkpoint
    from ferkit.runtime.paths import atomic_text, atomic_write, check_output
    from ferkit.tta import tta_mode

    from .export import check_onnx_out, export_bytes, quantize_int8, with_float_refine
    from .onnx import OnnxRunner, top_two_margin
    from .predictor import Predictor

    ckpt = read_checkpoint(checkpoint)
    root = data_root or (ckpt.get("config") or {}).get("data_root")
    if not root:
        raise ConfigError("--int8 calibrates on train images: give --data_root")
    out = check_onnx_out(checkpoint, out, force, root)
    report_path = check_output(out.with_name(out.name + ".metrics.json"), inputs=[checkpoint, root], force=force)
    data = match_classes(load_data(root), ckpt["class_names"])
    train = data.splits["train"]
    if not 1 <= calib <= len(train.labels):
        raise ConfigError(f"--calib must be between 1 and {len(train.labels)} train images (got {calib})")
    pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(len(train.labels), calib, replace=False))
    fp32, _ = export_bytes(ckpt)
    model, _ = load_model(ckpt)
    single = {split: predict_proba(model, data.splits[split].images, "cpu", False, "none") for split in ("val", "test")}
    with tempfile.TemporaryDirectory() as tmp:
        plain_path = quantize_int8(fp32, train.images[pick], Path(tmp) / "plain.int8.onnx")
        plain = OnnxRunner(plain_path)  # raw probabilities: the margins the runner compares are before calibration
        plain_probs = {split: _run(plain, data.splits[split].images) for split in single}
        below = refine_threshold(single["val"], plain_probs["val"], agreement) if agreement > 0 else 0.0
        model_bytes = with_float_refine(plain_path, fp32, below) if below else plain_path.read_bytes()
    atomic_write(out, lambda f: f.write(model_bytes), overwrite=force)
    tta = tta_mode((ckpt.get("config") or {}).get("tta"))
    int8 = Predictor(out, backend="onnx", detect=False, tta=tta)
    counts: Any = int8.runner  # an OnnxRunner: it counts the faces it re-ran in float32
    report: dict[str, Any] = {
        "model": out.name,
        "source": str(checkpoint),
        "precision": "int8",
        "calibration": {
            "images": calib,
            "split": "train",
            "seed": CALIBRATION_SEED,
            "method": "min/max, per-channel int8 weights, uint8 activations, QDQ",
        },
        "refine": {
            "below": below,
            "chosen_on": "val, single view",
            "agreement_target": agreement,
            "what": "faces whose int8 top-two margin is below `below` run again in the file's float32 copy",
        },
        "tta": tta,
    }
    for split in ("val", "test"):
        s = data.splits[split]
        p32 = predict_proba(model, s.images, "cpu", False, tta).argmax(1)
        counts.views = counts.refined = 0
        p8 = int8.predict_crops(s.images).argmax(1)
        m32, m8 = (compute_metrics(s.labels, p, data.class_names) for p in (p32, p8))
        report[split] = {
            "float32": {"accuracy": m32["accuracy"], "macro_f1": m32["macro_f1"]},
            "int8": {
                "accuracy": m8["accuracy"],
                "macro_f1": m8["macro_f1"],
                "per_class_f1": dict(zip(data.class_names, m8["per_class_f1"])),
            },
            "macro_f1_cost": m32["macro_f1"] - m8["macro_f1"],
            "changed_predictions": int((p32 != p8).sum()),
            "n": int(len(p8)),
            "refined_fraction": counts.refined / max(counts.views, 1),
            # plain int8 (no float32 copy), single view, for comparison
            "single_view_changed_without_refine": int((single[split].argmax(1) != plain_probs[split].argmax(1)).sum()),
            "single_view_ties_without_refine": int((top_two_margin(plain_probs[split]) == 0).sum()),
        }
        log(
            f"{split}: int8 macro-F1 {m8['macro_f1']:.4f}, float32 {m32['macro_f1']:.4f} (cost "
            f"{report[split]['macro_f1_cost']:+.4f}); {report[split]['changed_predictions']} of {len(p8):,} predictions "
            f"differ ({report[split]['single_view_changed_without_refine']} without the float32 copy, single view); "
            f"{report[split]['refined_fraction']:.1%} of faces ran again in float32 (margin below {below:.4f})"
        )
    atomic_text(report_path, json.dumps(report, indent=2) + "\n")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {report_path.name}")
    return report
