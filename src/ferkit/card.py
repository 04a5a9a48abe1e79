"""A shipped model's card (`<name>.md`), rendered from its metrics file (`<name>.pt.metrics.json`, made by
`ferkit.pretrained.pack`).

The headline table is the TTA the checkpoint records, which is what `ferkit predict`, `ferkit serve`
and `Predictor` run by default (single view unless packed with another `--tta`); a second, labelled
table gives the other TTA modes (float32, val and test), never the headline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ferkit.calibration import PRIORS
from ferkit.tta import TTA_MODES, tta_mode, view_count


def card_tta(s: dict) -> str:
    """The TTA mode a card's headline figures are at: the one its checkpoint records."""
    return tta_mode(s.get("tta", s["config"].get("tta")))


def describe_tta(mode: str) -> str:
    """`none` -> "single view (TTA `none`)"; the others with their cost in views."""
    return "single view (TTA `none`)" if mode == "none" else f"TTA `{mode}` ({view_count(mode)} views per face)"


def _command(cfg: dict) -> str:
    """The `ferkit train` command line that reproduces a run configuration (the TTA is pack's, not the run's:
    it changes no weight)."""
    skip = {"resume", "device", "preset", "tta"}
    from ferkit.config import RunConfig

    defaults = RunConfig().to_dict()
    parts = ["ferkit train"]
    for k, v in cfg.items():
        if k in skip or v is None or v == defaults.get(k):
            continue
        parts.append(f"--{k}" if v is True else f"--{k} {v}")
    return " ".join(parts)


def _commands(path: Path, s: dict) -> str:
    """The commands that rebuild a shipped model: train, post-hoc adjustment (if any), temperature
    scaling (if any: before packing, or after it on the packed file itself), pack."""
    cfg, packed = s["config"], s.get("packed_from")
    cal: dict = s.get("calibration") or {}
    best = f"{cfg.get('runs_dir', 'runs')}/{cfg.get('exp')}/best.pt"
    lines = [_command(cfg)]
    after = bool(cal and packed) and os.path.normpath(str(cal.get("source"))) == os.path.normpath(str(path))
    before = bool(cal and packed) and not after
    source = best
    if s.get("posthoc"):
        source = str(cal["source"] if before else s["training"]["source"])  # the adjusted checkpoint
        lines.append(f"ferkit posthoc {best} --method {s['posthoc']['method']} --out {source}")
    if before:
        lines.append(f"ferkit posthoc {source} --method temperature --out {packed}")
        source = str(packed)
    flag = "" if card_tta(s) == "none" else f" --tta {card_tta(s)}"  # pack's default is none
    lines.append(f"ferkit pack {source} --out {path}" + (" --tta auto" if s.get("tta_selection") else flag))
    if after:  # fitted on the packed file's own float16 weights, then packed again
        lines += [
            f"ferkit posthoc {path} --method temperature --out {packed}",
            f"ferkit pack {packed} --out {path} --force{flag}",
        ]
    return "\n".join(lines)


def _table(rows: list[tuple[str, str, str, dict]]) -> str:
    lines = [
        "| TTA | precision | evaluated on | val accuracy | val macro-F1 | test accuracy | test macro-F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {tta} | {name} | {where} | {r['val']['accuracy']:.4f} | {r['val']['macro_f1']:.4f} | "
        f"{r['test']['accuracy']:.4f} | {r['test']['macro_f1']:.4f} |"
        for tta, name, where, r in rows
    ]
    return "\n".join(lines)


def _others(s: dict) -> list[dict]:
    """Earlier figures in other precisions, each with its TTA (an entry without one was at the card's)."""
    return [o | {"tta": tta_mode(o.get("tta", card_tta(s)))} for o in s.get("other_precisions") or []]


def metrics_table(s: dict) -> str:
    """The headline: accuracy and macro-F1 per split at the recorded TTA, float32, then each other precision's."""
    mode = card_tta(s)
    rows = [(mode, f"{s.get('precision', 'float32')} (reference)", s.get("evaluated_on", "-"), s)]
    rows += [(mode, o["precision"], o["evaluated_on"], o) for o in _others(s) if o["tta"] == mode]
    return _table(rows)


