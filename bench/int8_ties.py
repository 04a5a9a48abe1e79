"""Does an int8 model keep the float model's decisions? Exact top-two ties and label agreement.

    python bench/int8_ties.py                                   # the shipped recommended model
    python bench/int8_ties.py --ckpt runs/x/best.pt --data D

Runs the checkpoint in float32 (torch), its committed int8 ONNX sibling (if any) and a fresh int8
export by the current code (`ferkit.infer.export.quantize_int8`, the same 512 train images as
`ferkit export --int8`), one view per face (as `predict`, `serve` and `Predictor` run by default),
over val and test. Per precision: exact ties between the two highest probabilities (a tie goes to
the class first in the alphabet), labels that agree with float32, accuracy and macro-F1. Writes
bench/results/int8_ties-<cpu>.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchio import ROOT, cpu_tag, fer_zip, save_report  # noqa: E402


def ties(probs: np.ndarray) -> int:
    top = np.sort(probs, axis=1)[:, -2:]
    return int((top[:, 0] == top[:, 1]).sum())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=str(ROOT / "pretrained" / "ferkit-recommended.pt"))
    p.add_argument("--data", default=str(fer_zip()), help="FER-2013 (default: the shared zip)")
    p.add_argument("--out", help="JSON (default bench/results/int8_ties-<cpu>.json)")
    args = p.parse_args(argv)

    from ferkit import Predictor
    from ferkit.data import load_data
    from ferkit.runtime.device import cpu_info
    from ferkit.evaluate import match_classes, predict_proba
    from ferkit.metrics import compute_metrics
    from ferkit.infer.export import export_bytes, quantize_int8
    from ferkit.infer.int8 import CALIBRATION_SEED
    from ferkit.models import load_model, read_checkpoint

    ckpt = read_checkpoint(args.ckpt)
    data = match_classes(load_data(args.data, log=lambda s: None), ckpt["class_names"])
    model, _ = load_model(ckpt)
    train = data.splits["train"]
    pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(len(train.labels), 512, replace=False))
    runners = {}
    committed = Path(args.ckpt).with_suffix(".int8.onnx")
    if committed.is_file():
        runners["int8 (committed file)"] = Predictor(committed, backend="onnx", detect=False, tta="none")
    tmp = Path(tempfile.mkdtemp(prefix="ferkit-int8-"))
    fresh = quantize_int8(export_bytes(ckpt)[0], train.images[pick], tmp / "fresh.int8.onnx")
    runners["int8 (current export)"] = Predictor(fresh, backend="onnx", detect=False, tta="none")
    report: dict = {"machine": cpu_info(), "checkpoint": args.ckpt, "view": "single", "splits": {}}
    for split in ("val", "test"):
        s = data.splits[split]
        p32 = predict_proba(model, s.images, "cpu", False, "none")
        rows = {"float32 (torch)": p32} | {name: r.predict_crops(s.images) for name, r in runners.items()}
        out = {}
        for name, probs in rows.items():
            m = compute_metrics(s.labels, probs.argmax(1), data.class_names)
            out[name] = {"ties": ties(probs), "agree_with_float32": int((probs.argmax(1) == p32.argmax(1)).sum()),
                         "n": len(s.labels), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
            print(f"{split:<5}{name:<24} ties {out[name]['ties']:>4}  agree {out[name]['agree_with_float32']:>5}/{len(s.labels)}"
                  f"  acc {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}", flush=True)
        report["splits"][split] = out
    save_report(report, Path(args.out) if args.out else HERE / "results" / f"int8_ties-{cpu_tag(report['machine'])}.json")
    return report


if __name__ == "__main__":
    main()
