"""Inference speed: face crops per second (batched and one at a time), milliseconds per photo end to
end (decode, detect, classify), for the PyTorch and ONNX backends, with the default detector's
time (bench/detection.py measures detectors' recall and precision).

    python bench/predict.py                    # the shipped model, else a random seed-cnn
    python bench/predict.py --ckpt runs/x/best.pt --quick
    python bench/predict.py --ckpt new.pt --versus old.int8.onnx   # two models' int8, in one run

Prints tables and writes bench/results/predict.json. The batched crops are FER-2013 test faces (random
pixels without the zip): the time of an int8 file with a float32 copy depends on how many faces are
close calls it runs again in float32 (`ferkit export --int8`), and that fraction is printed.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchio import fer_split  # noqa: E402

from ferkit.infer import Predictor, default_checkpoint  # noqa: E402
from ferkit.infer.detectors import make_detector  # noqa: E402
from ferkit.infer.io import decode_image, to_gray  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def checkpoint(arg: str | None) -> str:
    """--ckpt, else the shipped model, else a random seed-cnn (with a warning)."""
    if arg:
        return arg
    try:
        return str(default_checkpoint())
    except FileNotFoundError as e:
        print(f"warning: {e}\nwarning: timing a randomly initialised seed-cnn instead (speed does not depend on weights)",
              file=sys.stderr)
    from ferkit.models import build_model

    model = build_model("seed-cnn", "softmax", 7)
    path = Path(tempfile.mkdtemp()) / "random-seed-cnn.pt"
    torch.save({"format": "ferkit", "version": 1, "arch": "seed-cnn", "head": "softmax", "head_kwargs": {},
                "class_names": ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"],
                "config": {}, "model": model.state_dict()}, path)
    return str(path)


def best_of_each(fns: list, repeats: int) -> tuple[list[float], list[list[float]]]:
    """Time each of `fns` `repeats` times, taking turns (after one warm-up call each).

    Returns the fastest time of each, in seconds, as `timeit` recommends: on this shared 2-core
    machine the same call varies up to 2x from one repeat to the next (other processes, the host),
    and the slow repeats measure them, not ferkit. Taking turns puts every function in the same
    quiet and busy moments, so a ratio of two of them is not a ratio of two different moments.
    Also returns every time, one list per round.
    """
    for fn in fns:
        fn()
    rounds = []
    for _ in range(repeats):
        times = []
        for fn in fns:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        rounds.append(times)
    return [min(r[i] for r in rounds) for i in range(len(fns))], rounds


def best_of(fn, repeats: int) -> float:
    """Fastest of `repeats` calls of `fn`, in seconds (see `best_of_each`)."""
    return best_of_each([fn], repeats)[0][0]


def fer_faces(n: int) -> list[np.ndarray]:
    """n FER-2013 test faces (all classes, by name), or [] without the zip."""
    try:
        return fer_split("test", n)[0]
    except FileNotFoundError as e:
        print(f"warning: {e}: canvas photo skipped", file=sys.stderr)
        return []


def photo_jpeg() -> bytes:
    """A real 640x480 photo as JPEG: matplotlib's Grace Hopper portrait, padded to 4:3."""
    import matplotlib

    portrait = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    portrait = portrait.resize((400, 469), Image.BILINEAR)
    canvas = Image.new("RGB", (640, 480), (90, 110, 140))
    canvas.paste(portrait, (120, 5))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def canvas_jpeg(face: np.ndarray) -> bytes:
    """A FER face enlarged to 200x200 on a 640x480 gray canvas, as JPEG."""
    canvas = np.full((480, 640), 128, np.uint8)
    canvas[140:340, 220:420] = np.asarray(Image.fromarray(face).resize((200, 200), Image.BILINEAR))
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def batch_crops(n: int) -> tuple[np.ndarray, str]:
    """n FER-2013 test faces, else n crops of random pixels (without the zip), and which."""
    try:
        return np.stack(fer_split("test", n)[0]), "FER-2013 test faces"
    except FileNotFoundError as e:
        print(f"warning: {e}: batched crops are random pixels", file=sys.stderr)
        return np.random.default_rng(0).integers(0, 256, (n, 48, 48), dtype=np.uint8), "random pixels"


