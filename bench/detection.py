"""Face detection benchmark: recall, precision and ms per 640x480 image for each detector and
setting, and expression accuracy with and without alignment, on scenes made from FER-2013 faces.

    python bench/detection.py                     # 300 scenes from val faces -> bench/results/detection-<cpu>.json
    python bench/detection.py --scenes 40 --quick # a smoke run
    python bench/detection.py --template          # where YuNet puts the landmarks on train faces (faces.FER_LANDMARKS)

The scenes (`bench/scenes.py`) are remade from the shared data at each run, from a seed: FER faces
of 40-240 px, half rotated by up to 30 degrees, a fifth partly covered, 1-4 per image, on four
kinds of background under four lightings; nothing derived from the data is written. A detection is
a hit when its box has IoU >= 0.4 with a true face (one to one, best first): detectors frame faces
a little differently, and 0.4 still demands the right place and size. Faces come from **val** by
default, because this benchmark chooses ferkit's default detector, its settings and alignment.
Detection is timed in this process on one thread (OpenCV's and ONNX Runtime's; what `ferkit
serve` uses), each setting over the same scenes in turn; times depend on what else the machine runs (load recorded).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchio import CLASSES, cpu_tag, fer_split, save_report  # noqa: E402
from scenes import make_scenes, match  # noqa: E402

from ferkit.infer.detectors import YUNET_FILE, YuNet, make_detector  # noqa: E402
from ferkit.infer.faces import crop_face, face_crop  # noqa: E402


class OpenCVYuNet(YuNet):
    """The same YuNet run by OpenCV's dnn (`cv2.FaceDetectorYN`, what ferkit used before): for the
    time it takes; its faces are ferkit's (tests/test_faces.py)."""

    name = "yunet (OpenCV dnn)"

    def raw_faces(self, bgr: np.ndarray) -> np.ndarray:
        if getattr(self, "_cv", None) is None:
            self._cv = cv2.FaceDetectorYN.create(str(YUNET_FILE), "", (bgr.shape[1], bgr.shape[0]),
                                                 self.score_threshold, self.nms_threshold, 5000)
        self._cv.setInputSize((bgr.shape[1], bgr.shape[0]))
        rows = self._cv.detect(bgr)[1]
        return np.zeros((0, 15), np.float32) if rows is None else rows

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [  # (detector, settings): the defaults first
    ("yunet", {}), ("yunet", {"score_threshold": 0.8}), ("yunet", {"score_threshold": 0.6}),
    ("yunet", {"score_threshold": 0.5}), ("yunet", {"score_threshold": 0.3}),
    ("yunet", {"max_side": 480}), ("yunet", {"max_side": 480, "score_threshold": 0.3}), ("yunet", {"max_side": 320}),
    ("haar", {}), ("haar", {"scale_factor": 1.1, "min_face": 30}), ("haar", {"scale_factor": 1.3}),
    ("yunet (OpenCV dnn)", {}),
]


def label(name: str, settings: dict) -> str:
    return name + (" " + ", ".join(f"{k} {v}" for k, v in settings.items()) if settings else " (default)")


def evaluate(scenes, detector, threshold: float = 0.4) -> dict:
    """Recall (overall and by condition), precision and ms per image of one detector on the scenes."""
    hits = found_total = 0
    by = defaultdict(lambda: [0, 0])  # condition -> [hits, faces]
    seconds, detections = 0.0, []
    for s in scenes:
        start = time.perf_counter()
        found = detector.detect_faces(s.image)
        seconds += time.perf_counter() - start
        pairs = match([f.box for f in s.faces], [f.box for f in found], threshold)
        hit = {i for i, _ in pairs}
        hits += len(pairs)
        found_total += len(found)
        detections.append((found, pairs))
        for i, face in enumerate(s.faces):
            side = face.box[2]
            for cond in (f"size {'<64' if side < 64 else '64-150' if side <= 150 else '>150'} px",
                         "rotated" if face.angle else "upright", "occluded" if face.occluded else "not occluded",
                         f"light: {s.lighting}", f"background: {s.background}"):
                by[cond][0] += i in hit
                by[cond][1] += 1
    faces = sum(len(s.faces) for s in scenes)
    return {"faces": faces, "recall": hits / faces, "precision": hits / found_total if found_total else None,
            "false_faces": found_total - hits, "ms_per_image": 1000 * seconds / len(scenes),
            "recall_by": {k: v[0] / v[1] for k, v in sorted(by.items())}, "_detections": detections}


def expression_accuracy(scenes, detections, predictor) -> dict:
    """Accuracy and macro-F1 of the shipped model on the faces a detector found, three ways: the true
    box, the detected box, and the detection aligned on its landmarks."""
    from ferkit.metrics import compute_metrics
    from ferkit.report.stats import mcnemar, paired_bootstrap

    crops = {"true box": [], "detected box": [], "aligned": []}
    labels = []
    for s, (found, pairs) in zip(scenes, detections):
        for i, j in pairs:
            labels.append(s.faces[i].label)
            crops["true box"].append(crop_face(s.image, s.faces[i].box, 0.0))
            crops["detected box"].append(face_crop(s.image, found[j], predictor.detector.margin, align=False))
            crops["aligned"].append(face_crop(s.image, found[j], predictor.detector.margin, align=True))
    out, preds, y = {"faces": len(labels)}, {}, np.array(labels)
    for way, c in crops.items():
        preds[way] = predictor.predict_crops(np.stack(c)).argmax(1)
        m = compute_metrics(y, preds[way], CLASSES)
        out[way] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    # Does alignment help? Paired over the same faces: a bootstrap interval on each metric, McNemar on accuracy.
    out["aligned - detected box"] = {
        metric: paired_bootstrap(y, preds["aligned"], preds["detected box"], CLASSES, metric=metric, n_boot=2000)
        for metric in ("accuracy", "macro_f1")} | {"mcnemar": mcnemar(y, preds["aligned"], preds["detected box"])}
    return out


