"""Knowledge distillation (ferkit.strategies.distill) on tiny synthetic data: the loss at known
inputs, ensemble averaging, alpha 0 = plain training, composition with the imbalance strategies,
stored logits, and teachers that must be refused."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_train import CLASSES, cfg_for, tiny_data

from ferkit.config import ConfigError, make_config
from ferkit.strategies import class_weights, make_loss
from ferkit.strategies.distill import (
    StoredTeacher,
    TeacherError,
    average_teachers,
    kd_loss,
    load_teacher,
    mixed_targets,
    read_teacher_logits,
    save_teacher_logits,
)
from ferkit.train import fit, train_one_epoch


def test_kd_loss_at_known_inputs():
    student = torch.zeros(1, 2)  # uniform
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # probabilities 0.75, 0.25
    kl_t1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(kl_t1, rel=1e-6)
    p = math.sqrt(3) / (math.sqrt(3) + 1)  # softmax([ln 3 / 2, 0])
    kl_t2 = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(4 * kl_t2, rel=1e-6)  # T^2 = 4
    assert kd_loss(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-7)
    two = torch.cat([teacher, teacher.flip(1)])  # batchmean: the mean over images
    assert kd_loss(torch.zeros(2, 2), two, 1.0).item() == pytest.approx(kl_t1, rel=1e-6)


def test_an_ensemble_averages_in_probability_or_logit_space():
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    prob = average_teachers([a, b], "prob").softmax(1)
    mean_p = (a.softmax(1) + b.softmax(1)) / 2
    torch.testing.assert_close(prob, mean_p)
    logit = average_teachers([a, b], "logit")
    torch.testing.assert_close(logit, torch.tensor([[1.0, 0.0]]))
    assert prob[0, 0] < logit.softmax(1)[0, 0]  # the two spaces differ: 0.690 against 0.731
    with pytest.raises(TeacherError, match="unknown teacher space"):
        average_teachers([a], "median")


def test_a_stored_teacher_on_a_mixed_batch_targets_the_mixture_at_its_temperature():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    perm, lam, t = torch.tensor([1, 0]), 0.3, 4.0
    target = mixed_targets(logits, perm, lam, t)
    p = (logits / t).softmax(1)
    torch.testing.assert_close((target / t).softmax(1), lam * p + (1 - lam) * p[perm])
    # kd_loss against the mixed target is the KL to that mixture, at T
    student = torch.zeros(2, 3)
    mix = lam * p + (1 - lam) * p[perm]
    kl = (mix * (mix / (1 / 3)).log()).sum(1).mean() * t * t
    assert kd_loss(student, target, t).item() == pytest.approx(kl.item(), rel=1e-5)
    torch.testing.assert_close(mixed_targets(logits, torch.tensor([0, 1]), 0.5, t).div(t).softmax(1), p)


class Linear(torch.nn.Module):
    """A model without BatchNorm or dropout, so that a step's loss is a plain function of its weights."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = torch.nn.Linear(48 * 48, 7)

    def forward(self, x, target=None):
        return self.fc(x.flatten(1))


def test_the_distilled_loss_composes_with_class_weights_and_the_sampler():
    """(1 - alpha) x the weighted hard-label loss + alpha x the KL, on batches the sampler drew."""
    from ferkit.data.batches import EpochBatches
    from ferkit.strategies import sampling_weights
    from ferkit.strategies.distill import ModelTeacher

    data = tiny_data()
    train = data.splits["train"]
    counts = np.bincount(train.labels, minlength=7)
    loss_fn = make_loss("wce", counts, class_weights(counts, "inv_sqrt", 0.999))
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    batches = EpochBatches(images, labels, len(labels), torch.Generator().manual_seed(0),
                           sampling_weights(train.labels, 0.5, 7), train_augment=False)
    student, teacher = Linear(0), ModelTeacher([Linear(1)], "prob")
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)  # the loss of the untouched weights
    stats = train_one_epoch(student, loss_fn, optimizer, batches, torch.device("cpu"), False, teacher=teacher,
                            kd_alpha=0.3, kd_temperature=2.0)
    x, y = next(iter(EpochBatches(images, labels, len(labels), torch.Generator().manual_seed(0),
                                  sampling_weights(train.labels, 0.5, 7), train_augment=False)))
    with torch.no_grad():
        s = student(x)
        expected = 0.7 * loss_fn(s, y) + 0.3 * kd_loss(s, teacher.logits(x), 2.0)
    assert stats["train_loss"] == pytest.approx(expected.item(), rel=1e-5)


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    fit(cfg_for(tmp, exp="teacher", epochs=1, arch="fer-resnet-slim"), tiny_data(), log=lambda s: None, progress=False)
    return tmp / "runs" / "teacher" / "best.pt"


