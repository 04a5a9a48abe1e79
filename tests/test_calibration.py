"""Calibration measures against values computed by hand, and temperature scaling."""
import math

import numpy as np
import pytest

from ferkit.calibration import (
    bin_index,
    brier,
    calibration_metrics,
    classwise_ece,
    ece,
    fit_temperature,
    nll,
    reliability,
    softmax,
)

# four images, two classes; top-class confidences 0.9, 0.75, 0.7, 0.62 fall in four different bins
PROBS = np.array([[0.9, 0.1], [0.75, 0.25], [0.3, 0.7], [0.62, 0.38]])
LABELS = np.array([0, 1, 1, 0])  # right, wrong, right, right


def test_ece_nll_and_brier_match_the_hand_computed_example():
    assert ece(PROBS, LABELS) == pytest.approx((0.1 + 0.75 + 0.3 + 0.38) / 4)  # one image per bin: mean |hit - conf|
    assert ece(PROBS, LABELS, n_bins=1) == pytest.approx(abs(0.75 - (0.9 + 0.75 + 0.7 + 0.62) / 4))
    assert classwise_ece(PROBS, LABELS, n_bins=1) == pytest.approx((abs(0.5 - 0.6425) + abs(0.5 - 0.3575)) / 2)
    assert nll(PROBS, LABELS) == pytest.approx(-(math.log(0.9) + math.log(0.25) + math.log(0.7) + math.log(0.62)) / 4)
    assert brier(PROBS, LABELS) == pytest.approx((0.02 + 1.125 + 0.18 + 2 * 0.38 ** 2) / 4)
    m = calibration_metrics(PROBS, LABELS)
    assert m["ece"] == ece(PROBS, LABELS) and m["n_bins"] == 15


def test_dyadic_example_is_exact():
    """Probabilities that are sums of powers of two: every step is exact in floating point, so the
    measures equal the hand-computed fractions exactly, not to a tolerance."""
    probs = np.array([[0.875, 0.125], [0.5, 0.5], [0.25, 0.75], [0.625, 0.375]])
    labels = np.array([0, 1, 0, 0])  # right, wrong (a tie goes to class 0), wrong, right
    # top confidences 0.875 (bin 13), 0.5 (bin 7), 0.75 (bin 11), 0.625 (bin 9): one image per bin
    assert ece(probs, labels) == (0.125 + 0.5 + 0.75 + 0.375) / 4 == 0.4375
    assert ece(probs, labels, n_bins=1) == abs(0.5 - 2.75 / 4) == 0.1875
    assert classwise_ece(probs, labels, n_bins=1) == (abs(0.75 - 0.5625) + abs(0.25 - 0.4375)) / 2 == 0.1875
    assert brier(probs, labels) == (2 * 0.125 ** 2 + 2 * 0.5 ** 2 + 2 * 0.75 ** 2 + 2 * 0.375 ** 2) / 4 == 0.484375
    assert nll(probs, labels) == -np.mean(np.log([0.875, 0.5, 0.25, 0.625]))


def test_bins_are_lo_hi_intervals_and_the_diagram_counts_them():
    assert list(bin_index(np.array([0.0, 0.05, 1 / 15 - 1e-9, 0.5, 1.0]))) == [0, 0, 0, 7, 14]
    r = reliability(PROBS, LABELS)
    assert r["count"].sum() == 4 and r["count"][13] == 1 and r["accuracy"][11] == 0 and r["confidence"][9] == pytest.approx(0.62)
    assert np.isnan(r["accuracy"][0])  # an empty bin


def test_a_perfect_and_a_confidently_wrong_model():
    onehot = np.eye(3)[[0, 1, 2]]
    assert ece(onehot, np.array([0, 1, 2])) == 0 and brier(onehot, np.array([0, 1, 2])) == 0
    assert ece(onehot, np.array([1, 2, 0])) == 1 and brier(onehot, np.array([1, 2, 0])) == 2
    with pytest.raises(ValueError):
        ece(np.zeros((0, 3)), np.zeros(0))


def test_temperature_scaling_recovers_the_temperature_that_made_a_model_overconfident():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 7))
    labels = np.array([rng.choice(7, p=p) for p in softmax(logits)])  # calibrated at T = 1
    t = fit_temperature(logits * 3.0, labels)  # the same model, three times too confident
    assert t == pytest.approx(3.0, rel=0.05)
    assert ece(softmax(logits * 3.0, t), labels) < ece(softmax(logits * 3.0), labels) / 3
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.05)
