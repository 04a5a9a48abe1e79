"""Ship a trained model: a small half-precision checkpoint plus a model card.

`pack(run_checkpoint, out)` keeps only what inference needs, stores the weights in float16
(half the size), then evaluates *the packed file itself* on val and test, so that
`ferkit eval out` reproduces the card's numbers exactly. With `tta="auto"` the test-time
augmentation is chosen on val (the highest val macro-F1; the cheaper mode on a tie) before test is
ever evaluated, and saved in the file's config so that `ferkit eval` uses it.
"""
from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

import torch

from ferkit.config import TTA_MODES
from ferkit.data import load_data
from ferkit.models import count_macs, count_parameters, load_model, read_checkpoint
from ferkit.train import evaluate_run, save_atomic


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _command(cfg: dict) -> str:
    """The `ferkit train` command line that reproduces a run configuration."""
    skip = {"resume", "device", "preset"}
    from ferkit.config import RunConfig
    defaults = RunConfig().to_dict()
    parts = ["ferkit train"]
    for k, v in cfg.items():
        if k in skip or v is None or v == defaults.get(k):
            continue
        parts.append(f"--{k}" if v is True else f"--{k} {v}")
    return " ".join(parts)




def choose_tta(ckpt_path: Path, data, amp: bool) -> tuple[str, dict[str, float]]:
    """The TTA mode with the highest val macro-F1, and the val macro-F1 of every mode (test is not looked at)."""
    from ferkit.evaluate import compute_metrics, predict_proba
    from ferkit.train import match_classes

    model, info = load_model(ckpt_path)
    val = match_classes(data, info["class_names"]).splits["val"]
    scores = {m: compute_metrics(val.labels, predict_proba(model, val.images, "cpu", amp, m).argmax(1),
                                 info["class_names"])["macro_f1"] for m in TTA_MODES}
    # TTA_MODES is cheapest first: a tie keeps the cheaper mode.
    return max(TTA_MODES, key=lambda m: (scores[m], -TTA_MODES.index(m))), scores


