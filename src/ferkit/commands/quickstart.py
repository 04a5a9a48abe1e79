"""`ferkit quickstart`: the main job: read the dataset, evaluate the shipped models on test; --train also trains."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.commands.options import AT_LEAST_1, add_device
from ferkit.config import PRESETS, ConfigError, make_config
from ferkit.runtime.paths import check_output

NAME = "quickstart"
HELP = "the main job: prepare the data, evaluate the shipped models on test"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="FER-2013 zip, folder or fer2013.csv")
    p.add_argument("--train", action="store_true", help="also train --preset and evaluate it on test")
    p.add_argument("--preset", default="E5", choices=sorted(PRESETS), help="--train: the recipe to train")
    p.add_argument("--epochs", type=AT_LEAST_1, help="--train: epochs (default: the preset's, else 30)")
    p.add_argument(
        "--batch_size", type=AT_LEAST_1, help="--train: batch size (default: the preset's, else 256, as train)"
    )
    p.add_argument("--seed", type=int, help="--train: random seed (default: 42, as train)")
    p.add_argument("--runs_dir", default="runs", help="where the evaluations (shipped/) and the trained run go")
    add_device(p)


def run(args: argparse.Namespace) -> int:
    from ferkit.commands.train import check_run
    from ferkit.data import format_counts, load_data
    from ferkit.pretrained import evaluate_shipped, shipped_models
    from ferkit.train import fit

    out = Path(args.runs_dir) / "shipped"
    # Before any work: it rewrites its own evaluations in runs/shipped/ (a check job), never inside the data.
    check_output(out, inputs=[args.data], kind="dir", not_into=("best.pt", "last.pt"), force=True, what="--runs_dir")
    # The same configuration `ferkit train --preset P` makes: what is left out is the preset's, then RunConfig's.
    cfg = make_config(
        {
            "data_root": args.data,
            "preset": args.preset,
            "amp": True,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "runs_dir": args.runs_dir,
            "device": args.device,
        }
    )
    if args.train:
        check_run(cfg, {}, overwrite=False)
    data = load_data(args.data)
    print(format_counts(data))
    if not shipped_models():
        raise ConfigError("no shipped model under pretrained/: this is not a full ferkit checkout")
    print(
        f"\nThe shipped models on test (PrivateTest) only, in float32 with their cards' TTA, as the cards were "
        f"measured (outputs in {out}/; a progress bar shows the time left):"
    )
    rows = evaluate_shipped(data, out)
    if args.train:
        m = fit(cfg, data)
        run_dir = Path(cfg.runs_dir) / (cfg.exp or cfg.default_exp())
        print(f"\n{args.preset} on test: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")
        print(
            f"outputs: {run_dir}/metrics.json, predictions.csv, confusion_matrix.png, epochs.csv, best.pt "
            f"(TensorBoard: tensorboard --logdir {cfg.runs_dir})"
        )
    return 0 if all(r["matches_card"] for r in rows) else 1
