"""`ferkit predict`, `ferkit export` and `ferkit serve`: argument parsers and runners for cli.py.

This module is imported whenever the `ferkit` parser is built, so it imports nothing heavy at
the top: torch, OpenCV, onnxruntime and FastAPI load inside the runners.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import socket
import sys
from pathlib import Path
from typing import Any, Iterator, TextIO

from ferkit.config import Bound
from ferkit.tta import TTA_MODES
from ferkit.data.images import MAX_PIXELS
from ferkit.data.store import IMAGE_SIZE
from ferkit.paths import OutputError, atomic_file, check_output

CHUNK = 32  # images (or video frames) classified together
# Each option's range, declared with the option: argparse refuses a value outside it in one line.
AT_LEAST_1, FRACTION = Bound(1).arg(int), Bound(0, 1).arg(float)


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
    p.add_argument("--min-face", type=AT_LEAST_1, default=None, help="smallest face side in pixels (yunet 20, haar 48)")
    p.add_argument("--score-threshold", type=FRACTION, default=None,
                   help="yunet: keep faces scored at least this, 0..1 (0.4; lower finds more, and more false faces)")
    p.add_argument("--max-side", type=AT_LEAST_1, default=None,
                   help="images longer than this are shrunk for detection only (yunet 640, haar 1024); "
                        "320 is 3.5x faster and still finds faces of 60 px and more")
    p.add_argument("--scale-factor", type=Bound(1, open_low=True).arg(float), default=None,
                   help="haar: face size step: 1.1 finds more small faces, ~2.5x slower (1.2)")
    p.add_argument("--margin", type=FRACTION, default=None, help="crop margin per side, fraction of the face (0.02)")
    p.add_argument("--threads", type=AT_LEAST_1, default=None,
                   help="CPU threads for the model and detector (default: one per core; serve: 1)")
    p.add_argument("--max-pixels", type=AT_LEAST_1, default=MAX_PIXELS,
                   help=f"refuse images of more pixels than this, read from the header before decoding "
                        f"(decompression bombs; {MAX_PIXELS:,})")
    p.add_argument("--no-calibration", dest="calibrate", action="store_false",
                   help="the model's raw probabilities: do not apply the temperature fitted on val that a calibrated "
                        "model carries (ferkit posthoc --method temperature)")
    p.add_argument("--prior", type=prior_arg, default="model", metavar="model|train|uniform|FILE",
                   help="the class frequencies to expect: model (as trained, no change), train (FER-2013 train's), "
                        "uniform, or a JSON file {class: frequency} (or one number per class); docs/INFERENCE.md")
    p.add_argument("--min-score", type=FRACTION, default=None,
                   help="label a face 'uncertain' when its calibrated top probability is below this, 0..1 "
                        "(its score and probabilities are still written)")


def prior_arg(text: str) -> str:
    """--prior: a name, or a file that reads as a prior (its classes are checked when the model loads)."""
    from ferkit.calibration import PRIORS, read_prior_file

    if text not in PRIORS:
        try:
            read_prior_file(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("prior: ")) from None
    return text


def make_predictor(args: argparse.Namespace, detect: bool = True) -> Any:
    """A Predictor from the shared model arguments."""
    from .predictor import DEFAULT_MARGIN, Predictor

    bf16 = {"auto": "auto", "on": True, "off": False}[args.bf16]
    margin = DEFAULT_MARGIN if args.margin is None else args.margin
    return Predictor(args.ckpt, backend=args.backend, detect=detect, tta=args.tta, device=args.device,
                     bf16=bf16, margin=margin, detector=args.detector, align=args.align,
                     score_threshold=args.score_threshold, scale_factor=args.scale_factor, min_face=args.min_face,
                     max_side=args.max_side, threads=args.threads, calibrate=args.calibrate, prior=args.prior,
                     min_score=args.min_score)


# ---------------------------------------------------------------- predict

def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="images, videos, folders (searched recursively) or globs")
    p.add_argument("--camera", metavar="N|DEVICE",
                   help="a live camera instead of PATHs: its number (0) or device (/dev/video0); faces tracked as in "
                        "videos; an annotated window where a display exists, rows otherwise; q, Esc or Ctrl-C stops")
    p.add_argument("--explain", metavar="DIR", nargs="?", const="", default=None,
                   help="images: each face's occlusion heatmap (what drove the prediction; ~100 model runs per face) "
                        "as DIR/<image>_face<i>.png, and painted into the --annotate copies (--explain alone: only there)")
    _add_model_args(p)
    p.add_argument("--no-detect", action="store_true", help="each image is already a face crop")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="output format (jsonl)")
    p.add_argument("--out", help="output file (default: standard output); never an input, written whole or not at all")
    p.add_argument("--annotate", metavar="DIR", help="save copies of the images with boxes and labels here")
    p.add_argument("--force", action="store_true", help="replace an existing --out file or annotated copies")
    p.add_argument("--every", type=AT_LEAST_1, default=1, help="videos: process every N-th frame (1: all)")
    p.add_argument("--detect-every", type=AT_LEAST_1, default=5,
                   help="videos: run the face detector on every K-th processed frame and follow the faces in between (5)")
    p.add_argument("--smooth", type=AT_LEAST_1, default=5,
                   help="videos: average each tracked face's probabilities over its last N frames (5; 1 = off)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class RowWriter:
    """One row per face (or per image without faces, or per error) as JSON lines or CSV."""

    def __init__(self, stream: TextIO, fmt: str, class_names: list[str]):
        self.stream, self.fmt, self.class_names = stream, fmt, class_names
        self.columns = ["file", "frame", "time_s", "track", "faces", "face", "x", "y", "w", "h", "detector_score",
                        "landmarks", "label", "score", *[f"p_{c}" for c in class_names], "message", "error"]
        self.csv = csv.DictWriter(stream, self.columns, extrasaction="raise") if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.csv is None:  # allow_nan=False: a NaN is never written as JSON (Predictor refuses NaN models first)
            self.stream.write(json.dumps(row, allow_nan=False) + "\n")
            return
        flat = {k: v for k, v in row.items() if k not in ("box", "probs")}
        if flat.get("landmarks") is not None:  # [[x, y] x 5] as one JSON cell
            flat["landmarks"] = json.dumps(flat["landmarks"])
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
        yield {**base, "faces": len(faces), "face": i, "box": f["box"], "detector_score": f.get("detector_score"),
               "landmarks": f.get("landmarks"), "label": f["label"],
               "score": round(f["score"], 6), "probs": {c: round(p, 6) for c, p in f["probs"].items()}}


def run_predict(args: argparse.Namespace) -> int:
    """Predict every input; returns 0 when at least one input was processed, else 1."""
    from .io import IMAGE_EXTS, VIDEO_EXTS, collect_inputs

    if args.camera is not None or not args.paths:
        return run_camera_rows(args)
    files, missing, skipped = collect_inputs(args.paths)
    if skipped:
        print(f"ferkit predict: ignored {skipped} file(s) in folders that are neither images nor videos", file=sys.stderr)
    if not files and not missing:
        print(f"ferkit predict: error: no image or video file in {', '.join(args.paths)} (looked for "
              f"{', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))})", file=sys.stderr)
        return 2
    names = check_predict_outputs(args, files)  # before the model loads: nothing is read or written on a refusal
    try:
        predictor = make_predictor(args, detect=not args.no_detect)
    except ValueError as e:
        print(f"ferkit predict: error: {e}", file=sys.stderr)
        return 2
    # The rows go to a temporary file that replaces --out only once every input is done.
    with atomic_file(args.out, "w", newline="", overwrite=args.force) if args.out else contextlib.nullcontext(sys.stdout) as out:
        return _predict_all(args, predictor, RowWriter(out, args.format, predictor.class_names), files, missing, names)


def _predict_all(args: argparse.Namespace, predictor: Any, writer: RowWriter, files: list[Path],
                 missing: list[tuple[str, str]], names: dict[Path, str]) -> int:
    """The rows of every input, with its annotated copy under --annotate; 0 if any input was read."""
    from tqdm import tqdm

    from .draw import save_annotated
    from .explain import explain_image, paint_explained, save_explanations
    from .io import ImageReadError, is_video, load_image

    annotate_dir = Path(args.annotate) if args.annotate else None
    done = 0
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
            explained = explain_image(predictor, image) if args.explain is not None and faces else []
            if explained and args.explain:
                save_explanations(explained, Path(args.explain), Path(names[path]).stem, overwrite=args.force)
            if annotate_dir is not None:
                shown = paint_explained(image, explained) if explained else image
                save_annotated(shown, faces, annotate_dir / names[path], overwrite=args.force)
        done += len(loaded)
        bar.update(len(images[start:start + CHUNK]))
    for path in videos:
        video_out = None if annotate_dir is None else annotate_dir / names[path]
        done += predict_video(predictor, path, args, writer, video_out)
        bar.update(1)
    bar.close()
    return 0 if done else 1


def annotation_names(files: list[Path]) -> dict[Path, str]:
    """The name of each input's annotated copy, decided before any work so that the guard can check
    them: an image keeps its name (.png for a format PIL does not write back), a video becomes .mp4,
    and a name that repeats gets _1, _2 ... (images first, then videos: the order they are done in)."""
    from .draw import IMAGE_FORMATS
    from .io import is_video

    used: set[str] = set()
    names = {}
    for f in sorted(files, key=is_video):
        suffix = ".mp4" if is_video(f) else f.suffix.lower() if f.suffix.lower() in IMAGE_FORMATS else ".png"
        names[f] = _unique(f"{f.stem}{suffix}", used)
    return names


def check_predict_outputs(args: argparse.Namespace, files: list[Path]) -> dict[Path, str]:
    """Check --out and --annotate before any work (`check_output`): neither is, or is inside, an
    input (a file or folder given, a file found, the checkpoint); --out is a file and --annotate a
    folder; nothing there is replaced without --force. Returns the annotated copies' names."""
    inputs = [*(a for a in args.paths if Path(a).exists()), *files, args.ckpt,
              None if args.prior in ("model", "train", "uniform") else args.prior]
    names = annotation_names(files) if args.annotate or args.explain else {}
    if args.out:
        check_output(args.out, inputs=inputs, force=args.force, what="--out")
    if args.annotate:
        check_output(args.annotate, inputs=inputs, kind="dir", files=names.values(), force=args.force, what="--annotate")
    if args.explain == "" and not args.annotate:
        raise OutputError("--explain without a folder paints the heatmaps into the --annotate copies: give --annotate DIR, or --explain DIR")
    if args.explain:
        from .explain import existing_explanations
        held = existing_explanations(args.explain, [Path(n).stem for n in names.values()])
        check_output(args.explain, inputs=inputs, kind="dir", files=held, force=args.force, what="--explain")
    return names


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


