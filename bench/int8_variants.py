"""Which post-training int8 settings keep the float model's decisions? Measured on val only.

    python bench/int8_variants.py                       # the shipped recommended model
    python bench/int8_variants.py --ckpt runs/x/best.pt --data D

Quantises the checkpoint with `ferkit.infer.export.quantize_int8` under each variant below (the
calibration set, ONNX Runtime's calibration method, 16-bit or symmetric activations, more layers
left in float32), runs each on val, one view per face (as `predict` runs by default), and prints
the labels that agree with float32 torch, macro-F1 and batched faces/s (batches of 256, the
threads ONNX Runtime picks), all in one run; the load average before and after is recorded, since
faces/s compare only on a machine that runs nothing else. Val only: a choice of export settings is a choice,
and test is reported once, by bench/int8_ties.py. Writes bench/results/int8_variants-<cpu>.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchio import ROOT, cpu_tag, fer_zip, save_report  # noqa: E402

# name: (calibration images, quantize_int8 keyword arguments)
VARIANTS = {
    "shipped settings (512 images, min/max)": (512, {}),
    "2,048 calibration images": (2048, {}),
    "percentile calibration (2,048)": (2048, {"method": "Percentile"}),
    "entropy calibration (2,048)": (2048, {"method": "Entropy"}),
    "residual adds in float32": (512, {"keep_float": ("Add",)}),
    "symmetric int8 activations": (512, {"activations": "QInt8"}),
    "16-bit activations": (512, {"activations": "QUInt16"}),
}


def faces_per_second(predictor, images: np.ndarray, batch: int = 256) -> float:
    """Batched throughput over `images` (after one warm-up batch)."""
    predictor.predict_crops(images[:batch])
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        predictor.predict_crops(images[i:i + batch])
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=str(ROOT / "pretrained" / "ferkit-recommended.pt"))
    p.add_argument("--data", default=str(fer_zip()), help="FER-2013 (default: the shared zip)")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS (default: all)")
    p.add_argument("--out", help="JSON (default bench/results/int8_variants-<cpu>.json)")
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
    train, val = data.splits["train"], data.splits["val"]
    p32 = predict_proba(model, val.images, "cpu", False, "none").argmax(1)
    fp32 = export_bytes(ckpt)[0]
    tmp = Path(tempfile.mkdtemp(prefix="ferkit-int8-"))
    report: dict = {"machine": cpu_info(), "checkpoint": args.ckpt, "split": "val", "view": "single",
                    "n": len(p32), "load_average_before": os.getloadavg()[0], "variants": {}}
    for i, name in enumerate(args.variants):
        n, options = VARIANTS[name]
        pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(len(train.labels), n, replace=False))
        path = quantize_int8(fp32, train.images[pick], tmp / f"v{i}.int8.onnx", **options)
        predictor = Predictor(path, backend="onnx", detect=False, tta="none")
        labels = predictor.predict_crops(val.images).argmax(1)
        row = {"calibration_images": n, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
               "agree_with_float32": int((labels == p32).sum()),
               "macro_f1": compute_metrics(val.labels, labels, data.class_names)["macro_f1"],
               "faces_per_s": faces_per_second(predictor, val.images)}
        report["variants"][name] = row
        print(f"{name:<40} agree {row['agree_with_float32']:>5}/{len(p32)}  macro-F1 {row['macro_f1']:.4f}"
              f"  {row['faces_per_s']:>6.0f} faces/s", flush=True)
    report["load_average_after"] = os.getloadavg()[0]
    save_report(report, Path(args.out) if args.out else HERE / "results" / f"int8_variants-{cpu_tag(report['machine'])}.json")
    return report


if __name__ == "__main__":
    main()
