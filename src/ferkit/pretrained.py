"""Ship a trained model: a small half-precision checkpoint plus a model card.

`pack(run_checkpoint, out)` keeps only what inference needs, stores the weights in float16
(half the size), then evaluates *the packed file itself* on val and test, so that
`ferkit eval out` reproduces the card's numbers exactly. The file records one test-time augmentation,
the one `ferkit predict`, `serve` and `Predictor` run by default, and the card headlines it: by default
`none` (one view); `tta="auto"` chooses it on val (the highest val macro-F1; the cheaper mode on a tie)
before test is ever evaluated. The other TTA modes are measured too, as the card's labelled second table
(`tta_figures`). A calibrated checkpoint (`ferkit posthoc --method temperature`) keeps its record, which
is also written into the metadata of its ONNX siblings (`write_onnx_calibration`), and its card shows the
measures before and after the temperature and the figures under each class prior (`calibration_figures`).
The card's markdown is `ferkit.card`'s.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from ferkit.card import model_card
from ferkit.data import load_data
from ferkit.evaluate import calibration_figures, data_root_of, evaluate_run, output_files, progress_bar
from ferkit.models import count_macs, count_parameters, load_model, read_checkpoint, save_checkpoint
from ferkit.runtime.paths import SHIPPED_DIR, atomic_text, check_output
from ferkit.tta import TTA_MODES, tta_mode

CARD_PRECISION = "float32"  # a card's reference figures: the precision every CPU computes alike
# How far another CPU may move a card's float32 test predictions and still "reproduce" it:
# bench/precision.py measured the changes (bench/results/precision-*.json, docs in the card).
CARD_TOLERANCE = {
    "changed_predictions": 3,
    "why": "in float32, all threads, one thread and PyTorch's AVX2 kernels changed none of the 3,589 "
    "test predictions of either shipped model on an AMD EPYC with AVX-512, and bfloat16 on that "
    "EPYC changed 1 against bfloat16 on an AMX Xeon but 16-22 against float32 "
    "(bench/precision.py, bench/results/precision-*.json); 3 leaves room for CPUs not measured "
    "(ARM) and no more: one changed prediction moves accuracy by 0.0003",
}


def _machine() -> str:
    from ferkit.runtime.device import (
        describe_cpu,  # named once per card: "AMD EPYC [avx2 ...], torch kernels AVX512, ..."
    )

    return describe_cpu()


def choose_tta(ckpt_path: Path, data, amp: bool = False) -> tuple[str, dict[str, float]]:
    """The TTA mode with the highest val macro-F1, and the val macro-F1 of every mode (test is not looked at)."""
    from ferkit.evaluate import match_classes, predict_proba
    from ferkit.metrics import compute_metrics

    model, info = load_model(ckpt_path)
    val = match_classes(data, info["class_names"]).splits["val"]
    scores = {
        m: compute_metrics(val.labels, predict_proba(model, val.images, "cpu", amp, m).argmax(1), info["class_names"])[
            "macro_f1"
        ]
        for m in TTA_MODES
    }
    # TTA_MODES is cheapest first: a tie keeps the cheaper mode.
    return max(TTA_MODES, key=lambda m: (scores[m], -TTA_MODES.index(m))), scores


def tta_figures(ckpt_path: Path, data, modes) -> dict[str, dict]:
    """Accuracy, macro-F1 and per-class F1 on val and test of each TTA mode in `modes` (float32, on the CPU):
    the card's second table, beside the headline at the recorded TTA."""
    from ferkit.evaluate import match_classes, predict_proba
    from ferkit.metrics import compute_metrics

    model, info = load_model(ckpt_path)
    data = match_classes(data, info["class_names"])
    out: dict[str, dict] = {}
    for mode in modes:
        for split in ("val", "test"):
            s = data.splits[split]
            m = compute_metrics(
                s.labels, predict_proba(model, s.images, "cpu", False, mode).argmax(1), info["class_names"]
            )
            out.setdefault(mode, {})[split] = {
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "per_class_f1": dict(zip(info["class_names"], m["per_class_f1"])),
            }
    return out


