"""DistributedDataParallel plumbing for processes torchrun started (see maas/distributed.py).

gloo on CPU, nccl on CUDA with one GPU per process (LOCAL_RANK picks it).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from maas.errors import ConfigError


def setup(requested_device: str) -> torch.device:
    """Join the process group torchrun announced; return this process's device."""
    local_rank = int(os.environ["LOCAL_RANK"])
    if requested_device == "cpu" or (requested_device == "auto" and not torch.cuda.is_available()):
        device, backend = torch.device("cpu"), "gloo"
    else:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"trainer.nproc asks for a GPU per process, but process {local_rank} finds only "
                              f"{torch.cuda.device_count()} CUDA device(s); use trainer.device=cpu or fewer processes")
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return device


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    # Gradients as views of the all-reduce buckets: no copy per step, and no stride-mismatch warnings.
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True)


def shard(n: int, *, epoch: int, seed: int) -> torch.Tensor:
    """This process's sample indices for `epoch`: a DistributedSampler's shuffled, padded shard."""
    from torch.utils.data import DistributedSampler

    rank, world = rank_and_world()
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler))


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
