"""The training loop: fit, checkpoint every epoch, resume, keep the best on val, test once at the end."""
from __future__ import annotations

import csv
import json
import math
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from ferkit.runtime import distributed
from ferkit.config import ConfigError, RunConfig
from ferkit.data import FerData, load_data
from ferkit.data.augment import SIZE
from ferkit.data.batches import EpochBatches
from ferkit.runtime.device import amp_notice, autocast, describe_cpu, pick_device, precision, set_threads
from ferkit.runtime.memory import keep_freed_memory
from ferkit.runtime.paths import atomic_file, atomic_text
from ferkit.evaluate import compute_metrics, evaluate_run, predict_proba
from ferkit.models import build_model, head_settings, read_checkpoint, save_checkpoint
from ferkit.optim import make_optimizer, make_scheduler
from ferkit.strategies import for_epoch
from ferkit.strategies.distill import kd_loss, load_teacher
from ferkit.strategies.mixing import mix_batch

Log = Callable[[str], None]


def build_for_run(cfg: RunConfig, data: FerData, device: torch.device):
    """Model, first-epoch loss and per-image sampling weights for a configuration."""
    names = data.class_names
    head_kwargs = head_settings(cfg.head, cfg)
    model = build_model(cfg.arch, cfg.head, len(names), **head_kwargs).to(device, memory_format=torch.channels_last)
    first = for_epoch(cfg, train_counts(data), 1)
    return model, first.loss.to(device), first.image_weights(data.splits["train"].labels), head_kwargs


def train_counts(data: FerData) -> np.ndarray:
    """Images per class in the training split, in class order."""
    return np.bincount(data.splits["train"].labels, minlength=len(data.class_names))


