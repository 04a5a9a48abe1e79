"""The training loop end to end on tiny synthetic data: outputs, eval-only reproduction, resume."""
import csv
import json

import numpy as np
import pytest
import torch

from ferkit import train as train_mod
from ferkit.config import ConfigError, make_config
from ferkit.data import FerData, Split
from ferkit.evaluate import evaluate_run
from ferkit.metrics import metrics_from_predictions
from ferkit.train import fit

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def tiny_data(per_class=(12, 3, 10, 16, 10, 8, 6), seed=0) -> FerData:
    """Class-dependent blobs plus noise, so a few epochs learn something."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, scale in (("train", 1.0), ("val", 0.5), ("test", 0.5)):
        labels = np.repeat(np.arange(7), [max(1, int(n * scale)) for n in per_class])
        imgs = rng.integers(0, 80, (len(labels), 48, 48))
        for i, c in enumerate(labels):
            imgs[i, 6 * c:6 * c + 6, :] += 150
        names = [f"{split}/{CLASSES[c]}/img_{i}.png" for i, c in enumerate(labels)]
        splits[split] = Split(imgs.astype(np.uint8), labels.astype(np.int64), names)
    return FerData(CLASSES, splits, "synthetic", "synthetic-key", [])


def cfg_for(tmp_path, **kw):
    base = {"exp": "t", "runs_dir": str(tmp_path / "runs"), "epochs": 2, "batch_size": 16, "seed": 0, "device": "cpu"}
    return make_config(base | kw)


@pytest.mark.slow
def test_a_run_writes_every_output(tmp_path):
    data = tiny_data()
    m = fit(cfg_for(tmp_path, preset="E5"), data, log=lambda s: None, progress=False)
    run = tmp_path / "runs" / "t"
    for name in ["metrics.json", "metrics_val.json", "predictions.csv", "confusion_matrix.png", "config.json",
                 "epochs.csv", "best.pt", "last.pt", "train.log"]:
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*"))
    saved = json.loads((run / "metrics.json").read_text())
    for key in ["accuracy", "macro_f1", "per_class_f1", "per_class_precision", "per_class_recall", "class_names",
                "split", "num_samples"] + [f"f1_{c}" for c in CLASSES]:
        assert key in saved, key
    assert saved["split"] == "test" and saved["num_samples"] == len(data.splits["test"].labels)
    assert saved == json.loads(json.dumps(m))
    rows = list(csv.DictReader(open(run / "epochs.csv")))
    assert len(rows) == 2 and {"train_loss", "train_acc", "val_acc", "val_macro_f1", "val_f1_disgust", "lr", "seconds"} <= set(rows[0])
    preds = list(csv.DictReader(open(run / "predictions.csv")))
    assert len(preds) == saved["num_samples"]
    assert [k for k in preds[0]] == ["name", "true", "pred"] + [f"p_{c}" for c in CLASSES]
    assert abs(sum(float(preds[0][f"p_{c}"]) for c in CLASSES) - 1) < 1e-4
    assert json.loads((run / "config.json").read_text())["sampler"] == "balanced"


@pytest.mark.slow
def test_eval_only_reproduces_the_run_and_predictions_reproduce_metrics(tmp_path):
    data = tiny_data()
    m = fit(cfg_for(tmp_path, preset="E0"), data, log=lambda s: None, progress=False)
    run = tmp_path / "runs" / "t"
    again = evaluate_run(run / "best.pt", data, tmp_path / "eval", amp=False, tta=False, log=lambda s: None)
    for k in ["accuracy", "macro_f1", "per_class_f1", "confusion_matrix"]:
        assert again[k] == m[k]
    # Independently of ferkit's code: read the CSV and score it with scikit-learn directly.
    from sklearn.metrics import accuracy_score, f1_score
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    t, p = [r["true"] for r in rows], [r["pred"] for r in rows]
    assert accuracy_score(t, p) == m["accuracy"]
    assert f1_score(t, p, labels=CLASSES, average="macro", zero_division=0) == pytest.approx(m["macro_f1"], abs=1e-12)
    assert [r["pred"] for r in rows] == [CLASSES[max(range(7), key=lambda i: float(r[f"p_{CLASSES[i]}"]))] for r in rows]
    recomputed = metrics_from_predictions(run / "predictions.csv")
    for k in ["accuracy", "macro_f1", "per_class_f1", "per_class_precision", "per_class_recall"]:
        assert recomputed[k] == m[k]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    data = tiny_data()
    full = fit(cfg_for(tmp_path, exp="full", epochs=3, preset="E5"), data, log=lambda s: None, progress=False)
    real = train_mod.train_one_epoch
    calls = {"n": 0}

    def crash_on_second_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "train_one_epoch", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg_for(tmp_path, exp="cut", epochs=3, preset="E5"), data, log=lambda s: None, progress=False)
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    last = tmp_path / "runs" / "cut" / "last.pt"
    assert torch.load(last, weights_only=False)["epoch"] == 1
    resumed = fit(cfg_for(tmp_path, resume=str(last)), data, log=lambda s: None, progress=False)
    assert resumed["confusion_matrix"] == full["confusion_matrix"] and resumed["macro_f1"] == full["macro_f1"]
    a = torch.load(tmp_path / "runs" / "full" / "last.pt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


@pytest.mark.parametrize("preset, head, loss, weighted, resampled", [
    ("E0", "SoftmaxHead", "CrossEntropy", False, False),
    ("E1", "ArcFaceHead", "CrossEntropy", False, False),
    ("E2", "SoftmaxHead", "CrossEntropy", True, False),
    ("E4", "SoftmaxHead", "FocalLoss", False, False),
    ("E5", "SoftmaxHead", "CrossEntropy", False, True),
    ("E6", "ArcFaceHead", "FocalLoss", False, False),
])
def test_every_preset_builds_the_reference_recipe(tmp_path, preset, head, loss, weighted, resampled):
    """Each reference preset gives the head, loss, class weights and sampler it names (what a run of
    it trains with), and one training step of it gives a finite loss."""
    data = tiny_data()
    cfg = cfg_for(tmp_path, preset=preset, epochs=1)
    model, loss_fn, weights, _ = train_mod.build_for_run(cfg, data, torch.device("cpu"))
    assert type(model.head).__name__ == head and type(loss_fn).__name__ == loss
    assert (loss_fn.weight is not None) == weighted
    assert (weights is not None) == resampled
    if resampled:  # 1/sqrt(n_c) per image: class c is drawn prop. to sqrt(n_c)
        counts = np.bincount(data.splits["train"].labels, minlength=7)
        per_class = np.array([weights[data.splits["train"].labels == c][0] for c in range(7)])
        np.testing.assert_allclose(per_class * counts / (per_class * counts).sum(), np.sqrt(counts) / np.sqrt(counts).sum())
    x = torch.from_numpy(data.splits["train"].images[:8]).float()[:, None] / 127.5 - 1
    y = torch.from_numpy(data.splits["train"].labels[:8])
    model.train()
    value = loss_fn(model(x, y), y)
    value.backward()
    assert torch.isfinite(value)


@pytest.mark.parametrize("kw", [
    {"loss": "focal", "weight_mode": "effective"}, {"loss": "wce", "weight_mode": "inv"},
    {"loss": "ldam", "head": "cosine"}, {"loss": "la"}, {"loss": "bsoftmax"},
    {"sampler": "class_balanced", "head": "cosine"}, {"amp": True, "loss": "ce"},
])
@pytest.mark.slow
def test_strategy_combinations_train(tmp_path, kw):
    m = fit(cfg_for(tmp_path, epochs=1, **kw), tiny_data(), log=lambda s: None, progress=False)
    assert np.isfinite(m["macro_f1"])


@pytest.mark.slow
def test_training_learns_the_synthetic_task(tmp_path):
    m = fit(cfg_for(tmp_path, epochs=6, lr=3e-3), tiny_data(per_class=(30,) * 7), log=lambda s: None, progress=False)
    assert m["accuracy"] > 0.5  # chance is 1/7


def test_fp32_step_equals_a_plain_pytorch_step():
    """ferkit's training step computes what a textbook PyTorch step computes on the same batch."""
    from ferkit.models import build_model
    from ferkit.strategies import make_loss

    torch.manual_seed(0)
    a = build_model("seed-cnn", "softmax", 7)
    b = build_model("seed-cnn", "softmax", 7)
    b.load_state_dict(a.state_dict())
    a = a.to(memory_format=torch.channels_last)
    x, y = torch.randn(32, 1, 48, 48), torch.randint(0, 7, (32,))

    class OneBatch:
        labels = y

        def __iter__(self):
            yield x.contiguous(memory_format=torch.channels_last), y

    # SGD, not Adam: Adam's first step is ~lr * sign(grad), which magnifies float noise in tiny gradients.
    opt_a = torch.optim.SGD(a.parameters(), 1e-2)
    opt_b = torch.optim.SGD(b.parameters(), 1e-2)
    torch.manual_seed(1)
    stats = train_mod.train_one_epoch(a, make_loss("ce", np.ones(7)), opt_a, OneBatch(), torch.device("cpu"), amp=False)
    torch.manual_seed(1)  # same dropout mask
    b.train()
    loss = torch.nn.functional.cross_entropy(b(x), y)
    opt_b.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(b.parameters(), 5.0)
    opt_b.step()
    assert stats["train_loss"] == pytest.approx(loss.item(), rel=1e-6)
    # The forward pass (and so the loss) matches to float32 precision; channels-last backward kernels
    # accumulate in another order (and max-pool ties can route differently), so gradients agree to
    # a fraction of a percent rather than bit for bit.
    ga = torch.cat([p.grad.flatten() for p in a.parameters()])
    gb = torch.cat([p.grad.flatten() for p in b.parameters()])
    assert ((ga - gb).norm() / gb.norm()).item() < 1e-2
    wa = torch.cat([p.detach().flatten() for p in a.parameters()])
    wb = torch.cat([p.detach().flatten() for p in b.parameters()])
    assert ((wa - wb).norm() / wb.norm()).item() < 1e-5  # after the step, the weights still agree


