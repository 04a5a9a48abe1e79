"""The study's convergence test, the seed-averaged paired interval, and what `ferkit summary` makes of them."""
import csv

import numpy as np
import pytest
from test_report import CLASSES, PNG_SIGNATURE, fake_labels, make_run

from ferkit.report import stats, summary
from ferkit.report.convergence import convergence, read_val_curve
from ferkit.report.stats import ReportError


@pytest.mark.parametrize("curve, converged", [
    ([0.30, 0.40, 0.45, 0.44, 0.43], True),          # peaked at epoch 3 of 5: not among the last two
    ([0.30, 0.40, 0.448, 0.449, 0.450], True),       # still rising, but the last three within 0.005
    ([0.30, 0.40, 0.43, 0.44, 0.45], False),         # climbing 0.01 an epoch: not converged
    ([0.30, 0.40, 0.41, 0.45, 0.44], False),         # best at the second-to-last epoch, tail spans 0.04
    ([0.40, 0.41], False),                           # too short to tell
])
def test_convergence_rule(curve, converged):
    assert convergence(curve)["converged"] is converged


def test_convergence_reports_the_first_best_epoch_and_the_tail_gap():
    c = convergence([0.3, 0.5, 0.5, 0.49, 0.48])
    assert c["best_epoch"] == 2 and c["best"] == 0.5 and c["last_gap"] == pytest.approx(0.02)
    assert "epoch 2 of 5" in c["why"]


def test_read_val_curve(tmp_path):
    assert read_val_curve(tmp_path) is None  # a post-hoc run has no epochs.csv
    (tmp_path / "epochs.csv").write_text("epoch,val_macro_f1\n1,0.25\n2,0.5\n")
    assert read_val_curve(tmp_path) == [0.25, 0.5]
    (tmp_path / "epochs.csv").write_text("epoch,val_acc\n1,0.25\n")
    with pytest.raises(ReportError, match="val_macro_f1"):
        read_val_curve(tmp_path)


