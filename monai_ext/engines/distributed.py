"""Process-group helpers shared by the engines: rank queries that also work without ``torch.distributed``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence, Sized
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler as TorchDistributedSampler

from monai_ext.io.signals import end_with_the_launcher


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


#: The rank this process had in a group since taken down (:func:`destroy_process_group`): the steps that run after
#: the teardown (a bundle's summary line) are still rank 0's alone.
_rank_before_teardown = 0


def rank() -> int:
    """This process's rank: in the group, or the one it had before the group was taken down; 0 without one."""
    return dist.get_rank() if is_distributed() else _rank_before_teardown


def world_size() -> int:
    """Number of processes in the group; 1 without one."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints, logs and pictures, also after its group's
    teardown."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank of the group; nothing without one."""
    if is_distributed():
        dist.barrier()


#: What torchrun (and any ``env://`` launcher) sets in every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun(environ: Mapping[str, str]) -> bool:
    """Whether a launcher set up this process for ``env://`` rendezvous: then the group is started even for a world
    of one (``torchrun --nproc_per_node=1``), because ``multi_gpu_train.yaml``'s ``DistributedSampler`` asks the
    group for its size."""
    return all(name in environ for name in TORCHRUN_VARIABLES)


def init_process_group(timeout_minutes: int = 30, device: torch.device | str | None = None,
                       required: bool = False) -> bool:
    """Initialise the default process group from ``torchrun``'s environment (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    The backend follows the run's device (:func:`process_group_backend`): NCCL with one GPU per process
    (``LOCAL_RANK``) for a CUDA run, gloo otherwise. Does nothing when not launched by ``torchrun`` (a plain single
    process) or when already initialised; a torchrun world of one process gets its group.

    Under torchrun's agent the process also ends with its launcher (:func:`~monai_ext.io.signals.end_with_the_launcher`),
    and ignite's view of the group is built before anything runs (see the comment there).

    Args:
        timeout_minutes: how long a collective waits for the other ranks.
        device: the device this rank trains on (a bundle's ``@device``: a ``torch.device``, or the text of
            ``--device``); None: CUDA when there is one, as the bundles' default device.
        required: refuse to run without torchrun (``multi_gpu_train.yaml``, whose ``DistributedSampler`` needs the
            group) instead of going on in a single process.

    Returns:
        True when running distributed.

    Raises:
        ValueError: ``required`` and the process was not started by torchrun.
    """
    if is_distributed():
        return True
    if not launched_by_torchrun(os.environ):
        if required:  # the overlay's DistributedSampler would otherwise fail with an 86-line traceback
            raise ValueError("multi_gpu_train.yaml runs under torchrun (torchrun --nproc_per_node=N -m monai.bundle "
                             "run ...); for one process use train.yaml alone")
        return False
    if TORCHRUN_AGENT_VARIABLE in os.environ:
        end_with_the_launcher()
    backend = process_group_backend(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    # ignite builds its own view of the group (a new_group and two collectives) lazily, the first time a metric
    # completes: a rank that failed before its first validation ended left the others blocked there, deaf to SIGTERM,
    # until the group's timeout (30 minutes). Built now, while every rank is alive. (Imported here: ignite takes
    # seconds to import, and every command line imports this module for its rank queries.)
    import ignite.distributed as idist

    idist.sync()
    if dist.get_rank() > 0:
        quiet_repeated_logs()
    return True


def process_group_backend(device: torch.device | str | None = None) -> str:
    """The ``torch.distributed`` backend for a run on ``device``: "nccl" for CUDA, "gloo" for anything else.

    Chosen from the run's device, not from whether the machine has CUDA: ``--device cpu`` under torchrun on a GPU
    machine got NCCL, whose collectives refuse the CPU tensors such a run holds, and every rank claimed GPU 0.

    Args:
        device: the run's device; None: CUDA when this machine has it (the bundles' default device), else the CPU.

    Raises:
        ValueError: ``device`` names no torch device, or CUDA on a machine without it (the overlay starts the group
            before the network is moved, where ``usable_device`` would say the same).
    """
    if device is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from e
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: this machine has no usable CUDA device (torch {torch.__version__}); "
                         "use --device cpu or leave device unset")
    return "nccl" if kind == "cuda" else "gloo"


