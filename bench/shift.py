"""Shift benchmark: the model on FER-2013 val and test faces as real photos present them, single view.

    python bench/shift.py                                  # both shipped models -> bench/results/shift-<cpu>.json
    python bench/shift.py --models runs/x/best.pt pretrained/ferkit-recommended.pt   # candidates side by side
    python bench/shift.py --data data/fer-store --limit 500 --out /tmp/s.json     # a smoke run

FER-2013's faces are clean, centred 48x48 crops; a photo's face is framed by a detector's box, tilted,
blurred, compressed, dark, noisy, small or partly covered. Each shift below is one deterministic
function of a uint8 48x48 face and a generator seeded per (seed, shift, split, image), so that a
rerun, and every model in one run, sees the very same shifted faces. The model runs as users get it:
`ferkit.Predictor(detect=False, tta="none")`: one view, backend "auto" (on a CPU without AMX the shipped model's
int8 ONNX file; a .pt without one runs in torch). The report has macro-F1 (the headline metric) and
accuracy per model x split x shift, the share of labels unchanged from the clean face, and the mean
over the shifts (clean excluded, each shift weighted alike). Choose training augmentation on the
**val** figures; test is for reporting once.

The last shift, `photo`, is the whole photo path: the face enlarged into a 640x480 scene, found by
the default detector (YuNet) and cropped as `predict` crops it. A face the detector misses gets no
label, as in `predict`: it counts as wrong for its class (`scores`' "no answer"), and the row says
how many were found. (`bench/detection.py` measures the detectors themselves on busier scenes.)
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchio import cpu_tag, fer_zip, save_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 48
DEFAULT_MODELS = [ROOT / "pretrained" / "ferkit-recommended.pt", ROOT / "pretrained" / "ferkit-e0-baseline.pt"]
EYES_Y, MOUTH_Y = 18.3, 35.0  # rows of the eyes and the mouth in FER-2013's framing (ferkit.infer.faces.FER_LANDMARKS)


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    """PIL bilinear, what ferkit.data and the Predictor's crops use (it averages when it shrinks)."""
    return np.asarray(Image.fromarray(img, "L").resize((side, side), Image.BILINEAR), dtype=np.uint8)


