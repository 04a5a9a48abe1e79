"""Predictions -> metrics, in one place; evaluating a checkpoint on a dataset.

`predict_proba` runs a model over uint8 images; `compute_metrics` is the only function that
turns labels into numbers (scikit-learn underneath; `macro_f1` its headline figure); `evaluate_split`
does both and writes `metrics.json` (with its "calibration" entry: `ferkit.calibration`'s measures
of the probabilities, before and after the checkpoint's temperature), `predictions.csv`, the
confusion matrix, the reliability diagram and the coverage curve (CSV and PNG: accuracy and
macro-F1 of the faces kept as the top-probability threshold, `--min-score`, rises).
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ferkit.calibration import (PRIORS, adjust, calibration_metrics, coverage_curve, prior_ratio, reliability,
                                temperature_for)
from ferkit.data import DataError, FerData
from ferkit.runtime.device import autocast
from ferkit.models import CheckpointError, fold_batchnorm, load_model
from ferkit.runtime.paths import atomic_file, atomic_text
from ferkit.tta import tta_inputs, tta_mode

# Fixed, so that a re-evaluation runs the very same arithmetic. 64 rather than 1024: measured on a
# 2-core CPU, 64-image batches predict ~1.5x (fp32) to ~2.5x (bf16) more images/s (bench/README.md).
EVAL_BATCH = 64


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """The mean F1 over all `num_classes` classes (0 for a class neither true nor predicted)."""
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (true x predicted)."""
    labels = list(range(len(class_names)))
    p, r, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    m = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1(y_true, y_pred, len(class_names)),
        "per_class_f1": [float(v) for v in f1],
        "per_class_precision": [float(v) for v in p],
        "per_class_recall": [float(v) for v in r],
        "support": [int(v) for v in support],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
        "num_samples": int(len(y_true)),
    }
    m |= {f"f1_{c}": float(v) for c, v in zip(class_names, f1)}
    return m


@torch.inference_mode()
def predict_proba(model: torch.nn.Module, images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
                  amp: bool = False, tta: bool | str = False, batch_size: int = EVAL_BATCH,
                  progress: Callable[[int], object] | None = None) -> np.ndarray:
    """Class probabilities (N, C) for uint8 images (N, 48, 48), averaged over the TTA views (`tta_mode`).

    `progress(n)` is called after each batch with the number of images it held."""
    mode = tta_mode(tta)
    model.eval()
    model = fold_batchnorm(model).to(memory_format=torch.channels_last)
    device = torch.device(device)
    images = torch.as_tensor(images)
    out = []
    for i in range(0, len(images), batch_size):
        views = tta_inputs(images[i:i + batch_size].to(device), mode)
        with autocast(device, amp):
            probs = sum(model(v.contiguous(memory_format=torch.channels_last)).float().softmax(1) for v in views)
        probs = probs / len(views)
        out.append(probs.cpu())
        if progress is not None:
            progress(len(probs))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def write_predictions(path: Path, names: list[str], y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> None:
    """One row per image: name, true and predicted class names, and every class probability."""
    pred = probs.argmax(1)
    with atomic_file(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "true", "pred"] + [f"p_{c}" for c in class_names])
        for n, t, p, pr in zip(names, y_true, pred, probs):
            w.writerow([n, class_names[t], class_names[p]] + [f"{v:.6f}" for v in pr])


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A predictions.csv as (true, predicted, probabilities (N, C), class names)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no predictions")
    class_names = [k[2:] for k in rows[0] if k.startswith("p_")]
    index = {c: i for i, c in enumerate(class_names)}
    probs = np.array([[float(r[f"p_{c}"]) for c in class_names] for r in rows])
    return (np.array([index[r["true"]] for r in rows]), np.array([index[r["pred"]] for r in rows]), probs,
            class_names)


def metrics_from_predictions(path: Path) -> dict:
    """Recompute metrics from a predictions.csv alone (the file is self-contained)."""
    y_true, y_pred, _, class_names = read_predictions(path)
    return compute_metrics(y_true, y_pred, class_names)


def calibration_of(probs: np.ndarray, labels: np.ndarray, record: dict | None = None,
                   tta: bool | str | None = "none") -> tuple[dict, list[dict]]:
    """metrics.json's "calibration" entry for one split's probabilities (the model's own: ECE,
    class-wise ECE, NLL, Brier; with a checkpoint's `calibration` record, the same after its
    temperature for this `tta`, under "scaled"), and the coverage curve of the probabilities a
    Predictor gives (scaled where there is a temperature)."""
    from ferkit.tta import tta_mode

    cal = calibration_metrics(probs, labels)
    scaled = probs
    if record:
        t = temperature_for(record, tta_mode(tta))
        scaled = adjust(probs, t)
        cal |= {"temperature": t, "fitted": f"{record.get('fitted_on')}, TTA {tta_mode(tta)}",
                "scaled": calibration_metrics(scaled, labels)}
    return cal, coverage_curve(scaled, labels, lambda y, p: macro_f1(y, p, probs.shape[1]))


