"""Multi-process training with DistributedDataParallel, as `torchrun` starts it.

    torchrun --standalone --nproc_per_node 2 -m ferkit train --preset E5 --data_root D ...
    ferkit train --nproc 2 ...                  # the same: ferkit starts torchrun for you

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process; `setup` reads them and joins the
process group: gloo on CPU, nccl on CUDA. Without them (a plain `ferkit train`) it is one process
and nothing here changes anything.

What makes N processes train the same model as one process at the same global batch:
- Every process draws the same global order and augmentation from the same seeded generator
  (`EpochBatches`), and takes its own slice of each global batch (`share`): the union of the slices
  is exactly the one-process batch, so a re-sampling strategy keeps its class distribution.
- DDP averages the gradients of the slices, which is the gradient of the global batch's mean loss.
- BatchNorm: on CUDA its statistics are synchronised across processes (SyncBatchNorm); PyTorch
  has no SyncBatchNorm on CPU, so there each process normalises its own slice (batch statistics
  of B/N images instead of B) and DDP copies rank 0's running statistics to the others at each
  step. That is the one difference from one process, and it is within seed noise (docs/SCALING.md).
- Only rank 0 validates, writes files and logs. Checkpoints hold the unwrapped model, and the
  global batch is the run's `batch_size` whatever N is, so a last.pt resumes on any number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process validates, writes and logs (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """The ranks torchrun gives this process (one process when it gives none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> Dist:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA); returns this process's ranks."""
    dist = from_env()
    if dist.active and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group(backend)
    return dist


def device_for(device: torch.device, dist: Dist) -> torch.device:
    """Each process of a multi-GPU run uses its own GPU (LOCAL_RANK); CPU runs share the CPU."""
    if device.type == "cuda" and dist.active:
        return torch.device("cuda", dist.local_rank)
    return device


def wrap(model: torch.nn.Module, device: torch.device, dist: Dist) -> torch.nn.Module:
    """The model as DDP (with SyncBatchNorm on CUDA) in a multi-process run, else unchanged."""
    if not dist.active:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP (what checkpoints hold)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def share(rank: int, world: int) -> slice:
    """Which items of a global batch a process trains on: every world-th from its rank on."""
    return slice(rank, None, world)


def teardown(dist: Dist) -> None:
    if dist.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
