"""Multi-process data-parallel training with torch.distributed (DDP), launched by torchrun.

``torchrun --nproc_per_node 2 -m monge run CONFIG`` starts one process per device; each reads
its rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). The model is wrapped in
:class:`torch.nn.parallel.DistributedDataParallel`, which averages gradients across processes
after every backward pass, so each optimisation step sees ``world_size × batch_size`` examples.
Every process draws its own batches from a generator seeded with ``seed + rank``; only process 0
writes logs, checkpoints and reports. The backend is NCCL on CUDA and gloo on CPU (tested).
Nothing here is home-made: process groups, DDP and the launcher are PyTorch's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistInfo:
    """Where this process stands: rank, world size, and the device it should use."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> DistInfo:
    """The process group this process belongs to (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def init_from_env(device: str | torch.device = "cpu") -> DistInfo:
    """Join the process group described by torchrun's environment variables, if any.

    A plain (non-torchrun) launch returns a single-process :class:`DistInfo` and initialises
    nothing. Calling it twice is harmless.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or (dist.is_available() and dist.is_initialized()):
        return current()
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return current()


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """Wrap ``model`` in DDP when running in several processes (otherwise return it)."""
    if not info.enabled:
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def gather_tensor(x: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """All ranks' copies of an equally shaped tensor (a list of one in a single process)."""
    if not info.enabled:
        return [x]
    out = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(out, x)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