def calibration_from_predictions(path: Path, record: dict | None = None,
                                 tta: bool | str | None = "none") -> tuple[dict, list[dict]]:
    """`calibration_of` a predictions.csv alone (its probabilities have 6 decimals)."""
    y_true, _, probs, _ = read_predictions(path)
    return calibration_of(probs, y_true, record, tta)


def write_calibration_outputs(out_dir: Path, suffix: str, probs: np.ndarray, labels: np.ndarray, cal: dict,
                              coverage: list[dict], title: str) -> None:
    """coverage{suffix}.csv and .png, and reliability{suffix}.png (raw and, if any, scaled bins)."""
    with atomic_file(out_dir / f"coverage{suffix}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(coverage[0]))
        w.writeheader()
        w.writerows({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()} for r in coverage)
    from ferkit.report.figures import _new_figure, _save  # matplotlib is slow to import: only when drawing

    curves = {f"model (ECE {cal['ece']:.3f})": probs}
    if "scaled" in cal:
        curves[f"T = {cal['temperature']:.3f} (ECE {cal['scaled']['ece']:.3f})"] = adjust(probs, float(cal["temperature"]))
    fig = _new_figure((4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="calibrated")
    for (name, p), marker in zip(curves.items(), "os"):
        r = reliability(p, labels)
        ok = r["count"] > 0
        ax.plot(r["confidence"][ok], r["accuracy"][ok], marker=marker, ms=4, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="top-class probability (mean in each of 15 bins)",
           ylabel="accuracy in the bin", title=f"{title}: reliability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / f"reliability{suffix}.png")
    fig = _new_figure((5, 4))
    ax = fig.add_subplot()
    cover = [r["coverage"] for r in coverage]
    ax.plot(cover, [r["accuracy"] for r in coverage], marker="o", ms=3, label="accuracy")
    ax.plot(cover, [r["macro_f1"] for r in coverage], marker="s", ms=3, label="macro-F1")
    for r in coverage[::4]:
        ax.annotate(f"{r['threshold']:.2f}", (r["coverage"], r["accuracy"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set(xlim=(0, 1.02), xlabel="coverage (share of faces not 'uncertain')", ylabel="on the faces kept",
           title=f"{title}: --min-score (labels: the threshold)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / f"coverage{suffix}.png")


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
            row = {"temperature": t, "split": split, "tta": mode, "before": calibration_metrics(probs, s.labels),
                   "after": calibration_metrics(adjust(probs, t), s.labels), "priors": {}}
            for prior in PRIORS:
                p = adjust(probs, t, prior_ratio(prior, names, record))
                m = compute_metrics(s.labels, p.argmax(1), names)
                row["priors"][prior] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                                        "ece": calibration_metrics(p, s.labels)["ece"]}
            rows.append(row)
    return {k: record.get(k) for k in ("temperature", "temperatures", "fitted_on", "precision", "model_prior",
                                       "train_prior", "source")} | {"rows": rows}


def evaluate_split(model: torch.nn.Module, split, class_names: list[str], out_dir: Path | None = None,
                   split_name: str = "test", device: str | torch.device = "cpu", amp: bool = False,
                   tta: bool = False, extra: dict | None = None, suffix: str = "",
                   progress: Callable[[int], object] | None = None, calibration: dict | None = None) -> dict:
    """Evaluate on one split; with `out_dir`, write metrics{suffix}.json, predictions, the confusion
    figure, the reliability diagram and the coverage curve. `calibration`: the checkpoint's record
    (its temperature is measured too; the predictions file keeps the model's own probabilities)."""
    probs = predict_proba(model, split.images, device, amp, tta, progress=progress)
    if not np.isfinite(probs).all():  # NaN weights: refused, rather than metrics of argmax(NaN) = class 0
        raise CheckpointError(f"{(extra or {}).get('checkpoint', 'the model')} gives NaN or infinite outputs "
                              f"(its weights are broken): retrain it, or use another checkpoint")
    m = compute_metrics(split.labels, probs.argmax(1), class_names)
    m |= {"split": split_name, "tta": tta, "amp": amp} | (extra or {})
    m["calibration"], coverage = calibration_of(probs, split.labels, calibration, tta)
    if out_dir is not None:  # each file appears whole or not at all (ferkit.runtime.paths)
        out_dir = Path(out_dir)
        atomic_text(out_dir / f"metrics{suffix}.json", json.dumps(m, indent=2))
        write_predictions(out_dir / f"predictions{suffix}.csv", split.names, split.labels, probs, class_names)
        write_calibration_outputs(out_dir, suffix, probs, split.labels, m["calibration"], coverage, split_name)
        from ferkit.report.figures import plot_confusion  # matplotlib is slow to import: only when drawing
        plot_confusion(np.array(m["confusion_matrix"]), class_names, out_dir / f"confusion_matrix{suffix}.png",
                       title=f"{split_name}: acc {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
    return m


def evaluate_run(ckpt_path: Path, data: FerData, out_dir: Path | None, amp: bool, tta: bool,
                 device: torch.device | str = "cpu", log: Callable[[str], None] = print,
                 splits: tuple[str, ...] = ("val", "test"), progress: Callable[[int], object] | None = None) -> dict:
    """Evaluate a checkpoint once on each split; test writes metrics.json, val metrics_val.json."""
    model, info = load_model(ckpt_path)
    model.to(device, memory_format=torch.channels_last)
    data = match_classes(data, info["class_names"])
    out = {}
    for split in splits:
        suffix = "" if split == "test" else f"_{split}"
        out[split] = evaluate_split(model, data.splits[split], data.class_names, out_dir, split, device, amp, tta,
                                    extra={"checkpoint": str(ckpt_path), "epoch": info.get("epoch")}, suffix=suffix,
                                    progress=progress, calibration=info.get("calibration"))
        m = out[split]
        log(f"{split}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
            + ", ".join(f"{c} {f:.3f}" for c, f in zip(data.class_names, m["per_class_f1"])))
        c = m["calibration"]
        log(f"{split}: ECE {c['ece']:.4f}, NLL {c['nll']:.4f}, Brier {c['brier']:.4f}" + (
            f"; at T {c['temperature']:.3f}: ECE {c['scaled']['ece']:.4f}, NLL {c['scaled']['nll']:.4f}, "
            f"Brier {c['scaled']['brier']:.4f}" if "scaled" in c else ""))
    if out_dir is not None:
        log(f"outputs in {out_dir}/")
    return out["test"] if "test" in out else out[splits[-1]]


def match_classes(data: FerData, model_classes: list[str]) -> FerData:
    """Relabel `data` to the model's class order; a different class set is an error."""
    if list(data.class_names) == list(model_classes):
        return data
    if sorted(data.class_names) != sorted(model_classes):
        raise DataError(f"the model's classes ({', '.join(model_classes)}) differ from the data's ({', '.join(data.class_names)})")
    remap = np.array([model_classes.index(c) for c in data.class_names])
    splits = {k: dataclasses.replace(s, labels=remap[s.labels]) for k, s in data.splits.items()}
    return dataclasses.replace(data, class_names=list(model_classes), splits=splits)


def output_files(splits: tuple[str, ...] = ("val", "test")) -> list[str]:
    """The files `evaluate_split` writes into an output folder for `splits` (test has no suffix)."""
    return [f"{stem}{'' if s == 'test' else '_' + s}.{ext}" for s in splits
            for stem, ext in (("metrics", "json"), ("predictions", "csv"), ("confusion_matrix", "png"),
                              ("reliability", "png"), ("coverage", "csv"), ("coverage", "png"))]


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


def evaluate_checkpoint(ckpt: str | Path, data_root: str | None, out: str | Path | None, runs_dir: str = "runs",
                        amp: bool | None = None, tta: bool | str | None = None, device: str = "auto",
                        splits: tuple[str, ...] = ("val", "test"), force: bool = False, log: Callable = print,
                        progress: bool = False) -> dict:
    """`ferkit eval`: evaluate a checkpoint file on `splits` and write the outputs to `out` (default
    runs_dir/eval-<run>-<ckpt>). By default as the numbers to reproduce were made: a shipped model
    as its card (float32), a run as it trained (same precision and TTA). The output folder is
    checked before the data loads (`check_output`): not an input, not a training run's folder, and
    an earlier evaluation there is replaced only with `force`."""
    from ferkit.data import load_data
    from ferkit.runtime.device import amp_notice, pick_device
    from ferkit.models import read_checkpoint
    from ferkit.runtime.paths import check_output

    checkpoint = read_checkpoint(ckpt)
    saved = checkpoint.get("config", {})
    data_root = data_root_of(data_root, saved)
    path = Path(ckpt)
    out_dir = Path(out) if out else Path(runs_dir) / f"eval-{path.parent.name}-{path.stem}"
    check_output(out_dir, inputs=[ckpt, data_root], kind="dir", files=output_files(splits), force=force,
                 not_into=("best.pt", "last.pt"), what="the evaluation folder")
    if amp is None:
        amp = checkpoint["card_precision"] != "float32" if "card_precision" in checkpoint else saved.get("amp", False)
    notice = amp_notice(pick_device(device), amp)
    if notice:
        log(notice)
    tta = saved.get("tta", False) if tta is None else tta  # left out: the checkpoint's own (a shipped model: its card's)
    data = load_data(data_root)
    bar = progress_bar(sum(len(data.splits[s].labels) for s in splits), path.stem) if progress else None
    try:
        return evaluate_run(path, data, out_dir, amp, tta, pick_device(device), log=log, splits=splits,
                            progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