def clean(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """No shift: the reference row."""
    return img.copy()


def framing(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A detector's box that differs from the dataset's: side 0.8-1.3 x the face's (above 1 the face
    is smaller in the frame, below 1 cut), centre moved by up to 10% of the side each way. Outside
    the face the border pixels are repeated, as `crop_face` pads a box that leaves the photo; the
    box is cut and resized to 48 with PIL bilinear, as `predict` does."""
    side = int(round(SIZE * rng.uniform(0.8, 1.3)))
    dx, dy = np.round(rng.uniform(-0.1, 0.1, 2) * SIZE).astype(int)
    pad = SIZE
    big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    x0, y0 = pad + SIZE // 2 + dx - side // 2, pad + SIZE // 2 + dy - side // 2
    return _resize(np.ascontiguousarray(big[y0:y0 + side, x0:x0 + side]), SIZE)


def rotation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tilted head: rotation by U(-20, 20) degrees about the centre, bilinear, border repeated."""
    m = cv2.getRotationMatrix2D(((SIZE - 1) / 2, (SIZE - 1) / 2), rng.uniform(-20, 20), 1.0)
    return cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus or motion softness: Gaussian blur, sigma U(1.0, 1.5) px at 48 px."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(1.0, 1.5), borderType=cv2.BORDER_REPLICATE)


def jpeg20(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A heavily compressed upload: re-encoded as JPEG quality 20 (8x8 blocks, lost detail)."""
    buf = io.BytesIO()
    Image.fromarray(img, "L").save(buf, format="JPEG", quality=20)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=np.uint8)


def gamma(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dim indoor light, or a camera's curve undone: gamma 2.2 (x^2.2), which darkens the mid-tones
    and crushes the shadows while leaving white white."""
    return np.round(255.0 * (img / 255.0) ** 2.2).astype(np.uint8)


def dim(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An underexposed photo: brightness x 0.4 (contrast too, and 2.5x coarser grey levels)."""
    return np.round(img * 0.4).astype(np.uint8)


def noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise of a small or dark face: Gaussian, sigma 10 grey levels per pixel, clipped."""
    return np.clip(np.round(img + rng.normal(0.0, 10.0, img.shape)), 0, 255).astype(np.uint8)


def lowres(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small face in the photo: 24x24 px, enlarged to 48 as `predict` enlarges a small crop."""
    return _resize(_resize(img, 24), SIZE)


def _bar(img: np.ndarray, rng: np.random.Generator, centre: float) -> np.ndarray:
    """A 10-px band across the face at `centre` (+-2 px), of one grey level U(0, 255): sunglasses,
    a hand, a mask, a microphone."""
    out = img.copy()
    top = int(round(centre - 5 + rng.uniform(-2, 2)))
    out[max(top, 0):top + 10] = rng.integers(0, 256)
    return out


def occlude_eyes(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bar over the eyes (sunglasses, hair, a hand)."""
    return _bar(img, rng, EYES_Y)


def occlude_mouth(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bar over the mouth (a hand, a mask, a microphone)."""
    return _bar(img, rng, MOUTH_Y)


MISSED = np.zeros((SIZE, SIZE), np.uint8)  # `photo`'s crop where the detector found no face: scored as no answer
_DETECTOR = []  # the default detector, made once (loading YuNet takes a moment)


def photo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole photo path: the face enlarged to 120-300 px, pasted (feathered edges) at a random
    place of a 640x480 scene (a procedural background of bench/scenes.py, normal light), found by the
    default detector (YuNet, `ferkit.infer.detectors`) and cropped as `predict` crops it; the found face
    that overlaps the pasted one most (IoU >= 0.4). None found: an all-black crop (`MISSED`)."""
    from scenes import BACKGROUNDS, HEIGHT, WIDTH, background, iou, paste

    from ferkit.infer.detectors import make_detector
    from ferkit.infer.faces import face_crop

    if not _DETECTOR:
        _DETECTOR.append(make_detector("yunet"))
    detector = _DETECTOR[0]
    side = int(rng.integers(120, 301))
    box = (int(rng.integers(0, WIDTH - side + 1)), int(rng.integers(0, HEIGHT - side + 1)), side, side)
    canvas = background(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], rng)
    paste(canvas, img, box, 0.0)
    scene = np.clip(canvas, 0, 255).astype(np.uint8)
    found = [(iou(box, f.box), k, f) for k, f in enumerate(detector.detect_faces(scene))]
    best = max(found, default=None, key=lambda t: t[:2])
    if best is None or best[0] < 0.4:
        return MISSED.copy()
    return face_crop(scene, best[2], detector.margin, detector.align)


SHIFTS = {"clean": clean, "framing": framing, "rotation": rotation, "blur": blur, "jpeg20": jpeg20,
          "gamma": gamma, "dim": dim, "noise": noise, "lowres": lowres,
          "occlude-eyes": occlude_eyes, "occlude-mouth": occlude_mouth, "photo": photo}


def rng_for(seed: int, shift: str, split: str, index: int) -> np.random.Generator:
    """The draw of one image: fixed by the seed, the shift's and split's names (crc32, so adding a
    shift changes no other) and the image's index in its split."""
    return np.random.default_rng([seed, zlib.crc32(shift.encode()), zlib.crc32(split.encode()), index])


def apply_shift(shift: str, images: np.ndarray, seed: int = 0, split: str = "val") -> np.ndarray:
    """uint8 (N, 48, 48) -> the same faces under `shift`, each with its own seeded draw."""
    fn = SHIFTS[shift]
    return np.stack([fn(im, rng_for(seed, shift, split, i)) for i, im in enumerate(images)]) if len(images) \
        else images.copy()


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, macro-F1 and per-class F1 (sklearn's definitions, zero_division 0), in numpy so
    that an install without scikit-learn runs this too. A prediction equal to `n_classes` is no
    answer (a face the detector missed): wrong for its true class, and no class's false positive."""
    k = n_classes + 1
    cm = np.bincount(y_true * k + y_pred, minlength=k ** 2).reshape(k, k)[:n_classes, :n_classes]
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + np.bincount(y_true, minlength=n_classes)[:n_classes]
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return {"macro_f1": float(f1.mean()), "accuracy": float(tp.sum() / max(len(y_true), 1)),
            "per_class_f1": [round(float(v), 4) for v in f1]}


def describe_file(path: str) -> dict:
    """The file a model ran as, with its size and sha256 prefix (which int8 export, which weights)."""
    p = Path(path)
    if not p.is_file():
        return {"file": path}
    rel = str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p)
    return {"file": rel, "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()[:16]}


def run_model(model: str, shifted: dict, labels: dict, class_names: list[str], backend: str,
              threads: int | None) -> dict:
    """One model over every split x shift, with the Predictor as users run it (single view)."""
    from ferkit.infer import Predictor

    p = Predictor(model, backend=backend, detect=False, tta="none", threads=threads)
    if sorted(p.class_names) != sorted(class_names):
        raise SystemExit(f"{model}: its classes {p.class_names} are not the data's {class_names}")
    to_data = np.array([class_names.index(c) for c in p.class_names])  # model's class order -> data's
    info = p.describe()
    out = {"model": model, "name": Path(model).stem, "backend": info["backend"], "bf16": info["bf16"],
           "threads": info["threads"], "ran_as": describe_file(p.checkpoint), "splits": {}}
    start = time.perf_counter()
    for split, by_shift in shifted.items():
        rows, clean_pred = {}, None
        for shift, faces in by_shift.items():
            pred = to_data[p.predict_crops(faces).argmax(1)]
            missed = (faces == 0).all(axis=(1, 2)) if shift == "photo" else np.zeros(len(faces), bool)
            pred[missed] = len(class_names)  # no face found: no answer
            clean_pred = pred if shift == "clean" else clean_pred
            rows[shift] = scores(labels[split], pred, len(class_names))
            if shift == "photo":
                rows[shift]["faces_found"] = round(float(1 - missed.mean()), 4)
            if clean_pred is not None:
                rows[shift]["same_label_as_clean"] = round(float((pred == clean_pred).mean()), 4)
        shifts = [s for s in rows if s != "clean"]
        if shifts:
            rows["mean_over_shifts"] = {m: float(np.mean([rows[s][m] for s in shifts]))
                                         for m in ("macro_f1", "accuracy", "same_label_as_clean")}
        out["splits"][split] = rows
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["faces_per_s"] = round(sum(len(f) for s in shifted.values() for f in s.values()) / max(out["seconds"], 1e-9))
    return out


def format_table(models: list[dict], metric: str = "macro_f1") -> str:
    """Rows: shifts, then their mean; per model: val, test, and val - clean (how much the shift costs)."""
    splits = list(models[0]["splits"])
    shifts = list(models[0]["splits"][splits[0]])
    width = 8 * len(splits) + 11
    head = f"{'shift':<15}" + "".join(f"| {m['name'][:width - 1]:<{width}}" for m in models)
    sub = f"{'':<15}" + "".join("| " + "".join(f"{s:>8}" for s in splits) + f"{'val-clean' if 'val' in splits else '':>11}"
                                for _ in models)
    lines = [head, sub]
    for shift in shifts:
        cells = ""
        for m in models:
            r = m["splits"]
            cells += "| " + "".join(f"{r[s][shift][metric]:>8.3f}" for s in splits)
            gap = r["val"][shift][metric] - r["val"]["clean"][metric] if "val" in splits else None
            cells += f"{gap:>+11.3f}" if gap is not None and shift != "clean" else f"{'':>11}"
        lines.append(f"{'mean of shifts' if shift == 'mean_over_shifts' else shift:<15}" + cells)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=[str(m) for m in DEFAULT_MODELS],
                    help="checkpoints (.pt) or .onnx files (default: the two shipped models)")
    ap.add_argument("--data", help="FER-2013 zip, folder, csv or prepared store (default: benchio.fer_zip())")
    ap.add_argument("--splits", nargs="+", default=["val", "test"], choices=["train", "val", "test"])
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=list(SHIFTS))
    ap.add_argument("--seed", type=int, default=0, help="the shifts' random draws (0)")
    ap.add_argument("--limit", type=int,
                    help="only N faces of each split, evenly spaced (a smoke run; the store is sorted by class)")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"], help="as Predictor's (auto)")
    ap.add_argument("--threads", type=int, help="model threads (default: the libraries')")
    ap.add_argument("--out", help="JSON (default bench/results/shift-<cpu>.json)")
    args = ap.parse_args(argv)
    from ferkit.data import DataError, load_data
    from ferkit.runtime.device import cpu_info

    machine, load_start, started = cpu_info(), os.getloadavg(), time.perf_counter()
    source = args.data or fer_zip()
    try:
        data = load_data(source, log=lambda line: None)
    except DataError as e:
        raise SystemExit(f"{e} (set FERKIT_DATA_ZIP or pass --data)") from None
    shifts = ["clean"] + [s for s in args.shifts if s != "clean"]
    labels, shifted = {}, {}
    t0 = time.perf_counter()
    for split in args.splits:
        part = data.splits[split]
        keep = np.unique(np.linspace(0, len(part) - 1, min(args.limit, len(part))).round().astype(int)) \
            if args.limit else slice(None)
        images, labels[split] = part.images[keep], np.asarray(part.labels[keep], dtype=np.int64)
        shifted[split] = {s: apply_shift(s, images, args.seed, split) for s in shifts}
    shift_seconds = time.perf_counter() - t0
    models = [run_model(m, shifted, labels, data.class_names, args.backend, args.threads) for m in args.models]
    stems = [m["name"] for m in models]
    for m in models:  # runs/a/best.pt and runs/b/best.pt: named a/best and b/best
        m["name"] = f"{Path(m['model']).parent.name}/{m['name']}" if stems.count(m["name"]) > 1 else m["name"]

    n = {s: len(labels[s]) for s in args.splits}
    print(f"\nmacro-F1, single view, {', '.join(f'{s} {k:,}' for s, k in n.items())} faces, seed {args.seed}; "
          f"{machine['cpu_model']}, load {os.getloadavg()[0]:.1f}")
    for m in models:
        print(f"  {m['name']}: {m['backend']}{' bf16' if m['bf16'] else ''} ({m['ran_as']['file']}), "
              f"{m['seconds']} s, {m['faces_per_s']:,} faces/s")
    print(format_table(models, "macro_f1"))
    print("\naccuracy")
    print(format_table(models, "accuracy"))
    report = {"machine": machine, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["python", "bench/shift.py"] + (argv if argv is not None else sys.argv[1:])),
              "data": str(source), "faces": n, "class_names": data.class_names,
              "class_counts": {s: np.bincount(labels[s], minlength=len(data.class_names)).tolist() for s in n},
              "seed": args.seed, "tta": "none", "detect": False,
              "shifts": {s: " ".join(SHIFTS[s].__doc__.split()) for s in shifts},
              "mean_over_shifts": "the unweighted mean of every shift's figure, clean excluded",
              "shift_seconds": round(shift_seconds, 1), "seconds": round(time.perf_counter() - started, 1),
              "load_average": {"start": load_start, "end": os.getloadavg()}, "models": models}
    save_report(report, args.out or ROOT / "bench" / "results" / f"shift-{cpu_tag(machine)}.json")
    return report


if __name__ == "__main__":
    main()
