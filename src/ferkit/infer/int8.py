"""`ferkit export CKPT --int8`: an int8 ONNX model calibrated on train images, and its measured cost.

The cost is measured the way the model's numbers are: on val and test, with the checkpoint's own
test-time augmentation, against float32 PyTorch (`ferkit.evaluate.predict_proba`, the model card's
evaluation). It is written next to the model as `<model>.metrics.json`: the calibration, both
precisions' accuracy and macro-F1, the int8 - float32 macro-F1 difference and how many predictions
changed. Choices (here: the calibration set) never look at test; test is reported, not used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_SEED = 0


def export_int8(
    checkpoint: str | Path, out: Path, data_root: str | None = None, calib: int = 512, log=print, force: bool = False
) -> dict:
    """Quantise `checkpoint` to `out` and write `out`.metrics.json; returns those metrics. Both outputs
    are checked before any work (`check_onnx_out`) and written whole or not at all."""
    from ferkit.config import ConfigError
    from ferkit.data import load_data
    from ferkit.evaluate import match_classes, predict_proba
    from ferkit.metrics import compute_metrics
    from ferkit.models import load_model, read_checkpoint
    from ferkit.runtime.paths import atomic_text, check_output
    from ferkit.tta import tta_mode

    from .export import check_onnx_out, export_bytes, quantize_int8
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
    quantize_int8(fp32, train.images[pick], out)
    tta = tta_mode((ckpt.get("config") or {}).get("tta"))
    model, _ = load_model(ckpt)
    int8 = Predictor(out, backend="onnx", detect=False, tta=tta)
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
        "tta": tta,
    }
    for split in ("val", "test"):
        s = data.splits[split]
        p32 = predict_proba(model, s.images, "cpu", False, tta).argmax(1)
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
        }
        log(
            f"{split}: int8 macro-F1 {m8['macro_f1']:.4f}, float32 {m32['macro_f1']:.4f} (cost "
            f"{report[split]['macro_f1_cost']:+.4f}); {report[split]['changed_predictions']} of {len(p8):,} predictions differ"
        )
    atomic_text(report_path, json.dumps(report, indent=2) + "\n")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {report_path.name}")
    return report
