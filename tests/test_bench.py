"""The throughput benchmark's --quick code path on tiny synthetic data (bench/throughput.py)."""
import importlib.util
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ferkit.models import ARCHS

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # throughput.py imports reference_pipeline from its own folder

import reference_pipeline as ref  # noqa: E402

_spec = importlib.util.spec_from_file_location("throughput", BENCH / "throughput.py")
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)


@pytest.fixture
def spec(tmp_path) -> dict:
    tree = tmp_path / "fer2013"
    tp.write_synthetic_tree(tree, tp.synthetic_counts(40))
    return {"source": str(tree), "tree": str(tree), "cache_dir": str(tmp_path / "cache"), "quick": True,
            "steps": 2, "warmup": 1, "epochs": 1, "batch_size": 16, "workers": 0, "device": "cpu", "amp": False}


def test_quick_path_measures_each_pipeline(spec):
    cold = tp.measure_ferkit_cold(spec)
    counts = tp.synthetic_counts(40)
    assert cold["n_images"] == sum(map(sum, counts.values())) and list(Path(spec["cache_dir"]).glob("store-*.npz"))
    n_train, n_val = sum(counts["train"]), sum(counts["val"])
    pipes = {"reference": tp.figures(tp.measure_reference(spec) | tp.peak_rss_mb(), quick=True),
             "ferkit fp32 cpu": tp.figures(tp.measure_ferkit(spec) | tp.peak_rss_mb(), quick=True)}
    for name, p in pipes.items():
        assert (p["n_train"], p["n_val"]) == (n_train, n_val), name
        assert p["train_images"] == 2 * 16 and p["eval_images"] == min(n_val, 2 * 16), name  # --steps batches
        assert p["train_img_per_s"] > 0 and p["eval_img_per_s"] > 0 and p["epoch_s_estimated"]
        assert p["epoch_s"] == pytest.approx(n_train / p["train_img_per_s"] + n_val / p["eval_img_per_s"])
    assert pipes["ferkit fp32 cpu"]["warm_load_s"] < 5
    rat = tp.ratios(pipes)
    assert rat["ferkit fp32 cpu"]["train"] == pytest.approx(
        pipes["ferkit fp32 cpu"]["train_img_per_s"] / pipes["reference"]["train_img_per_s"])
    targets = tp.check_targets(pipes, rat, cold["cold_load_s"])
    assert targets["train_ratio_amp"]["met"] is None  # no amp pipeline was measured
    assert targets["cold_load_s"]["met"] is True
    table = tp.format_table(pipes, rat, targets, cold["cold_load_s"])
    assert "reference" in table and "ferkit fp32 cpu" in table and "projected" in table


def test_a_measurement_runs_in_its_own_process(spec, tmp_path):
    result = tp.run_role("ferkit-cold", spec, tmp_path)
    assert result["n_images"] > 0 and result["cold_load_s"] > 0
    assert result["peak_rss_mb"] >= result["peak_rss_self_mb"] > 10  # a real process's RSS, in MB


def test_first_steps_crosses_epoch_boundaries():
    from ferkit.data.batches import EpochBatches
    images = torch.zeros(10, 48, 48, dtype=torch.uint8)
    batches = EpochBatches(images, torch.arange(10), 4, torch.Generator().manual_seed(0), train_augment=False)
    steps = tp.FirstSteps(batches, 5)  # batches of 4, 4, 2 | 4, 4
    sizes = [len(y) for _, y in steps]
    assert sizes == [4, 4, 2, 4, 4] and len(steps.labels) == sum(sizes)


def test_targets_compare_with_the_right_side():
    def pipe(train, ev, rss):
        return {"device": "cpu", "train_img_per_s": train, "eval_img_per_s": ev, "epoch_s": 1.0,
                "warm_load_s": 0.5, "peak_rss_mb": rss}
    pipes = {"reference": pipe(100, 100, 500), "ferkit fp32 cpu": pipe(110, 300, 900),
             "ferkit amp cpu": pipe(300, 600, 2100)}
    t = tp.check_targets(pipes, tp.ratios(pipes), cold_s=20.0)
    assert t["train_ratio_amp"] == {"value": 3.0, "target": ">= 2.5", "met": True}
    assert t["train_ratio_fp32"]["met"] is False and t["train_ratio_fp32"]["value"] == pytest.approx(1.1)
    assert t["eval_ratio_fp32"]["value"] == 3.0 and t["eval_ratio_fp32"]["met"] is True
    assert t["eval_ratio_amp"]["value"] == 6.0 and t["eval_ratio_amp"]["met"] is True
    assert t["cold_load_s"]["met"] is False and t["warm_load_s"]["met"] is True
    assert t["peak_rss_mb"]["value"] == 2100 and t["peak_rss_mb"]["met"] is False