def pack(ckpt_path: str | Path, out: str | Path, data_root: str | None = None, title: str | None = None,
         log=print, tta: str | None = None) -> dict:
    """Write `out` (float16 checkpoint), `out`.md (model card) and `out`.metrics.json; return test metrics.

    tta: "none", "flip" or "crops" sets the shipped model's test-time augmentation, "auto" picks it on
    val; None keeps the run's.
    """
    ckpt = read_checkpoint(ckpt_path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = {k: ckpt[k] for k in ("format", "version", "arch", "head", "head_kwargs", "class_names", "config", "epoch",
                                 "posthoc") if k in ckpt}
    keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    run_dir = Path(ckpt_path).parent
    epochs_csv = run_dir / "epochs.csv"
    seconds = sum(float(r["seconds"]) for r in csv.DictReader(open(epochs_csv))) if epochs_csv.is_file() else None
    keep["training"] = {"seconds": seconds, "machine": _machine(), "source": str(ckpt_path)}
    save_atomic(keep, out)

    cfg = dict(ckpt.get("config", {}))
    data = load_data(data_root or cfg.get("data_root"), log=log)
    if tta is not None:
        scores = None
        if tta == "auto":
            tta, scores = choose_tta(out, data, cfg.get("amp", False))
            log("TTA chosen on val: " + ", ".join(f"{m} {f:.4f}" for m, f in scores.items()) + f" -> {tta}")
        cfg["tta"] = tta
        keep["config"], keep["tta_selection"] = cfg, scores
        save_atomic(keep, out)
    eval_dir = out.parent / f"{out.stem}-eval"
    test = evaluate_run(out, data, eval_dir, cfg.get("amp", False), cfg.get("tta", False), log=log)
    val = json.loads((eval_dir / "metrics_val.json").read_text())
    model, _ = load_model(out)
    base = model.model if hasattr(model, "model") else model
    summary = {"val": {k: val[k] for k in ("accuracy", "macro_f1")} | {"per_class_f1": dict(zip(val["class_names"], val["per_class_f1"]))},
               "test": {k: test[k] for k in ("accuracy", "macro_f1")} | {"per_class_f1": dict(zip(test["class_names"], test["per_class_f1"]))},
               "parameters": count_parameters(base), "macs_per_image": count_macs(base),
               "file_bytes": out.stat().st_size, "training": keep["training"], "config": cfg,
               "posthoc": ckpt.get("posthoc"), "tta_selection": keep.get("tta_selection")}
    Path(str(out) + ".metrics.json").write_text(json.dumps(summary, indent=2))
    Path(str(out.with_suffix("")) + ".md").write_text(model_card(out, summary, title))
    log(f"packed {out} ({out.stat().st_size / 1e6:.1f} MB), card {out.with_suffix('.md')}")
    return test


def _commands(path: Path, s: dict) -> str:
    """The commands that rebuild a shipped model: train, post-hoc adjustment (if any), pack."""
    cfg = s["config"]
    best = f"{cfg.get('runs_dir', 'runs')}/{cfg.get('exp')}/best.pt"
    lines = [_command({k: v for k, v in cfg.items() if not (k == "tta" and s.get("tta_selection"))})]
    source = best
    if s.get("posthoc"):
        source = s["training"]["source"]  # the adjusted checkpoint that was packed
        lines.append(f"ferkit posthoc {best} --method {s['posthoc']['method']} --out {source}")
    lines.append(f"ferkit pack {source} --out {path}" + (" --tta auto" if s.get("tta_selection") else ""))
    return "\n".join(lines)


def model_card(path: Path, s: dict, title: str | None) -> str:
    cfg, tr = s["config"], s["training"]
    names = list(s["test"]["per_class_f1"])
    rows = "\n".join(f"| {c} | {s['val']['per_class_f1'][c]:.3f} | {s['test']['per_class_f1'][c]:.3f} |" for c in names)
    minutes = f"{tr['seconds'] / 60:.1f} minutes" if tr["seconds"] else "unknown"
    ph = ""
    if s.get("posthoc"):
        p = s["posthoc"]
        ph = (f"\nPost-hoc adjustment, tuned on val only: `{p['method']}`" + (f" (tau {p['tau']})" if "tau" in p else "")
              + f", val macro-F1 {p['val_macro_f1']:.4f} before TTA (the search is in `{path.name}.metrics.json`).\n")
    if s.get("tta_selection"):
        ph += ("\nTTA chosen on val macro-F1: " + ", ".join(f"{m} {f:.4f}" for m, f in s["tta_selection"].items())
               + f" -> `{cfg.get('tta')}`.\n")
    return f"""# {title or path.stem}

`{path.name}`: {cfg.get('arch')} with a {cfg.get('head')} head, {s['parameters']:,} parameters,
{s['macs_per_image'] / 1e6:.1f} M multiply-adds per 48x48 image, {s['file_bytes'] / 1e6:.1f} MB (float16 weights).

## Recipe
loss `{cfg.get('loss')}`, sampler `{cfg.get('sampler')}` (q {cfg.get('sample_q')}), class weights `{cfg.get('weight_mode')}`,
{cfg.get('epochs')} epochs, batch {cfg.get('batch_size')}, {cfg.get('optimizer', 'adam')} lr {cfg.get('lr')}, seed {cfg.get('seed')},
amp {cfg.get('amp')}, TTA {cfg.get('tta')}. Checkpoint: best val macro-F1 (epoch chosen on val only).
{ph}
```bash
{_commands(path, s)}
```
Training time: {minutes} on {tr['machine']}.

## Metrics (FER-2013; val = PublicTest, test = PrivateTest, evaluated from this file)

| split | accuracy | macro-F1 |
|---|---|---|
| val | {s['val']['accuracy']:.4f} | {s['val']['macro_f1']:.4f} |
| test | {s['test']['accuracy']:.4f} | {s['test']['macro_f1']:.4f} |

| class | val F1 | test F1 |
|---|---|---|
{rows}

Reproduce: `ferkit eval {path} --data_root /path/to/fer2013.zip`.
"""


PRETRAINED_DIR = Path(__file__).resolve().parents[2] / "pretrained"  # the repository's pretrained/ folder


def shipped_models(folder: Path | None = None) -> list[Path]:
    """The shipped checkpoints: every pretrained/*.pt that has its card (*.pt.metrics.json)."""
    folder = Path(folder or PRETRAINED_DIR)
    return sorted(p for p in folder.glob("*.pt") if Path(str(p) + ".metrics.json").is_file())


def evaluate_shipped(data, out_dir: Path, folder: Path | None = None, log=print) -> list[dict]:
    """Evaluate every shipped model on val and test as its card says (same precision and TTA).

    Writes each model's metrics, predictions and confusion matrices under `out_dir/<name>/` and
    returns one row per model: its test metrics next to the card's, and whether they agree to 3 decimals.
    """
    rows = []
    for path in shipped_models(folder):
        card = json.loads(Path(str(path) + ".metrics.json").read_text())
        cfg = card["config"]
        m = evaluate_run(path, data, Path(out_dir) / path.stem, cfg.get("amp", False), cfg.get("tta", False),
                         log=lambda s: None)
        agree = all(abs(m[k] - card["test"][k]) < 5e-4 for k in ("accuracy", "macro_f1"))
        rows.append({"model": path.name, "tta": cfg.get("tta"), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "per_class_f1": dict(zip(m["class_names"], m["per_class_f1"])),
                     "card_accuracy": card["test"]["accuracy"], "card_macro_f1": card["test"]["macro_f1"],
                     "matches_card": agree})
        log(f"{path.name}: test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
            f"(card {card['test']['accuracy']:.4f} / {card['test']['macro_f1']:.4f}: {'reproduced' if agree else 'DIFFERENT'})")
    return rows
