"""Losses, class weights and sampling weights."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ferkit.strategies import class_weights, make_loss, sampling_weights

COUNTS = np.array([3995, 436, 4097, 7215, 4965, 4830, 3171])


@pytest.mark.parametrize("mode", ["inv", "inv_sqrt", "effective"])
def test_class_weights_have_mean_one_and_favour_rare_classes(mode):
    w = class_weights(COUNTS, mode)
    assert w.mean() == pytest.approx(1.0)
    assert w.argmax() == 1 and w.argmin() == 3


def test_class_weight_formulas():
    assert np.allclose(class_weights(COUNTS, "inv"), (1 / COUNTS) / (1 / COUNTS).mean())
    assert np.allclose(class_weights(COUNTS, "inv_sqrt"), COUNTS ** -0.5 / (COUNTS ** -0.5).mean())
    beta = 0.99
    e = (1 - beta) / (1 - beta ** COUNTS.astype(float))
    assert np.allclose(class_weights(COUNTS, "effective", beta), e / e.mean())


def test_sampling_weights_give_class_probability_prop_to_n_to_the_q():
    labels = np.repeat(np.arange(7), COUNTS)
    for q in (1.0, 0.5, 0.0):
        w = sampling_weights(labels, q, 7)
        class_mass = np.bincount(labels, weights=w) / w.sum()
        expected = COUNTS ** q / (COUNTS ** q).sum()
        assert np.allclose(class_mass, expected)
    # q = 0.5 is the reference "balanced" sampler: each image weighted 1/sqrt(n_c)
    assert np.allclose(sampling_weights(labels, 0.5, 7), 1 / np.sqrt(COUNTS[labels]))


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 7, generator=g), torch.randint(0, 7, (64,), generator=g)


def test_ce_and_wce_match_pytorch():
    logits, y = _batch()
    assert torch.allclose(make_loss("ce", COUNTS)(logits, y), F.cross_entropy(logits, y))
    w = class_weights(COUNTS, "inv_sqrt")
    expected = F.cross_entropy(logits, y, weight=torch.tensor(w, dtype=torch.float32))
    assert torch.allclose(make_loss("wce", COUNTS, w)(logits, y), expected)
    with pytest.raises(ValueError, match="weight_mode"):
        make_loss("wce", COUNTS)


def test_focal_loss_formula_and_gamma_zero_is_ce():
    logits, y = _batch()
    p = logits.softmax(1)[torch.arange(64), y]
    expected = (-(1 - p) ** 2 * p.log()).mean()
    assert torch.allclose(make_loss("focal", COUNTS)(logits, y), expected, atol=1e-6)
    assert torch.allclose(make_loss("focal", COUNTS, gamma=0.0)(logits, y), F.cross_entropy(logits, y), atol=1e-6)


def test_logit_adjusted_losses():
    logits, y = _batch()
    prior = torch.tensor(COUNTS / COUNTS.sum(), dtype=torch.float32)
    la = make_loss("la", COUNTS, tau=1.0)(logits, y)
    assert torch.allclose(la, F.cross_entropy(logits + prior.log(), y))
    assert torch.allclose(make_loss("bsoftmax", COUNTS)(logits, y), la)


def test_ldam_margins():
    loss = make_loss("ldam", COUNTS, head_scale=30.0)
    m = loss.margin / 30.0
    assert m.max() == pytest.approx(0.5) and m.argmax() == 1
    assert np.allclose(m.numpy(), 0.5 * COUNTS ** -0.25 / (COUNTS ** -0.25).max(), atol=1e-6)
    logits, y = _batch()
    expected = F.cross_entropy(logits - F.one_hot(y, 7) * loss.margin, y)
    assert torch.allclose(loss(logits, y), expected)


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge", COUNTS)
    with pytest.raises(ValueError, match="unknown weight_mode"):
        class_weights(COUNTS, "log")


def test_a_loss_defined_here_and_registered_in_one_line_trains_through_ferkit_train(tmp_path, monkeypatch):
    """The registry is the only place a loss is named: a new one is a class plus one line."""
    import json

    from synth import make_image_folders
    from torch import nn

    from ferkit.cli import main
    from ferkit.strategies import LOSSES

    class HalfCE(nn.Module):
        """Half the cross-entropy, class-weighted like every loss."""

        def __init__(self, weight):
            super().__init__()
            self.weight = weight

        def forward(self, logits, target):
            return 0.5 * F.cross_entropy(logits.float(), target, weight=self.weight)

    monkeypatch.setitem(LOSSES, "half_ce", lambda spec: HalfCE(spec.weight))  # the one line
    data = make_image_folders(tmp_path / "fer", {s: {c: 2 for c in ["angry", "disgust", "fear", "happy", "neutral",
                                                                      "sad", "surprise"]} for s in ("train", "val", "test")})
    assert main(["train", "--data_root", str(data), "--loss", "half_ce", "--weight_mode", "inv", "--epochs", "1",
                 "--batch_size", "8", "--exp", "half", "--runs_dir", str(tmp_path / "runs")]) == 0
    assert json.loads((tmp_path / "runs" / "half" / "config.json").read_text())["loss"] == "half_ce"
    assert (tmp_path / "runs" / "half" / "metrics.json").is_file()


def test_the_effective_prior_is_the_strategys_own_answer(monkeypatch):
    """calibration.effective_prior asks strategies.for_epoch: a new sampler and a deferral count without
    any table of their own (issue 30, item 3)."""
    import numpy as np

    from ferkit.calibration import effective_prior
    from ferkit.strategies import SAMPLERS

    class RarestOnly:
        def class_weights(self, counts):
            return (np.arange(len(counts)) == np.argmin(counts)).astype(float) + 1e-12

    monkeypatch.setitem(SAMPLERS, "rarest", RarestOnly())
    counts = np.array([40.0, 5.0, 30.0, 100.0, 50.0, 45.0, 35.0])
    prior = effective_prior({"sampler": "rarest", "epochs": 10}, counts)
    assert prior.argmax() == 1 and prior[1] > 0.999
    deferred = {"sampler": "rarest", "epochs": 10, "resample_from": 8}
    assert np.allclose(effective_prior(deferred, counts, epoch=5), counts / counts.sum())  # before the phase
    assert effective_prior(deferred, counts, epoch=8)[1] > 0.999
    balanced = effective_prior({"sampler": "balanced"}, counts)  # n_c^(1/2), as the sampler draws
    assert np.allclose(balanced, np.sqrt(counts) / np.sqrt(counts).sum())


def test_ldam_margin_is_a_setting():
    import numpy as np

    from ferkit.config import ConfigError, make_config
    from ferkit.strategies import for_epoch

    counts = np.array([40, 5, 30, 100, 50, 45, 35])
    small = for_epoch(make_config({"loss": "ldam", "head": "cosine", "ldam_margin": 0.2}), counts, 1).loss
    large = for_epoch(make_config({"loss": "ldam", "head": "cosine"}), counts, 1).loss
    assert np.isclose(float(small.margin.max()) / float(large.margin.max()), 0.2 / 0.5)
    with pytest.raises(ConfigError, match="ldam_margin"):
        make_config({"ldam_margin": -1})
