"""The model options of `ferkit predict` and `ferkit serve`, defined once, and the Predictor they make."""

from __future__ import annotations

import argparse
from typing import Any

from ferkit.commands.options import AT_LEAST_1, FRACTION, add_tta
from ferkit.config import Bound
from ferkit.data.images import MAX_PIXELS
from ferkit.infer.detectors import DETECTORS, check_settings


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", help="checkpoint (.pt) or, with --backend onnx, a .onnx (default: the shipped model)")
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="auto: torch in bfloat16 on a CPU with AMX, else the model's int8 ONNX file when there "
        "is one (the shipped model has), else torch",
    )
    add_tta(p)
    p.add_argument(
        "--bf16",
        choices=["auto", "on", "off"],
        default="auto",
        help="bfloat16 autocast (torch backend): auto = where the CPU runs it natively",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend)")
    p.add_argument(
        "--detector",
        choices=list(DETECTORS),
        default="yunet",
        help="face detector: yunet (a small CNN, shipped inside ferkit) or haar (OpenCV's 2001 cascade); "
        "the flags below set its settings, each only for a detector that has it",
    )
    p.add_argument(
        "--align",
        action="store_true",
        default=None,
        help="yunet: rotate and scale each face by its eyes and nose to the training images' framing, "
        "instead of cropping its box (no measured gain: docs/INFERENCE.md)",
    )
    p.add_argument("--min-face", type=AT_LEAST_1, default=None, help="smallest face side in pixels (yunet 20, haar 48)")
    p.add_argument(
        "--score-threshold",
        type=FRACTION,
        default=None,
        help="yunet: keep faces scored at least this, 0..1 (0.4; lower finds more, and more false faces)",
    )
    p.add_argument(
        "--max-side",
        type=AT_LEAST_1,
        default=None,
        help="images longer than this are shrunk for detection only (yunet 640, haar 1024); "
        "320 is 3.5x faster and still finds faces of 60 px and more",
    )
    p.add_argument(
        "--scale-factor",
        type=Bound(1, open_low=True).arg(float),
        default=None,
        help="haar: face size step: 1.1 finds more small faces, ~2.5x slower (1.2)",
    )
    p.add_argument("--margin", type=FRACTION, default=None, help="crop margin per side, fraction of the face (0.02)")
    p.add_argument(
        "--threads",
        type=AT_LEAST_1,
        default=None,
        help="CPU threads for the model and detector (default: one per core; serve: 1)",
    )
    p.add_argument(
        "--max-pixels",
        type=AT_LEAST_1,
        default=MAX_PIXELS,
        help=f"refuse images of more pixels than this, read from the header before decoding "
        f"(decompression bombs; {MAX_PIXELS:,})",
    )
    p.add_argument(
        "--no-calibration",
        dest="calibrate",
        action="store_false",
        help="the model's raw probabilities: do not apply the temperature fitted on val that a calibrated "
        "model carries (ferkit posthoc --method temperature)",
    )
    p.add_argument(
        "--prior",
        type=prior_arg,
        default="model",
        metavar="model|train|uniform|FILE",
        help="the class frequencies to expect: model (as trained, no change), train (FER-2013 train's), "
        "uniform, or a JSON file {class: frequency} (or one number per class); docs/INFERENCE.md",
    )
    p.add_argument(
        "--min-score",
        type=FRACTION,
        default=None,
        help="label a face 'uncertain' when its calibrated top probability is below this, 0..1 "
        "(its score and probabilities are still written)",
    )


def prior_arg(text: str) -> str:
    """--prior: a name, or a file that reads as a prior (its classes are checked when the model loads)."""
    from ferkit.calibration import PRIORS, read_prior_file

    if text not in PRIORS:
        try:
            read_prior_file(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("prior: ")) from None
    return text


DETECTOR_FLAGS = ("score_threshold", "scale_factor", "min_face", "max_side", "align", "margin")  # args -> settings


def make_detector_from(args: argparse.Namespace) -> Any:
    """The --detector, with the detector flags given (a flag left out: the detector's default); a flag
    of another detector is refused in one line ("--scale-factor is a haar setting, not yunet's")."""
    given = {k: getattr(args, k) for k in DETECTOR_FLAGS if getattr(args, k, None) is not None}
    check_settings(args.detector, list(given), spell=lambda k: "--" + k.replace("_", "-"))
    return DETECTORS[args.detector](**given)


def make_predictor(args: argparse.Namespace, detect: bool = True) -> Any:
    """A Predictor from the shared model arguments."""
    from ferkit.infer.predictor import Predictor

    detector = make_detector_from(args)  # before the model loads: a wrong flag costs nothing
    bf16_of: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    bf16 = bf16_of[args.bf16]
    return Predictor(
        args.ckpt,
        backend=args.backend,
        detect=detect,
        tta=args.tta,
        device=args.device,
        bf16=bf16,
        detector=detector,
        threads=args.threads,
        calibrate=args.calibrate,
        prior=args.prior,
        min_score=args.min_score,
    )
