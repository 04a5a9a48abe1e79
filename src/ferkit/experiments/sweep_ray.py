"""`ferkit sweep CONFIG --backend ray`: every run of a sweep as a Ray task, on one machine or a cluster.

    ferkit sweep converged.toml --backend ray                               # a local Ray, started for the sweep
    ray start --head --port 6379                                            # or a cluster: on the head,
    ray start --address HEAD:6379                                           # on each other machine,
    ferkit sweep converged.toml --backend ray --address HEAD:6379           # then from any of them

The local backend's rules hold: a run with `metrics.json` is skipped, one with a `last.pt` resumes
from it. Each task decides that when it starts, not when the sweep is planned, so a task that Ray
retries after its worker died (up to `--retries` times) resumes from the last epoch its previous
attempt saved. Training runs inside the Ray worker (not a subprocess), so a dead worker leaves no
orphan writing to the run folder. Run folders are written where `runs_dir` says: on a cluster that
must be storage every node sees at the same path (NFS, or object storage mounted with a FUSE layer
such as s3fs or gcsfuse); see docs/SCALING.md.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from ferkit.config import ConfigError
from ferkit.experiments.sweep import PlannedRun, plan, run_action
from ferkit.runtime.paths import atomic_text


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'ferkit[ray]' (or pip install 'ray>=2.9')") from None
    return ray


def train_one(config: dict, cpus: int) -> str:
    """Run one sweep run in this process: skip it if finished, resume it from its last.pt if one
    exists, else start it. Returns what it did ("skipped", "resumed", "started")."""
    from ferkit.config import make_config
    from ferkit.runtime.device import set_threads
    from ferkit.train import fit

    run_dir = Path(config["runs_dir"]) / config["exp"]
    action = run_action(run_dir)  # decided now, not when the sweep was planned: a retry resumes
    if action == "skip":
        return "skipped"
    set_threads(cpus)
    # Which machine and process runs this attempt (a cluster's operator, or a test, can find it).
    atomic_text(run_dir / "ray_worker.json", json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    if action == "resume":
        fit(make_config({"resume": str(run_dir / "last.pt"), "data_root": config["data_root"]}), progress=False)
        return "resumed"
    fit(make_config({k: v for k, v in config.items() if v is not None and k != "resume"}), progress=False)
    return "started"


def progress_line(done: int, running: int, failed: int, queued: int) -> str:
    return f"runs: {done} done, {running} running, {failed} failed, {queued} queued"


def run_sweep_ray(
    path: str | Path,
    address: str | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0,
    retries: int = 2,
    dry_run: bool = False,
    log=print,
) -> int:
    """Run the sweep's unfinished runs as Ray tasks; returns the number of runs that failed."""
    runs = plan(path)
    todo = [r for r in runs if r.action != "skip"]
    for r in runs:
        log(f"{r.action:>6}  {r.name}")
    log(
        f"{len(runs)} runs: {len(runs) - len(todo)} done, {len(todo)} to run on Ray "
        f"({cpus_per_run} CPU{'s' if cpus_per_run != 1 else ''}, {gpus_per_run} GPU per run)"
    )
    if dry_run or not todo:
        return 0
    ray = _ray()
    if cpus_per_run < 1 or gpus_per_run < 0 or retries < 0:
        raise ConfigError(
            f"--cpus-per-run must be >= 1, --gpus-per-run and --retries >= 0 "
            f"(got {cpus_per_run}, {gpus_per_run}, {retries})"
        )
    # Run folders are relative to where the sweep was started: the tasks get absolute paths.
    cwd = Path.cwd()
    for r in todo:
        r.config["runs_dir"] = str((cwd / r.config["runs_dir"]).resolve())
        if r.config.get("data_root") and not Path(r.config["data_root"]).is_absolute():
            r.config["data_root"] = str((cwd / r.config["data_root"]).resolve())
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(cpus_per_run)}},
            configure_logging=False,
        )
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=retries, retry_exceptions=True)(
        train_one
    )
    pending: dict = {}
    for r in todo:
        pending[task.remote(r.config, cpus_per_run)] = r
    done, failed, last = 0, [], ""
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=10.0)
            for ref in ready:
                run: PlannedRun = pending.pop(ref)
                try:
                    what = ray.get(ref)
                    done += 1
                    log(f"  done  {run.name} ({what})")
                except Exception as e:  # the task failed after its retries: report it, go on with the others
                    failed.append(run.name)
                    log(f"FAILED  {run.name}: {type(e).__name__}: {str(e).splitlines()[-1] if str(e) else ''}")
            free = ray.available_resources().get("CPU", 0)
            total = ray.cluster_resources().get("CPU", 0)
            running = min(len(pending), int((total - free) // cpus_per_run)) if total else 0
            line = progress_line(done, running, len(failed), len(pending) - running)
            if line != last:
                log(line)
                last = line
    finally:
        if started_here:
            ray.shutdown()
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(failed)}; run the sweep again to retry them")
    return len(failed)
