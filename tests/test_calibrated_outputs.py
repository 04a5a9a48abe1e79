"""Calibration applied (issue 29, items 2-4): the temperature fitted on val, stored with the model and
applied by Predictor, `ferkit predict` and `serve`; the class prior as a choice; abstention."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synth import make_image_folders
from test_infer import CLASSES, make_checkpoint, run_cli

from ferkit.calibration import adjust, calibration_metrics, effective_prior, prior_ratio, read_prior, softmax
from ferkit.cli import main
from ferkit.commands.predict import add_arguments as add_predict_args
from ferkit.commands.predict import run as run_predict
from ferkit.data import FerData
from ferkit.infer import Predictor

# FER-2013 train's class counts (angry, disgust, fear, happy, neutral, sad, surprise)
COUNTS = np.array([3995, 436, 4097, 7215, 4965, 4830, 3171])
TRAIN = COUNTS / COUNTS.sum()
E0 = {"sampler": "default", "loss": "ce"}
E5 = {"sampler": "balanced", "loss": "ce"}
DISGUST, HAPPY = CLASSES.index("disgust"), CLASSES.index("happy")


# ---------------------------------------------------------------- the learned prior

def test_effective_prior_of_each_strategy():
    assert effective_prior(E0, COUNTS) == pytest.approx(TRAIN)
    sqrt = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()
    assert effective_prior(E5, COUNTS) == pytest.approx(sqrt)  # the sampler draws class c prop. to n_c ** 0.5
    assert effective_prior({"sampler": "class_balanced"}, COUNTS) == pytest.approx(np.full(7, 1 / 7))
    assert effective_prior({"sample_q": 0.5, "sampler": "default"}, COUNTS) == pytest.approx(sqrt)
    inv = effective_prior({"weight_mode": "inv", "loss": "wce"}, COUNTS)  # n_c x 1/n_c: uniform
    assert inv == pytest.approx(np.full(7, 1 / 7))
    assert effective_prior({"weight_mode": "inv_sqrt"}, COUNTS) == pytest.approx(sqrt)
    assert effective_prior({"loss": "bsoftmax"}, COUNTS) == pytest.approx(np.full(7, 1 / 7))  # logits + log pi
    assert effective_prior({"loss": "la", "tau": 0.5}, COUNTS) == pytest.approx(sqrt)
    assert effective_prior(E0, COUNTS, posthoc={"method": "la", "tau": 1.0}) == pytest.approx(np.full(7, 1 / 7))
    assert effective_prior(E5, COUNTS, posthoc={"method": "crt"}) == pytest.approx(np.full(7, 1 / 7))
    drw = {"weight_mode": "inv", "reweight_from": 20}  # deferred: only a checkpoint from epoch 20 on has it
    assert effective_prior(drw, COUNTS, epoch=12) == pytest.approx(TRAIN)
    assert effective_prior(drw, COUNTS, epoch=25) == pytest.approx(np.full(7, 1 / 7))


# ---------------------------------------------------------------- applying it

def test_adjust_is_the_temperature_on_logits_and_the_label_shift_rule():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 7))
    p = softmax(logits)
    assert adjust(p, 1.0) is p  # raw scores untouched
    assert adjust(p, 2.5) == pytest.approx(softmax(logits, 2.5), abs=1e-12)
    ratio = rng.uniform(0.2, 3, 7)
    want = softmax(logits, 2.5) * ratio
    assert adjust(p, 2.5, ratio) == pytest.approx(want / want.sum(1, keepdims=True), abs=1e-12)
    assert adjust(p.astype(np.float32), 2.0).dtype == np.float32


def test_prior_names_files_and_one_line_errors(tmp_path):
    record = {"model_prior": list(np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()), "train_prior": list(TRAIN)}
    assert prior_ratio("model", CLASSES, record) is None
    assert prior_ratio("train", CLASSES, record) == pytest.approx(TRAIN / np.array(record["model_prior"]))
    as_dict = tmp_path / "p.json"
    as_dict.write_text(json.dumps({c: 2.0 for c in CLASSES}))
    as_list = tmp_path / "p.txt"
    as_list.write_text("1, 1 1 1\n1 1 1")
    assert read_prior(as_dict, CLASSES) == pytest.approx(np.full(7, 1 / 7))
    assert read_prior(str(as_list), CLASSES) == pytest.approx(np.full(7, 1 / 7))
    assert prior_ratio(str(as_dict), CLASSES, record) == pytest.approx(prior_ratio("uniform", CLASSES, record))
    bad = {"a dict without disgust": {c: 1 for c in CLASSES if c != "disgust"},
           "an unknown class": {**{c: 1 for c in CLASSES}, "joy": 1},
           "six numbers": [1] * 6, "a zero": [1, 0, 1, 1, 1, 1, 1], "a NaN": [1, float("nan"), 1, 1, 1, 1, 1],
           "words": ["a"] * 7}
    for what, spec in bad.items():
        with pytest.raises(ValueError) as e:
            read_prior(spec, CLASSES)
        assert "\n" not in str(e.value) and str(e.value).startswith("prior: "), what
    for spec in ("no-such-file.json", str(tmp_path)):
        with pytest.raises(ValueError, match="neither model, train, uniform nor a file"):
            read_prior(spec, CLASSES)
    with pytest.raises(ValueError, match="does not record the prior it learned"):
        prior_ratio("uniform", CLASSES, None)


def constant_model(path: Path, probs: list[float], config: dict, temperature: float = 1.0) -> Path:
    """A checkpoint whose model gives every face the same logits, log(`probs`), and a calibration
    record with the prior its `config` implies on FER-2013's train counts."""
    torch.manual_seed(0)
    make_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    ckpt["model"]["head.fc.weight"].zero_()
    ckpt["model"]["head.fc.bias"].copy_(torch.tensor(np.log(probs), dtype=torch.float32))
    ckpt["config"] = config
    ckpt["calibration"] = {"temperature": temperature, "fitted_on": "val", "tta": "none",
                           "model_prior": effective_prior(config, COUNTS).tolist(), "train_prior": TRAIN.tolist()}
    torch.save(ckpt, path)
    return path