def run_camera_rows(args: argparse.Namespace) -> int:
    """`ferkit predict --camera N|DEVICE`: rows of a live camera until q, Esc, Ctrl-C or the stream's end."""
    from .io import ImageReadError
    from .video import camera_source, run_camera

    try:
        if args.camera is None:
            raise ValueError("give images, videos or folders (PATH), or --camera N|DEVICE")
        if args.paths:
            raise ValueError(f"--camera reads a camera, not PATHs ({args.paths[0]}): give one or the other")
        camera_source(args.camera)  # a device path that does not exist: refused before the model loads
        if args.out:
            check_output(args.out, inputs=[args.ckpt], force=args.force, what="--out")
        predictor = make_predictor(args, detect=not args.no_detect)
    except ValueError as e:  # OutputError is a ValueError
        print(f"ferkit predict: error: {e}", file=sys.stderr)
        return 2
    with atomic_file(args.out, "w", newline="", overwrite=args.force) if args.out else contextlib.nullcontext(sys.stdout) as out:
        writer = RowWriter(out, args.format, predictor.class_names)

        def write(row: dict) -> None:
            writer.write({"file": f"camera:{args.camera}", **row})
            out.flush()  # a live stream: each row as it comes

        try:
            frames = run_camera(predictor, args.camera, write, args.every, args.detect_every, args.smooth)
        except ImageReadError as e:
            print(f"ferkit predict: error: {e}", file=sys.stderr)
            return 2
    return 0 if frames else 1


