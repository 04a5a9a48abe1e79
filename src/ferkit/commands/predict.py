"""`ferkit predict`: detect faces in photos, videos or a camera and predict their expressions, as rows."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ferkit.commands.model_options import add_model_arguments, make_predictor
from ferkit.commands.options import AT_LEAST_1
from ferkit.runtime.paths import OutputError, atomic_file, check_output

NAME = "predict"
HELP = "detect faces in photos/videos and predict their expression"
CHUNK = 32  # images (or video frames) classified together


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="images, videos, folders (searched recursively) or globs")
    p.add_argument(
        "--camera",
        metavar="N|DEVICE",
        help="a live camera instead of PATHs: its number (0) or device (/dev/video0); faces tracked as in "
        "videos; an annotated window where a display exists, rows otherwise; q, Esc or Ctrl-C stops",
    )
    p.add_argument(
        "--explain",
        metavar="DIR",
        nargs="?",
        const="",
        default=None,
        help="images: each face's occlusion heatmap (what drove the prediction; ~100 model runs per face) "
        "as DIR/<image>_face<i>.png, and painted into the --annotate copies (--explain alone: only there)",
    )
    add_model_arguments(p)
    p.add_argument("--no-detect", action="store_true", help="each image is already a face crop")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="output format")
    p.add_argument("--out", help="output file (default: standard output); never an input, written whole or not at all")
    p.add_argument("--annotate", metavar="DIR", help="save copies of the images with boxes and labels here")
    p.add_argument("--force", action="store_true", help="replace an existing --out file or annotated copies")
    p.add_argument("--every", type=AT_LEAST_1, default=1, help="videos: process every N-th frame (1: all)")
    p.add_argument(
        "--detect-every",
        type=AT_LEAST_1,
        default=5,
        help="videos: run the face detector on every K-th processed frame and follow the faces in between",
    )
    p.add_argument(
        "--smooth",
        type=AT_LEAST_1,
        default=5,
        help="videos: average each tracked face's probabilities over its last N frames (1 = off)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class RowWriter:
    """One row per face (or per image without faces, or per error) as JSON lines or CSV."""

    def __init__(self, stream: IO[str], fmt: str, class_names: list[str]):
        self.stream, self.fmt, self.class_names = stream, fmt, class_names
        self.columns = [
            "file",
            "frame",
            "time_s",
            "track",
            "faces",
            "face",
            "x",
            "y",
            "w",
            "h",
            "detector_score",
            "landmarks",
            "label",
            "score",
            *[f"p_{c}" for c in class_names],
            "message",
            "error",
        ]
        self.csv = csv.DictWriter(stream, self.columns, extrasaction="raise") if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()
        self.rows = self.faces = self.without_face = self.errors = 0  # what was written, for `summary`
        self.first_error = ""  # "<file>: <why>" of the first error row, for the one-line error

    def summary(self) -> str:
        """What was written: "12 rows (9 faces, 3 images without a face)", and the error rows if any."""
        errors = f", {self.errors} unreadable" if self.errors else ""
        return (
            f"{self.rows} row{'s' * (self.rows != 1)} ({self.faces} face{'s' * (self.faces != 1)}, "
            f"{self.without_face} image{'s' * (self.without_face != 1)} without a face{errors})"
        )

    def write(self, row: dict) -> None:
        self.rows += 1
        self.faces += "box" in row
        self.without_face += row.get("faces") == 0
        self.errors += "error" in row
        if "error" in row and not self.first_error:
            file, error = str(row["file"]), str(row["error"])
            self.first_error = error if error.startswith(file) else f"{file}: {error}"
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


@contextlib.contextmanager
def row_writer(args: argparse.Namespace, class_names: list[str]) -> Iterator[RowWriter]:
    """The rows' writer for --out (a temporary file that replaces it only once every row is written)
    or standard output."""
    with (
        atomic_file(args.out, "w", newline="", overwrite=args.force)
        if args.out
        else contextlib.nullcontext(sys.stdout) as out
    ):
        writer = RowWriter(out, args.format, class_names)
        yield writer


def say_written(args: argparse.Namespace, writer: RowWriter) -> None:
    """Once --out is in place, one line on stderr says what it holds."""
    if args.out:
        print(f"ferkit predict: wrote {writer.summary()} to {args.out}", file=sys.stderr)


def face_rows(base: dict, faces: list[dict], shape: tuple[int, ...] | None = None) -> Iterator[dict]:
    """Output rows of one image: one per face, or one saying that no face was found (with a hint to
    use --no-detect when the image is as small as a face crop: the detector needs context around a face)."""
    if not faces:
        hint = ""
        if shape is not None and max(shape[:2]) <= CROP_SIDE:
            hint = f" (a {shape[1]}x{shape[0]} image looks like a face crop already: try --no-detect)"
        yield {**base, "faces": 0, "message": "no face found" + hint}
    for i, f in enumerate(faces):
        yield {
            **base,
            "faces": len(faces),
            "face": i,
            "box": f["box"],
            "detector_score": f.get("detector_score"),
            "landmarks": f.get("landmarks"),
            "label": f["label"],
            "score": round(f["score"], 6),
            "probs": {c: round(p, 6) for c, p in f["probs"].items()},
        }


def run(args: argparse.Namespace) -> int:
    """Predict every input; returns 0 when at least one input was processed, else 2 (bad input),
    with one line on stderr naming the first input that could not be read."""
    from ferkit.infer.io import IMAGE_EXTS, VIDEO_EXTS, collect_inputs

    if args.camera is not None or not args.paths:
        return run_camera_rows(args)
    files, missing, skipped = collect_inputs(args.paths)
    if skipped:
        print(
            f"ferkit predict: ignored {skipped} file(s) in folders that are neither images nor videos", file=sys.stderr
        )
    if not files and not missing:
        print(
            f"ferkit predict: error: no image or video file in {', '.join(args.paths)} (looked for "
            f"{', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))})",
            file=sys.stderr,
        )
        return 2
    names = check_predict_outputs(args, files)  # before the model loads: nothing is read or written on a refusal
    try:
        predictor = make_predictor(args, detect=not args.no_detect)
    except ValueError as e:
        print(f"ferkit predict: error: {e}", file=sys.stderr)
        return 2
    # The rows go to a temporary file that replaces --out only once every input is done.
    with row_writer(args, predictor.class_names) as writer:
        status = _predict_all(args, predictor, writer, files, missing, names)
    say_written(args, writer)
    if status:
        more = f" (and {writer.errors - 1} more)" if writer.errors > 1 else ""
        print(
            f"ferkit predict: error: nothing could be read: {writer.first_error}{more}; give image or video files, "
            f"or folders of them",
            file=sys.stderr,
        )
        return 2
    return 0


def _predict_all(
    args: argparse.Namespace,
    predictor: Any,
    writer: RowWriter,
    files: list[Path],
    missing: list[tuple[str, str]],
    names: dict[Path, str],
) -> int:
    """The rows of every input, with its annotated copy under --annotate; 0 if any input was read."""
    from tqdm import tqdm

    from ferkit.infer.draw import save_annotated
    from ferkit.infer.explain import explain_image, paint_explained, save_explanations
    from ferkit.infer.io import ImageReadError, is_video, load_image

    annotate_dir = Path(args.annotate) if args.annotate else None
    done = 0
    for arg, error in missing:
        writer.write({"file": arg, "error": error})
    images = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    bar = tqdm(total=len(files), unit="file", file=sys.stderr, disable=args.quiet or len(files) < 2)
    for start in range(0, len(images), CHUNK):
        loaded = []
        for path in images[start : start + CHUNK]:
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
        bar.update(len(images[start : start + CHUNK]))
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
    from ferkit.infer.draw import IMAGE_FORMATS
    from ferkit.infer.io import is_video

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
    inputs = [
        *(a for a in args.paths if Path(a).exists()),
        *files,
        args.ckpt,
        None if args.prior in ("model", "train", "uniform") else args.prior,
    ]
    names = annotation_names(files) if args.annotate or args.explain else {}
    if args.out:
        check_output(args.out, inputs=inputs, force=args.force, what="--out")
    if args.annotate:
        check_output(
            args.annotate, inputs=inputs, kind="dir", files=names.values(), force=args.force, what="--annotate"
        )
    if args.explain == "" and not args.annotate:
        raise OutputError(
            "--explain without a folder paints the heatmaps into the --annotate copies: give --annotate DIR, or --explain DIR"
        )
    if args.explain:
        from ferkit.infer.explain import existing_explanations

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


def predict_video(
    predictor: Any, path: Path, args: argparse.Namespace, writer: RowWriter, annotate_to: Path | None = None
) -> int:
    """Rows for the processed frames of a video, faces tracked (`ferkit.infer.video.track_video`);
    returns 1 if it was read, 0 on an error row."""
    from ferkit.infer.io import ImageReadError
    from ferkit.infer.video import track_video

    try:
        for row in track_video(predictor, path, args.every, args.detect_every, args.smooth, CHUNK, annotate_to):
            writer.write({"file": str(path), **row})
    except ImageReadError as e:
        writer.write({"file": str(path), "error": str(e)})
        return 0
    return 1


def run_camera_rows(args: argparse.Namespace) -> int:
    """`ferkit predict --camera N|DEVICE`: rows of a live camera until q, Esc, Ctrl-C or the stream's end."""
    from ferkit.infer.io import ImageReadError
    from ferkit.infer.video import camera_source, run_camera

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
    with row_writer(args, predictor.class_names) as writer:

        def write(row: dict) -> None:
            writer.write({"file": f"camera:{args.camera}", **row})
            writer.stream.flush()  # a live stream: each row as it comes

        try:
            frames = run_camera(predictor, args.camera, write, args.every, args.detect_every, args.smooth)
        except ImageReadError as e:
            print(f"ferkit predict: error: {e}", file=sys.stderr)
            return 2
    say_written(args, writer)
    return 0 if frames else 1