def _predictions(y, accuracy, seed):
    """Predictions of the labels y, right with probability `accuracy`."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, len(CLASSES), len(y)))


def test_seed_mean_paired_bootstrap_is_the_mean_difference_and_one_pair_is_paired_bootstrap():
    y, _ = fake_labels(600, 1.0, 0)
    a1, a2, b1, b2 = (_predictions(y, acc, s) for acc, s in [(0.7, 1), (0.7, 2), (0.5, 3), (0.5, 4)])
    single = stats.paired_bootstrap(y, a1, b1, CLASSES, n_boot=200, seed=5)
    assert stats.paired_bootstrap_mean(y, [a1], [b1], CLASSES, n_boot=200, seed=5) == single

    def f1(p):
        return float(stats.metrics_from_confusion(stats.confusion_counts(y, p, 7))["macro_f1"])

    both = stats.paired_bootstrap_mean(y, [a1, a2], [b1, b2], CLASSES, n_boot=200, seed=5)
    assert both["diff"] == pytest.approx((f1(a1) - f1(b1) + f1(a2) - f1(b2)) / 2)
    assert 0 < both["low"] < both["diff"] < both["high"]
    images_only = stats.paired_bootstrap_mean(y, [a1, a2], [b1, b2], CLASSES, n_boot=200, seed=5, resample_seeds=False)
    assert images_only["diff"] == both["diff"]
    with pytest.raises(ReportError, match="as many runs"):
        stats.paired_bootstrap_mean(y, [a1, a2], [b1], CLASSES)


def test_two_level_bootstrap_widens_the_interval_when_seeds_disagree():
    """Two seed pairs that disagree (one gains, one loses): resampling only images gives an
    interval around their mean that ignores the disagreement; resampling seeds too covers both."""
    y, _ = fake_labels(2000, 1.0, 0)
    base = _predictions(y, 0.6, 1)
    better, worse = _predictions(y, 0.75, 2), _predictions(y, 0.45, 3)
    kw = dict(class_names=CLASSES, n_boot=400, seed=0)
    images = stats.paired_bootstrap_mean(y, [better, worse], [base, base], resample_seeds=False, **kw)
    both = stats.paired_bootstrap_mean(y, [better, worse], [base, base], **kw)
    assert both["high"] - both["low"] > 2 * (images["high"] - images["low"])


def _run_with_curve(tmp_path, name, accuracy, seed, curve):
    y, _ = fake_labels(400, 1.0, 0)  # one test set for every run
    p = _predictions(y, accuracy, seed)
    d = make_run(tmp_path / name, y, p)
    with open(d / "epochs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "val_macro_f1"])
        w.writerows(enumerate(curve, 1))
    return d


def test_summary_flags_runs_that_did_not_converge_and_draws_the_curves(tmp_path):
    flat, rising = [0.3, 0.5, 0.52, 0.52, 0.52], [0.1, 0.2, 0.3, 0.4, 0.5]
    dirs = [_run_with_curve(tmp_path, f"E0_seed{s}", 0.5, s, flat) for s in (1, 2)]
    dirs += [_run_with_curve(tmp_path, "E5_seed1", 0.6, 11, flat), _run_with_curve(tmp_path, "E5_seed2", 0.6, 12, rising)]
    lines = []
    rows = summary.summarize(dirs, tmp_path / "out", baseline="E0", n_boot=100, log=lines.append)
    assert any(line.startswith("NOT CONVERGED: E5_seed2") for line in lines)
    assert any("3 of 4 runs converged" in line for line in lines)
    e5 = next(r for r in rows if r["group"] == "E5")
    assert (e5["n_converged"], e5["n_checked"]) == (1, 2)
    assert e5["diff_ci95_low"] < e5["macro_f1_diff_mean"] < e5["diff_ci95_high"] and e5["diff_seed_std"] >= 0
    with open(tmp_path / "out" / "convergence.csv", newline="") as f:
        table = {r["run"]: r["converged"] for r in csv.DictReader(f)}
    assert table == {"E0_seed1": "True", "E0_seed2": "True", "E5_seed1": "True", "E5_seed2": "False"}
    assert (tmp_path / "out" / "val_curves.png").read_bytes()[:8] == PNG_SIGNATURE
    header, _, e0_line, e5_line = (tmp_path / "out" / "summary.md").read_text().splitlines()[:4]
    cols = [c.strip() for c in header.strip("|").split("|")]

    def cell(line, col):
        return [c.strip() for c in line.strip("|").split("|")][cols.index(col)]

    assert cell(e0_line, "converged") == "2/2" and cell(e5_line, "converged") == "1/2"
    assert cell(e0_line, "Δ macro-F1 vs E0 [95% CI]") == "baseline"


def test_late_gain_tells_a_noisy_plateau_from_a_climb():
    plateau = [0.3, 0.4, 0.5, 0.52, 0.52, 0.523, 0.519, 0.524, 0.517, 0.525, 0.522]
    climbing = [0.3, 0.35, 0.4, 0.42, 0.44, 0.46, 0.48, 0.50, 0.52, 0.54, 0.56]
    assert abs(convergence(plateau)["late_gain"]) < 0.005 and convergence(climbing)["late_gain"] > 0.05


def test_summary_reports_each_groups_training_budget(tmp_path):
    """A group's `epochs` column names its budget, both lengths when its seeds differ (the budget rule)."""
    dirs = [_run_with_curve(tmp_path, "E0_seed1", 0.5, 1, [0.3, 0.5, 0.52, 0.52, 0.52])]
    dirs += [_run_with_curve(tmp_path, "E5_seed1", 0.6, 11, [0.3, 0.5, 0.52, 0.52, 0.52, 0.52]),
             _run_with_curve(tmp_path, "E5_seed2", 0.6, 12, [0.3, 0.5, 0.52, 0.52])]
    rows = {r["group"]: r for r in summary.summarize(dirs, tmp_path / "out", n_boot=10, log=lambda m: None)}
    assert (rows["E0"]["epochs"], rows["E5"]["epochs"]) == ("5", "4/6")