# ---------------------------------------------------------------- export

def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a ferkit (or reference-project) checkpoint .pt")
    p.add_argument("--out", help="output .onnx (default: the checkpoint's path with .onnx, or .int8.onnx)")
    p.add_argument("--force", action="store_true", help="replace an existing --out (and its .metrics.json)")
    p.add_argument("--opset", type=Bound(7, 20).arg(int), default=17, help="ONNX opset, 7 to 20 (17)")
    p.add_argument("--int8", action="store_true",
                   help="post-training int8: calibrate on --calib train images, then measure its cost on val and "
                        "test against float32 (written next to the model as <out>.metrics.json)")
    p.add_argument("--data_root", help="--int8: the dataset (default: the one recorded in the checkpoint)")
    p.add_argument("--calib", type=AT_LEAST_1, default=512, help="--int8: train images to calibrate on (512)")


def run_export(args: argparse.Namespace) -> int:
    """Export to ONNX, then check onnxruntime against PyTorch on random crops (or, with --int8,
    quantise and measure the int8 model against float32 on val and test)."""
    import numpy as np

    from .export import check_onnx_out, export_onnx
    from .onnx import OnnxRunner, check_finite
    from .predictor import TorchRunner

    if args.int8:
        from .int8 import export_int8

        out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(".int8.onnx")
        export_int8(args.ckpt, out, args.data_root, args.calib, force=args.force)
        return 0
    out = check_onnx_out(args.ckpt, Path(args.out) if args.out else Path(args.ckpt).with_suffix(".onnx"), args.force)
    import torch
    from ferkit.models import to_input

    x = to_input(torch.randint(0, 256, (64, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(0),
                               dtype=torch.uint8)).numpy()
    want = check_finite(TorchRunner(args.ckpt, bf16=False)(x), args.ckpt)  # broken (NaN) weights: nothing written
    export_onnx(args.ckpt, out, args.opset, force=args.force)
    diff = np.abs(OnnxRunner(out)(x) - want).max()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): input float32 (N,1,48,48) in [-1,1], "
          f"output softmax probabilities (N,C); max |onnx - torch| = {diff:.1e} on 64 random crops")
    return 0 if diff < 1e-4 else 1