# happy just ahead of disgust; the rest share what is left
CLOSE = [0.10, 0.26, 0.10, 0.30, 0.08, 0.08, 0.08]
FACE = np.full((48, 48), 128, np.uint8)


def probs_under(ckpt: Path, prior) -> np.ndarray:
    return Predictor(ckpt, backend="torch", detect=False, bf16=False, prior=prior).predict_crops(FACE[None])[0]


def test_the_prior_moves_predictions_the_way_the_correction_implies(tmp_path):
    """E5 learned pi prop. to sqrt(n_c): `uniform` raises the rare disgust over happy, `train` the
    reverse. E0 learned train's prior: `train` changes nothing, `uniform` raises disgust."""
    e5, e0 = constant_model(tmp_path / "e5.pt", CLOSE, E5), constant_model(tmp_path / "e0.pt", CLOSE, E0)
    for ckpt in (e5, e0):
        assert probs_under(ckpt, "model") == pytest.approx(CLOSE, abs=1e-6)
        assert probs_under(ckpt, "model").argmax() == HAPPY
    uniform = probs_under(e5, "uniform")
    assert uniform.argmax() == DISGUST and uniform[DISGUST] > CLOSE[DISGUST] and uniform[HAPPY] < CLOSE[HAPPY]
    ratio = (CLOSE[DISGUST] / CLOSE[HAPPY]) * np.sqrt(COUNTS[HAPPY] / COUNTS[DISGUST])  # (1/7) / pi_model
    assert uniform[DISGUST] / uniform[HAPPY] == pytest.approx(ratio, rel=1e-5)
    train = probs_under(e5, "train")
    assert train[HAPPY] > CLOSE[HAPPY] and train[DISGUST] < CLOSE[DISGUST]
    assert probs_under(e0, "train") == pytest.approx(CLOSE, abs=1e-6)
    e0_uniform = probs_under(e0, "uniform")
    assert e0_uniform.argmax() == DISGUST and e0_uniform[DISGUST] / e0_uniform[HAPPY] > uniform[DISGUST] / uniform[HAPPY]


