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
