"""Post-hoc adjustments: tuned on val, saved with the model, reproduced by load_model."""
import numpy as np
import pytest
import torch
from test_train import cfg_for, tiny_data

from ferkit.evaluate import predict_proba
from ferkit.models import build_model, load_model
from ferkit.posthoc import adjust_checkpoint, apply_tau_norm, log_prior


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ferkit.train import fit
    tmp = tmp_path_factory.mktemp("ph")
    data = tiny_data(per_class=(20, 4, 12, 30, 14, 10, 8))
    fit(cfg_for(tmp, epochs=3, lr=3e-3), data, log=lambda s: None, progress=False)
    return torch.load(tmp / "runs" / "t" / "best.pt", weights_only=False), data


def test_logit_adjustment_is_tuned_on_val_and_saved(trained):
    ckpt, data = trained
    new = adjust_checkpoint(ckpt, data, "la")
    ph = new["posthoc"]
    assert ph["method"] == "la" and ph["val_macro_f1"] == pytest.approx(max(ph["search"].values()), abs=1e-6)
    model, info = load_model(new)
    plain, _ = load_model(ckpt)
    x = torch.randn(4, 1, 48, 48)
    counts = np.bincount(data.splits["train"].labels, minlength=7)
    expected = plain(x) - ph["tau"] * log_prior(counts)
    assert torch.allclose(model(x), expected, atol=1e-5)
    assert info["posthoc"]["tau"] == ph["tau"]
    with pytest.raises(ValueError, match="already has"):
        adjust_checkpoint(new, data, "la")


def test_tau_norm_divides_weight_norms():
    torch.manual_seed(0)
    m = build_model("seed-cnn", "softmax", 7)
    w = m.head.fc.weight.detach().clone()
    out = apply_tau_norm(m, 1.0).head.fc.weight
    assert torch.allclose(out.norm(dim=1), torch.ones(7), atol=1e-5)
    assert torch.equal(apply_tau_norm(m, 0.0).head.fc.weight, w)


def test_taunorm_and_crt_checkpoints_reload(trained):
    ckpt, data = trained
    for method in ("taunorm", "crt"):
        new = adjust_checkpoint(ckpt, data, method, crt_epochs=3)
        model, _ = load_model(new)
        probs = predict_proba(model, data.splits["val"].images)
        from ferkit.metrics import compute_metrics
        f1 = compute_metrics(data.splits["val"].labels, probs.argmax(1), data.class_names)["macro_f1"]
        assert f1 == pytest.approx(new["posthoc"]["val_macro_f1"], abs=1e-9), method
    # cRT leaves the backbone untouched
    assert all(torch.equal(new["model"][k], ckpt["model"][k]) for k in ckpt["model"] if k.startswith("backbone."))
