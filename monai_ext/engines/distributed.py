"""Process-group helpers shared by the engines: rank queries that also work without ``torch.distributed``."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints, logs and pictures."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def init_process_group(timeout_minutes: int = 30) -> bool:
    """Initialise the default process group from ``torchrun``'s environment (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    NCCL with one GPU per process (``LOCAL_RANK``) when CUDA is available, gloo on CPU. Does nothing when not
    launched by ``torchrun`` (single process) or when already initialised.

    Returns:
        True when running distributed.
    """
    import os
    from datetime import timedelta

    import torch

    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    return True


def destroy_process_group() -> None:
    """Tear the process group down once every rank has arrived.

    Without the barrier a rank that finishes first (rank 0 is still writing its checkpoint) destroys its gloo
    transport while a peer's is still connected, and the peer can abort in C++ ("terminate called without an active
    exception").
    """
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(value: "torch.Tensor") -> "torch.Tensor":
    """Mean of a tensor over ranks (a copy; the input is unchanged). The identity in a single process."""
    if not is_distributed():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def wrap_ddp(network: "torch.nn.Module", device: "torch.device") -> "torch.nn.Module":
    """DistributedDataParallel over ``network`` when distributed (only parameters that require gradients take part;
    no blanket ``find_unused_parameters``: the project's networks use every trainable parameter)."""
    import torch

    if not is_distributed():
        return network
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)
