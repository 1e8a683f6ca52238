"""Several GPUs (or CPU processes) for one run, through PyTorch's own DDP.

Start a run under ``torchrun``; each process trains on its shard of the training set
(`DistributedSampler`), gradients are averaged by `DistributedDataParallel`, and rank 0 alone
writes the record and predictions::

    torchrun --nproc_per_node 4 -m marsbench run --dataset mb-domars16k --model vit_l_16 \\
        --regime fine_tuning

Validation and test scoring run on the full splits on every rank (identical results), so early
stopping takes the same decision everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env() -> World | None:
    """Join the process group ``torchrun`` describes in the environment; None when alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return World(dist.get_rank(), dist.get_world_size(), local)


def current_world() -> World | None:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shard_train_loader(dataset, world: World, *, batch_size: int, device: torch.device,
                       seed: int, collate_fn=None):
    """The training loader of one rank: its shard of ``dataset`` (reshuffled each epoch through
    ``loader.sampler.set_epoch``)."""
    from torch.utils.data.distributed import DistributedSampler

    from .engine import make_loader

    sampler = DistributedSampler(dataset, num_replicas=world.size, rank=world.rank,
                                 shuffle=True, seed=seed)
    return make_loader(dataset, batch_size=batch_size, device=device, sampler=sampler,
                       collate_fn=collate_fn)


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` whose gradients are averaged over the ranks (its state stays ``module``'s)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def is_main_process() -> bool:
    world = current_world()
    return world is None or world.is_main
