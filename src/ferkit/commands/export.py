"""`ferkit export`: a checkpoint to ONNX (float32, checked against PyTorch), or int8 with its measured cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.commands.options import AT_LEAST_1
from ferkit.config import Bound
from ferkit.data.store import IMAGE_SIZE
from ferkit.infer.int8 import AGREEMENT

NAME = "export"
HELP = "export a checkpoint to ONNX"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a ferkit (or reference-project) checkpoint .pt")
    p.add_argument("--out", help="output .onnx (default: the checkpoint's path with .onnx, or .int8.onnx)")
    p.add_argument("--force", action="store_true", help="replace an existing --out (and its .metrics.json)")
    p.add_argument("--opset", type=Bound(7, 20).arg(int), default=17, help="ONNX opset, 7 to 20")
    p.add_argument(
        "--int8",
        action="store_true",
        help="post-training int8: calibrate on --calib train images, then measure its cost on val and "
        "test against float32 (written next to the model as <out>.metrics.json)",
    )
    p.add_argument("--data_root", help="--int8: the dataset (default: the one recorded in the checkpoint)")
    p.add_argument("--calib", type=AT_LEAST_1, default=512, help="--int8: train images to calibrate on")
    p.add_argument(
        "--agreement",
        type=Bound(0.0, 1.0).arg(float),
        default=AGREEMENT,
        help="--int8: the file also holds a float32 copy, which re-runs the faces whose int8 top-two margin is "
        "below the smallest threshold that makes int8 agree with float32 on this share of val labels (0: plain int8)",
    )


def run(args: argparse.Namespace) -> int:
    """Export to ONNX, then check onnxruntime against PyTorch on random crops (or, with --int8,
    quantise and measure the int8 model against float32 on val and test)."""
    import numpy as np

    from ferkit.infer.export import check_onnx_out, export_onnx
    from ferkit.infer.onnx import OnnxRunner, check_finite
    from ferkit.infer.torch_runner import TorchRunner

    if args.int8:
        from ferkit.infer.int8 import export_int8

        out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(".int8.onnx")
        export_int8(args.ckpt, out, args.data_root, args.calib, force=args.force, agreement=args.agreement)
        return 0
    out = check_onnx_out(args.ckpt, Path(args.out) if args.out else Path(args.ckpt).with_suffix(".onnx"), args.force)
    import torch

    from ferkit.models import to_input

    x = to_input(
        torch.randint(
            0, 256, (64, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
        )
    ).numpy()
    want = check_finite(TorchRunner(args.ckpt, bf16=False)(x), args.ckpt)  # broken (NaN) weights: nothing written
    export_onnx(args.ckpt, out, args.opset, force=args.force)
    diff = np.abs(OnnxRunner(out)(x) - want).max()
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): input float32 (N,1,48,48) in [-1,1], "
        f"output softmax probabilities (N,C); max |onnx - torch| = {diff:.1e} on 64 random crops"
    )
    return 0 if diff < 1e-4 else 1