def test_deferred_reweighting_and_resampling_switch_at_their_epoch():
    from ferkit.strategies import for_epoch

    data = tiny_data()
    counts = np.bincount(data.splits["train"].labels, minlength=7)

    def loss_for_epoch(cfg, data, epoch):
        return for_epoch(cfg, counts, epoch).loss

    def sampling_for_epoch(cfg, data, epoch):
        return for_epoch(cfg, counts, epoch).image_weights(data.splits["train"].labels)

    cfg = make_config({"loss": "ce", "weight_mode": "inv", "reweight_from": 3, "sample_q": 0.0, "resample_from": 2})
    assert loss_for_epoch(cfg, data, 2).weight is None
    w = loss_for_epoch(cfg, data, 3).weight
    assert np.allclose(w.numpy(), (1 / counts) / (1 / counts).mean())
    assert sampling_for_epoch(cfg, data, 1) is None
    sw = sampling_for_epoch(cfg, data, 2)
    assert np.allclose(np.bincount(data.splits["train"].labels, weights=sw), 1.0)  # q = 0: every class equal mass
    # wce deferred: plain CE before the switch
    cfg = make_config({"loss": "wce", "weight_mode": "inv_sqrt", "reweight_from": 2})
    assert loss_for_epoch(cfg, data, 1).weight is None and loss_for_epoch(cfg, data, 2).weight is not None