def tta_table(s: dict) -> str:
    """The other TTA modes (float32, from the packed file; then earlier figures in other precisions), or nothing."""
    mode = card_tta(s)
    rows = [
        (m, s.get("precision", "float32"), s.get("evaluated_on", "-"), r)
        for m, r in sorted((s.get("tta_figures") or {}).items(), key=lambda x: TTA_MODES.index(x[0]))
        if m != mode
    ]
    rows += [(o["tta"], o["precision"], o["evaluated_on"], o) for o in _others(s) if o["tta"] != mode]
    if not rows:
        return ""
    crops = f"crops is {view_count('crops')}x the compute per face, flip {view_count('flip')}x"
    m = next((r[0] for r in rows if r[0] != "flip"), rows[0][0])  # crops, or none where crops is recorded
    return (
        f"\n### Other test-time augmentation (a second row, not the headline)\n\n"
        f"The same file with the other TTA modes ({crops}): not what `ferkit predict`, `serve` or `Predictor` "
        f"run unless given `--tta {m}` (or another mode); `ferkit eval {s['_path']} --tta {m}` reproduces its row.\n\n"
        + _table(rows)
        + "\n"
    )


def _calibration_section(s: dict) -> str:
    """The card's calibration and class-prior tables (`ferkit.evaluate.calibration_figures`), or nothing."""
    c = s.get("calibration")
    if not c:
        return ""
    f = lambda r, k: f"{r['before'][k]:.4f} -> {r['after'][k]:.4f}"  # noqa: E731
    rows = "\n".join(
        f"| {r['split']} | {r['tta']} | {r['temperature']:.3f} | {f(r, 'ece')} | {f(r, 'classwise_ece')} | "
        f"{f(r, 'nll')} | {f(r, 'brier')} |"
        for r in c["rows"]
    )
    test1 = next(r for r in c["rows"] if r["split"] == "test" and r["tta"] == "none")
    ece, train = test1["after"]["ece"], test1["priors"]["train"]["ece"]
    verdict = (
        f"After scaling, test ECE single view is {ece:.4f}, within the 0.03 aimed at."
        if ece <= 0.03
        else f"After scaling, test ECE single view is {ece:.4f}, above the 0.03 aimed at"
        + (
            f": one temperature cannot undo a prior other than test's, and this model's learned prior is "
            f"not the natural one; re-weighted to the train prior (`--prior train`) its test ECE is {train:.4f}."
            if train < ece
            else "."
        )
    )
    for r in c["rows"]:  # said where val's choice of T does not carry over to test
        if r["split"] == "test" and r["tta"] != "none" and r["after"]["ece"] > r["before"]["ece"]:
            v = next(x for x in c["rows"] if x["split"] == "val" and x["tta"] == r["tta"])
            verdict += (
                f" With TTA {r['tta']} the averaged probabilities are nearly calibrated already: the T that val "
                f"chose (val ECE {v['before']['ece']:.4f} -> {v['after']['ece']:.4f}) raises test ECE from "
                f"{r['before']['ece']:.4f} to {r['after']['ece']:.4f}; `--no-calibration` keeps the raw ones."
            )
    names = list(s["test"]["per_class_f1"])
    show = lambda p: ", ".join(f"{n} {v:.3f}" for n, v in zip(names, p))  # noqa: E731
    priors = "\n".join(
        f"| {name} | {r['tta']} | {r['priors'][name]['accuracy']:.4f} | {r['priors'][name]['macro_f1']:.4f} | "
        f"{r['priors'][name]['ece']:.4f} |"
        for r in c["rows"]
        if r["split"] == "test"
        for name in PRIORS
    )
    return f"""
## Calibration

`Predictor`, `ferkit predict` and `ferkit serve` divide this model's log-probabilities, averaged over the
TTA views, by a temperature T fitted by NLL on {c["fitted_on"]} for that TTA mode ({c["precision"]}; test is
not read; averaged views are softer and need less): {", ".join(f"{m} {t:.3f}" for m, t in (c.get("temperatures") or {"none": c["temperature"]}).items())}.
`--no-calibration` gives the raw scores. T changes no prediction, so no accuracy or macro-F1 above. Before -> after;
ECE on the top class in 15 equal-width bins, class-wise ECE averaged over the classes, NLL of the
true class, Brier score (0 to 2):

| split | TTA | T | ECE | class-wise ECE | NLL | Brier |
|---|---|---|---|---|---|---|
{rows}

{verdict}

## The class prior

Learned by this model (its sampler and loss, `ferkit.calibration.effective_prior`): {show(c["model_prior"])}.
FER-2013 train's: {show(c["train_prior"])}. `--prior` re-weights the calibrated probabilities by
pi_new / pi_model (docs/INFERENCE.md): `model` leaves them, `train` assumes train's frequencies, `uniform`
equal ones. On test (T applied):

| prior | TTA | accuracy | macro-F1 | ECE |
|---|---|---|---|---|
{priors}
"""


