"""Process-group helpers shared by the engines: rank queries that also work without ``torch.distributed``."""

from __future__ import annotations

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
