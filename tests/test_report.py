"""Reports: statistics, grouping, summaries, figures and the summary/figures commands."""
import argparse
import csv
import json
import math
import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from ferkit.commands import figures as figures_command
from ferkit.commands import summary as summary_command
from ferkit.metrics import compute_metrics, write_predictions
from ferkit.report import figures, stats, summary
from ferkit.report.stats import ReportError
from ferkit.report.summary import read_metrics

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_CLASSES = len(CLASSES)


def fake_labels(n, accuracy, seed, n_classes=N_CLASSES):
    """(y_true, y_pred) with roughly `accuracy` of the predictions right."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, rng.integers(0, n_classes, n))
    return y_true, y_pred


def make_run(run_dir, y_true, y_pred, names=None):
    """A run dir as `ferkit evaluate` writes it: metrics.json and predictions.csv."""
    run_dir.mkdir(parents=True)
    names = names or [f"test/img_{i}.jpg" for i in range(len(y_true))]
    probs = np.full((len(y_pred), len(CLASSES)), 0.05)
    probs[np.arange(len(y_pred)), y_pred] = 0.7  # argmax is the prediction
    metrics = compute_metrics(y_true, y_pred, CLASSES) | {"split": "test", "tta": False}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    write_predictions(run_dir / "predictions.csv", names, y_true, probs, CLASSES)
    return run_dir


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000


# ---------------------------------------------------------------- stats

@pytest.mark.parametrize("seed", range(5))
def test_confusion_helper_equals_sklearn(seed):
    # Small n and few classes used, so that some classes are absent from truth and/or predictions.
    y_true, y_pred = fake_labels(25, 0.4, seed, n_classes=4)
    labels = list(range(len(CLASSES)))
    m = stats.metrics_from_confusion(stats.confusion_counts(y_true, y_pred, len(CLASSES)))
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0), abs=1e-12)
    ref = compute_metrics(y_true, y_pred, CLASSES)
    assert m["macro_f1"] == pytest.approx(ref["macro_f1"], abs=1e-12)
    np.testing.assert_allclose(m["per_class_f1"], ref["per_class_f1"], atol=1e-12)
    np.testing.assert_array_equal(stats.confusion_counts(y_true, y_pred, len(CLASSES)), ref["confusion_matrix"])


def test_confusion_helper_on_a_stack():
    cms = np.stack([stats.confusion_counts(*fake_labels(50, 0.5, s), len(CLASSES)) for s in range(3)])
    stacked = stats.metrics_from_confusion(cms)["macro_f1"]
    assert stacked.shape == (3,)
    assert stacked[1] == pytest.approx(stats.metrics_from_confusion(cms[1])["macro_f1"])


def test_bootstrap_ci_contains_point_and_narrows():
    widths = []
    for n in (200, 3000):
        y_true, y_pred = fake_labels(n, 0.6, seed=1)
        point = compute_metrics(y_true, y_pred, CLASSES)
        for metric in ("macro_f1", "accuracy"):
            low, high = stats.bootstrap_ci(y_true, y_pred, CLASSES, metric, n_boot=500)
            assert low < point[metric] < high
        low, high = stats.bootstrap_ci(y_true, y_pred, CLASSES, n_boot=500)
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): 15x the items, ~4x narrower


def test_bootstrap_ci_is_seeded_and_accepts_class_names():
    y_true, y_pred = fake_labels(300, 0.6, seed=2)
    a = stats.bootstrap_ci(y_true, y_pred, CLASSES, n_boot=200, seed=5)
    names = stats.bootstrap_ci([CLASSES[i] for i in y_true], [CLASSES[i] for i in y_pred], CLASSES, n_boot=200, seed=5)
    assert a == names
    assert a != stats.bootstrap_ci(y_true, y_pred, CLASSES, n_boot=200, seed=6)
    low, high = stats.bootstrap_ci(y_true, y_pred, CLASSES, "f1_happy", n_boot=200)
    assert 0 <= low <= high <= 1


def test_bootstrap_is_fast():
    y_true, y_pred = fake_labels(3589, 0.6, seed=3)
    start = time.perf_counter()
    stats.bootstrap_ci(y_true, y_pred, CLASSES, n_boot=1000)
    assert time.perf_counter() - start < 2.0


def test_paired_bootstrap_of_identical_predictions_is_zero():
    y_true, y_pred = fake_labels(500, 0.6, seed=4)
    r = stats.paired_bootstrap(y_true, y_pred, y_pred.copy(), CLASSES, n_boot=300)
    assert r == {"diff": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_paired_bootstrap_detects_a_better_model():
    y_true, good = fake_labels(1000, 0.8, seed=5)
    _, bad = fake_labels(1000, 0.4, seed=5)
    r = stats.paired_bootstrap(y_true, good, bad, CLASSES, n_boot=300)
    point = compute_metrics(y_true, good, CLASSES)["macro_f1"] - compute_metrics(y_true, bad, CLASSES)["macro_f1"]
    assert r["diff"] == pytest.approx(point)
    assert 0 < r["low"] < r["diff"] < r["high"]
    assert r["p_value"] == pytest.approx(2 / 301)  # no resample favours the bad model
    flipped = stats.paired_bootstrap(y_true, bad, good, CLASSES, n_boot=300)
    assert flipped["diff"] == pytest.approx(-r["diff"]) and flipped["high"] < 0


def test_mcnemar_against_hand_computed_values():
    y_true = np.zeros(10, dtype=int)
    # a right on items 0-4, b right on items 3-5: b = 3 (items 0,1,2), c = 1 (item 5).
    pred_a = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    pred_b = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    r = stats.mcnemar(y_true, pred_a, pred_b)
    # Two-sided exact: 2 * P(X <= 1), X ~ Bin(4, 1/2) = 2 * (1 + 4) / 16
    assert r == {"b": 3, "c": 1, "statistic": 1, "p_value": 0.625}
    assert stats.mcnemar(y_true, pred_a, pred_a)["p_value"] == 1.0  # no discordant items
    assert stats.binomial_two_sided_p(10, 10) == 2 / 1024
    assert stats.binomial_two_sided_p(5, 10) == 1.0


def test_binomial_p_matches_scipy_for_large_n():
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in [(3, 20), (40, 100), (700, 1500), (1800, 3589)]:
        expected = scipy_stats.binomtest(k, n, 0.5).pvalue
        assert math.isclose(stats.binomial_two_sided_p(k, n), expected, rel_tol=1e-9, abs_tol=1e-300)


def test_stats_reject_bad_input():
    with pytest.raises(ReportError, match="differ in length"):
        stats.bootstrap_ci([0, 1], [0], CLASSES)
    with pytest.raises(ReportError, match="unknown class"):
        stats.bootstrap_ci(["happy"], ["joy"], CLASSES)
    with pytest.raises(ReportError, match="unknown metric"):
        stats.bootstrap_ci([0, 1], [0, 1], CLASSES, metric="f2")
    with pytest.raises(ReportError, match="empty"):
        stats.mcnemar([], [], [])


# ---------------------------------------------------------------- grouping and loading

@pytest.mark.parametrize("name, expected", [
    ("focal_seed3", ("focal", 3)), ("focal-seed12", ("focal", 12)), ("focal_s3", ("focal", 3)),
    ("focal-s0", ("focal", 0)), ("class_balanced_loss_seed1", ("class_balanced_loss", 1)),
    ("baseline", ("baseline", None)), ("focal_s", ("focal_s", None)), ("res50", ("res50", None)),
])
def test_split_seed(tmp_path, name, expected):
    assert summary.split_seed(tmp_path / name) == expected


def test_split_seed_of_a_bare_seed_dir_uses_the_parent(tmp_path):
    assert summary.split_seed(tmp_path / "focal" / "seed2") == ("focal", 2)


def test_group_runs_by_seed_suffix_and_explicit_globs(tmp_path):
    dirs = [tmp_path / n for n in ("ce_seed1", "ce_seed2", "focal-s1", "focal-s2", "ldam")]
    assert summary.group_runs(dirs) == {"ce": dirs[:2], "focal": dirs[2:4], "ldam": dirs[4:]}
    grouped = summary.group_runs(dirs, ["loss=*l*", "plain=ce_*"])
    assert grouped == {"loss": [dirs[2], dirs[3], dirs[4]], "plain": dirs[:2]}
    # A glob over the path; runs no pattern matches keep their default group.
    grouped = summary.group_runs(dirs, [f"F={tmp_path.as_posix()}/focal*"])
    assert grouped == {"F": dirs[2:4], "ce": dirs[:2], "ldam": dirs[4:]}


@pytest.mark.parametrize("specs, message", [
    (["nothing=zzz*"], "matches no run dir"), (["a=ce*", "b=*seed1"], "matches groups"),
    (["noequals"], "NAME=GLOB"), (["a=ce*", "a=focal*"], "distinct name"),
])
def test_group_runs_errors(tmp_path, specs, message):
    with pytest.raises(ReportError, match=message):
        summary.group_runs([tmp_path / "ce_seed1", tmp_path / "focal_seed1"], specs)


def test_load_run_reads_both_files(tmp_path):
    y_true, y_pred = fake_labels(40, 0.5, seed=0)
    run = summary.load_run(make_run(tmp_path / "ce_seed7", y_true, y_pred))
    assert run["seed"] == 7 and run["class_names"] == CLASSES and len(run["names"]) == 40
    np.testing.assert_array_equal(run["y_true"], y_true)
    np.testing.assert_array_equal(run["y_pred"], y_pred)
    assert run["probs"].shape == (40, 7)
    np.testing.assert_array_equal(run["probs"].argmax(1), y_pred)


def test_load_run_errors(tmp_path):
    with pytest.raises(ReportError, match="no metrics.json"):
        summary.load_run(tmp_path)
    run_dir = make_run(tmp_path / "r", *fake_labels(40, 0.5, seed=0))
    (run_dir / "predictions.csv").rename(run_dir / "p.csv")
    with pytest.raises(ReportError, match="no predictions.csv"):
        summary.load_run(run_dir)
    # predictions from another evaluation than the metrics
    other = make_run(tmp_path / "other", *fake_labels(40, 0.5, seed=9))
    (other / "predictions.csv").rename(run_dir / "predictions.csv")
    with pytest.raises(ReportError, match="metrics.json says"):
        summary.load_run(run_dir)
    (run_dir / "metrics.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        summary.load_run(run_dir)


# ---------------------------------------------------------------- summaries

@pytest.fixture
def runs_root(tmp_path):
    """focal_loss: seeds 1-3, ce: seeds 1-2, ce_copy: ce's predictions (seeds 1-2), single: one run."""
    root = tmp_path / "runs"
    for seed in (1, 2, 3):
        make_run(root / f"focal_loss_seed{seed}", *fake_labels(300, 0.7, seed=100 + seed))
    for seed in (1, 2):
        y_true, y_pred = fake_labels(300, 0.5, seed=100 + seed)
        make_run(root / f"ce_seed{seed}", y_true, y_pred)
        make_run(root / f"cecopy_seed{seed}", y_true, y_pred)
    make_run(root / "single", *fake_labels(300, 0.6, seed=101))
    return root