@pytest.mark.slow
def test_alpha_zero_is_plain_training_and_alpha_above_zero_is_not(tmp_path, teacher_ckpt):
    data = tiny_data()
    kw = {"epochs": 1, "arch": "fer-resnet-slim", "preset": "E5"}
    fit(cfg_for(tmp_path, exp="plain", **kw), data, log=lambda s: None, progress=False)
    fit(cfg_for(tmp_path, exp="a0", teacher=str(teacher_ckpt), kd_alpha=0.0, **kw), data, log=lambda s: None, progress=False)
    fit(cfg_for(tmp_path, exp="a5", teacher=str(teacher_ckpt), kd_alpha=0.5, **kw), data, log=lambda s: None, progress=False)
    plain, a0, a5 = (_weights(tmp_path / "runs" / e / "last.pt") for e in ("plain", "a0", "a5"))
    assert all(torch.equal(plain[k], a0[k]) for k in plain)
    assert not all(torch.equal(plain[k], a5[k]) for k in plain)


@pytest.mark.slow
def test_an_ensemble_and_stored_logits_teach_with_every_strategy(tmp_path, teacher_ckpt):
    data = tiny_data()
    ensemble = f"{teacher_ckpt},{teacher_ckpt}"
    m = fit(cfg_for(tmp_path, exp="ens", epochs=1, arch="fer-resnet-slim", loss="wce", weight_mode="inv_sqrt",
                    sampler="balanced", mixup=0.2, teacher=ensemble, teacher_space="logit"), data,
            log=lambda s: None, progress=False)
    assert 0 <= m["macro_f1"] <= 1
    stored = save_teacher_logits(str(teacher_ckpt), data, tmp_path / "t.npz")
    z = read_teacher_logits(stored)
    assert z["train"].shape == (len(data.splits["train"]), 7) and z["class_names"] == CLASSES
    m = fit(cfg_for(tmp_path, exp="stored", epochs=1, arch="fer-resnet-slim", loss="la", reweight_from=1,
                    cutmix=1.0, teacher=str(stored)), data, log=lambda s: None, progress=False)
    assert 0 <= m["macro_f1"] <= 1
    teacher = load_teacher(str(stored), CLASSES, data.key, len(data.splits["train"]), "prob", torch.device("cpu"))
    assert isinstance(teacher, StoredTeacher)
    torch.testing.assert_close(teacher.logits(None, torch.tensor([3, 0])), torch.from_numpy(z["train"][[3, 0]]))


def test_teachers_that_cannot_teach_are_refused(tmp_path, teacher_ckpt):
    data = tiny_data()
    other = [c.upper() for c in CLASSES]
    with pytest.raises(TeacherError, match="predicts angry, disgust"):
        load_teacher(str(teacher_ckpt), other, data.key, len(data.splits["train"]), "prob", torch.device("cpu"))
    stored = save_teacher_logits(str(teacher_ckpt), data, tmp_path / "t.npz")
    with pytest.raises(TeacherError, match="another dataset"):
        load_teacher(str(stored), CLASSES, "another-key", len(data.splits["train"]), "prob", torch.device("cpu"))
    with pytest.raises(TeacherError, match="do not mix"):
        load_teacher(f"{stored},{teacher_ckpt}", CLASSES, data.key, 1, "prob", torch.device("cpu"))
    with pytest.raises(TeacherError, match="no teacher file"):
        load_teacher(str(tmp_path / "missing.pt"), CLASSES, data.key, 1, "prob", torch.device("cpu"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TeacherError, match="cannot be read as teacher logits"):
        load_teacher(str(tmp_path / "junk.npz"), CLASSES, data.key, 1, "prob", torch.device("cpu"))
    assert make_config({"teacher": "t.npz", "mixup": 0.2}).mixup == 0.2  # stored targets are mixed too
    with pytest.raises(ConfigError, match="kd_alpha"):
        make_config({"kd_alpha": 1.5})


class Payload:
    """Unpickling this calls os.system: a malicious teacher."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow  # a fresh interpreter per command
def test_a_malicious_or_foreign_teacher_gives_one_line_on_the_command_line(tmp_path, teacher_ckpt):
    from synth import default_counts, make_image_folders

    root = make_image_folders(tmp_path / "fer", default_counts(2))
    marker = tmp_path / "PAYLOAD_RAN"
    evil = torch.load(teacher_ckpt, weights_only=True)
    evil["config"] = dict(evil["config"], note=Payload(marker))
    torch.save(evil, tmp_path / "evil.pt")
    foreign = torch.load(teacher_ckpt, weights_only=True)
    foreign["class_names"] = [c.upper() for c in CLASSES]
    torch.save(foreign, tmp_path / "foreign.pt")
    for teacher, message in (("evil.pt", "evil.pt"), ("foreign.pt", "predicts ANGRY")):
        r = subprocess.run([sys.executable, "-m", "ferkit", "train", "--data_root", str(root), "--teacher",
                            str(tmp_path / teacher), "--epochs", "1", "--runs_dir", str(tmp_path / "runs"),
                            "--exp", teacher.split(".")[0], "--device", "cpu"], capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not marker.exists()
