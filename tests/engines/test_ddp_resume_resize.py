"""A run killed mid-epoch on 2 ranks and resumed on 3 (a node lost), gloo on the CPU, shards that do not divide
evenly (11 images): the resumed run continues at the saved epoch with its own epochs, schedule and replicas."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from monai_ext.engines.optim import warmup_cosine_factor
from tests.launch import run_torchrun

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_resize_worker.py")
REPO = Path(__file__).resolve().parents[2]


def launch(out: Path, name: str, processes: int, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("KILL_AT_ITERATION", None)
    if kill_at is not None:
        env["KILL_AT_ITERATION"] = str(kill_at)
    # the launcher's report of a SIGKILLed rank is a fresh torchrun's (forked ranks report the first to notice)
    return run_torchrun([WORKER, out, name], processes=processes, env=env, timeout=300,  # a hang fails
                        fresh=kill_at is not None)


def test_killed_on_two_ranks_and_resumed_on_three_continues_at_the_saved_epoch(tmp_path) -> None:
    killed = launch(tmp_path, "train", processes=2, kill_at=5)  # as iteration 5 starts: mid-epoch 2 (3 an epoch)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt")) == ["checkpoint_iteration=3.pt"]
    resumed = launch(tmp_path, "resume", processes=3)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    ranks = [json.loads((tmp_path / f"resume.rank{r}.json").read_text()) for r in range(3)]
    for number, record in enumerate(ranks):
        # epoch 1 done on 2 ranks; epochs 2 and 3 of 2 iterations each (4 images a rank) on 3
        assert record["epoch_starts"] == [[2, 2], [3, 4]] and record["epoch_length"] == 2
        assert record["iteration"] == 6
        assert record["optimizer_steps"] == 3 + 4  # the saved epoch's steps, then this run's
        # the 3-rank run's schedule (6 steps, 1 of warmup) from the end of its epoch 1
        lrs = {int(i): lr for i, lr in record["lr"].items()}
        assert lrs == pytest.approx({i: 1e-3 * warmup_cosine_factor(i - 1, 1, 6, 0.0) for i in range(3, 7)})
        # said once, by rank 0: the same lines from every rank read as three problems
        said = number == 0
        assert any("random states of 2 rank(s) and this run has 3" in w for w in record["warnings"]) is said
        assert any("epochs of 3 iterations and this run's have 2" in w for w in record["warnings"]) is said
    assert len({record["weights"] for record in ranks}) == 1  # the replicas are identical
