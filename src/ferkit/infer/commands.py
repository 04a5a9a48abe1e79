"""`ferkit predict`, `ferkit export` and `ferkit serve`: argument parsers and runners for cli.py.

This module is imported whenever the `ferkit` parser is built, so it imports nothing heavy at
the top: torch, OpenCV, onnxruntime and FastAPI load inside the runners.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterator, TextIO

from ferkit.tta import TTA_MODES
from ferkit.data.images import MAX_PIXELS
from ferkit.data.store import IMAGE_SIZE

CHUNK = 32  # images (or video frames) classified together


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", help="checkpoint (.pt) or, with --backend onnx, a .onnx (default: the shipped model)")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: torch in bfloat16 on a CPU with AMX, else the model's int8 ONNX file when there "
                        "is one (the shipped model has), else torch")
    p.add_argument("--tta", nargs="?", const="flip", default="none", choices=TTA_MODES,
                   help="test-time augmentation: flip (the bare flag) averages the face and its mirror; "
                        "crops averages 10 views (10x slower), as the shipped models' cards")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 autocast (torch backend): auto = where the CPU runs it natively")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend)")
    p.add_argument("--detector", choices=["yunet", "haar"], default="yunet",
                   help="face detector: yunet (a small CNN, shipped inside ferkit) or haar (OpenCV's 2001 cascade)")
    p.add_argument("--align", action="store_true",
                   help="yunet: rotate and scale each face by its eyes and nose to the training images' framing, "
                        "instead of cropping its box (no measured gain: docs/INFERENCE.md)")
    p.add_argument("--min-face", type=int, default=None, help="smallest face side in pixels (yunet 20, haar 48)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="yunet: keep faces scored at least this, 0..1 (0.4; lower finds more, and more false faces)")
    p.add_argument("--max-side", type=int, default=None,
                   help="images longer than this are shrunk for detection only (yunet 640, haar 1024); "
                        "320 is 3.5x faster and still finds faces of 60 px and more")
    p.add_argument("--scale-factor", type=float, default=None,
                   help="haar: face size step: 1.1 finds more small faces, ~2.5x slower (1.2)")
    p.add_argument("--margin", type=float, default=None, help="crop margin per side, fraction of the face (0.02)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the model and detector (default: one per core; serve: 1)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help=f"refuse images of more pixels than this, read from the header before decoding "
                        f"(decompression bombs; {MAX_PIXELS:,})")


def make_predictor(args: argparse.Namespace, detect: bool = True) -> Any:
    """A Predictor from the shared model arguments."""
    from .predictor import DEFAULT_MARGIN, Predictor

    bf16 = {"auto": "auto", "on": True, "off": False}[args.bf16]
    margin = DEFAULT_MARGIN if args.margin is None else args.margin
    return Predictor(args.ckpt, backend=args.backend, detect=detect, tta=args.tta, device=args.device,
                     bf16=bf16, margin=margin, detector=args.detector, align=args.align,
                     score_threshold=args.score_threshold, scale_factor=args.scale_factor, min_face=args.min_face,
                     max_side=args.max_side,
                     threads=args.threads)


# ---------------------------------------------------------------- predict

def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="images, videos, folders (searched recursively) or globs")
    _add_model_args(p)
    p.add_argument("--no-detect", action="store_true", help="each image is already a face crop")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="output format (jsonl)")
    p.add_argument("--out", help="output file (default: standard output)")
    p.add_argument("--annotate", metavar="DIR", help="save copies of the images with boxes and labels here")
    p.add_argument("--every", type=int, default=1, help="videos: process every N-th frame (1: all)")
    p.add_argument("--detect-every", type=int, default=5,
                   help="videos: run the face detector on every K-th processed frame and follow the faces in between (5)")
    p.add_argument("--smooth", type=int, default=5,
                   help="videos: average each tracked face's probabilities over its last N frames (5; 1 = off)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class RowWriter:
    """One row per face (or per image without faces, or per error) as JSON lines or CSV."""

    def __init__(self, stream: TextIO, fmt: str, class_names: list[str]):
        self.stream, self.fmt, self.class_names = stream, fmt, class_names
        self.columns = ["file", "frame", "time_s", "track", "faces", "face", "x", "y", "w", "h", "label", "score",
                        *[f"p_{c}" for c in class_names], "message", "error"]
        self.csv = csv.DictWriter(stream, self.columns, extrasaction="raise") if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.csv is None:
            self.stream.write(json.dumps(row) + "\n")
            return
        flat = {k: v for k, v in row.items() if k not in ("box", "probs")}
        if "box" in row:
            flat.update(zip("xywh", row["box"]))
            flat.update({f"p_{c}": row["probs"][c] for c in self.class_names})
        self.csv.writerow(flat)


CROP_SIDE = 96  # an image this small with no face found is most likely a face crop already


def face_rows(base: dict, faces: list[dict], shape: tuple[int, ...] | None = None) -> Iterator[dict]:
    """Output rows of one image: one per face, or one saying that no face was found (with a hint to
    use --no-detect when the image is as small as a face crop: the detector needs context around a face)."""
    if not faces:
        small = shape is not None and max(shape[:2]) <= CROP_SIDE
        hint = f" (a {shape[1]}x{shape[0]} image looks like a face crop already: try --no-detect)" if small else ""
        yield {**base, "faces": 0, "message": "no face found" + hint}
    for i, f in enumerate(faces):
        yield {**base, "faces": len(faces), "face": i, "box": f["box"], "label": f["label"],
               "score": round(f["score"], 6), "probs": {c: round(p, 6) for c, p in f["probs"].items()}}


def run_predict(args: argparse.Namespace) -> int:
    """Predict every input; returns 0 when at least one input was processed, else 1."""
    from tqdm import tqdm

    from .io import IMAGE_EXTS, VIDEO_EXTS, ImageReadError, collect_inputs, is_video, load_image

    if min(args.every, args.detect_every, args.smooth) < 1:
        print("ferkit predict: error: --every, --detect-every and --smooth must be >= 1", file=sys.stderr)
        return 2
    files, missing, skipped = collect_inputs(args.paths)
    if skipped:
        print(f"ferkit predict: ignored {skipped} file(s) in folders that are neither images nor videos", file=sys.stderr)
    if not files and not missing:
        print(f"ferkit predict: error: no image or video file in {', '.join(args.paths)} (looked for "
              f"{', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))})", file=sys.stderr)
        return 2
    try:
        predictor = make_predictor(args, detect=not args.no_detect)
    except ValueError as e:
        print(f"ferkit predict: error: {e}", file=sys.stderr)
        return 2
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    writer = RowWriter(out, args.format, predictor.class_names)
    annotate_dir, used = (Path(args.annotate), set()) if args.annotate else (None, set())
    done = 0
    try:
        for arg, error in missing:
            writer.write({"file": arg, "error": error})
        images = [f for f in files if not is_video(f)]
        videos = [f for f in files if is_video(f)]
        bar = tqdm(total=len(files), unit="file", file=sys.stderr, disable=args.quiet or len(files) < 2)
        for start in range(0, len(images), CHUNK):
            loaded = []
            for path in images[start:start + CHUNK]:
                try:
                    loaded.append((path, load_image(path, args.max_pixels)))
                except ImageReadError as e:
                    writer.write({"file": str(path), "error": str(e)})
            results = predictor.predict([im for _, im in loaded]) if loaded else []
            for (path, image), faces in zip(loaded, results):
                for row in face_rows({"file": str(path)}, faces, image.shape):
                    writer.write(row)
                if annotate_dir is not None:
                    save_annotated_image(image, faces, annotate_dir, path.name, used)
            done += len(loaded)
            bar.update(len(images[start:start + CHUNK]))
        for path in videos:
            video_out = None if annotate_dir is None else annotate_dir / _unique(f"{path.stem}.mp4", used)
            done += predict_video(predictor, path, args, writer, video_out)
            bar.update(1)
        bar.close()
    finally:
        if out is not sys.stdout:
            out.close()
    return 0 if done else 1


def save_annotated_image(image: Any, faces: list[dict], out_dir: Path, name: str, used: set[str]) -> None:
    from .draw import save_annotated

    save_annotated(image, faces, out_dir, name, used)


def _unique(name: str, used: set[str]) -> str:
    """`name`, or name_1, name_2 ... when a run writes that name already."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, k = name, 0
    while candidate in used:
        k += 1
        candidate = f"{stem}_{k}{suffix}"
    used.add(candidate)
    return candidate