def _metric(root, run, key):
    return json.loads((root / run / "metrics.json").read_text())[key]


def test_summarize_mean_std_and_files(runs_root, tmp_path):
    out = tmp_path / "out"
    rows = summary.summarize(sorted(runs_root.iterdir()), out, n_boot=200)
    by_group = {r["group"]: r for r in rows}
    assert set(by_group) == {"focal_loss", "ce", "cecopy", "single"}
    focal = by_group["focal_loss"]
    f1s = [_metric(runs_root, f"focal_loss_seed{s}", "macro_f1") for s in (1, 2, 3)]
    assert focal["n_seeds"] == 3
    assert focal["macro_f1_mean"] == pytest.approx(np.mean(f1s))
    assert focal["macro_f1_std"] == pytest.approx(np.std(f1s, ddof=1))
    happy = [_metric(runs_root, f"focal_loss_seed{s}", "f1_happy") for s in (1, 2, 3)]
    assert focal["f1_happy_mean"] == pytest.approx(np.mean(happy))
    assert focal["f1_happy_std"] == pytest.approx(np.std(happy, ddof=1))
    assert focal["macro_f1_ci95_low"] < focal["macro_f1_mean"] < focal["macro_f1_ci95_high"]
    assert by_group["single"]["macro_f1_std"] == 0.0 and by_group["single"]["n_seeds"] == 1

    with open(out / "summary.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["group"] for r in csv_rows] == [r["group"] for r in rows]
    assert float(csv_rows[0]["macro_f1_mean"]) == pytest.approx(rows[0]["macro_f1_mean"], abs=1e-6)
    md = (out / "summary.md").read_text()
    assert f"| {focal['macro_f1_mean']:.3f} ± {focal['macro_f1_std']:.3f} |" in md
    assert "per seed" in md
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + len(rows)  # header + one per group
    tex = (out / "summary.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"focal\_loss" in tex and "focal_loss" not in tex and r"$\pm$" in tex
    assert r"95\% CI" in tex
    assert_png(out / "per_class_f1.png")
    assert not (out / "paired.csv").exists()


def test_summarize_with_baseline(runs_root, tmp_path):
    out, notes = tmp_path / "out", []
    rows = summary.summarize(sorted(runs_root.iterdir()), out, baseline="ce", n_boot=200, log=notes.append)
    by_group = {r["group"]: r for r in rows}
    assert "n_pairs" not in by_group["ce"]
    assert by_group["focal_loss"]["n_pairs"] == 2  # seeds 1 and 2; seed 3 has no ce partner
    assert any("focal_loss" in n and "left out" in n for n in notes)
    assert by_group["cecopy"]["macro_f1_diff_mean"] == 0.0 and by_group["cecopy"]["mcnemar_p_max"] == 1.0
    assert by_group["single"]["n_pairs"] == 1  # no seed: paired by order
    with open(out / "paired.csv", newline="") as f:
        paired = list(csv.DictReader(f))
    focal = [p for p in paired if p["group"] == "focal_loss"]
    assert [(p["run"], p["baseline_run"]) for p in focal] == [("focal_loss_seed1", "ce_seed1"),
                                                             ("focal_loss_seed2", "ce_seed2")]
    expected = _metric(runs_root, "focal_loss_seed2", "macro_f1") - _metric(runs_root, "ce_seed2", "macro_f1")
    assert float(focal[1]["macro_f1_diff"]) == pytest.approx(expected, abs=1e-6)
    assert float(focal[1]["diff_ci95_low"]) > 0  # 0.7 vs 0.5 accuracy on 300 items
    assert float(focal[1]["mcnemar_p"]) < 0.05
    md = (out / "summary.md").read_text()
    assert "Δ macro-F1 vs ce" in md and "McNemar" in md


def test_a_baseline_of_one_run_is_paired_with_every_run(tmp_path):
    """A recipe's seeds against one shipped model: each seed is one pair, none is left out."""
    y_true, base_pred = fake_labels(200, 0.5, seed=0)
    base = make_run(tmp_path / "shipped", y_true, base_pred)
    def better(seed):  # the same images, about 0.7 right
        rng = np.random.default_rng(seed)
        return np.where(rng.random(200) < 0.7, y_true, rng.integers(0, N_CLASSES, 200))

    new = [make_run(tmp_path / f"new_seed{s}", y_true, better(s)) for s in (1, 2, 3)]
    notes = []
    rows = summary.summarize([base, *new], tmp_path / "out", groups=["new=new_seed*", "shipped=shipped"],
                             baseline="shipped", n_boot=100, log=notes.append)
    row = next(r for r in rows if r["group"] == "new")
    assert row["n_pairs"] == 3 and not any("left out" in n for n in notes)
    with open(tmp_path / "out" / "paired.csv", newline="") as f:
        assert [p["baseline_run"] for p in csv.DictReader(f)] == ["shipped"] * 3
    assert row["diff_seed_std"] > 0 and row["diff_ci95_low"] > 0


def test_paired_comparison_aligns_reordered_images(tmp_path):
    y_true, y_pred = fake_labels(100, 0.6, seed=0)
    names = [f"test/{i}.jpg" for i in range(100)]
    order = np.random.default_rng(0).permutation(100)
    a = make_run(tmp_path / "a", y_true, y_pred, names)
    b = make_run(tmp_path / "b", y_true[order], y_pred[order], [names[i] for i in order])
    rows = summary.summarize([a, b], tmp_path / "out", baseline="a", n_boot=50)
    assert rows[1]["macro_f1_diff_mean"] == 0.0 and rows[1]["mcnemar_p_max"] == 1.0
    c = make_run(tmp_path / "c", y_true, y_pred, [f"other/{i}.jpg" for i in range(100)])
    with pytest.raises(ReportError, match="different test images"):
        summary.summarize([a, c], tmp_path / "out2", baseline="a", n_boot=50)


def test_summarize_errors(runs_root, tmp_path):
    with pytest.raises(ReportError, match="baseline group 'nope' not found"):
        summary.summarize(sorted(runs_root.iterdir()), tmp_path / "o", baseline="nope", n_boot=10)
    with pytest.raises(ReportError, match="no run dirs"):
        summary.summarize([], tmp_path / "o")


# ---------------------------------------------------------------- figures

def test_row_normalise():
    rates = figures.row_normalise(np.array([[3, 1], [0, 0]]))
    np.testing.assert_allclose(rates, [[0.75, 0.25], [0, 0]])


def test_figures_are_valid_pngs(runs_root, tmp_path):
    m = json.loads((runs_root / "ce_seed1" / "metrics.json").read_text())
    assert_png(figures.plot_confusion(np.array(m["confusion_matrix"]), CLASSES, tmp_path / "a" / "cm.png", "t"))
    runs = [runs_root / "ce_seed1", runs_root / "focal_loss_seed1", runs_root / "single"]
    assert_png(figures.compare_confusions({d.name: read_metrics(d) for d in runs}, tmp_path / "cmp.png"))
    groups = {"one run": m["per_class_f1"], "seeds": {"mean": m["per_class_f1"], "std": [0.02] * 7}}
    assert_png(figures.per_class_f1_chart(groups, CLASSES, tmp_path / "bars.png"))


def test_figures_errors(runs_root, tmp_path):
    with pytest.raises(ReportError, match="shape"):
        figures.plot_confusion(np.zeros((3, 3)), CLASSES, tmp_path / "x.png")
    with pytest.raises(ReportError, match="at least two"):
        figures.compare_confusions({"single": read_metrics(runs_root / "single")}, tmp_path / "x.png")
    with pytest.raises(ReportError, match="expected 7"):
        figures.per_class_f1_chart({"a": [0.5] * 6}, CLASSES, tmp_path / "x.png")


# ---------------------------------------------------------------- commands

def _parse(add_args, argv):
    parser = argparse.ArgumentParser()
    add_args(parser)
    return parser.parse_args(argv)


def test_summary_command_on_a_parent_folder(runs_root, tmp_path, capsys):
    (runs_root / "crashed_seed9").mkdir()  # config.json but no metrics.json: reported, not summarised
    (runs_root / "crashed_seed9" / "config.json").write_text("{}")
    (runs_root / "summary").mkdir()  # an earlier summary's output: not a run at all
    out = tmp_path / "out"
    args = _parse(summary_command.add_arguments, [str(runs_root), str(runs_root / "single"), "--out", str(out),
                                              "--group", "ce_all=ce*", "--baseline", "ce_all", "--n-boot", "50"])
    assert summary_command.run(args) == 0
    printed = capsys.readouterr().out
    assert "crashed_seed9: no metrics.json (unfinished run?)" in printed
    assert "summary: no metrics.json (not a run dir)" in printed
    assert "| ce_all | 4 |" in printed  # ce and cecopy; single counted once
    assert (out / "paired.csv").exists() and (out / "summary.tex").exists()


def test_summary_command_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no metrics.json in"):
        summary_command.run(_parse(summary_command.add_arguments, [str(tmp_path / "empty"), "--out", str(tmp_path)]))
    with pytest.raises(ReportError, match="not a directory"):
        summary_command.run(_parse(summary_command.add_arguments, [str(tmp_path / "missing"), "--out", str(tmp_path)]))
    with pytest.raises(SystemExit):  # the option's declared range: argparse refuses it in one line
        _parse(summary_command.add_arguments, [str(tmp_path), "--out", "o", "--n-boot", "0"])


def test_figures_command(runs_root, tmp_path, capsys):
    out = tmp_path / "figs"
    assert figures_command.run(_parse(figures_command.add_arguments, [str(runs_root), "--out", str(out)])) == 0
    assert_png(out / "confusions.png")
    assert_png(out / "per_class_f1.png")
    with pytest.raises(ReportError, match="at least two"):
        figures_command.run(_parse(figures_command.add_arguments, [str(runs_root / "single"), "--out", str(out)]))


def test_summary_reports_val_choice_column_and_per_class_recall(tmp_path):
    for seed in (1, 2):
        run = make_run(tmp_path / f"A_seed{seed}", *fake_labels(200, 0.6, seed))
        (run / "metrics_val.json").write_text(json.dumps(compute_metrics(*fake_labels(100, 0.5 + 0.1 * seed, seed), CLASSES)))
    rows = summary.summarize([tmp_path / "A_seed1", tmp_path / "A_seed2"], tmp_path / "out", n_boot=50)
    vals = [compute_metrics(*fake_labels(100, 0.5 + 0.1 * s, s), CLASSES)["macro_f1"] for s in (1, 2)]
    assert rows[0]["val_macro_f1_mean"] == pytest.approx(np.mean(vals))
    recall_happy = [compute_metrics(*fake_labels(200, 0.6, s), CLASSES)["per_class_recall"][3] for s in (1, 2)]
    assert rows[0]["recall_happy_mean"] == pytest.approx(np.mean(recall_happy))
    assert "val macro-F1" in (tmp_path / "out" / "summary.md").read_text()


def test_summary_reads_gzipped_predictions(tmp_path):
    import gzip
    import shutil
    run = make_run(tmp_path / "A_seed1", *fake_labels(100, 0.6, 1))
    with open(run / "predictions.csv", "rb") as f, gzip.open(run / "predictions.csv.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    plain = summary.load_run(run)
    (run / "predictions.csv").unlink()
    packed = summary.load_run(run)
    assert packed["names"] == plain["names"] and np.array_equal(packed["y_pred"], plain["y_pred"])