#: Loggers whose INFO lines every rank prints alike (an engine's "Epoch[2] Complete", "Got new best metric", this
#: package's "resumed from ... at epoch 2"): on 8 GPUs each came 8 times. Their warnings still show on every rank.
REPEATED_LOGGERS = ("ignite.engine", "monai_ext")


def quiet_repeated_logs() -> None:
    """Raise :data:`REPEATED_LOGGERS` to WARNING in this process (a rank above 0: rank 0 says it once)."""
    for name in REPEATED_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


#: Set by torchrun's elastic agent in every worker it starts (a plain ``env://`` launch, or a shell that set RANK
#: and the rest by hand, has no agent to follow).
TORCHRUN_AGENT_VARIABLE = "TORCHELASTIC_RUN_ID"


def destroy_process_group(*networks: torch.nn.Module) -> None:
    """Tear the process group down once every rank has arrived, after ``networks`` let go of it.

    Without the barrier a rank that finishes first (rank 0 is still writing its checkpoint) destroys its gloo
    transport while a peer's is still connected, and the peer can abort in C++ ("terminate called without an active
    exception").

    Args:
        networks: the DDP wrappers of the run (other modules are left alone). A ``DistributedDataParallel`` holds
            the group (``process_group``, and in C++ its reducer), and a bundle's config keeps the wrapper alive
            until the interpreter exits, so without this its reducer and its share of the gloo group were freed
            during interpreter finalisation, where gloo's C++ side can end in the same abort (a 3-rank CPU loop
            that keeps the wrapper in a global: 15 aborts in 100 runs before, none in 100 after). The wrappers
            cannot train afterwards.
    """
    global _rank_before_teardown
    if is_distributed():
        dist.barrier()
        _release_process_group(networks)
        _rank_before_teardown = dist.get_rank()
        dist.destroy_process_group()