def predict_video(predictor: Any, path: Path, args: argparse.Namespace, writer: RowWriter,
                  annotate_to: Path | None = None) -> int:
    """Rows for the processed frames of a video, faces tracked (`ferkit.infer.video.track_video`);
    returns 1 if it was read, 0 on an error row."""
    from .io import ImageReadError
    from .video import track_video

    try:
        for row in track_video(predictor, path, args.every, args.detect_every, args.smooth, CHUNK, annotate_to):
            writer.write({"file": str(path), **row})
    except ImageReadError as e:
        writer.write({"file": str(path), "error": str(e)})
        return 0
    return 1


# ---------------------------------------------------------------- export

def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a ferkit (or reference-project) checkpoint .pt")
    p.add_argument("--out", help="output .onnx (default: the checkpoint's path with .onnx, or .int8.onnx)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--int8", action="store_true",
                   help="post-training int8: calibrate on --calib train images, then measure its cost on val and "
                        "test against float32 (written next to the model as <out>.metrics.json)")
    p.add_argument("--data_root", help="--int8: the dataset (default: the one recorded in the checkpoint)")
    p.add_argument("--calib", type=int, default=512, help="--int8: train images to calibrate on (512)")


def run_export(args: argparse.Namespace) -> int:
    """Export to ONNX, then check onnxruntime against PyTorch on random crops (or, with --int8,
    quantise and measure the int8 model against float32 on val and test)."""
    import numpy as np

    from .export import export_onnx
    from .onnx import OnnxRunner
    from .predictor import TorchRunner

    if args.int8:
        from .int8 import export_int8

        out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(".int8.onnx")
        export_int8(args.ckpt, out, args.data_root, args.calib)
        return 0
    out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(".onnx")
    export_onnx(args.ckpt, out, args.opset)
    import torch
    from ferkit.models import to_input

    x = to_input(torch.randint(0, 256, (64, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(0),
                               dtype=torch.uint8)).numpy()
    diff = np.abs(OnnxRunner(out)(x) - TorchRunner(args.ckpt, bf16=False)(x)).max()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): input float32 (N,1,48,48) in [-1,1], "
          f"output softmax probabilities (N,C); max |onnx - torch| = {diff:.1e} on 64 random crops")
    return 0 if diff < 1e-4 else 1


# ---------------------------------------------------------------- serve

def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024, help="largest upload in bytes (10 MiB)")
    _add_model_args(p)
    # Requests are decoded and searched in parallel, one per core (service.py): one thread per
    # library call avoids threads of concurrent calls waiting on each other.
    p.set_defaults(threads=1)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .service import create_app

    try:
        predictor = make_predictor(args)
    except ValueError as e:
        print(f"ferkit serve: error: {e}", file=sys.stderr)
        return 2
    print(f"ferkit serve: page at http://{args.host}:{args.port}/  API docs at /docs", file=sys.stderr)
    uvicorn.run(create_app(predictor, max_bytes=args.max_bytes, max_pixels=args.max_pixels), host=args.host,
                port=args.port)
    return 0