def test_temperature_is_applied_by_default_and_no_calibration_gives_the_raw_scores(tmp_path):
    ckpt = constant_model(tmp_path / "m.pt", CLOSE, E0, temperature=2.0)
    calibrated = Predictor(ckpt, backend="torch", detect=False, bf16=False)
    raw = Predictor(ckpt, backend="torch", detect=False, bf16=False, calibrate=False)
    assert raw.predict_crops(FACE[None])[0] == pytest.approx(CLOSE, abs=1e-6)
    want = np.sqrt(CLOSE) / np.sqrt(CLOSE).sum()
    assert calibrated.predict_crops(FACE[None])[0] == pytest.approx(want, abs=1e-6)
    assert calibrated.describe()["temperature"] == 2.0 and raw.describe()["temperature"] == 1.0
    record = torch.load(ckpt, weights_only=False)["calibration"]  # a temperature for each TTA mode
    torch.save(torch.load(ckpt, weights_only=False) | {"calibration": record | {"temperatures": {"none": 2.0, "crops": 1.25}}}, ckpt)
    assert Predictor(ckpt, backend="torch", detect=False, bf16=False, tta="crops").temperature == 1.25
    assert Predictor(ckpt, backend="torch", detect=False, bf16=False, tta="flip").temperature == 2.0  # none fitted: T