# ---------------------------------------------------------------- serve

def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=Bound(0, 65535).arg(int), default=8000, help="0 to 65535 (8000; 0: any free port)")
    p.add_argument("--max-bytes", type=AT_LEAST_1, default=10 * 1024 * 1024, help="largest upload in bytes (10 MiB)")
    _add_model_args(p)
    # Requests are decoded and searched in parallel, one per core (service.py): one thread per
    # library call avoids threads of concurrent calls waiting on each other.
    p.set_defaults(threads=1)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .service import create_app

    try:
        check_listen(args.host, args.port)  # before the model loads: a port in use is one line, not three tracebacks
        predictor = make_predictor(args)
    except (ValueError, OSError) as e:
        print(f"ferkit serve: error: {e}", file=sys.stderr)
        return 2
    print(f"ferkit serve: page at http://{args.host}:{args.port}/  API docs at /docs", file=sys.stderr)
    uvicorn.run(create_app(predictor, max_bytes=args.max_bytes, max_pixels=args.max_pixels), host=args.host,
                port=args.port)
    return 0


def check_listen(host: str, port: int) -> None:
    """Bind `host`:`port` once and let go, so that a bad host, a port in use or a port that needs
    root is one line (an OSError) before the model loads, not uvicorn's tracebacks."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(address)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
