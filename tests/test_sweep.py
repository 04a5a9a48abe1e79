"""`ferkit sweep`: grid of strategies x seeds, skip finished, resume interrupted, N at a time."""
import json
from pathlib import Path

import pytest
from synth import make_image_folders

from ferkit.cli import main
from ferkit.experiments.sweep import plan


@pytest.fixture
def sweep_file(tmp_path):
    data = make_image_folders(tmp_path / "fer", {s: {c: 3 for c in ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]}
                                                 for s in ("train", "val", "test")})
    f = tmp_path / "sweep.toml"
    f.write_text(f'''seeds = [1, 2]
[base]
data_root = "{data}"
epochs = 1
batch_size = 8
runs_dir = "{tmp_path / 'runs'}"
[strategies.E0]
preset = "E0"
[strategies.LA]
loss = "la"
sample_q = 0.0
''')
    return f


@pytest.mark.slow
def test_sweep_runs_the_grid_then_skips_and_resumes(sweep_file, tmp_path, capsys):
    assert [r.action for r in plan(sweep_file)] == ["start"] * 4
    assert main(["sweep", str(sweep_file), "--jobs", "2"]) == 0
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["E0_seed1", "E0_seed2", "LA_seed1", "LA_seed2"]
    assert all((runs / n / "metrics.json").is_file() for n in ["E0_seed1", "LA_seed2"])
    assert [r.action for r in plan(sweep_file)] == ["skip"] * 4
    (runs / "LA_seed1" / "metrics.json").unlink()  # as if interrupted before the test evaluation
    assert [r.action for r in plan(sweep_file)] == ["skip", "skip", "resume", "skip"]
    assert main(["sweep", str(sweep_file)]) == 0
    assert (runs / "LA_seed1" / "metrics.json").is_file()
    out = capsys.readouterr().out
    assert "resume" in out and "LA_seed1" in out


def test_bad_sweep_files(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text('seeds = [1]\n[strategies.X]\nloss = "nope"\n')
    assert main(["sweep", str(f)]) == 2
    assert "unknown loss" in capsys.readouterr().err
    f.write_text('seeds = [1]\n[grid]\n')
    assert main(["sweep", str(f)]) == 2


@pytest.mark.parametrize("name", ["study.toml", "converged.toml", "reference_budget.toml"])
def test_committed_sweep_files_plan_every_run(name):
    """The study's sweep files validate every field of every run (no data needed to plan)."""
    runs = plan(Path(__file__).resolve().parent.parent / "results" / name)
    seeds = {r.config["seed"] for r in runs}
    assert len(seeds) >= 3 and len(runs) == len(seeds) * len({r.name.rsplit("_seed", 1)[0] for r in runs})


def test_collected_runs_count_as_finished(sweep_file, tmp_path):
    """A study commits its finished runs' small outputs elsewhere; a fresh checkout's sweep skips them."""
    collected = tmp_path / "results" / "runs"
    (collected / "E0_seed2").mkdir(parents=True)
    (collected / "E0_seed2" / "metrics.json").write_text("{}")
    (collected / "LA_seed1").mkdir()  # no metrics.json: not finished, so it runs
    sweep_file.write_text(f'collected = "{collected}"\n' + sweep_file.read_text())
    assert [(r.name, r.action) for r in plan(sweep_file)] == [
        ("E0_seed1", "start"), ("E0_seed2", "skip"), ("LA_seed1", "start"), ("LA_seed2", "start")]
    sweep_file.write_text(sweep_file.read_text().replace(f'collected = "{collected}"', "collected = 3"))
    with pytest.raises(Exception, match="collected .* must be a folder path"):
        plan(sweep_file)


def test_a_finished_run_with_other_settings_is_refused_not_skipped(sweep_file, tmp_path, capsys):
    """Changing a strategy in the sweep file (epochs 1 -> 2) must not silently keep its old runs."""
    collected = tmp_path / "results" / "runs"
    sweep_file.write_text(f'collected = "{collected}"\n' + sweep_file.read_text())
    done = collected / "E0_seed1"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")
    as_planned = next(r for r in plan(sweep_file) if r.name == "E0_seed1").config
    # written as `ferkit train` writes it: tta as a bool, and where it ran (which may differ)
    (done / "config.json").write_text(json.dumps(as_planned | {"tta": False, "data_root": "elsewhere.zip",
                                                               "run": {"precision": "float32"}}))
    assert [r.action for r in plan(sweep_file)][:1] == ["skip"]
    sweep_file.write_text(sweep_file.read_text().replace("epochs = 1", "epochs = 2"))
    assert main(["sweep", str(sweep_file), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{done} was trained with epochs = 1" in err and "now gives 2" in err and "move that run aside" in err
    assert (done / "metrics.json").is_file()  # nothing was touched
