"""The `ferkit` command line: reference flags, one-line errors, eval-only reproduction."""
import json
import subprocess
import sys

import pytest
import torch
from synth import default_counts, make_image_folders, write_image

from ferkit.cli import main


@pytest.fixture
def folders(tmp_path):
    counts = {s: {c: n for c, n in zip(default_counts()["train"], (6, 3, 4, 6, 4, 4, 3))} for s in ("train", "val", "test")}
    return make_image_folders(tmp_path / "fer", counts)


def test_reference_commands_run_with_ferkit_train(tmp_path, folders, capsys):
    runs = tmp_path / "runs"
    # The reference project's documented command, with `python -m src.train` replaced by `ferkit train`.
    rc = main(["train", "--data_root", str(folders), "--exp", "e5", "--head", "softmax", "--loss", "ce",
               "--sampler", "balanced", "--epochs", "1", "--batch_size", "8", "--lr", "0.001", "--seed", "1",
               "--amp", "--runs_dir", str(runs)])
    assert rc == 0
    saved = json.loads((runs / "e5" / "config.json").read_text())
    assert saved["sampler"] == "balanced" and saved["amp"] is True and saved["batch_size"] == 8
    metrics = json.loads((runs / "e5" / "metrics.json").read_text())
    # Eval-only reproduction, both spellings.
    assert main(["train", "--data_root", str(folders), "--epochs", "0", "--resume", str(runs / "e5" / "best.pt"),
                 "--runs_dir", str(runs)]) == 0
    again = json.loads((runs / "eval-e5-best" / "metrics.json").read_text())
    assert again["per_class_f1"] == metrics["per_class_f1"] and again["accuracy"] == metrics["accuracy"]
    # The reference project's documented eval command writes runs/E5_eval/metrics.json.
    assert main(["train", "--data_root", str(folders), "--exp", "E5_eval", "--head", "softmax", "--loss", "ce",
                 "--sampler", "balanced", "--epochs", "0", "--batch_size", "256", "--lr", "1e-3", "--amp",
                 "--resume", str(runs / "e5" / "best.pt"), "--runs_dir", str(runs)]) == 0
    assert json.loads((runs / "E5_eval" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    # ... but never into a training run's folder.
    assert main(["train", "--data_root", str(folders), "--exp", "e5", "--epochs", "0",
                 "--resume", str(runs / "e5" / "best.pt"), "--runs_dir", str(runs)]) == 2
    assert main(["eval", str(runs / "e5" / "best.pt"), "--out", str(tmp_path / "ev")]) == 0  # data_root from the checkpoint
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["macro_f1"] == metrics["macro_f1"]


def test_presets_fill_in_and_flags_win(tmp_path, folders):
    runs = tmp_path / "runs"
    assert main(["train", "--data_root", str(folders), "--preset", "E2", "--weight_mode", "inv", "--epochs", "1",
                 "--batch_size", "8", "--runs_dir", str(runs)]) == 0
    saved = json.loads((runs / "E2_seed42" / "config.json").read_text())
    assert saved["loss"] == "wce" and saved["weight_mode"] == "inv"


def test_config_file(tmp_path, folders):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data_root = "{folders}"\nhead = "arcface"\nloss = "focal"\nepochs = 1\nbatch_size = 8\nexp = "fromfile"\n')
    assert main(["train", "--config", str(cfg), "--runs_dir", str(tmp_path / "runs")]) == 0
    assert json.loads((tmp_path / "runs" / "fromfile" / "config.json").read_text())["head"] == "arcface"


@pytest.mark.parametrize("argv,message", [
    (["train", "--data_root", "{missing}", "--epochs", "1"], "does not exist"),
    (["train", "--data_root", "{data}", "--loss", "hinge"], "unknown loss"),
    (["train", "--data_root", "{data}", "--loss", "wce"], "weight_mode"),
    (["train", "--data_root", "{data}", "--epochs", "0"], "--resume"),
    (["eval", "{junk}", "--data_root", "{data}"], "cannot read checkpoint"),
    (["prepare", "{badzip}", "--out", "{out}"], ""),
])
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, folders, capsys, argv, message):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    write_image(tmp_path / "notfer" / "x.png", torch.zeros(4, 4, dtype=torch.uint8).numpy())
    import zipfile
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        z.writestr("readme.txt", "nothing here")
    subs = {"{missing}": str(tmp_path / "nope"), "{data}": str(folders), "{junk}": str(tmp_path / "junk.pt"),
            "{badzip}": str(tmp_path / "bad.zip"), "{out}": str(tmp_path / "out")}
    rc = main([subs.get(a, a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("ferkit ") and message in err
    assert "Traceback" not in err


def test_prepare_prints_counts_and_store_is_a_data_root(tmp_path, folders, capsys):
    assert main(["prepare", str(folders), "--out", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "disgust" in out and "train" in out
    from ferkit.data import load_data
    assert len(load_data(tmp_path / "store").splits["train"].labels) == 30


def test_console_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "ferkit", "models"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "seed-cnn" in r.stdout and "1,500,583" in r.stdout


def _bad_dataset(kind: str, tmp_path):
    """Each kind of bad input of the issue, built small."""
    import shutil
    import zipfile

    from synth import make_fer_csv
    root = make_image_folders(tmp_path / "fer")
    if kind == "missing split":
        shutil.rmtree(root / "val")
    elif kind == "misnamed split":
        (root / "val").rename(root / "validation")
    elif kind == "class missing from a split":
        shutil.rmtree(root / "test" / "disgust")
    elif kind == "empty class":
        for f in (root / "train" / "fear").iterdir():
            f.unlink()
    elif kind == "truncated image":
        f = next((root / "train" / "happy").iterdir())
        f.write_bytes(f.read_bytes()[:60])
    elif kind == "malformed csv row":
        return make_fer_csv(tmp_path / "fer2013.csv", extra_lines=["3,1 2 3,Training"])
    elif kind == "zip without a layout":
        with zipfile.ZipFile(tmp_path / "x.zip", "w") as z:
            z.writestr("photos/a.txt", "hello")
        return tmp_path / "x.zip"
    return root


@pytest.mark.parametrize("kind,words", [
    ("missing split", "val"), ("misnamed split", "validation"), ("class missing from a split", "disgust"),
    ("empty class", "fear"), ("truncated image", "happy"), ("malformed csv row", "line"),
    ("zip without a layout", "x.zip"),
])
def test_every_bad_dataset_gives_one_line_and_exit_2(tmp_path, capsys, kind, words):
    source = _bad_dataset(kind, tmp_path)
    rc = main(["prepare", str(source), "--out", str(tmp_path / "store")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "store" / "ferkit_store.npz").exists()


def test_quickstart_evaluates_the_shipped_models_then_trains(tmp_path, folders, capsys, monkeypatch):
    import ferkit.pretrained
    runs = tmp_path / "runs"
    assert main(["train", "--data_root", str(folders), "--epochs", "1", "--batch_size", "16", "--exp", "m",
                 "--runs_dir", str(runs)]) == 0
    assert main(["pack", str(runs / "m" / "best.pt"), "--out", str(tmp_path / "pretrained" / "tiny.pt")]) == 0
    monkeypatch.setattr(ferkit.pretrained, "PRETRAINED_DIR", tmp_path / "pretrained")
    capsys.readouterr()
    assert main(["quickstart", str(folders), "--train", "--epochs", "1", "--runs_dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "disgust" in out and "tiny.pt: test accuracy" in out and "reproduced" in out
    assert (runs / "shipped" / "tiny" / "metrics.json").is_file()
    run = runs / "E5_seed42"
    assert f"{run}/metrics.json" in out and "E5 on test" in out
    assert json.loads((run / "config.json").read_text())["sampler"] == "balanced"
    # A card whose predictions no longer match its model's is reported and fails the job.
    card = tmp_path / "pretrained" / "tiny.pt.metrics.json"
    c = json.loads(card.read_text())
    c["test_predictions"] = "".join(str((int(d) + 1) % 7) for d in c["test_predictions"])
    card.write_text(json.dumps(c))
    assert main(["quickstart", str(folders), "--runs_dir", str(runs)]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_every_run_config_field_is_a_train_flag_with_its_default_in_the_help():
    """The flags are built from RunConfig (one definition): each field is a flag, the help shows the
    field's own default, and a registry field lists the registry's entries."""
    import argparse
    from dataclasses import fields

    from ferkit.commands.train import add_arguments as add_train_args
    from ferkit.config import RunConfig, choices
    from ferkit.strategies import LOSSES

    p = argparse.ArgumentParser()
    add_train_args(p)
    actions = {a.dest: a for a in p._actions}
    for f in fields(RunConfig):
        assert f.name in actions, f.name
        assert actions[f.name].default is None  # not given: make_config resolves defaults < preset < file < flags
        if f.default is not None and f.default is not False:
            assert f"(default: {f.default})" in actions[f.name].help, f.name
    assert " | ".join(LOSSES) in actions["loss"].help and choices("loss") == tuple(LOSSES)
    assert "Adam" not in actions["lr"].help  # the optimiser is a choice of its own
    assert vars(p.parse_args(["--tta"]))["tta"] == "flip" and vars(p.parse_args(["--amp"]))["amp"] is True


def test_every_option_of_every_command_has_help_and_shows_its_default():
    """Issue 30: each option explains itself, and its default comes from its one definition."""
    import argparse

    from ferkit.cli import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(c.NAME for c in COMMANDS)
    for name, p in sub.choices.items():
        text = " ".join(p.format_help().split())
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help, f"ferkit {name} {a.option_strings or a.dest} has no help"
            if isinstance(a, argparse._StoreFalseAction):  # --no-X: off unless given
                assert "default: off" in text, f"ferkit {name} {a.option_strings[0]} does not say it is off by default"
            elif a.option_strings and a.default not in (None, False) and a.help is not argparse.SUPPRESS:
                assert f"default: {a.default}" in text or "default:" in a.help, \
                    f"ferkit {name} {a.option_strings[0]} does not show its default {a.default!r}"


def test_ferkit_alone_lists_the_commands_and_version_prints_it(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "predict" in out and "COMMAND --help" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ferkit ")


@pytest.mark.parametrize("name", ["sweep", "tune"])
def test_sweep_and_tune_help_show_their_file_format_as_the_docs_do(name, tmp_path):
    """The file format is in `--help` and in docs/TRAINING.md, the same example, and the example is a valid file."""
    import importlib
    from pathlib import Path

    from ferkit.config import read_table

    module = importlib.import_module(f"ferkit.commands.{name}")
    example = "\n".join(line[2:] for line in module.FILE_FORMAT.split("\n\n")[1].splitlines())
    docs = (Path(__file__).resolve().parents[1] / "docs" / "TRAINING.md").read_text()
    assert example in docs
    (tmp_path / "f.toml").write_text(example)
    if name == "sweep":
        from ferkit.experiments.sweep import load_sweep

        base, seeds, strategies, collected = load_sweep(tmp_path / "f.toml")
        assert seeds == [1, 2, 3] and set(strategies) == {"E0", "LA"} and collected is not None
    else:
        assert read_table(tmp_path / "f.toml", "tune")["trials"] == 20