def pack(
    ckpt_path: str | Path,
    out: str | Path,
    data_root: str | None = None,
    title: str | None = None,
    log=print,
    tta: str | None = "none",
    force: bool = False,
) -> dict:
    """Write `out` (float16 checkpoint), `out`.md (model card) and `out`.metrics.json; return test metrics.

    tta: the test-time augmentation the shipped model records, which predict, serve and Predictor run
    by default and the card headlines: "none" (one view, the default), "flip" or "crops"; "auto" picks
    it on val; None keeps the run's. The other modes are the card's second table. Every output is checked before any work (`check_output`: never the
    checkpoint packed or the data; an earlier one replaced only with `force`) and written whole.
    """
    ckpt = read_checkpoint(ckpt_path)
    out = Path(out)
    inputs = [ckpt_path, data_root or ckpt.get("config", {}).get("data_root")]
    for path in (out, Path(str(out.with_suffix("")) + ".md"), Path(str(out) + ".metrics.json")):
        check_output(path, inputs=inputs, force=force)
    check_output(out.parent / f"{out.stem}-eval", inputs=inputs, kind="dir", files=output_files(), force=force)
    siblings = [p for p in (out.with_suffix(".int8.onnx"), out.with_suffix(".onnx")) if p.is_file()]
    for sibling in siblings:  # their calibration metadata is rewritten to match (never an input)
        check_output(sibling, inputs=inputs, force=True)
    previous = _previous_card(out)  # re-packing a shipped model keeps its figures in other precisions
    card = Path(str(out.with_suffix("")) + ".md")  # ... and its card's title, unless given another
    if title is None and card.is_file():
        title = card.read_text(encoding="utf-8").partition("\n")[0].removeprefix("# ") or None
    keep = {
        k: ckpt[k]
        for k in (
            "format",
            "version",
            "arch",
            "head",
            "head_kwargs",
            "class_names",
            "config",
            "epoch",
            "posthoc",
            "tta_selection",
            "calibration",
        )
        if k in ckpt
    }
    keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    keep["card_precision"] = CARD_PRECISION
    if "training" in ckpt:  # an already shipped model, packed again: its training record stays
        keep["training"] = ckpt["training"]
    else:
        epochs_csv = Path(ckpt_path).parent / "epochs.csv"
        seconds = sum(float(r["seconds"]) for r in csv.DictReader(open(epochs_csv))) if epochs_csv.is_file() else None
        keep["training"] = {"seconds": seconds, "machine": _machine(), "source": str(ckpt_path)}
    save_checkpoint(keep, out)

    cfg = dict(ckpt.get("config", {}))
    data = load_data(data_root_of(data_root, cfg), log=log)
    if tta is not None:
        scores = None
        if tta == "auto":
            tta, scores = choose_tta(out, data)
            log("TTA chosen on val: " + ", ".join(f"{m} {f:.4f}" for m, f in scores.items()) + f" -> {tta}")
        cfg["tta"] = tta
        keep["config"], keep["tta_selection"] = cfg, scores
        save_checkpoint(keep, out)
    for sibling in siblings:  # the ONNX models of this checkpoint apply the same calibration
        write_onnx_calibration(sibling, keep.get("calibration"))
    eval_dir = out.parent / f"{out.stem}-eval"
    # The card's figures are float32 whatever the run trained in: the portable precision (bench/precision.py).
    mode = tta_mode(cfg.get("tta"))
    test = evaluate_run(out, data, eval_dir, False, mode, log=log)
    val = json.loads((eval_dir / "metrics_val.json").read_text())
    model, _ = load_model(out)
    inner = getattr(model, "model", None)  # a logit-adjusted model wraps the network: count the network
    base = inner if isinstance(inner, torch.nn.Module) else model
    summary = {
        "precision": CARD_PRECISION,
        "evaluated_on": _machine(),
        "val": {k: val[k] for k in ("accuracy", "macro_f1")}
        | {"per_class_f1": dict(zip(val["class_names"], val["per_class_f1"]))},
        "test": {k: test[k] for k in ("accuracy", "macro_f1")}
        | {"per_class_f1": dict(zip(test["class_names"], test["per_class_f1"]))},
        "tolerance": CARD_TOLERANCE,
        "test_predictions": predicted_classes(eval_dir / "predictions.csv"),
        "other_precisions": previous,
        "parameters": count_parameters(base),
        "macs_per_image": count_macs(base),
        "file_bytes": out.stat().st_size,
        "training": keep["training"],
        "config": cfg,
        "tta": mode,
        "tta_figures": tta_figures(out, data, [m for m in TTA_MODES if m != mode]),
        "posthoc": ckpt.get("posthoc"),
        "tta_selection": keep.get("tta_selection"),
        "packed_from": str(ckpt_path),
        # single view and the recorded TTA, or crops when that is single view: T per mode is shown for both
        "calibration": calibration_figures(out, data, "crops" if mode == "none" else mode, keep["calibration"])
        if keep.get("calibration")
        else None,
    }
    atomic_text(Path(str(out) + ".metrics.json"), json.dumps(summary, indent=2))
    atomic_text(card, model_card(out, summary, title))
    log(f"packed {out} ({out.stat().st_size / 1e6:.1f} MB), card {out.with_suffix('.md')}")
    return test


def write_onnx_calibration(path: str | Path, calibration: dict | None) -> Path:
    """Set (None: remove) the `calibration` record in an .onnx model's metadata (`ferkit.calibration.ONNX_KEY`,
    read by `OnnxRunner`), in place and whole; the graph and its weights are copied unchanged."""
    import onnx

    from ferkit.calibration import ONNX_KEY
    from ferkit.runtime.paths import atomic_write

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != ONNX_KEY]
    del proto.metadata_props[:]
    for key, value in kept + ([(ONNX_KEY, json.dumps(calibration))] if calibration else []):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return atomic_write(Path(path), lambda f: f.write(proto.SerializeToString()))