def test_cosine_schedule_equals_the_reference_scheduler():
    from ferkit.optim import make_scheduler

    p = [torch.nn.Parameter(torch.zeros(1))]
    o1, o2 = torch.optim.Adam(p, 1e-3), torch.optim.Adam(p, 1e-3)
    s1 = torch.optim.lr_scheduler.CosineAnnealingLR(o1, T_max=30)
    s2 = make_scheduler(o2, 30, "cosine", 0)
    for _ in range(30):
        assert o1.param_groups[0]["lr"] == pytest.approx(o2.param_groups[0]["lr"], abs=1e-12)
        o1.step(), o2.step(), s1.step(), s2.step()


@pytest.mark.parametrize("kw", [{"mixup": 0.2}, {"cutmix": 1.0}, {"mixup": 0.2, "cutmix": 1.0, "head": "arcface"},
                                {"optimizer": "sgd", "lr": 0.05, "warmup_epochs": 1, "weight_decay": 5e-4},
                                {"optimizer": "adamw", "weight_decay": 0.05, "label_smoothing": 0.1}])
@pytest.mark.slow
def test_recipe_options_train(tmp_path, kw):
    m = fit(cfg_for(tmp_path, epochs=2, **kw), tiny_data(), log=lambda s: None, progress=False)
    assert np.isfinite(m["macro_f1"])


def test_mix_batch():
    from ferkit.strategies.mixing import mix_batch

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 48, 48), torch.arange(16) % 7
    mx, ya, yb, lam, perm = mix_batch(x, y, g, mixup=0.4)
    assert 0 <= lam <= 1 and torch.equal(ya, y) and torch.equal(yb, y[perm])
    perm_src = (mx - lam * x) / (1 - lam)
    assert any(torch.allclose(perm_src[0], x[j], atol=1e-4) and yb[0] == y[j] for j in range(16))
    cx, ya, yb, lam, perm = mix_batch(x, y, g, cutmix=1.0)
    changed = (cx != x).float().mean().item()
    assert changed == pytest.approx(1 - lam, abs=0.02)
    assert mix_batch(x, y, g)[3:] == (1.0, None)