def test_onnx_models_carry_the_calibration_in_their_metadata(tmp_path):
    """The same record, kept by export and written into a model's metadata without touching its graph, is
    applied by the ONNX backend as by torch (the int8 path reads it the same way)."""
    import onnx

    from ferkit.infer.export import export_onnx
    from ferkit.pretrained import write_onnx_calibration

    ckpt = constant_model(tmp_path / "m.pt", CLOSE, E5, temperature=1.7)
    export_onnx(ckpt, tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph.SerializeToString()
    assert Predictor(tmp_path / "m.onnx", backend="onnx", detect=False).temperature == 1.7  # export keeps the record
    write_onnx_calibration(tmp_path / "m.onnx", None)
    assert Predictor(tmp_path / "m.onnx", backend="onnx", detect=False).temperature == 1.0  # removed
    record = torch.load(ckpt, weights_only=False)["calibration"]
    write_onnx_calibration(tmp_path / "m.onnx", record)
    assert onnx.load(str(tmp_path / "m.onnx")).graph.SerializeToString() == graph  # weights byte-identical
    for prior in ("model", "uniform"):
        by_onnx = Predictor(tmp_path / "m.onnx", backend="onnx", detect=False, prior=prior).predict_crops(FACE[None])
        by_torch = Predictor(ckpt, backend="torch", detect=False, bf16=False, prior=prior).predict_crops(FACE[None])
        assert by_onnx == pytest.approx(by_torch, abs=1e-5)
    write_onnx_calibration(tmp_path / "m.onnx", None)
    assert Predictor(tmp_path / "m.onnx", backend="onnx", detect=False).temperature == 1.0


# ---------------------------------------------------------------- abstention

def test_min_score_labels_uncertain_and_keeps_every_probability(tmp_path):
    ckpt = constant_model(tmp_path / "m.pt", CLOSE, E0)
    sure = Predictor(ckpt, backend="torch", detect=False, bf16=False, min_score=0.29).predict(FACE)[0][0]
    unsure = Predictor(ckpt, backend="torch", detect=False, bf16=False, min_score=0.31).predict(FACE)[0][0]
    assert sure["label"] == "happy" and unsure["label"] == "uncertain"
    assert unsure["score"] == pytest.approx(0.30, abs=1e-6) and unsure["probs"] == pytest.approx(sure["probs"])
    assert set(unsure["probs"]) == set(CLASSES)
    with pytest.raises(ValueError, match="min_score"):
        Predictor(ckpt, backend="torch", detect=False, min_score=1.5)


def test_predict_cli_min_score_prior_and_no_calibration(tmp_path, capsys):
    from PIL import Image

    ckpt = constant_model(tmp_path / "m.pt", CLOSE, E5, temperature=2.0)
    Image.fromarray(FACE).save(tmp_path / "face.png")
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({c: 1 for c in CLASSES}))
    base = [str(tmp_path / "face.png"), "--ckpt", str(ckpt), "--backend", "torch", "--no-detect", "--bf16", "off"]

    def row(*extra: str) -> dict:
        assert run_cli(add_predict_args, run_predict, base + list(extra)) == 0
        return json.loads(capsys.readouterr().out.splitlines()[0])

    raw, calibrated = row("--no-calibration"), row()
    assert raw["score"] == pytest.approx(0.30, abs=1e-5) and calibrated["score"] < raw["score"]
    assert row("--min-score", "0.9")["label"] == "uncertain" and len(row("--min-score", "0.9")) == len(calibrated)
    assert row("--prior", str(prior)) == row("--prior", "uniform") and row("--prior", "uniform")["label"] == "disgust"
    assert run_cli(add_predict_args, run_predict, base + ["--format", "csv", "--min-score", "0.9"]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    csv_row = dict(zip(header.split(","), line.split(",")))
    assert csv_row["label"] == "uncertain" and float(csv_row["p_happy"]) == pytest.approx(calibrated["probs"]["happy"])
    for bad, message in ((["--prior", str(tmp_path / "none.json")], "neither model, train, uniform nor a file"),
                         (["--min-score", "2"], "--min-score")):
        assert main(["predict", *base, *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    six = tmp_path / "six.json"
    six.write_text("[1, 1, 1, 1, 1, 1]")
    assert main(["predict", *base, "--prior", str(six)]) == 2
    err = capsys.readouterr().err
    assert "6 numbers for 7 classes" in err and len(err.strip().splitlines()) == 1


def test_service_min_score_from_the_server_and_per_request(tmp_path):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from ferkit.infer.service import create_app

    ckpt = constant_model(tmp_path / "m.pt", CLOSE, E0)
    buf = io.BytesIO()
    Image.fromarray(FACE).save(buf, "PNG")
    client = TestClient(create_app(Predictor(ckpt, backend="torch", bf16=False, min_score=0.5)))

    def face(query: str = "") -> dict:
        r = client.post(f"/predict?detect=false{query}", files={"file": ("f.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        return r.json()["faces"][0]

    assert face()["label"] == "uncertain" and len(face()["probs"]) == 7 and face()["score"] == pytest.approx(0.3, abs=1e-5)
    assert face("&min_score=0.2")["label"] == "happy"
    assert client.post("/predict?min_score=3", files={"file": ("f.png", buf.getvalue(), "image/png")}).status_code == 422
    assert client.get("/health").json()["min_score"] == 0.5


# ---------------------------------------------------------------- fitting it on val, never test

class PoisonedSplit:
    """A split that fails the test if anything reads it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the test split was read ({name})")


class NoTest(dict):
    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("the test split was read")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def test_posthoc_temperature_reads_val_only_and_keeps_the_weights(tmp_path, monkeypatch, capsys):
    import ferkit.data
    from ferkit.calibration import fit_temperature

    root = make_image_folders(tmp_path / "fer", {s: {c: 6 for c in CLASSES} for s in ("train", "val", "test")})
    real = ferkit.data.load_data(root)

    def no_test(*args, **kwargs) -> FerData:
        splits = NoTest({k: v for k, v in real.splits.items() if k != "test"})
        dict.__setitem__(splits, "test", PoisonedSplit())
        return FerData(real.class_names, splits, real.source, real.key, real.notes)

    monkeypatch.setattr(ferkit.data, "load_data", no_test)
    ckpt = make_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "cal.pt"
    assert main(["posthoc", str(ckpt), "--method", "temperature", "--data_root", str(root), "--out", str(out)]) == 0
    assert "val ECE" in capsys.readouterr().out
    before, after = torch.load(ckpt, weights_only=False), torch.load(out, weights_only=False)
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    record = after["calibration"]
    assert record["fitted_on"] == "val" and record["tta"] == "none" and record["source"] == str(ckpt)
    assert record["model_prior"] == pytest.approx(np.full(7, 1 / 7))  # the synthetic train set is balanced
    val = real.splits["val"]
    probs = Predictor(ckpt, backend="torch", detect=False, bf16=False).predict_crops(val.images)
    assert record["temperature"] == pytest.approx(fit_temperature(np.log(probs), val.labels), rel=1e-3)
    assert set(record["temperatures"]) == {"none", "flip", "crops"} and record["temperatures"]["none"] == record["temperature"]
    for mode in ("none", "flip", "crops"):
        assert record["val"][mode]["after"]["nll"] <= record["val"][mode]["before"]["nll"] + 1e-9
    assert record["val"]["none"]["before"] == pytest.approx(calibration_metrics(probs, val.labels), abs=1e-5)
    flip = Predictor(out, backend="torch", detect=False, bf16=False, tta="flip")
    assert flip.temperature == record["temperatures"]["flip"]
    assert main(["posthoc", str(ckpt), "--method", "temperature", "--data_root", str(root), "--out", str(ckpt)]) == 2


@pytest.mark.slow
def test_eval_writes_calibration_reliability_and_coverage_from_the_predictions(tmp_path):
    import csv

    from ferkit.evaluate import output_files
    from ferkit.metrics import calibration_from_predictions

    root = make_image_folders(tmp_path / "fer", {s: {c: 5 for c in CLASSES} for s in ("train", "val", "test")})
    ckpt, cal = make_checkpoint(tmp_path / "m.pt"), tmp_path / "cal.pt"
    assert main(["posthoc", str(ckpt), "--method", "temperature", "--data_root", str(root), "--out", str(cal)]) == 0
    record = torch.load(cal, weights_only=False)["calibration"]
    out = tmp_path / "ev"
    assert main(["eval", str(cal), "--data_root", str(root), "--split", "both", "--out", str(out), "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(output_files())
    for suffix in ("", "_val"):
        m = json.loads((out / f"metrics{suffix}.json").read_text())
        c = m["calibration"]
        assert {"ece", "classwise_ece", "nll", "brier", "n_bins", "temperature", "scaled"} <= set(c)
        assert c["temperature"] == record["temperature"] and c["n_bins"] == 15
        again, coverage = calibration_from_predictions(out / f"predictions{suffix}.csv", record)  # 6 decimals
        for key in ("ece", "classwise_ece", "nll", "brier"):
            assert again[key] == pytest.approx(c[key], abs=1e-4) and again["scaled"][key] == pytest.approx(c["scaled"][key], abs=1e-4)
        with open(out / f"coverage{suffix}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert float(rows[0]["threshold"]) == 0 and float(rows[0]["coverage"]) == 1
        assert float(rows[0]["accuracy"]) == pytest.approx(m["accuracy"], abs=1e-6)
        assert float(rows[0]["macro_f1"]) == pytest.approx(m["macro_f1"], abs=1e-6)
        assert [float(r["coverage"]) for r in rows] == sorted((float(r["coverage"]) for r in rows), reverse=True)
        assert len(rows) == len(coverage) == 20
        for png in ("reliability", "coverage"):
            assert (out / f"{png}{suffix}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_pack_carries_the_calibration_into_the_card_and_the_onnx_sibling(tmp_path):
    from ferkit.infer.export import export_onnx

    root = make_image_folders(tmp_path / "fer", {s: {c: 4 for c in CLASSES} for s in ("train", "val", "test")})
    runs = tmp_path / "runs"
    assert main(["train", "--data_root", str(root), "--epochs", "1", "--batch_size", "8", "--exp", "r",
                 "--runs_dir", str(runs), "--sampler", "balanced"]) == 0
    shipped = tmp_path / "pretrained" / "m.pt"
    assert main(["pack", str(runs / "r" / "best.pt"), "--out", str(shipped), "--tta", "flip", "--title", "A model"]) == 0
    export_onnx(shipped, shipped.with_suffix(".onnx"))
    assert Predictor(shipped.with_suffix(".onnx"), backend="onnx", detect=False).temperature == 1.0
    cal = tmp_path / "cal.pt"
    assert main(["posthoc", str(shipped), "--method", "temperature", "--out", str(cal)]) == 0
    weights = torch.load(shipped, weights_only=False)["model"]
    assert main(["pack", str(cal), "--out", str(shipped), "--tta", "flip", "--force"]) == 0
    again = torch.load(shipped, weights_only=False)
    assert all(torch.equal(weights[k], again["model"][k]) for k in weights)  # the weights, byte for byte
    record = again["calibration"]
    assert Predictor(shipped.with_suffix(".onnx"), backend="onnx", detect=False, tta="flip").temperature == \
        record["temperatures"]["flip"]
    card = json.loads((tmp_path / "pretrained" / "m.pt.metrics.json").read_text())
    assert [(r["split"], r["tta"]) for r in card["calibration"]["rows"]] == [("val", "none"), ("val", "flip"),
                                                                          ("test", "none"), ("test", "flip")]
    text = (tmp_path / "pretrained" / "m.md").read_text()
    assert text.startswith("# A model\n")  # re-packing keeps the card's title
    assert "## Calibration" in text and "## The class prior" in text and f"ferkit posthoc {shipped} --method temperature --out {cal}" in text
    assert f"ferkit pack {cal} --out {shipped} --force" in text
    test1 = card["calibration"]["rows"][2]
    assert f"| test | none | {test1['temperature']:.3f} | {test1['before']['ece']:.4f} -> {test1['after']['ece']:.4f} |" in text
    flip = card["calibration"]["rows"][3]  # the card's own TTA: prior "model" changes no prediction
    assert flip["priors"]["model"]["accuracy"] == card["test"]["accuracy"] and flip["priors"]["model"]["macro_f1"] == card["test"]["macro_f1"]


# ---------------------------------------------------------------- the figures docs/INFERENCE.md quotes

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"ferkit-recommended": "E5", "ferkit-e0-baseline": "E0"}
COVERAGE_RUN = ROOT / "results" / "calibration" / "recommended-single-view"
COVERAGE_AT = ("0.00", "0.40", "0.50", "0.60", "0.70", "0.80", "0.90")


def quoted_tables() -> dict[str, list[str]]:
    """The rows docs/INFERENCE.md quotes from committed files: the cards' calibration and prior
    tables, and the recommended model's single-view coverage on val and test."""
    ece, prior = [], []
    for name, recipe in SHIPPED.items():
        card = json.loads((ROOT / "pretrained" / f"{name}.pt.metrics.json").read_text())
        rows = {(r["split"], r["tta"]): r for r in card["calibration"]["rows"]}
        for (split, tta), r in rows.items():
            if split != "test":
                continue
            v = rows[("val", tta)]
            arrow = lambda x, k: f"{x['before'][k]:.4f} -> {x['after'][k]:.4f}"  # noqa: E731
            ece.append(f"| `{name}` | {tta} | {r['temperature']:.3f} | {arrow(v, 'ece')} | {arrow(r, 'ece')} | "
                       f"{arrow(r, 'nll')} | {arrow(r, 'brier')} |")
            for p, m in r["priors"].items():
                prior.append(f"| `{name}` ({recipe}) | {p} | {tta} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['ece']:.4f} |")
    cover = {}
    for split, suffix in (("val", "_val"), ("test", "")):
        with open(COVERAGE_RUN / f"coverage{suffix}.csv", newline="") as f:
            import csv
            cover[split] = {r["threshold"][:4]: r for r in csv.DictReader(f)}
    coverage = [f"| {t} | " + " | ".join(f"{float(cover[s][t]['coverage']):.3f} | {float(cover[s][t]['accuracy']):.4f} | "
                                        f"{float(cover[s][t]['macro_f1']):.4f}" for s in ("val", "test")) + " |"
                for t in COVERAGE_AT]
    return {"ece": ece, "prior": prior, "coverage": coverage}


def test_the_calibration_figures_in_the_docs_are_the_committed_ones():
    text = (ROOT / "docs" / "INFERENCE.md").read_text(encoding="utf-8")
    for table, rows in quoted_tables().items():
        for row in rows:
            assert row in text, f"docs/INFERENCE.md lacks this {table} row of the committed results: {row}"