def bench_backend(ckpt: str, backend: str, bf16, args, canvas: bytes | None, crops: np.ndarray) -> dict:
    p = Predictor(ckpt, backend=backend, bf16=bf16 if backend == "torch" else False, tta="none", batch_size=args.batch,
                  threads=args.threads)  # one view: the cost of one forward pass per face
    singles = crops[:args.n_single]
    (t_batched, t_one), rounds = best_of_each(
        [lambda: p.predict_crops(crops), lambda: [p.predict_crops(c[None]) for c in singles]], 2 * args.repeats)
    batched, one = args.n_batched / t_batched, args.n_single / t_one
    # the same ratio within each round (batched and single timed back to back), as a check on the above
    paired = [(args.n_batched / b) / (args.n_single / o) for b, o in rounds]
    refined = 0.0
    if getattr(p.runner, "refine_below", 0):  # the share of the batched faces run again in float32
        p.runner.views = p.runner.refined = 0
        p.predict_crops(crops)
        refined = p.runner.refined / p.runner.views
    data = photo_jpeg()
    image = decode_image(data)
    gray = to_gray(image)
    boxes = p.detector.detect(gray)
    face_crops = p.find_faces(image)[1]
    return {
        "backend": backend, "model": Path(ckpt).name, "int8": str(ckpt).endswith(".int8.onnx"),
        "bf16": bool(getattr(p.runner, "bf16", False)),
        "batched_faces_per_s": batched, "single_faces_per_s": one, "batched_over_single": batched / one,
        "batched_over_single_per_round": {"median": float(np.median(paired)), "min": min(paired), "max": max(paired)},
        "canvas_ms": 1000 * best_of(lambda: p.predict([decode_image(canvas)]), args.repeats * 5) if canvas else None,
        "photo_ms": 1000 * best_of(lambda: p.predict([decode_image(data)]), args.repeats * 5),
        "decode_ms": 1000 * best_of(lambda: to_gray(decode_image(data)), args.repeats * 5),
        "detect_ms": 1000 * best_of(lambda: p.detector.detect(gray), args.repeats * 5),
        "classify_ms": 1000 * best_of(lambda: p.predict_crops(face_crops), args.repeats * 5),
        "faces_in_photo": len(boxes), "detector": p.detector.name,
        "refined_fraction": refined,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", help="checkpoint (default: the shipped model, else a random seed-cnn)")
    ap.add_argument("--versus", nargs="*", default=[],
                    help="other models' int8 files (.int8.onnx, or a .pt whose sibling it is) timed in the same run")
    ap.add_argument("--batch", type=int, default=64, help="crops per forward pass (64, the Predictor default)")
    ap.add_argument("--n-batched", type=int, default=2048)
    ap.add_argument("--n-single", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sweep-faces", type=int, default=150,
                    help="FER faces to try for the canvas photo (the detector's own benchmark is bench/detection.py)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch, onnxruntime and OpenCV (default: one per core); "
                         "1 shows what one free core gives on a busy machine")
    ap.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "predict.json"))
    args = ap.parse_args()
    if args.quick:
        args.n_batched, args.n_single, args.repeats, args.sweep_faces = 512, 50, 1, 30
    ckpt = checkpoint(args.ckpt)

    faces = fer_faces(max(args.sweep_faces, 1))
    detector = make_detector("yunet")  # the Predictor's default
    detectable = [f for f in faces if detector.detect(to_gray(decode_image(canvas_jpeg(f))))]
    canvas = canvas_jpeg(detectable[0]) if detectable else None
    crops, crops_are = batch_crops(args.n_batched)
    runs = [bench_backend(ckpt, "torch", "auto", args, canvas, crops)]
    if runs[0]["bf16"]:
        runs.append(bench_backend(ckpt, "torch", False, args, canvas, crops))
    runs.append(bench_backend(ckpt, "onnx", False, args, canvas, crops))
    int8 = Path(ckpt).with_suffix(".int8.onnx")  # `ferkit export CKPT --int8` writes it there
    if int8.is_file():
        runs.append(bench_backend(str(int8), "onnx", False, args, canvas, crops))
    if args.versus and not int8.is_file():
        print(f"warning: {ckpt} has no int8 file beside it: the ratios below are to the first --versus file",
              file=sys.stderr)
    for other in args.versus:
        other = str(Path(other).with_suffix(".int8.onnx")) if other.endswith(".pt") else other
        if not other.endswith(".int8.onnx"):
            print(f"warning: --versus {other} is not named .int8.onnx: timed, but left out of the int8 ratios",
                  file=sys.stderr)
        runs.append(bench_backend(other, "onnx", False, args, canvas, crops))
    print("\nfaces/s: 48x48 crops in batches of {} and one at a time, timed in turns (ratio: of the fastest of each; "
          "median: of the ratios within each turn); ms per 640x480 JPEG end to end: a FER face on a gray canvas, "
          "and a real portrait (decode, detect, classify)".format(args.batch))
    print(f"{'backend':<12}{'batched f/s':>12}{'single f/s':>11}{'ratio':>7}{'(median)':>9}{'canvas ms':>10}{'photo ms':>9}"
          f"{'decode':>8}{'detect':>8}{'classify':>9}")
    for r in runs:
        name = r["backend"] + (" bf16" if r["bf16"] else " fp32" if r["backend"] == "torch" else " int8" if r.get("int8") else "")
        canvas_ms = f"{r['canvas_ms']:>10.1f}" if r["canvas_ms"] is not None else f"{'-':>10}"
        print(f"{name:<12}{r['batched_faces_per_s']:>12.0f}{r['single_faces_per_s']:>11.0f}"
              f"{r['batched_over_single']:>7.1f}{r['batched_over_single_per_round']['median']:>9.1f}{canvas_ms}{r['photo_ms']:>9.1f}{r['decode_ms']:>8.1f}"
              f"{r['detect_ms']:>8.1f}{r['classify_ms']:>9.1f}  {r['model']}"
              + (f" ({r['refined_fraction']:.1%} run again in float32)" if r["refined_fraction"] else ""))
    int8_runs = [r for r in runs if r["int8"]]
    for r in int8_runs[1:]:
        print(f"int8 batched faces/s, {int8_runs[0]['model']} / {r['model']}: "
              f"{int8_runs[0]['batched_faces_per_s'] / r['batched_faces_per_s']:.2f}x ({crops_are})")

    from ferkit.runtime.device import cpu_info
    result = {"machine": cpu_info(), "checkpoint": ckpt, "batch": args.batch, "threads_arg": args.threads,
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "backends": runs, "batched_crops": crops_are,
              "detector": runs[0].get("detector")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
