"""DDP plumbing under ``torchrun``: which rank and device this process is, and averaging gradients.

Gradients are averaged by hand (one flat all-reduce after a step's passes) rather than by
`DistributedDataParallel`: a supernet step trains several sub-networks and leaves other
parameters untouched, which DDP's hooks would wait for (the unused-parameter hang).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["average_gradients", "distributed_setup"]


def distributed_setup(device: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device): one process (on `device`, default CUDA when present), or one rank of
    ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return dist.get_rank(), world, torch.device("cuda", local_rank)
    return dist.get_rank(), world, torch.device("cpu")


def average_gradients(model: torch.nn.Module, world: int) -> None:
    """Averages gradients over ranks with one flat all-reduce; untouched parameters count as zero."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for parameter in parameters:
        count = parameter.numel()
        parameter.grad.copy_(flat[offset:offset + count].view_as(parameter))
        offset += count
