"""Video with face tracking: frames/s with 1 and 4 faces, and identity switches when two faces cross.

    python bench/video.py                 # writes bench/results/video.json
    python bench/video.py --quick         # shorter clips (a smoke run; its test uses it)

Clips are made here: FER-2013 test faces (from the shared zip, else random textures, which the Haar
cascade does not find: then only the --no-detect rows mean anything) enlarged to 120 px and moving
over a 640x480 gray background, written as MJPG .avi. Each clip is run through
`ferkit.infer.video.track_video` as `ferkit predict CLIP` does (every frame, batches of 32 faces),
with detection on every frame (`--detect-every 1`, what ferkit did before tracking) and on every
5th frame (the default). frames/s counts everything: decoding, detection, following, cropping,
classification. Identity switches: for each true face, how often the track id covering it
(IoU >= 0.3) changes from one frame to the next, over the clip where two faces cross.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchio import save_report  # noqa: E402
from predict import checkpoint, fer_faces  # noqa: E402  (the same faces and model as bench/predict.py)

from ferkit.infer import Predictor  # noqa: E402
from ferkit.infer.tracking import iou  # noqa: E402
from ferkit.infer.video import track_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIDE = 120


def detectable(faces: list[np.ndarray], want: int) -> list[np.ndarray]:
    """The first `want` faces the default detector finds when enlarged on the background."""
    from ferkit.infer.detectors import make_detector

    det, out = make_detector("yunet"), []
    for f in faces:
        canvas = np.full((480, 640), 128, np.uint8)
        canvas[100:100 + SIDE, 100:100 + SIDE] = np.asarray(Image.fromarray(f).resize((SIDE, SIDE), Image.BILINEAR))
        if any(iou(b, (100, 100, SIDE, SIDE)) > 0.3 for b in det.detect(canvas)):
            out.append(f)
        if len(out) == want:
            break
    return out


def make_clip(path: Path, faces: list[np.ndarray], paths: list, frames: int) -> list[list[tuple]]:
    """Write a clip where face i follows paths[i](t) -> (x, y); returns the true boxes per frame."""
    big = [np.asarray(Image.fromarray(f).resize((SIDE, SIDE), Image.BILINEAR)) for f in faces]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    truth = []
    for t in range(frames):
        canvas = np.full((480, 640), 128, np.uint8)
        boxes = []
        for face, where in zip(big, paths):
            x, y = (int(round(v)) for v in where(t / max(1, frames - 1)))
            canvas[y:y + SIDE, x:x + SIDE] = face
            boxes.append((x, y, SIDE, SIDE))
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
        truth.append(boxes)
    writer.release()
    return truth


def run(predictor: Predictor, clip: Path, detect_every: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    rows = list(track_video(predictor, clip, every=1, detect_every=detect_every, window=5))
    return time.perf_counter() - start, rows


def switches(rows: list[dict], truth: list[list[tuple]]) -> tuple[int, float]:
    """(identity switches, fraction of true face-frames covered by some track)."""
    by_frame: dict[int, list[dict]] = {}
    for r in rows:
        if r.get("faces"):
            by_frame.setdefault(r["frame"], []).append(r)
    count, covered, last = 0, 0, {}
    for t, boxes in enumerate(truth):
        for k, box in enumerate(boxes):
            best = max(by_frame.get(t, []), key=lambda r: iou(tuple(r["box"]), box), default=None)
            if best is None or iou(tuple(best["box"]), box) < 0.3:
                continue
            covered += 1
            if k in last and last[k] != best["track"]:
                count += 1
            last[k] = best["track"]
    return count, covered / sum(len(b) for b in truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", help="checkpoint (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=300, help="frames per clip (300 = 10 s at 30 frames/s)")
    ap.add_argument("--quick", action="store_true", help="60-frame clips")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "video.json"))
    args = ap.parse_args()
    frames = 60 if args.quick else args.frames
    from ferkit.runtime.device import cpu_info, describe_cpu

    print(f"cpu: {describe_cpu()}", flush=True)
    faces = detectable(fer_faces(60), 4)
    real = len(faces) == 4
    if not real:
        rng = np.random.default_rng(0)
        faces = [rng.integers(0, 255, (48, 48)).astype(np.uint8) for _ in range(4)]
        print("warning: no FER faces the cascade finds: clips use random textures", file=sys.stderr)
    predictor = Predictor(checkpoint(args.ckpt), tta="none")  # one view per face
    tmp = Path(tempfile.mkdtemp())
    drift = lambda x0, y0, dx, dy: (lambda s: (x0 + dx * s, y0 + dy * s))
    clips = {
        "1 face": ([faces[0]], [drift(60, 100, 400, 150)]),
        "4 faces": (faces, [drift(20, 20, 120, 60), drift(340, 20, 120, 60), drift(20, 260, 120, 60),
                            drift(340, 260, 120, 60)]),
        "2 faces crossing": (faces[:2], [drift(20, 150, 480, 30), drift(500, 190, -480, -30)]),
    }
    report = {"machine": cpu_info() | {"python": platform.python_version(), "torch": torch.__version__,
                                       "threads": torch.get_num_threads(),
                                       "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
              "load_avg_start": os.getloadavg(), "command": " ".join(["python", "bench/video.py", *sys.argv[1:]]),
              "faces": "FER-2013 test faces" if real else "random textures", "frames": frames, "clips": {}}
    for name, (clip_faces, paths) in clips.items():
        path = tmp / f"{name.replace(' ', '_')}.avi"
        truth = make_clip(path, clip_faces, paths, frames)
        for detect_every in (1, 5):
            run(predictor, path, detect_every)  # warm-up (and the file in the page cache)
            seconds, rows = run(predictor, path, detect_every)
            n_switch, coverage = switches(rows, truth)
            key = f"{name}, detect every {detect_every}"
            report["clips"][key] = {"frames_per_s": frames / seconds, "identity_switches": n_switch,
                                    "coverage": coverage, "tracks": len({r["track"] for r in rows if "track" in r})}
            print(f"{key:<32} {frames / seconds:7.1f} frames/s  switches {n_switch}  coverage {coverage:.2f}  "
                  f"tracks {report['clips'][key]['tracks']}", flush=True)
    report["load_avg_end"] = os.getloadavg()
    save_report(report, args.out)


if __name__ == "__main__":
    main()
