"""The figures of a stored teacher (`ferkit teacher-logits`): accuracy, macro-F1 and per-class F1 of
its single-view logits on val and test, written next to it as <file>.metrics.json.

    python tools/teacher_metrics.py results/teachers/T-wide-ensemble.npz --data_root ../shared/data/fer2013.zip

Only val is printed: teachers are chosen on val, and test is reported once, at the end (docs/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ferkit.data import load_data
from ferkit.metrics import compute_metrics
from ferkit.strategies.distill import read_teacher_logits


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("logits", help="a .npz written by `ferkit teacher-logits`")
    p.add_argument("--data_root", required=True, help="the dataset it was computed on")
    args = p.parse_args(argv)
    stored, data = read_teacher_logits(Path(args.logits)), load_data(args.data_root, log=lambda s: None)
    if stored["class_names"] != data.class_names or len(stored["train"]) != len(data.splits["train"]):
        raise SystemExit(f"{args.logits} was not computed on {args.data_root}")
    out = {split: compute_metrics(data.splits[split].labels, stored[split].argmax(1), data.class_names)
           for split in ("val", "test")}
    path = Path(str(args.logits) + ".metrics.json")
    path.write_text(json.dumps({"logits": args.logits, "view": "single (un-augmented)"} | out, indent=2) + "\n")
    print(f"val: accuracy {out['val']['accuracy']:.4f}, macro-F1 {out['val']['macro_f1']:.4f} -> {path}")
    return out


if __name__ == "__main__":
    main()