def _release_process_group(networks: tuple[torch.nn.Module, ...]) -> None:
    """Drop the references a ``DistributedDataParallel`` in ``networks`` keeps to its group: reducer, logger, group."""
    import gc

    for network in networks:
        if isinstance(network, torch.nn.parallel.DistributedDataParallel):
            for name in ("reducer", "logger"):  # the C++ reducer holds the group; the logger holds the reducer
                if hasattr(network, name):
                    delattr(network, name)
            network.process_group = None
    gc.collect()  # cycles through the wrapper would otherwise keep the reducer until finalisation


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (picklable objects; the identity in a single process)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` in a single process)."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def ranks_flagged(flag: bool, device: torch.device | str = "cpu") -> list[int]:
    """The ranks on which ``flag`` is true, known to every rank after one small all-reduce.

    Each rank writes its flag into its own slot of a (world size,) vector and the vector is summed, so a single
    collective tells every rank the same answer (what makes decisions such as "skip this optimiser step" global).
    """
    return ranks_flagged_each([flag], device)[0]


def ranks_flagged_each(flags: Sequence[bool], device: torch.device | str = "cpu") -> list[list[int]]:
    """For each of several flags, the ranks on which it is true, known to every rank after one all-reduce.

    :func:`ranks_flagged` for several flags at once: a (flags, world size) matrix instead of a vector, so asking
    about a second condition costs no second collective.

    Args:
        flags: this rank's flags; every rank passes as many, in the same order.
        device: where the matrix lives for the collective (see :func:`collective_device`).

    Returns:
        One list of ranks per flag, in the order of ``flags``.
    """
    slots = torch.zeros(len(flags), world_size(), dtype=torch.int32, device=device)
    slots[:, rank()] = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32, device=device)
    if is_distributed():
        dist.all_reduce(slots, op=dist.ReduceOp.SUM)
    return [[r for r, bad in enumerate(row) if bad] for row in slots.tolist()]


def collective_device(preferred: torch.device | str) -> torch.device:
    """Where tensors for a collective must live: the rank's GPU under NCCL, the CPU under gloo (or no group)."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device(preferred) if torch.device(preferred).type == "cuda" else torch.device("cuda")
    return torch.device("cpu")


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (a copy; the input is unchanged). The identity in a single process."""
    if not is_distributed():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


class UnpaddedShardSampler(TorchDistributedSampler):
    """Evaluation sampler: rank r gets items r, r + world, r + 2 world, ... in order; no item repeated, none left out.

    ``torch.utils.data.DistributedSampler`` pads the shards to equal length by repeating items (which then count
    twice in the metrics), and MONAI's ``DistributedSampler(even_divisible=False)`` does not pad but refuses sets
    smaller than the world (1 image on 2 GPUs). This one accepts any size: a rank may get no item at all (the
    evaluators take part in the metrics' gathers regardless, see ``ShardSafeEvaluatorMixin``).

    Args:
        dataset: anything with a length.
        num_replicas, rank: the world (default: the current process group, or a single process).
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None) -> None:
        num_replicas = world_size() if num_replicas is None else num_replicas
        rank = (dist.get_rank() if is_distributed() else 0) if rank is None else rank
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)  # type: ignore[arg-type]
        self.indices = list(range(self.rank, len(dataset), self.num_replicas))
        self.num_samples = self.total_size = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def wrap_ddp(network: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """DistributedDataParallel over ``network`` when distributed (only parameters that require gradients take part;
    no blanket ``find_unused_parameters``: the project's networks use every trainable parameter).

    DDP keeps its default ``broadcast_buffers=True`` for training (rank 0's BatchNorm statistics at the start of
    every training forward). That broadcast is a collective every rank must join, so validation, where a rank may
    have no image, does not run through the wrapper: see :func:`evaluation_network`.

    Args:
        network: the module to wrap, already on ``device``.
        device: where this rank trains: a ``torch.device``, or its name as ``--device cpu`` gives it (text).
    """
    if not is_distributed():
        return network
    device = torch.device(device)  # from the command line @device is text: "cpu" has no .type
    if device.type != "cuda":
        return torch.nn.parallel.DistributedDataParallel(network)
    # "cuda" without an index: the rank's own GPU, which init_process_group made the current one (LOCAL_RANK)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=[index])


def evaluation_network(network: torch.nn.Module) -> torch.nn.Module:
    """The module a validation runs: the one inside a ``DistributedDataParallel``, with rank 0's buffers.

    Collective when ``network`` is a DDP wrapper with ``broadcast_buffers`` (DDP's default) in a live group: every
    rank must call it, those without validation images included. DDP broadcasts rank 0's buffers (BatchNorm running
    statistics) at the start of a forward, the first one after a training step or the wrapper's creation included,
    even under ``no_grad``; a rank whose validation shard is empty runs no forward, so the others waited in that
    broadcast until the group's timeout. Here every rank takes rank 0's buffers once, up front, and the forwards
    then go through the bare module, which has no collective: every rank validates with the statistics DDP would
    have given it, whatever the size of its shard. Parameters need nothing: DDP's averaged gradients keep them equal.

    Args:
        network: the evaluator's network: a DDP wrapper, or any other module (returned as it is).

    Returns:
        ``network.module`` for a DDP wrapper (its buffers made rank 0's when it broadcasts them), else ``network``.
    """
    if not isinstance(network, torch.nn.parallel.DistributedDataParallel):
        return network
    if network.broadcast_buffers and is_distributed() and network.process_group is not None:
        _broadcast_buffers(network.module, network.process_group, set(getattr(network, "parameters_to_ignore", ())))
    return network.module


def _broadcast_buffers(module: torch.nn.Module, group: Any, ignored: set[str]) -> None:
    """Overwrite ``module``'s buffers with those of the group's rank 0, as DDP's own broadcast does (the buffers DDP
    was told to ignore are left alone)."""
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name in ignored:
                continue
            # broadcast needs contiguous memory; a buffer is almost always contiguous, and copied back if not
            staged = buffer if buffer.is_contiguous() else buffer.contiguous()
            dist.broadcast(staged, group=group, group_src=0)
            if staged is not buffer:
                buffer.copy_(staged)
