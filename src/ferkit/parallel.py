"""Data-parallel training on a CPU: `--procs N` runs N processes of one thread each.

Why: on a small CPU one process with N intra-op threads leaves cores idle, because the
convolutions of a 48x48 network are too small to split well across threads and the Python
between them runs on one core. N processes of one thread each keep every core busy
(`bench/train_step.py --procs`). Each process draws the same batch from the same generator
(so the sampled and augmented images are exactly those of a one-process run), trains on its
share of it, and `DistributedDataParallel` averages the gradients over the processes (gloo), so
the replicas stay identical. One difference from a one-process run remains: BatchNorm's batch
statistics come from each process's share of the batch, as with a smaller batch.

The calling process is rank 0: it validates, checkpoints and logs. The other ranks only train.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    """The number of training processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def shard(*batch: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], bool]:
    """This rank's contiguous share of each tensor of a batch, and whether its images count in the
    epoch's statistics.

    A batch too small to give every rank two images (BatchNorm needs two in training) is trained
    whole by every rank: the averaged gradient is then that of the whole batch, as in one process,
    and only rank 0 counts it.
    """
    n, size = world(), len(batch[0])
    if n == 1:
        return batch, True
    if size < 2 * n:
        return batch, rank() == 0
    return tuple(t.tensor_split(n)[rank()] for t in batch), True


def all_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over the ranks (identity in one process)."""
    if world() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def _init(store: str, r: int, n: int) -> None:
    torch.set_num_threads(1)
    # A rank that dies leaves the others waiting in a collective: give up after 10 minutes.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=r, world_size=n,
                            timeout=datetime.timedelta(minutes=10))


def _worker(r: int, n: int, store: str, fn: Callable, args: tuple) -> None:
    _init(store, r, n)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def cpu_processes(n: int, fn: Callable, args: tuple) -> Iterator[None]:
    """Start ranks 1..n-1 running `fn(*args)` in spawned processes and make this process rank 0,
    one thread each; inside the block this process runs its own part. On leaving, the other ranks
    are joined, and this process's thread count and process group are restored."""
    threads = torch.get_num_threads()
    store = Path(tempfile.mkdtemp(prefix="ferkit-ddp-")) / "store"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, n, str(store), fn, args), daemon=True) for r in range(1, n)]
    for p in procs:
        p.start()
    try:
        _init(str(store), 0, n)
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
        with contextlib.suppress(OSError):
            os.remove(store)
            os.rmdir(store.parent)
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise RuntimeError(f"a training process exited with status {failed[0]}: see its error above")
