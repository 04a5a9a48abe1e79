"""The training loop: fit, checkpoint every epoch, resume, keep the best on val, test once at the end."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ferkit.config import ConfigError, RunConfig
from ferkit.data import FerData, load_data
from ferkit.data.augment import SIZE
from ferkit.data.batches import EpochBatches
from ferkit.evaluate import evaluate_run, predict_proba
from ferkit.metrics import compute_metrics
from ferkit.models import build_model, head_settings, read_checkpoint, save_checkpoint
from ferkit.optim import make_optimizer, make_scheduler
from ferkit.run_folder import complete_best, prepare_run_dir, rng_state, run_logger, set_rng_state, write_epochs_csv
from ferkit.runtime import distributed
from ferkit.runtime.device import amp_notice, autocast, describe_cpu, pick_device, precision, set_threads
from ferkit.runtime.memory import keep_freed_memory
from ferkit.runtime.paths import atomic_text
from ferkit.strategies import for_epoch
from ferkit.strategies.distill import kd_loss, load_teacher, mixed_targets
from ferkit.strategies.mixing import mix_batch

Log = Callable[[str], None]


def build_for_run(cfg: RunConfig, data: FerData, device: torch.device):
    """Model, first-epoch loss and per-image sampling weights for a configuration."""
    names = data.class_names
    head_kwargs = head_settings(cfg.head, cfg)
    model = build_model(cfg.arch, cfg.head, len(names), **head_kwargs).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    first = for_epoch(cfg, train_counts(data), 1)
    return model, first.loss.to(device), first.image_weights(data.splits["train"].labels), head_kwargs


def train_counts(data: FerData) -> np.ndarray:
    """Images per class in the training split, in class order."""
    return np.bincount(data.splits["train"].labels, minlength=len(data.class_names))


def train_one_epoch(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches,
    device: torch.device,
    amp: bool,
    clip_norm: float = 5.0,
    scaler: torch.amp.GradScaler | None = None,
    progress: str | None = None,
    mix_fn: Callable | None = None,
    teacher=None,
    kd_alpha: float = 0.0,
    kd_temperature: float = 4.0,
    max_steps: int | None = None,
) -> dict:
    """One pass over `batches`; returns mean loss, accuracy and images/s.

    `mix_fn(x, y) -> (x, y_a, y_b, lam, perm)` applies mixup/cutmix; the loss is then mixed the same
    way, and so are a stored teacher's targets (a checkpoint teacher sees the mixed images).
    `teacher` (ferkit.strategies.distill) adds kd_alpha x its distillation term on the same batch:
    (1 - kd_alpha) x the hard-label loss + kd_alpha x T^2 KL(teacher || student) at T = kd_temperature.
    `max_steps` ends the pass after that many optimiser steps (a quick try).
    """
    model.train()
    total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    share = -(
        -len(batches.labels) // getattr(batches, "world", 1)
    )  # this process's images (all of them in one process)
    # On a terminal only (disable=None): a log file or a pipe gets the epoch lines, not a bar's redraws.
    bar = tqdm(total=share, desc=progress, unit="img", leave=False, disable=None if progress else True)
    for step, (x, y, *index) in enumerate(batches):  # EpochBatches(with_index=True) also yields the indices
        if max_steps is not None and step >= max_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x, y, y_b, lam, perm = mix_fn(x, y) if mix_fn else (x, y, y, 1.0, None)
        with autocast(device, amp):
            logits = model(x, y)
        loss = loss_fn(logits.float(), y)
        if lam < 1.0:
            loss = lam * loss + (1 - lam) * loss_fn(logits.float(), y_b)
        if teacher is not None and kd_alpha > 0:
            with torch.no_grad(), autocast(device, amp):
                target = teacher.logits(x, index[0] if index else None)
            if perm is not None and getattr(teacher, "needs_index", False):  # stored: un-mixed images' logits
                target = mixed_targets(target, perm, lam, kd_temperature)
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
            raise ConfigError(
                f"the training loss became {value} after {seen} images of this epoch: lower --lr "
                f"(or --clip_norm); the last finished epoch's last.pt is intact"
            )
        total_loss += value * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        bar.update(n)
    bar.close()
    secs = time.perf_counter() - t0
    return {
        "train_loss": total_loss / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "train_img_per_s": seen / secs,
    }


def _quiet(msg: str) -> None:
    """The log of a process other than rank 0."""


def fit(
    cfg: RunConfig,
    data: FerData | None = None,
    log: Log = print,
    progress: bool = True,
    overwrite: bool = False,
    on_epoch: Callable[[int, float], None] | None = None,
    splits: tuple[str, ...] = ("val", "test"),
) -> dict:
    """Train `cfg` (resuming from cfg.resume when it is a last.pt), then evaluate the best checkpoint.

    Each epoch trains on train, validates on val and saves last.pt (best.pt when val macro-F1
    improves); the best checkpoint, chosen on val only, is then evaluated once on `splits`.
    Everything is written to `runs_dir/exp/`: config.json, epochs.csv, train.log, TensorBoard
    events, the checkpoints and the evaluation outputs (metrics.json, predictions.csv, ...).

    Parameters
    ----------
    cfg : RunConfig
        The run (ferkit.config.make_config builds one from flags, a preset and a config file).
    data : FerData, optional
        The dataset; by default it is read from `cfg.data_root` (ferkit.data.load_data).
    log : callable
        Where progress lines go (also appended to train.log).
    progress : bool
        Show a progress bar per epoch.
    overwrite : bool
        Replace an existing run of the same name; without it such a run is refused.
    on_epoch : callable, optional
        `on_epoch(epoch, val_macro_f1)`, called after each epoch's checkpoint is saved; an exception
        it raises (an early stop) ends the run there, with its last.pt in place.
    splits : tuple of str
        The splits to evaluate the best checkpoint on; a hyper-parameter search passes ("val",) so
        that it never computes test.

    Returns
    -------
    dict
        The metrics of the last of `splits` (test by default): accuracy, macro_f1, per-class F1,
        confusion matrix, calibration (ferkit.evaluate.compute_metrics). Empty on ranks other than 0.

    Raises
    ------
    ConfigError
        No data, a run folder that exists (without `overwrite`), a resume file that is not a
        last.pt, a diverged loss, a batch that does not split over the processes.
    DataError
        A dataset that cannot be read (ferkit.data).
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
            raise ConfigError(
                f"{cfg.resume} has no optimiser state (it is not a last.pt): to evaluate it use --epochs 0 or `ferkit eval`"
            )
        saved = RunConfig(**resume_ckpt["config"])
        # A resumed run is the same run: its saved configuration wins, except where the data now lives.
        saved.data_root, saved.resume, saved.device = cfg.data_root or saved.data_root, cfg.resume, cfg.device
        cfg = saved
    if data is None and not cfg.data_root:
        raise ConfigError("no --data_root: give the FER-2013 zip, image folder or fer2013.csv")
    if dist.active and cfg.batch_size % dist.world:
        raise ConfigError(
            f"--batch_size {cfg.batch_size} does not split into {dist.world} processes: "
            f"give a multiple of {dist.world} (it is the global batch)"
        )
    if dist.active and (cfg.mixup or cfg.cutmix):
        raise ConfigError("mixup and cutmix are not supported in multi-process training yet: train them in one process")
    run_dir = Path(cfg.runs_dir) / (cfg.exp or cfg.default_exp())
    early: list[str] = []  # the data is read before the run folder exists: a bad dataset leaves nothing

    def log_early(msg: str) -> None:
        log(msg)
        early.append(msg)

    if data is None:
        assert cfg.data_root  # checked above, before any work
        data = load_data(cfg.data_root, log=log_early)
    # What the run computes in and where: with --amp on a CPU without bf16 that is float32.
    run_info = {"precision": precision(device, cfg.amp), "machine": describe_cpu(), "processes": dist.world}
    if dist.main:
        prepare_run_dir(run_dir, resume_ckpt is not None, overwrite, log)
        log = run_logger(run_dir, log, early)
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
        log(
            f"distilling from {cfg.teacher} (alpha {cfg.kd_alpha}, T {cfg.kd_temperature}"
            + (f", {cfg.teacher_space} average)" if "," in cfg.teacher else ")")
        )
    base = {
        "format": "ferkit",
        "version": 1,
        "arch": cfg.arch,
        "head": cfg.head,
        "head_kwargs": head_kwargs,
        "class_names": data.class_names,
        "config": cfg.to_dict(),
    }

    start, history, best_f1 = 0, [], -1.0
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["model"])
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        scheduler.load_state_dict(resume_ckpt["scheduler"])
        set_rng_state(gen, resume_ckpt["rng"])
        start, history, best_f1 = resume_ckpt["epoch"], resume_ckpt["history"], resume_ckpt["best_val_macro_f1"]
        log(f"resuming {cfg.exp} after epoch {start} of {cfg.epochs}")
        if dist.main:
            complete_best(run_dir, resume_ckpt, base)
    trained = distributed.wrap(model, device, dist)  # DDP in a multi-process run; `model` stays the plain one

    from torch.utils.tensorboard import SummaryWriter  # imported late: slow, and only training needs it

    writer = SummaryWriter(str(run_dir), purge_step=start + 1) if dist.main else None
    log(
        f"{cfg.exp}: {cfg.arch}/{cfg.head}, loss {cfg.loss}, sampler {cfg.sampler} (q {cfg.sample_q}, from epoch "
        f"{cfg.resample_from}), weights {cfg.weight_mode} (from epoch {cfg.reweight_from}), {cfg.optimizer}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, device {device}, {run_info['precision']}"
        + (f", {dist.world} processes (DDP)" if dist.active else "")
        + (f", the first {cfg.small_epochs} at {cfg.small_size} px" if cfg.small_epochs else "")
    )
    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        size = cfg.small_size if epoch <= cfg.small_epochs else SIZE  # progressive resizing
        strategy = for_epoch(cfg, counts, epoch)  # this epoch's loss and sampling, deferred phases included
        batches = EpochBatches(
            images,
            labels,
            cfg.batch_size,
            gen,
            strategy.image_weights(train.labels),
            aug=aug,
            size=size,
            rank=dist.rank,
            world=dist.world,
            with_index=getattr(teacher, "needs_index", False),
        )
        loss_fn = strategy.loss.to(device)
        stats = train_one_epoch(
            trained,
            loss_fn,
            optimizer,
            batches,
            device,
            cfg.amp,
            cfg.clip_norm,
            scaler,
            progress=f"epoch {epoch}/{cfg.epochs}" if progress and dist.main else None,
            mix_fn=mix_fn,
            teacher=teacher,
            kd_alpha=cfg.kd_alpha,
            kd_temperature=cfg.kd_temperature,
            max_steps=cfg.max_steps,
        )
        scheduler.step()
        if writer is None:  # not rank 0
            continue  # the other processes go on to the next epoch; rank 0 validates and writes
        stats["train_img_per_s"] *= dist.world  # every process trained its share at the same time
        probs = predict_proba(model, val.images, device, cfg.amp)
        vm = compute_metrics(val.labels, probs.argmax(1), data.class_names)
        row = {
            "epoch": epoch,
            **{k: round(v, 6) for k, v in stats.items()},
            "val_acc": round(vm["accuracy"], 6),
            "val_macro_f1": round(vm["macro_f1"], 6),
        }
        row |= {f"val_f1_{c}": round(vm[f"f1_{c}"], 6) for c in data.class_names}
        row |= {"lr": lr, "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
        for k, v in row.items():
            if k != "epoch":
                writer.add_scalar(k.replace("val_f1_", "val_f1/"), v, epoch)  # per-class F1 grouped in one panel
        writer.flush()
        write_epochs_csv(run_dir / "epochs.csv", history)
        improved = vm["macro_f1"] > best_f1
        best_f1 = max(best_f1, vm["macro_f1"])
        # last.pt first: a kill between the two writes leaves a run that --resume continues (and
        # re-saves best.pt from its epoch, as the history says it is the best).
        save_checkpoint(
            base
            | {
                "model": model.state_dict(),
                "epoch": epoch,
                "val_metrics": vm,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(gen),
                "history": history,
                "best_val_macro_f1": best_f1,
            },
            run_dir / "last.pt",
        )
        if improved:
            save_checkpoint(
                base | {"model": model.state_dict(), "epoch": epoch, "val_metrics": vm}, run_dir / "best.pt"
            )
        log(
            f"epoch {epoch}/{cfg.epochs} loss {stats['train_loss']:.4f} acc {stats['train_acc']:.4f} | val acc "
            f"{vm['accuracy']:.4f} macro-F1 {vm['macro_f1']:.4f}{' *' if improved else ''} | "
            f"{stats['train_img_per_s']:.0f} img/s, {row['seconds']:.1f} s"
        )
        if on_epoch is not None:
            on_epoch(epoch, vm["macro_f1"])
    if writer is None:  # not rank 0
        distributed.teardown(dist)
        return {}
    writer.close()
    distributed.teardown(dist)
    if not (run_dir / "best.pt").exists():
        raise ConfigError(
            f"{run_dir} has no best.pt: train at least one epoch, or evaluate a checkpoint with `ferkit eval`"
        )
    return evaluate_run(run_dir / "best.pt", data, run_dir, cfg.amp, cfg.tta, device, log, splits=splits)