def test_reference_crop_offset_and_resize(monkeypatch):
    """No flip, no rotation, crop at offset 4 of the 4-padded image = the image's top-left 44x44, resized."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8))
    monkeypatch.setattr(random, "random", lambda: 0.9)
    monkeypatch.setattr(random, "uniform", lambda a, b: 0.0)
    monkeypatch.setattr(random, "randint", lambda a, b: 4)
    out = ref.train_transform(img)
    expected = img.crop((0, 0, 44, 44)).resize((48, 48), Image.BILINEAR)
    assert out.size == (48, 48) and np.array_equal(np.asarray(out), np.asarray(expected))
    monkeypatch.setattr(random, "randint", lambda a, b: 0)  # top-left corner of the padding: black
    assert np.asarray(ref.train_transform(img))[0, 0] == 0
    x = ref.to_normalized_tensor(out)
    assert x.shape == (1, 48, 48) and x.min() >= -1 and x.max() <= 1


def test_eval_is_timed_after_a_warm_up_pass():
    assert tp.eval_sizes({"quick": True, "batch_size": 256, "steps": 8}, 3589) == (256, 2048)
    assert tp.eval_sizes({"quick": True, "batch_size": 256, "steps": 8}, 100) == (100, 100)
    assert tp.eval_sizes({"quick": False, "batch_size": 256, "steps": 8}, 3589) == (3589, 3589)


def test_train_step_bench_times_every_arch(capsys, monkeypatch):
    """bench/train_step.py runs a real optimiser step per arch and batch and prints a row each."""
    spec = importlib.util.spec_from_file_location("train_step", BENCH / "train_step.py")
    ts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ts)
    assert ts.images_per_s("seed-cnn", 4, False, steps=1, repeats=1) > 0
    monkeypatch.setattr(sys, "argv", ["train_step.py", "--batch", "2", "--steps", "1", "--repeats", "1"])
    ts.main()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cpu: ")  # every run names the CPU it measured
    rows = out[2:]
    assert [r.split()[:3] for r in rows] == [[arch, "2", "48"] for arch in ARCHS]
    monkeypatch.setattr(sys, "argv", ["train_step.py", "--arch", "fer-resnet-fast16", "--batch", "2", "--size", "48", "40",
                                      "--steps", "1", "--repeats", "1"])
    ts.main()
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split()[:3] for r in rows] == [["fer-resnet-fast16", "2", "48"], ["fer-resnet-fast16", "2", "40"]]
    assert rows[0].split()[4] == "1.00"  # the first row's speed-up over itself
    monkeypatch.setattr(sys, "argv", ["train_step.py", "--arch", "fer-resnet", "--batch", "2", "--steps", "1", "--profile"])
    ts.main()
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines[0].startswith("fer-resnet, batch 2:") and "GFLOP/s" in lines[0] and len(lines) == 13
    # Well-formed rows only: which operators a CPU runs (and their names) depends on its kernels.
    assert all(re.match(r"^\s+\d+\.\d%\s+\S", line) for line in lines[1:]), lines


def test_predict_bench_times_functions_in_turns():
    """bench/predict.py's best_of_each calls its functions in turns and keeps each one's fastest time."""
    spec = importlib.util.spec_from_file_location("predict_bench", BENCH / "predict.py")
    pb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb)
    calls = []
    best, rounds = pb.best_of_each([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up call each, then three rounds taking turns
    assert len(rounds) == 3 and all(len(r) == 2 for r in rounds)
    assert best == [min(r[0] for r in rounds), min(r[1] for r in rounds)]
    assert pb.best_of(lambda: None, 2) >= 0


@pytest.mark.slow
def test_malloc_bench_compares_the_two_settings_in_fresh_processes(tmp_path):
    """bench/malloc.py runs each setting in its own process; kept freed memory means fewer page faults."""
    import json
    import subprocess

    out = tmp_path / "malloc.json"
    subprocess.run([sys.executable, str(BENCH / "malloc.py"), "--rounds", "1", "--quick", "--workloads", "predict",
                    "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["setting_applied"] is True
    (row,) = result["rounds"]
    assert row["default"]["kept"] is False and row["kept"]["kept"] is True
    assert row["kept"]["batched_faults_per_512"] < row["default"]["batched_faults_per_512"] / 10
    assert set(result["summary"]) == {"batched_faces_per_s", "batched_faults_per_512", "single_faces_per_s",
                                      "single_faults_per_50"}


def test_train_step_bench_pairs_blocks_in_alternating_order():
    """Rounds run A B, then B A, ...; "x first" is the median over rounds of the paired block ratio."""
    spec = importlib.util.spec_from_file_location("train_step", BENCH / "train_step.py")
    ts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ts)
    order = []
    times = ts.block_times_in_turns({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 2, 3)
    assert order == list("aabb" "bbaa" "aabb") and [len(t) for t in times.values()] == [3, 3]
    ratios = ts.speedups({"a": [2.0, 4.0, 3.0], "b": [1.0, 4.0, 1.0], "c": [2.0, 2.0, 30.0]})
    assert ratios == {"a": 1.0, "b": 2.0, "c": 1.0}  # medians of (2, 1, 3) and (1, 2, 0.1)


@pytest.mark.slow
def test_service_load_bench_runs_a_small_version(tmp_path, capsys):
    """bench/service_load.py serves on loopback, sends its fuzz set, a bomb and a few uploads, and
    reports: no 5xx, the bomb refused as too large, every upload answered (timings only printed)."""
    spec = importlib.util.spec_from_file_location("service_load", BENCH / "service_load.py")
    sl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sl)
    report = sl.main(["--concurrent", "4", "--bursts", "2", "--bombs", "1", "--out", str(tmp_path / "load.json")])
    assert report["server_5xx"] == 0 and report["alive_after"]
    assert report["bomb_status"] == {413: 1} and report["upload_status"] == {200: 8} and len(report["burst_p95_s"]) == 2
    assert report["fuzz_status"]["empty file"] == 400 and report["fuzz_status"]["text file"] == 415
    assert set(report["rss_mb"]) == {"start", "after_bombs", "after_burst"}
    assert "concurrent uploads" in capsys.readouterr().out


@pytest.mark.slow
def test_video_bench_runs_and_writes_well_formed_rows(tmp_path):
    """bench/video.py makes its clips, runs each with and without tracking, and writes one row per
    clip and setting: frames/s, identity switches, coverage, tracks (no timing is asserted)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "video.json"
    r = subprocess.run([sys.executable, str(BENCH / "video.py"), "--frames", "12", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["frames"] == 12 and "cpu_model" in report["machine"]
    assert len(report["clips"]) == 6
    for row in report["clips"].values():
        assert row["frames_per_s"] > 0 and row["identity_switches"] >= 0 and 0 <= row["coverage"] <= 1


@pytest.mark.slow
def test_the_gpu_script_runs_every_step_in_its_tiny_setting(tmp_path):
    """bench/gpu.py on CPU with --tiny: every step runs (so the GPU script cannot rot between the
    sessions that have a GPU), the report names each step and run, and --pack brings back the
    run folders without checkpoints plus each teacher and student in float16."""
    import json
    import subprocess
    import tarfile

    tree = tmp_path / "fer2013"
    tp.write_synthetic_tree(tree, tp.synthetic_counts(40))
    out, pack = tmp_path / "gpu.json", tmp_path / "pack"
    r = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--data", str(tree), "--tiny", "--device", "cpu",
                        "--runs", str(tmp_path / "runs"), "--out", str(out), "--pack", str(pack)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    status = {s["step"]: s["status"] for s in report["steps"]}
    # the shipped models do not reproduce their cards on synthetic faces: quickstart exits 1 there
    assert status == {"prepare": "done", "throughput": "done", "teachers": "done", "reference": "done",
                      "quickstart": "failed", "torchrun": "done", "reference-summary": "done", "students": "done"}, status
    assert set(report["reference"]) == {"E0_seed1", "E5_seed1"} and set(report["teachers"]) == {"T-wide_seed1", "T-resnet_seed1"}
    assert set(report["students"]) == {"S-kd_seed1", "S-kd-aug_seed1"}
    assert all("test_macro_f1" in v for v in [*report["reference"].values(), *report["students"].values()])
    assert report["reference_E5_minus_E0"]["per_seed"].keys() == {"1"}
    assert {"ferkit fp32 cpu", "reference"} <= set(report["throughput"])
    assert len(report["quickstart"]) == 2  # one line per shipped model
    with tarfile.open(pack / "results.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("reference/E5_seed1/metrics.json") for n in names) and not any(n.endswith(".pt") for n in names)
    teacher = torch.load(pack / "teacher-T-wide_seed1.pt", weights_only=True)
    student = torch.load(pack / "student-S-kd_seed1.pt", weights_only=True)
    for ckpt in (teacher, student):
        assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert student["config"]["teacher"].count(",") == 0  # the tiny setting trains one T-wide seed
