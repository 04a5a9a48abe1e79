"""Evaluating a checkpoint on a dataset: `predict_proba` runs a model over uint8 images, and
`evaluate_split` turns its probabilities into numbers with `ferkit.metrics` and writes `metrics.json` (with its "calibration" entry: `ferkit.calibration`'s measures
of the probabilities, before and after the checkpoint's temperature), `predictions.csv`, the
confusion matrix, the reliability diagram and the coverage curve (CSV and PNG: accuracy and
macro-F1 of the faces kept as the top-probability threshold, `--min-score`, rises).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferkit.calibration import (
    PRIORS,
    adjust,
    calibration_metrics,
    prior_ratio,
    temperature_for,
)
from ferkit.data import DataError, FerData
from ferkit.metrics import calibration_of, compute_metrics, write_calibration_outputs, write_predictions
from ferkit.models import CheckpointError, fold_batchnorm, load_model
from ferkit.runtime.device import autocast
from ferkit.runtime.paths import atomic_text
from ferkit.tta import tta_inputs, tta_mode

# Fixed, so that a re-evaluation runs the very same arithmetic. 64 rather than 1024: measured on a
# 2-core CPU, 64-image batches predict ~1.5x (fp32) to ~2.5x (bf16) more images/s (bench/README.md).
EVAL_BATCH = 64


@torch.inference_mode()
def predict_proba(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    amp: bool = False,
    tta: bool | str = False,
    batch_size: int = EVAL_BATCH,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) for uint8 images (N, 48, 48), averaged over the TTA views (`tta_mode`).

    `progress(n)` is called after each batch with the number of images it held."""
    mode = tta_mode(tta)
    model.eval()
    model = fold_batchnorm(model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    device = torch.device(device)
    images = torch.as_tensor(images)
    out = []
    for i in range(0, len(images), batch_size):
        views = tta_inputs(images[i : i + batch_size].to(device), mode)
        with autocast(device, amp):
            probs = sum(model(v.contiguous(memory_format=torch.channels_last)).float().softmax(1) for v in views)
        probs = probs / len(views)
        out.append(probs.cpu())
        if progress is not None:
            progress(len(probs))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def calibration_figures(path: Path, data, tta: str | bool | None, record: dict) -> dict:
    """A calibrated model's figures for its card (`ferkit pack`), float32: for val and test, single view
    and the card's TTA, the measures before and after the temperature, and accuracy, macro-F1 and ECE
    under each prior."""
    from ferkit.tta import tta_mode

    model, info = load_model(path)  # float32
    data, names = match_classes(data, info["class_names"]), info["class_names"]
    rows = []
    for split in ("val", "test"):
        s = data.splits[split]
        for mode in dict.fromkeys(("none", tta_mode(tta))):
            probs, t = predict_proba(model, s.images, "cpu", False, mode), temperature_for(record, mode)
            row: dict[str, Any] = {
                "temperature": t,
                "split": split,
                "tta": mode,
                "before": calibration_metrics(probs, s.labels),
                "after": calibration_metrics(adjust(probs, t), s.labels),
                "priors": {},
            }
            for prior in PRIORS:
                p = adjust(probs, t, prior_ratio(prior, names, record))
                m = compute_metrics(s.labels, p.argmax(1), names)
                row["priors"][prior] = {
                    "accuracy": m["accuracy"],
                    "macro_f1": m["macro_f1"],
                    "ece": calibration_metrics(p, s.labels)["ece"],
                }
            rows.append(row)
    return {
        k: record.get(k)
        for k in ("temperature", "temperatures", "fitted_on", "precision", "model_prior", "train_prior", "source")
    } | {"rows": rows}


def evaluate_split(
    model: torch.nn.Module,
    split,
    class_names: list[str],
    out_dir: Path | None = None,
    split_name: str = "test",
    device: str | torch.device = "cpu",
    amp: bool = False,
    tta: bool | str = False,
    extra: dict | None = None,
    suffix: str = "",
    progress: Callable[[int], object] | None = None,
    calibration: dict | None = None,
) -> dict:
    """Evaluate on one split; with `out_dir`, write metrics{suffix}.json, predictions, the confusion
    figure, the reliability diagram and the coverage curve. `calibration`: the checkpoint's record
    (its temperature is measured too; the predictions file keeps the model's own probabilities)."""
    probs = predict_proba(model, split.images, device, amp, tta, progress=progress)
    if not np.isfinite(probs).all():  # NaN weights: refused, rather than metrics of argmax(NaN) = class 0
        raise CheckpointError(
            f"{(extra or {}).get('checkpoint', 'the model')} gives NaN or infinite outputs "
            f"(its weights are broken): retrain it, or use another checkpoint"
        )
    m = compute_metrics(split.labels, probs.argmax(1), class_names)
    m |= {"split": split_name, "tta": tta, "amp": amp} | (extra or {})
    m["calibration"], coverage = calibration_of(probs, split.labels, calibration, tta)
    if out_dir is not None:  # each file appears whole or not at all (ferkit.runtime.paths)
        out_dir = Path(out_dir)
        atomic_text(out_dir / f"metrics{suffix}.json", json.dumps(m, indent=2))
        write_predictions(out_dir / f"predictions{suffix}.csv", split.names, split.labels, probs, class_names)
        write_calibration_outputs(out_dir, suffix, probs, split.labels, m["calibration"], coverage, split_name)
        from ferkit.report.figures import plot_confusion  # matplotlib is slow to import: only when drawing

        plot_confusion(
            np.array(m["confusion_matrix"]),
            class_names,
            out_dir / f"confusion_matrix{suffix}.png",
            title=f"{split_name}: acc {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}",
        )
    return m


def evaluate_run(
    ckpt_path: Path,
    data: FerData,
    out_dir: Path | None,
    amp: bool,
    tta: bool | str,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
    splits: tuple[str, ...] = ("val", "test"),
    progress: Callable[[int], object] | None = None,
) -> dict:
    """Evaluate a checkpoint once on each split; test writes metrics.json, val metrics_val.json."""
    model, info = load_model(ckpt_path)
    model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    data = match_classes(data, info["class_names"])
    out = {}
    for split in splits:
        suffix = "" if split == "test" else f"_{split}"
        out[split] = evaluate_split(
            model,
            data.splits[split],
            data.class_names,
            out_dir,
            split,
            device,
            amp,
            tta,
            extra={"checkpoint": str(ckpt_path), "epoch": info.get("epoch")},
            suffix=suffix,
            progress=progress,
            calibration=info.get("calibration"),
        )
        m = out[split]
        log(
            f"{split}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
            + ", ".join(f"{c} {f:.3f}" for c, f in zip(data.class_names, m["per_class_f1"]))
        )
        c = m["calibration"]
        log(
            f"{split}: ECE {c['ece']:.4f}, NLL {c['nll']:.4f}, Brier {c['brier']:.4f}"
            + (
                f"; at T {c['temperature']:.3f}: ECE {c['scaled']['ece']:.4f}, NLL {c['scaled']['nll']:.4f}, "
                f"Brier {c['scaled']['brier']:.4f}"
                if "scaled" in c
                else ""
            )
        )
    if out_dir is not None:
        log(f"outputs in {out_dir}/")
    return out["test"] if "test" in out else out[splits[-1]]


def match_classes(data: FerData, model_classes: list[str]) -> FerData:
    """Relabel `data` to the model's class order; a different class set is an error."""
    if list(data.class_names) == list(model_classes):
        return data
    if sorted(data.class_names) != sorted(model_classes):
        raise DataError(
            f"the model's classes ({', '.join(model_classes)}) differ from the data's ({', '.join(data.class_names)})"
        )
    remap = np.array([model_classes.index(c) for c in data.class_names])
    splits = {k: dataclasses.replace(s, labels=remap[s.labels]) for k, s in data.splits.items()}
    return dataclasses.replace(data, class_names=list(model_classes), splits=splits)


def output_files(splits: tuple[str, ...] = ("val", "test")) -> list[str]:
    """The files `evaluate_split` writes into an output folder for `splits` (test has no suffix)."""
    return [
        f"{stem}{'' if s == 'test' else '_' + s}.{ext}"
        for s in splits
        for stem, ext in (
            ("metrics", "json"),
            ("predictions", "csv"),
            ("confusion_matrix", "png"),
            ("reliability", "png"),
            ("coverage", "csv"),
            ("coverage", "png"),
        )
    ]


def data_root_of(given: str | None, saved_config: dict) -> str:
    """The dataset to evaluate on: the one given, else the one the checkpoint's run recorded."""
    from ferkit.config import ConfigError

    root = given or saved_config.get("data_root")
    if not root:
        raise ConfigError("no --data_root given and the checkpoint does not record one")
    return root


def progress_bar(total: int, name: str):
    """A progress bar with the time left, on stderr (tqdm); `.update(n)` after each batch. Only on a terminal
    (disable=None): a log or a pipe gets no bar, and an error message stays the one line on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="img", leave=False, mininterval=1.0, disable=None)


def evaluate_checkpoint(
    ckpt: str | Path,
    data_root: str | None,
    out: str | Path | None,
    runs_dir: str = "runs",
    amp: bool | None = None,
    tta: bool | str | None = None,
    device: str = "auto",
    splits: tuple[str, ...] = ("val", "test"),
    force: bool = False,
    log: Callable = print,
    progress: bool = False,
) -> dict:
    """Evaluate a checkpoint file on `splits` and write the outputs (`ferkit eval`).

    By default as the numbers to reproduce were made: a shipped model as its card (float32, the
    TTA it records), a run as it trained (same precision and TTA). The output folder is checked
    before the data loads (`check_output`): not an input, not a training run's folder, and an
    earlier evaluation there is replaced only with `force`.

    Parameters
    ----------
    ckpt : str or Path
        A ferkit checkpoint (best.pt, last.pt, pretrained/*.pt) or a reference-project one.
    data_root : str, optional
        The dataset; None: the one the checkpoint records.
    out : str or Path, optional
        The output folder; None: `runs_dir/eval-<run>-<ckpt>`.
    runs_dir : str
        Where the default output folder goes.
    amp : bool, optional
        bfloat16 autocast; None: as the model was measured (see above).
    tta : bool or str, optional
        "none", "flip" or "crops"; None: the TTA the checkpoint records.
    device : str
        "auto", "cpu" or "cuda".
    splits : tuple of str
        Any of "val", "test"; test writes metrics.json, val metrics_val.json.
    force : bool
        Replace an earlier evaluation in `out`.
    log : callable
        Where the result lines go.
    progress : bool
        Show a progress bar (on a terminal only).

    Returns
    -------
    dict
        The metrics of test (or of the last split evaluated).

    Raises
    ------
    OutputError
        A bad or occupied output folder.
    CheckpointError
        A file that is not a checkpoint ferkit can read safely.
    DataError
        A dataset that cannot be read, or whose classes do not match the model's.
    """
    from ferkit.data import load_data
    from ferkit.models import read_checkpoint
    from ferkit.runtime.device import amp_notice, pick_device
    from ferkit.runtime.paths import check_output

    checkpoint = read_checkpoint(ckpt)
    saved = checkpoint.get("config", {})
    data_root = data_root_of(data_root, saved)
    path = Path(ckpt)
    out_dir = Path(out) if out else Path(runs_dir) / f"eval-{path.parent.name}-{path.stem}"
    check_output(
        out_dir,
        inputs=[ckpt, data_root],
        kind="dir",
        files=output_files(splits),
        force=force,
        not_into=("best.pt", "last.pt"),
        what="the evaluation folder",
    )
    if amp is None:
        amp = checkpoint["card_precision"] != "float32" if "card_precision" in checkpoint else saved.get("amp", False)
    notice = amp_notice(pick_device(device), amp)
    if notice:
        log(notice)
    tta = (
        saved.get("tta", False) if tta is None else tta
    )  # left out: the checkpoint's own (a shipped model: its card's)
    data = load_data(data_root)
    bar = progress_bar(sum(len(data.splits[s].labels) for s in splits), path.stem) if progress else None
    try:
        return evaluate_run(
            path,
            data,
            out_dir,
            amp,
            tta,
            pick_device(device),
            log=log,
            splits=splits,
            progress=bar.update if bar else None,
        )
    finally:
        if bar is not None:
            bar.close()
