"""What an occlusion heatmap costs per face (`ferkit.infer.explain`), and where its heat lies.

    python bench/explain.py                       # the shipped model: int8 ONNX and torch float32
    python bench/explain.py --faces 64 --repeats 5 --threads 1

Each face is 101 forward passes (the face, then 100 copies with a 12-px patch hidden, stride 4),
single view, as `ferkit predict --explain` and the service run it. Per backend: ms per face when
`--faces` faces are explained in one call (batched: all copies in chunks of 1,024) and when they are
explained one call per face, the fastest of `--repeats` rounds (other processes slow single rounds
down). Also the share of the heat that lies on the eyes and brows and on the mouth (12-px boxes
around FER_LANDMARKS), against the share of the face those boxes cover. The plain prediction of the
same faces (one pass each, batched) is timed in the same rounds: the ratio of the two holds on a
machine that other work slows down, where the milliseconds do not. Faces: FER-2013 test
images (the shared zip), random textures without it. Writes bench/results/explain-<cpu>.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchio import ROOT, cpu_tag, fer_split, save_report  # noqa: E402


def regions() -> dict[str, np.ndarray]:
    """Masks (48, 48) of the eyes with the brows above them, and of the mouth, on FER's framing."""
    from ferkit.infer.faces import FER_LANDMARKS

    masks = {}
    for name, points, up in (("eyes", FER_LANDMARKS[:2], 10), ("mouth", FER_LANDMARKS[3:], 4)):
        m = np.zeros((48, 48), bool)
        for x, y in points:
            x, y = int(round(x)), int(round(y))
            m[max(0, y - up):y + 6, max(0, x - 6):x + 6] = True
        if name == "mouth":
            (x0, y0), (x1, _) = np.round(points).astype(int)
            m[y0 - 4:y0 + 6, x0:x1] = True  # between the corners too
        masks[name] = m
    return masks


def timed(fns: list, repeats: int) -> list[float]:
    """The fastest of `repeats` rounds of each function, the functions run in turns within a round."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=str(ROOT / "pretrained" / "ferkit-recommended.pt"))
    p.add_argument("--faces", type=int, default=32, help="faces explained per round (32)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the fastest counts (3)")
    p.add_argument("--threads", type=int, default=None, help="model threads (default: one per core)")
    p.add_argument("--out", help="JSON (default bench/results/explain-<cpu>.json)")
    args = p.parse_args(argv)

    from ferkit.runtime.device import cpu_info
    from ferkit.infer import Predictor
    from ferkit.infer.explain import explain_faces, occlusion_drops, patch_masks

    try:
        faces = np.stack(fer_split("test", args.faces, seed=0)[0])
        source = "FER-2013 test"
    except FileNotFoundError:
        faces = np.random.default_rng(0).integers(0, 256, (args.faces, 48, 48)).astype(np.uint8)
        source = "random textures (no FER-2013 zip)"
    masks = regions()
    int8 = Path(args.ckpt).with_suffix(".int8.onnx")
    backends = [("ONNX Runtime, int8", dict(checkpoint=str(int8), backend="onnx"))] if int8.is_file() else []
    backends += [("torch, float32", dict(checkpoint=args.ckpt, backend="torch", bf16=False))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict = {"machine": cpu_info(), "checkpoint": args.ckpt, "faces": args.faces, "source": source,
                    "view": "single", "passes_per_face": 1 + len(patch_masks()), "repeats": args.repeats,
                    "threads": args.threads, "load_average_start": load, "backends": []}
    print(f"{source}, {args.faces} faces, {report['passes_per_face']} passes per face, best of {args.repeats}")
    for name, kw in backends:
        pred = Predictor(detect=False, tta="none", threads=args.threads, **kw)  # "view": "single"
        batched, single, plain = (t / len(faces) for t in timed(
            [lambda: explain_faces(pred, faces), lambda: [explain_faces(pred, f[None]) for f in faces],
             lambda: pred.predict_crops(faces)], args.repeats))
        drops, _ = occlusion_drops(faces, pred.predict_crops)
        heat = np.clip(drops, 0, None)
        total = heat.sum((1, 2))
        shares = {r: float(np.mean(heat[:, m].sum(1)[total > 0] / total[total > 0])) for r, m in masks.items()}
        row = {"backend": name, "threads": pred.runner.threads, "ms_per_face_batched": 1000 * batched,
               "ms_per_face_single": 1000 * single, "ms_per_face_plain_prediction": 1000 * plain,
               "batched_over_plain": batched / plain, "heat_share": shares,
               "area_share": {r: float(m.mean()) for r, m in masks.items()},
               "peak_drop_median": float(np.median(drops.reshape(len(drops), -1).max(1)))}
        report["backends"].append(row)
        print(f"{name:20s} {row['ms_per_face_batched']:7.1f} ms/face batched, {row['ms_per_face_single']:7.1f} one "
              f"face per call ({row['batched_over_plain']:.0f}x a plain prediction); heat on eyes+brows {shares['eyes']:.2f} (area {masks['eyes'].mean():.2f}), "
              f"mouth {shares['mouth']:.2f} (area {masks['mouth'].mean():.2f})")
    report["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = Path(args.out) if args.out else HERE / "results" / f"explain-{cpu_tag(report['machine'])}.json"
    save_report(report, out)
    return report


if __name__ == "__main__":
    main()