def template(n: int) -> dict:
    """Median YuNet landmarks on n random train faces, in 48x48 pixels (each face enlarged 4x on a
    canvas bordered by repeating its edge, so that YuNet sees a face of ~190 px with context)."""
    faces, _ = fer_split("train", n)
    detector, k, pts = make_detector("yunet", score_threshold=0.5, min_face=10), 4, []
    for f in faces:
        big = cv2.copyMakeBorder(cv2.resize(f, (48 * k, 48 * k), interpolation=cv2.INTER_CUBIC), *[48 * k] * 4,
                                 cv2.BORDER_REPLICATE)
        found = detector.detect_faces(big)
        if found:
            lm = (found[0].landmarks - 48 * k) / k
            if np.all((lm > -5) & (lm < 53)):
                pts.append(lm)
    med = np.median(np.array(pts), 0)
    print(f"YuNet found {len(pts)} of {n} train faces; median landmarks (48x48 px):")
    print(np.array2string(np.round(med, 2), separator=", "))
    return {"faces": n, "found": len(pts), "median_landmarks": np.round(med, 2).tolist()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=300, help="640x480 scenes (300)")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"], help="faces from (val)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="only the default of each detector")
    ap.add_argument("--template", action="store_true", help="print YuNet's median landmarks on 1,000 train faces")
    ap.add_argument("--out", help="JSON (default bench/results/detection-<cpu>.json)")
    args = ap.parse_args(argv)
    from ferkit.runtime.device import cpu_info

    if args.template:
        return template(1000)
    cv2.setNumThreads(1)
    machine = cpu_info()
    try:
        faces, labels = fer_split(args.split, 2000, args.seed)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    scenes = make_scenes(faces, labels, args.scenes, args.seed)
    settings = [s for s in SETTINGS if not s[1]] if args.quick else SETTINGS
    detectors = [OpenCVYuNet(**kw) if name == OpenCVYuNet.name else make_detector(name, **kw) for name, kw in settings]
    for d in detectors:  # load each network once before timing
        d.detect_faces(scenes[0].image)
    rows = [evaluate(scenes, d) | {"detector": label(name, kw)} for d, (name, kw) in zip(detectors, settings)]

    from ferkit.infer import Predictor
    predictor = Predictor(threads=1, tta="none")  # single view, as measured in docs/INFERENCE.md
    accuracy = {r["detector"]: expression_accuracy(scenes, r["_detections"], predictor)
                for r in rows if r["detector"] in ("yunet (default)", "haar (default)")}
    n_faces = rows[0]["faces"]
    print(f"{args.scenes} scenes of 640x480, {n_faces} FER {args.split} faces; "
          f"{machine['cpu_model']}, OpenCV on 1 thread, load {os.getloadavg()[0]:.1f}")
    print(f"{'detector':<40}{'recall':>7}{'precision':>10}{'false':>6}{'ms/img':>8}")
    for r in rows:
        prec = f"{r['precision']:.3f}" if r["precision"] is not None else "-"
        print(f"{r['detector']:<40}{r['recall']:>7.3f}{prec:>10}{r['false_faces']:>6}{r['ms_per_image']:>8.1f}")
    conds = list(rows[0]["recall_by"])
    print("\nrecall by condition: " + " | ".join(f"{r['detector']}" for r in rows if r["detector"].endswith("(default)")))
    for c in conds:
        print(f"  {c:<26}" + "".join(f"{r['recall_by'][c]:>8.3f}" for r in rows if r["detector"].endswith("(default)")))
    print("\nexpression (shipped model) on the faces each detector found:")
    for name, a in accuracy.items():
        print(f"  {name:<18} {a['faces']} faces: " + ", ".join(
            f"{way} acc {a[way]['accuracy']:.3f} macro-F1 {a[way]['macro_f1']:.3f}" for way in ("true box", "detected box", "aligned")))
        d = a["aligned - detected box"]
        print(f"  {'':<18} aligned - detected box: " + ", ".join(
            f"{m} {d[m]['diff']:+.3f} [{d[m]['low']:+.3f}, {d[m]['high']:+.3f}]" for m in ("accuracy", "macro_f1"))
              + f", McNemar p {d['mcnemar']['p_value']:.3f}")
    report = {"machine": machine, "command": " ".join(["python", "bench/detection.py"] + (argv if argv is not None else sys.argv[1:])),
              "split": args.split, "seed": args.seed, "scenes": args.scenes, "faces": n_faces, "iou_threshold": 0.4,
              "opencv": cv2.__version__, "opencv_threads": 1, "load_average": os.getloadavg(),
              "detectors": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
              "expression": accuracy}
    save_report(report, args.out or ROOT / "bench" / "results" / f"detection-{cpu_tag(machine)}.json")
    return report


if __name__ == "__main__":
    main()
