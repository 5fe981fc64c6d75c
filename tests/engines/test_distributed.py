"""Data-parallel training on CPU with gloo under torchrun: one step equals a single-process step on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]


def run_worker(out: Path, accumulation: int, processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if processes == 1:
        cmd = [sys.executable, str(WORKER), str(out), str(accumulation)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(WORKER), str(out), str(accumulation)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 2])
def test_two_processes_match_one_process_on_the_global_batch(tmp_path, accumulation: int) -> None:
    run_worker(tmp_path / "single.pt", 1, processes=1)
    run_worker(tmp_path / "ddp.pt", accumulation, processes=2)
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for key, value in single["final"].items():
        torch.testing.assert_close(ddp["initial"][key], single["initial"][key], atol=0, rtol=0)
        torch.testing.assert_close(ddp["final"][key], value, atol=1e-6, rtol=0)
    moved = [k for k in single["final"] if not torch.equal(single["final"][k], single["initial"][k])]
    assert len(moved) >= len(single["final"]) - 2  # every trainable tensor took the step (not the pos embeddings)
