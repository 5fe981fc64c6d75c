"""Data-parallel training on CPU with gloo under torchrun: one step equals a single-process step on the global batch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from tests.launch import run_bounded, run_torchrun

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]


ACCUMULATIONS = (1, 2)


def run_worker(out: Path, accumulations: tuple[int, ...], processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = [str(WORKER), str(out), ",".join(map(str, accumulations))]
    if processes > 1:
        result = run_torchrun(args, processes=processes, env=env, timeout=300)
    else:
        result = run_bounded([sys.executable, *args], env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def steps(module_tmp) -> Path:
    """One process's step on the global batch, and two processes' steps with each accumulation (one launch)."""
    out = module_tmp("ddp_steps")
    run_worker(out / "single", (1,), processes=1)
    run_worker(out / "ddp", ACCUMULATIONS, processes=2)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", ACCUMULATIONS)
def test_two_processes_match_one_process_on_the_global_batch(steps: Path, accumulation: int) -> None:
    single = torch.load(steps / "single" / "accumulation1.pt", weights_only=True)
    ddp = torch.load(steps / "ddp" / f"accumulation{accumulation}.pt", weights_only=True)
    for key, value in single["final"].items():
        torch.testing.assert_close(ddp["initial"][key], single["initial"][key], atol=0, rtol=0)
        torch.testing.assert_close(ddp["final"][key], value, atol=1e-6, rtol=0)
    moved = [k for k in single["final"] if not torch.equal(single["final"][k], single["initial"][k])]
    assert len(moved) >= len(single["final"]) - 2  # every trainable tensor took the step (not the pos embeddings)


def test_destroy_process_group_releases_the_reducer_of_a_kept_ddp_wrapper(tmp_path) -> None:
    """The DDP wrapper lives on after the group is destroyed (a bundle's config keeps it to interpreter exit): its
    reducer (which holds the gloo group in C++) and its group are dropped then, not at exit; other networks passed
    along are left as they are."""
    import torch.distributed as dist

    from monai_ext.engines.distributed import destroy_process_group, is_distributed

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    wrapper = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
    wrapper(torch.randn(4, 3)).sum().backward()  # one step, so the reducer has run
    plain = torch.nn.Linear(2, 2)
    assert hasattr(wrapper, "reducer") and wrapper.process_group is not None
    destroy_process_group(wrapper, plain)
    assert not is_distributed()
    assert not hasattr(wrapper, "reducer") and not hasattr(wrapper, "logger") and wrapper.process_group is None
    assert plain.weight.shape == (2, 2) and plain.weight.requires_grad


@pytest.fixture
def group_of_one(tmp_path):
    """A gloo group of one process (a FileStore: no port), taken down afterwards."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_wrap_ddp_takes_the_device_as_the_command_line_gives_it(group_of_one, device) -> None:
    """``--device cpu`` makes the bundles' @device the text 'cpu': multi_gpu_train.yaml's wrap_ddp failed on every
    rank with "'str' object has no attribute 'type'"."""
    from monai_ext.engines.distributed import wrap_ddp

    wrapper = wrap_ddp(torch.nn.Linear(3, 2), device)
    assert isinstance(wrapper, torch.nn.parallel.DistributedDataParallel) and wrapper.device_ids is None
    wrapper(torch.randn(5, 3)).sum().backward()  # odd batch: one step through the reducer
    assert wrapper.module.weight.grad is not None


@pytest.mark.parametrize("device, cuda, backend", [
    ("cpu", True, "gloo"),                 # --device cpu on a GPU machine: not NCCL
    (torch.device("cpu"), True, "gloo"),
    ("cuda:1", True, "nccl"),
    (torch.device("cuda", 0), True, "nccl"),
    (None, True, "nccl"),                  # no device given: the bundles' default, CUDA when there is one
    (None, False, "gloo"),
])
def test_the_backend_follows_the_run_s_device(device, cuda, backend, monkeypatch) -> None:
    from monai_ext.engines.distributed import process_group_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert process_group_backend(device) == backend


@pytest.mark.parametrize("device, match", [
    ("gpu", r"^device must name a torch device such as 'cpu' or 'cuda:0', got 'gpu'$"),
    ("cuda:1", r"^device 'cuda:1': this machine has no usable CUDA device .*use --device cpu or leave device unset$"),
])
def test_a_device_the_group_cannot_start_on_is_refused_in_one_line(device, match, monkeypatch) -> None:
    """The overlay starts the group before the network is moved: torch's errors came first, as tracebacks."""
    from monai_ext.engines.distributed import process_group_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=match):
        process_group_backend(device)


def test_a_cpu_run_under_torchrun_on_a_gpu_machine_gets_gloo_and_sets_no_gpu(tmp_path, monkeypatch) -> None:
    """The backend came from torch.cuda.is_available(): a CPU run under torchrun on a GPU machine got NCCL (whose
    collectives refuse CPU tensors) and every rank called set_device."""
    import ignite.distributed
    import torch.distributed as dist

    from monai_ext.engines import distributed

    real_init = dist.init_process_group
    asked: list[str] = []

    def init(backend: str, timeout: object) -> None:  # torchrun's env:// as a FileStore (no port)
        asked.append(backend)
        real_init("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1, timeout=timeout)

    set_devices: list[int] = []
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.setenv(name, "0" if name == "RANK" else "1")
    monkeypatch.delenv(distributed.TORCHRUN_AGENT_VARIABLE, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", set_devices.append)
    monkeypatch.setattr(dist, "init_process_group", init)
    monkeypatch.setattr(ignite.distributed, "sync", lambda: None)  # ignite's view of the group is not the point
    try:
        assert distributed.init_process_group(device="cpu", required=True)
    finally:
        distributed.destroy_process_group()
    assert asked == ["gloo"] and set_devices == []


def test_the_overlay_s_process_group_outside_torchrun_is_refused_in_one_line(monkeypatch) -> None:
    from monai_ext.engines import distributed

    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_process_group(device="cpu") is False  # a plain process: single-process code goes on
    with pytest.raises(ValueError, match=r"^multi_gpu_train.yaml runs under torchrun \(torchrun --nproc_per_node=N "
                                         r"-m monai.bundle run ...\); for one process use train.yaml alone$"):
        distributed.init_process_group(device="cpu", required=True)