def _previous_card(out: Path) -> list[dict]:
    """The figures of an earlier card of `out` measured in another precision than the card's
    (older cards were evaluated as their run trained: bfloat16 with --amp), to keep as labelled rows,
    each with the TTA it was measured at (an entry without one was at its card's recorded TTA)."""
    path = Path(str(out) + ".metrics.json")
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    old_tta = tta_mode(old.get("tta", old.get("config", {}).get("tta")))
    kept = [{"tta": old_tta} | o for o in old.get("other_precisions", []) if o["precision"] != CARD_PRECISION]
    was = old.get("precision", "bfloat16" if old.get("config", {}).get("amp") else "float32")
    if was != CARD_PRECISION:
        kept.append(
            {
                "precision": was,
                "tta": old_tta,
                "evaluated_on": old.get("evaluated_on", old.get("training", {}).get("machine")),
                "val": {k: old["val"][k] for k in ("accuracy", "macro_f1")},
                "test": {k: old["test"][k] for k in ("accuracy", "macro_f1")},
            }
        )
    return kept


PRETRAINED_DIR = SHIPPED_DIR  # where shipped_models() looks (tests point it elsewhere)


def shipped_models(folder: Path | None = None) -> list[Path]:
    """The shipped checkpoints: every pretrained/*.pt that has its card (*.pt.metrics.json)."""
    folder = Path(folder or PRETRAINED_DIR)
    return sorted(p for p in folder.glob("*.pt") if Path(str(p) + ".metrics.json").is_file())


def test_predictions(path: Path, data, amp: bool = False) -> dict:
    """A shipped model's predicted test classes as a string of class indices (one digit per image, in
    the split's order), with their accuracy and macro-F1, as its card's TTA makes them."""
    from ferkit.evaluate import match_classes, predict_proba
    from ferkit.metrics import compute_metrics

    model, info = load_model(path)
    test = match_classes(data, info["class_names"]).splits["test"]
    pred = predict_proba(model, test.images, "cpu", amp, (info["config"] or {}).get("tta", False)).argmax(1)
    m = compute_metrics(test.labels, pred, info["class_names"])
    return {"pred": "".join(map(str, pred.tolist())), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def predicted_classes(predictions_csv: Path) -> str:
    """The predicted classes of a predictions.csv as one digit (class index) per row, in its order."""
    with open(predictions_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    names = [k[2:] for k in rows[0] if k.startswith("p_")] if rows else []
    return "".join(str(names.index(r["pred"])) for r in rows)


def card_predictions(path: Path) -> str:
    """The test classes the card's own evaluation predicted (`test_predictions`' digits), from its
    metrics file or, for an older card, from its `<name>-eval/predictions.csv`."""
    card = json.loads(Path(str(path) + ".metrics.json").read_text())
    if "test_predictions" in card:
        return card["test_predictions"]
    return predicted_classes(path.parent / f"{path.stem}-eval" / "predictions.csv")


def changed_predictions(a: str, b: str) -> int:
    """How many images two `predicted_classes` strings classify differently (a length mismatch counts too)."""
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def evaluate_shipped(
    data, out_dir: Path, folder: Path | None = None, log=print, progress: bool = True, device: str = "cpu"
) -> list[dict]:
    """Evaluate every shipped model on test as its card says (float32, the card's TTA), on `device`.

    Writes each model's metrics, predictions and confusion matrix under `out_dir/<name>/` and returns
    one row per model: its test metrics next to the card's, how many test predictions differ from
    the card's, and whether that is within the card's tolerance (`CARD_TOLERANCE`).
    """
    import torch

    from ferkit.tta import view_count

    if torch.device(device).type == "cuda":  # the cards are float32: TF32 would round the convolutions' inputs
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for path in shipped_models(folder):
        card = json.loads(Path(str(path) + ".metrics.json").read_text())
        tta = card["config"].get("tta", False)
        n = len(data.splits["test"])
        log(
            f"{path.name}: {n:,} test images x {view_count(tta)} views (TTA {tta}), {card.get('precision', 'float32')} ..."
        )
        bar = progress_bar(n, path.stem) if progress else None
        m = evaluate_run(
            path,
            data,
            Path(out_dir) / path.stem,
            False,
            tta,
            device,
            log=lambda s: None,
            splits=("test",),
            progress=bar.update if bar else None,
        )
        if bar:
            bar.close()
        changed = changed_predictions(
            predicted_classes(Path(out_dir) / path.stem / "predictions.csv"), card_predictions(path)
        )
        limit = card.get("tolerance", {}).get("changed_predictions", 0)
        ok = changed <= limit
        rows.append(
            {
                "model": path.name,
                "tta": tta,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "per_class_f1": dict(zip(m["class_names"], m["per_class_f1"])),
                "card_accuracy": card["test"]["accuracy"],
                "card_macro_f1": card["test"]["macro_f1"],
                "changed_predictions": changed,
                "tolerance": limit,
                "matches_card": ok,
            }
        )
        log(
            f"{path.name}: test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
            f"(card {card['test']['accuracy']:.4f} / {card['test']['macro_f1']:.4f}; {changed} of {n:,} predictions "
            f"differ from the card's, tolerance {limit}: {'reproduced' if ok else 'DIFFERENT'})"
        )
    return rows