def train_one_epoch(model: torch.nn.Module, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    batches, device: torch.device, amp: bool, clip_norm: float = 5.0,
                    scaler: torch.amp.GradScaler | None = None, progress: str | None = None,
                    mix_fn: Callable | None = None, teacher=None, kd_alpha: float = 0.0,
                    kd_temperature: float = 4.0, max_steps: int | None = None) -> dict:
    """One pass over `batches`; returns mean loss, accuracy and images/s.

    `mix_fn(x, y) -> (x, y_a, y_b, lam)` applies mixup/cutmix; the loss is then mixed the same way.
    `teacher` (ferkit.strategies.distill) adds kd_alpha x its distillation term on the same batch:
    (1 - kd_alpha) x the hard-label loss + kd_alpha x T^2 KL(teacher || student) at T = kd_temperature.
    `max_steps` ends the pass after that many optimiser steps (a quick try).
    """
    model.train()
    total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    share = -(-len(batches.labels) // getattr(batches, "world", 1))  # this process's images (all of them in one process)
    bar = tqdm(total=share, desc=progress, unit="img", leave=False, disable=progress is None)
    for step, (x, y, *index) in enumerate(batches):  # EpochBatches(with_index=True) also yields the indices
        if max_steps is not None and step >= max_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x, y, y_b, lam = mix_fn(x, y) if mix_fn else (x, y, y, 1.0)
        with autocast(device, amp):
            logits = model(x, y)
        loss = loss_fn(logits.float(), y)
        if lam < 1.0:
            loss = lam * loss + (1 - lam) * loss_fn(logits.float(), y_b)
        if teacher is not None and kd_alpha > 0:
            with torch.no_grad(), autocast(device, amp):
                target = teacher.logits(x, index[0] if index else None)
            loss = (1 - kd_alpha) * loss + kd_alpha * kd_loss(logits.float(), target.float(), kd_temperature)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # float16 on CUDA: scale the loss, unscale before clipping
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
        n, value = len(y), loss.item()
        if not math.isfinite(value):  # diverged: stop rather than train on and save NaN weights
            raise ConfigError(f"the training loss became {value} after {seen} images of this epoch: lower --lr "
                              f"(or --clip_norm); the last finished epoch's last.pt is intact")
        total_loss += value * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        bar.update(n)
    bar.close()
    secs = time.perf_counter() - t0
    return {"train_loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1), "train_img_per_s": seen / secs}


def _quiet(msg: str) -> None:
    """The log of a process other than rank 0."""


def _rng_state(gen: torch.Generator) -> dict:
    state = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_epochs_csv(path: Path, history: list[dict]) -> None:
    with atomic_file(path, "w", durable=False, newline="") as f:  # whole or the previous epoch's, never half
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


def _logger(run_dir: Path, log: Log, earlier: Iterable[str] = ()) -> Log:
    """Print and append to run_dir/train.log; `earlier` lines, already printed before the folder
    existed, go into the file first."""
    with open(run_dir / "train.log", "a") as f:
        f.writelines(m + "\n" for m in earlier)

    def both(msg: str) -> None:
        log(msg)
        with open(run_dir / "train.log", "a") as f:
            f.write(msg + "\n")
    return both


RESULTS = ("metrics.json", "last.pt", "best.pt")  # what a run folder holds once an epoch has finished
RUN_LOGS = ("config.json", "train.log", "epochs.csv", "events.out.tfevents.*")  # written before the first epoch ends


def prepare_run_dir(run_dir: Path, resuming: bool, overwrite: bool, log: Log) -> None:
    """Make the run folder, never losing a run: a folder that holds results is refused unless the run
    resumes or `overwrite` says to replace it; a folder left by a run that stopped before its first
    epoch (no checkpoint) starts afresh, so that two runs' logs never mix; stale .tmp files go."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder: choose another --exp or --runs_dir")
    if run_dir.is_dir() and not resuming:
        found = [n for n in RESULTS if (run_dir / n).exists()]
        if found and not overwrite:
            what = "a finished run" if "metrics.json" in found else "an unfinished run"
            hint = f"continue it with --resume {run_dir / 'last.pt'}, " if (run_dir / "last.pt").exists() else ""
            raise ConfigError(f"{run_dir} holds {what} ({', '.join(found)}): {hint}choose another --exp, "
                              f"or pass --overwrite to replace it")
        if found:
            log(f"{run_dir}: replacing the run there (--overwrite)")
            shutil.rmtree(run_dir)
        else:  # only the logs of a run that stopped before its first epoch: start them afresh
            stale = [f for pattern in RUN_LOGS for f in run_dir.glob(pattern)]
            if stale:
                log(f"{run_dir}: held a run that stopped before its first epoch (no checkpoint): starting afresh")
            for f in stale:
                f.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob("*.tmp"):  # a write interrupted by a kill: the real file is intact
            tmp.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the run folder {run_dir} ({e.strerror}): choose a writable --runs_dir") from None


def _complete_best(run_dir: Path, last: dict, base: dict) -> None:
    """When the run was killed after writing last.pt but before best.pt, in an epoch that was the best
    so far, write that best.pt now from last.pt's weights (the same epoch's model)."""
    history = last["history"]
    best = max(history, key=lambda r: r["val_macro_f1"])["epoch"] if history else None
    path = run_dir / "best.pt"
    if best != last["epoch"]:
        return
    if path.is_file() and read_checkpoint(path).get("epoch") == best:
        return
    save_checkpoint(base | {"model": last["model"], "epoch": best, "val_metrics": last["val_metrics"]}, path)


def fit(cfg: RunConfig, data: FerData | None = None, log: Log = print, progress: bool = True,
        overwrite: bool = False, on_epoch: Callable[[int, float], None] | None = None,
        splits: tuple[str, ...] = ("val", "test")) -> dict:
    """Train `cfg` (resuming from cfg.resume when it is a last.pt), then evaluate the best checkpoint.

    Returns the metrics of the last of `splits` (test by default; a hyper-parameter search passes
    ("val",) so that it never computes test). Everything is written to `runs_dir/exp/`; an existing
    run there is refused unless resuming or `overwrite` (`prepare_run_dir`). `on_epoch(epoch, val
    macro-F1)` is called after each epoch's checkpoint is saved; an exception it raises (an early
    stop) ends the run there, with its last.pt in place.
    """
    set_threads()
    keep_freed_memory()
    device = pick_device(cfg.device)
    dist = distributed.setup(device)  # one process unless torchrun started several
    device = distributed.device_for(device, dist)
    if not dist.main:
        log = _quiet  # only rank 0 logs, validates and writes (ferkit/runtime/distributed.py)
    resume_ckpt = None
    if cfg.resume:
        resume_ckpt = read_checkpoint(cfg.resume)
        if "optimizer" not in resume_ckpt:
            raise ConfigError(f"{cfg.resume} has no optimiser state (it is not a last.pt): to evaluate it use --epochs 0 or `ferkit eval`")
        saved = RunConfig(**resume_ckpt["config"])
        # A resumed run is the same run: its saved configuration wins, except where the data now lives.
        saved.data_root, saved.resume, saved.device = cfg.data_root or saved.data_root, cfg.resume, cfg.device
        cfg = saved
    if data is None and not cfg.data_root:
        raise ConfigError("no --data_root: give the FER-2013 zip, image folder or fer2013.csv")
    if dist.active and cfg.batch_size % dist.world:
        raise ConfigError(f"--batch_size {cfg.batch_size} does not split into {dist.world} processes: "
                          f"give a multiple of {dist.world} (it is the global batch)")
    if dist.active and (cfg.mixup or cfg.cutmix):
        raise ConfigError("mixup and cutmix are not supported in multi-process training yet: train them in one process")
    run_dir = Path(cfg.runs_dir) / cfg.exp
    early: list[str] = []  # the data is read before the run folder exists: a bad dataset leaves nothing

    def log_early(msg: str) -> None:
        log(msg)
        early.append(msg)

    if data is None:
        data = load_data(cfg.data_root, log=log_early)
    # What the run computes in and where: with --amp on a CPU without bf16 that is float32.
    run_info = {"precision": precision(device, cfg.amp), "machine": describe_cpu(), "processes": dist.world}
    if dist.main:
        prepare_run_dir(run_dir, resume_ckpt is not None, overwrite, log)
        log = _logger(run_dir, log, early)
        notice = amp_notice(device, cfg.amp)
        if notice:
            log(notice)
        atomic_text(run_dir / "config.json", json.dumps(cfg.to_dict() | {"run": run_info}, indent=2))

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model, _, _, head_kwargs = build_for_run(cfg, data, device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.epochs, cfg.schedule, cfg.warmup_epochs)
    mix_fn = partial(mix_batch, generator=gen, mixup=cfg.mixup, cutmix=cfg.cutmix) if cfg.mixup or cfg.cutmix else None
    aug = {"scale": cfg.scale_jitter, "translate": cfg.translate, "erase_p": cfg.erase_p}
    use_scaler = cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    train, val = data.splits["train"], data.splits["val"]
    images = torch.from_numpy(train.images).to(device)  # the whole uint8 split stays resident
    labels = torch.from_numpy(train.labels).to(device)
    counts = train_counts(data)
    teacher = None
    if cfg.teacher and cfg.kd_alpha > 0:
        teacher = load_teacher(cfg.teacher, data.class_names, data.key, len(train), cfg.teacher_space, device)
        log(f"distilling from {cfg.teacher} (alpha {cfg.kd_alpha}, T {cfg.kd_temperature}"
            + (f", {cfg.teacher_space} average)" if "," in cfg.teacher else ")"))
    base = {"format": "ferkit", "version": 1, "arch": cfg.arch, "head": cfg.head, "head_kwargs": head_kwargs,
            "class_names": data.class_names, "config": cfg.to_dict()}

    start, history, best_f1 = 0, [], -1.0
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["model"])
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        scheduler.load_state_dict(resume_ckpt["scheduler"])
        _set_rng_state(gen, resume_ckpt["rng"])
        start, history, best_f1 = resume_ckpt["epoch"], resume_ckpt["history"], resume_ckpt["best_val_macro_f1"]
        log(f"resuming {cfg.exp} after epoch {start} of {cfg.epochs}")
        if dist.main:
            _complete_best(run_dir, resume_ckpt, base)
    trained = distributed.wrap(model, device, dist)  # DDP in a multi-process run; `model` stays the plain one

    from torch.utils.tensorboard import SummaryWriter  # imported late: slow, and only training needs it
    writer = SummaryWriter(str(run_dir), purge_step=start + 1) if dist.main else None
    log(f"{cfg.exp}: {cfg.arch}/{cfg.head}, loss {cfg.loss}, sampler {cfg.sampler} (q {cfg.sample_q}, from epoch "
        f"{cfg.resample_from}), weights {cfg.weight_mode} (from epoch {cfg.reweight_from}), {cfg.optimizer}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, device {device}, {run_info['precision']}"
        + (f", {dist.world} processes (DDP)" if dist.active else "")
        + (f", the first {cfg.small_epochs} at {cfg.small_size} px" if cfg.small_epochs else ""))
    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        size = cfg.small_size if epoch <= cfg.small_epochs else SIZE  # progressive resizing
        strategy = for_epoch(cfg, counts, epoch)  # this epoch's loss and sampling, deferred phases included
        batches = EpochBatches(images, labels, cfg.batch_size, gen, strategy.image_weights(train.labels), aug=aug,
                               size=size, rank=dist.rank, world=dist.world,
                               with_index=getattr(teacher, "needs_index", False))
        loss_fn = strategy.loss.to(device)
        stats = train_one_epoch(trained, loss_fn, optimizer, batches, device, cfg.amp, cfg.clip_norm, scaler,
                                progress=f"epoch {epoch}/{cfg.epochs}" if progress and dist.main else None, mix_fn=mix_fn,
                                teacher=teacher, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                                max_steps=cfg.max_steps)
        scheduler.step()
        if not dist.main:
            continue  # the other processes go on to the next epoch; rank 0 validates and writes
        stats["train_img_per_s"] *= dist.world  # every process trained its share at the same time
        probs = predict_proba(model, val.images, device, cfg.amp)
        vm = compute_metrics(val.labels, probs.argmax(1), data.class_names)
        row = {"epoch": epoch, **{k: round(v, 6) for k, v in stats.items()}, "val_acc": round(vm["accuracy"], 6),
               "val_macro_f1": round(vm["macro_f1"], 6)}
        row |= {f"val_f1_{c}": round(vm[f"f1_{c}"], 6) for c in data.class_names}
        row |= {"lr": lr, "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
        for k, v in row.items():
            if k != "epoch":
                writer.add_scalar(k.replace("val_f1_", "val_f1/"), v, epoch)  # per-class F1 grouped in one panel
        writer.flush()
        _write_epochs_csv(run_dir / "epochs.csv", history)
        improved = vm["macro_f1"] > best_f1
        best_f1 = max(best_f1, vm["macro_f1"])
        # last.pt first: a kill between the two writes leaves a run that --resume continues (and
        # re-saves best.pt from its epoch, as the history says it is the best).
        save_checkpoint(base | {"model": model.state_dict(), "epoch": epoch, "val_metrics": vm, "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "rng": _rng_state(gen), "history": history,
                            "best_val_macro_f1": best_f1}, run_dir / "last.pt")
        if improved:
            save_checkpoint(base | {"model": model.state_dict(), "epoch": epoch, "val_metrics": vm}, run_dir / "best.pt")
        log(f"epoch {epoch}/{cfg.epochs} loss {stats['train_loss']:.4f} acc {stats['train_acc']:.4f} | val acc "
            f"{vm['accuracy']:.4f} macro-F1 {vm['macro_f1']:.4f}{' *' if improved else ''} | "
            f"{stats['train_img_per_s']:.0f} img/s, {row['seconds']:.1f} s")
        if on_epoch is not None:
            on_epoch(epoch, vm["macro_f1"])
    if not dist.main:
        distributed.teardown(dist)
        return {}
    writer.close()
    distributed.teardown(dist)
    if not (run_dir / "best.pt").exists():
        raise ConfigError(f"{run_dir} has no best.pt: train at least one epoch, or evaluate a checkpoint with `ferkit eval`")
    return evaluate_run(run_dir / "best.pt", data, run_dir, cfg.amp, cfg.tta, device, log, splits=splits)