def test_crop_tta_averages_ten_views():
    from ferkit.data.augment import augment
    from ferkit.evaluate import predict_proba
    from ferkit.tta import crop_views, tta_mode

    assert [tta_mode(t) for t in (False, None, "none", True, "flip", "crops")] == ["none"] * 3 + ["flip"] * 2 + ["crops"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    imgs = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    views = crop_views(5)
    assert len(views) == 10 and sum(bool(v.flip[0]) for v in views) == 5
    want = torch.zeros(5, 7)
    for v in views:
        want += model(augment(imgs, v)).softmax(1) / 10
    got = predict_proba(model, imgs.numpy(), tta="crops")
    np.testing.assert_allclose(got, want.detach().numpy(), atol=1e-5)
    assert not np.allclose(got, predict_proba(model, imgs.numpy(), tta="flip"), atol=1e-3)


@pytest.mark.parametrize("tta", ["none", "flip", "crops"])
def test_numpy_tta_views_are_the_tensor_views(tta):
    """`tta_views` (inference, numpy, no torch) gives the views `tta_inputs` (evaluation) gives, in
    the same order, to float rounding: a prediction and a model card average the same views."""
    from ferkit.tta import tta_inputs, tta_views, view_count

    imgs = np.random.default_rng(7).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    imgs[0] = 255  # a white image: the zero fill at the crops' borders shows
    got, want = tta_views(imgs, tta), tta_inputs(torch.from_numpy(imgs), tta)
    assert len(got) == len(want) == view_count(tta)
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == (6, 1, 48, 48)
        np.testing.assert_allclose(g, w.numpy(), atol=3e-5)


@pytest.mark.slow
def test_progressive_resizing_trains_its_first_epochs_on_smaller_images(tmp_path, monkeypatch):
    sizes = []
    real = train_mod.train_one_epoch

    def record(model, loss_fn, optimizer, batches, *a, **k):
        sizes.append(next(iter(batches))[0].shape[-1])
        return real(model, loss_fn, optimizer, batches, *a, **k)

    monkeypatch.setattr(train_mod, "train_one_epoch", record)
    m = fit(cfg_for(tmp_path, arch="fer-resnet-fast", epochs=3, small_epochs=2, small_size=32), tiny_data(),
            log=lambda s: None, progress=False)
    assert sizes == [32, 32, 48] and np.isfinite(m["macro_f1"])
    with pytest.raises(ConfigError, match="small_size must be in"):
        make_config({"arch": "fer-resnet", "small_epochs": 2, "small_size": 64})
    with pytest.raises(ConfigError, match="seed-cnn takes only 48x48"):
        make_config({"small_epochs": 2})


def test_a_finished_run_is_never_overwritten_without_asking(tmp_path):
    """The same --exp again is refused (naming --resume and --overwrite); --overwrite replaces the run
    whole, so two runs' TensorBoard files never mix; stale .tmp files of a killed write go."""
    data = tiny_data()
    cfg = cfg_for(tmp_path, epochs=1)
    fit(cfg, data, log=lambda s: None, progress=False)
    run = tmp_path / "runs" / "t"
    first = (run / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="holds a finished run.*--resume .*last.pt.*--overwrite"):
        fit(cfg, data, log=lambda s: None, progress=False)
    assert (run / "metrics.json").read_text() == first
    (run / "last.pt.tmp").write_bytes(b"half a checkpoint")
    events = sorted(run.glob("events.out.tfevents.*"))
    fit(cfg, data, log=lambda s: None, progress=False, overwrite=True)
    assert not (run / "last.pt.tmp").exists()
    assert len(list(run.glob("events.out.tfevents.*"))) == 1 and sorted(run.glob("events.out.tfevents.*")) != events


def test_a_kill_between_last_and_best_still_resumes_to_the_same_run(tmp_path):
    """last.pt is written before best.pt: a run killed between the two in an improving epoch resumes,
    and best.pt is completed from last.pt, as the uninterrupted run's would be."""
    data = tiny_data()
    full = fit(cfg_for(tmp_path, exp="full", epochs=2), data, log=lambda s: None, progress=False)
    fit(cfg_for(tmp_path, exp="cut", epochs=1), data, log=lambda s: None, progress=False)
    cut = tmp_path / "runs" / "cut"
    last = torch.load(cut / "last.pt", weights_only=True)
    (cut / "best.pt").unlink()  # as if killed right after last.pt was written
    (cut / "metrics.json").unlink()
    last["config"]["epochs"] = 2
    torch.save(last, cut / "last.pt")
    resumed = fit(cfg_for(tmp_path, exp="cut", resume=str(cut / "last.pt")), data, log=lambda s: None, progress=False)
    assert resumed["confusion_matrix"] == full["confusion_matrix"]
    a = torch.load(tmp_path / "runs" / "full" / "best.pt", weights_only=True)
    b = torch.load(cut / "best.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_diverging_run_stops_with_an_error(tmp_path):
    with pytest.raises(ConfigError, match="loss became .*lower --lr"):
        fit(cfg_for(tmp_path, epochs=1, lr=1e30, clip_norm=1e30), tiny_data(), log=lambda s: None, progress=False)


def test_match_classes_relabels_to_the_models_order_and_refuses_other_classes():
    from ferkit.data import DataError
    from ferkit.evaluate import match_classes

    data = tiny_data()
    order = list(reversed(data.class_names))
    moved = match_classes(data, order)
    assert moved.class_names == order
    for name in data.splits:
        names = [data.class_names[i] for i in data.splits[name].labels]
        assert [order[i] for i in moved.splits[name].labels] == names  # the same class, a new index
    assert match_classes(data, data.class_names) is data
    with pytest.raises(DataError, match="differ"):
        match_classes(data, order[:-1] + ["contempt"])


def test_a_new_sampler_and_deferral_rule_are_one_class_and_one_registry_line_each(tmp_path, monkeypatch):
    """docs/DESIGN.md "Adding a strategy": a toy sampler (only the rarest class, disgust) and a toy
    deferral rule (re-balance on odd epochs only) are registered and a run trains with them."""
    from ferkit.strategies import DEFERRALS, SAMPLERS

    class RarestOnly:
        def class_weights(self, counts):
            return (np.arange(len(counts)) == np.argmin(counts)).astype(float) + 1e-12

    class OddEpochs:
        def __call__(self, epoch, start, epochs):
            return epoch % 2 == 1

    monkeypatch.setitem(SAMPLERS, "rarest", RarestOnly())
    monkeypatch.setitem(DEFERRALS, "odd", OddEpochs())
    drawn = []
    real = train_mod.EpochBatches

    def spy(images, labels, batch_size, gen, weights, **kw):
        drawn.append(None if weights is None else np.unique(labels.numpy()[weights > 1e-6]).tolist())
        return real(images, labels, batch_size, gen, weights, **kw)
    monkeypatch.setattr(train_mod, "EpochBatches", spy)
    fit(cfg_for(tmp_path, sampler="rarest", defer="odd", epochs=2), data=tiny_data(), log=lambda m: None)
    assert drawn == [[1], None]  # epoch 1 draws disgust only; epoch 2 (even) shuffles
    with pytest.raises(ConfigError, match="unknown sampler 'nope'"):
        cfg_for(tmp_path, sampler="nope")


def test_the_effective_prior_follows_the_sampler_and_the_class_weights():
    from ferkit.strategies import for_epoch

    counts = np.array([100, 25, 4])
    prior = lambda **kw: for_epoch(make_config({"epochs": 3} | kw), counts, 3).prior(counts)  # noqa: E731
    assert np.allclose(prior(), counts / counts.sum())                      # plain CE: the data's own
    assert np.allclose(prior(sampler="balanced"), np.sqrt(counts) / np.sqrt(counts).sum())
    assert np.allclose(prior(sampler="class_balanced"), 1 / 3)
    assert np.allclose(prior(loss="wce", weight_mode="inv"), 1 / 3)        # n_c x 1/n_c
    assert np.allclose(prior(sampler="balanced", resample_from=4), counts / counts.sum())  # deferred past the end


def test_max_steps_cuts_each_epoch_short_for_a_quick_try(tmp_path, monkeypatch):
    """--max_steps N: each epoch takes at most N optimiser steps; the run is otherwise whole (val, test, outputs)."""
    import ferkit.train as train_module

    steps = []
    step = torch.optim.Adam.step

    def counted(self, *a, **kw):
        steps.append(1)
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    data = tiny_data(per_class=(30,) * 7)  # 210 images: 27 batches of 8 per epoch without the cut
    m = train_module.fit(cfg_for(tmp_path, epochs=2, batch_size=8, max_steps=3, optimizer="adam"), data,
                         log=lambda s: None, progress=False)
    assert len(steps) == 2 * 3
    assert (tmp_path / "runs" / "t" / "metrics.json").is_file() and 0 <= m["macro_f1"] <= 1
    with pytest.raises(ConfigError, match="max_steps"):
        make_config({"max_steps": 0})