def model_card(path: Path, s: dict, title: str | None) -> str:
    """The card's markdown from its metrics file's summary `s` (the int8 block is filled by tools/report.py)."""
    cfg, tr, mode = s["config"], s["training"], card_tta(s)
    s = s | {"_path": path}
    names = list(s["test"]["per_class_f1"])
    rows = "\n".join(f"| {c} | {s['val']['per_class_f1'][c]:.3f} | {s['test']['per_class_f1'][c]:.3f} |" for c in names)
    minutes = f"{tr['seconds'] / 60:.1f} minutes" if tr["seconds"] else "unknown"
    ph = ""
    if s.get("posthoc"):
        p = s["posthoc"]
        ph = (
            f"\nPost-hoc adjustment, tuned on val only: `{p['method']}`"
            + (f" (tau {p['tau']})" if "tau" in p else "")
            + f", val macro-F1 {p['val_macro_f1']:.4f} before TTA (the search is in `{path.name}.metrics.json`).\n"
        )
    int8, int8_metrics = "", path.with_suffix(".int8.onnx.metrics.json")
    if int8_metrics.is_file():  # `ferkit export --int8` made one: its cost, from its metrics file
        d = json.loads(int8_metrics.read_text(encoding="utf-8"))
        calib, against = d["calibration"], describe_tta(tta_mode(d.get("tta", mode)))
        int8 = (
            f"\n## int8 (`{path.with_suffix('.int8.onnx').name}`, ONNX Runtime)\n\nCalibrated on {calib['images']} "
            f"{calib['split']} images; measured against float32, both with {against}, by "
            f"`ferkit export {path} --int8`"
        )
        refine = d.get("refine") or {}
        if refine.get("below"):  # the file's float32 copy re-runs the close calls (`ferkit.infer.int8`)
            int8 += (
                f". The file also holds a float32 copy of the model: a face whose int8 top-two margin is below "
                f"{refine['below']:.4f} (the least margin that keeps {refine['agreement_target']:.1%} of val's "
                f"labels, chosen on {refine['chosen_on']}) runs again in float32"
            )
        int8 += ":\n\n<!-- report:int8 -->\n<!-- /report:int8 -->\n"
    if s.get("tta_selection"):
        ph += (
            "\nTTA chosen on val macro-F1: "
            + ", ".join(f"{m} {f:.4f}" for m, f in s["tta_selection"].items())
            + f" -> `{mode}`.\n"
        )
    return f"""# {title or path.stem}

`{path.name}`: {cfg.get("arch")} with a {cfg.get("head")} head, {s["parameters"]:,} parameters,
{s["macs_per_image"] / 1e6:.1f} M multiply-adds per 48x48 image, {s["file_bytes"] / 1e6:.1f} MB (float16 weights).

## Recipe
loss `{cfg.get("loss")}`, sampler `{cfg.get("sampler")}` (q {cfg.get("sample_q")}), class weights `{cfg.get("weight_mode")}`,
{cfg.get("epochs")} epochs, batch {cfg.get("batch_size")}, {cfg.get("optimizer", "adam")} lr {cfg.get("lr")}, seed {cfg.get("seed")},
amp {cfg.get("amp")} (training). Checkpoint: best val macro-F1 (epoch chosen on val only). TTA recorded: `{mode}`.
{ph}
```bash
{_commands(path, s)}
```
Training time: {minutes} on {tr["machine"]}.

## Metrics (FER-2013; val = PublicTest, test = PrivateTest, evaluated from this file)

The headline is {describe_tta(mode)}, the TTA this file records: what `ferkit predict`, `ferkit serve` and
`Predictor` run by default (and `ferkit eval`).

{metrics_table(s)}

| class | val F1 | test F1 |
|---|---|---|
{rows}
{tta_table(s)}
Reproduce: `ferkit eval {path} --data_root /path/to/fer2013.zip` (float32, TTA `{mode}`), or
`ferkit quickstart /path/to/fer2013.zip` for every shipped model. It counts as reproduced when at most
{s.get("tolerance", {}).get("changed_predictions", 0)} of the 3,589 test predictions differ from this card's own: {s.get("tolerance", {}).get("why", "")}.
{int8}{_calibration_section(s)}"""
