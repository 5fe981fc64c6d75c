"""Multi-rank training that stays correct (issue #16), 2 ranks under torchrun with gloo on the CPU.

Three launches of tests/engines/ddp_scenarios_worker.py:
    A: an uninterrupted 3-epoch run, then a NaN on rank 1 once, then NaNs on rank 1 until the limit, then a resume
       where rank 1 cannot read the checkpoint (each scenario records what every rank did or raised);
    B: the same 3-epoch run, rank 1 SIGKILLed by the worker itself after iteration 5 (mid-epoch 2, deterministic: no
       timer), leaving the end-of-epoch-1 checkpoint;
    C: B resumed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.launch import run_torchrun

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_scenarios_worker.py")
REPO = Path(__file__).resolve().parents[2]
ITERATIONS = 9  # 3 epochs of 3
KILL_AT = 5


def launch(out: Path, *scenarios: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("KILL_AT_ITERATION", None)
    if kill_at is not None:
        env["KILL_AT_ITERATION"] = str(kill_at)
    # the launcher's report of a SIGKILLed rank is a fresh torchrun's (forked ranks report the first to notice)
    return run_torchrun([WORKER, out, *scenarios], processes=2, env=env, timeout=300,  # a hang fails
                        fresh=kill_at is not None)


def records(out: Path, scenario: str) -> list[dict]:
    return [json.loads((out / f"{scenario}.rank{r}.json").read_text()) for r in range(2)]


def masks(out: Path, scenario: str) -> list[dict[int, str]]:
    """Per rank: iteration -> digest of that iteration's (N, L) mask."""
    per_rank = []
    for r in range(2):
        lines = (out / f"{scenario}.masks.rank{r}.txt").read_text().split()
        per_rank.append({int(i): digest for i, digest in zip(lines[::2], lines[1::2])})
    return per_rank


def final_state(out: Path, scenario: str, rank: int = 0) -> dict:
    return torch.load(out / f"{scenario}.rank{rank}.pt", weights_only=True)


def optimizer_tensors(state: dict) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v for i, s in state["optimizer"]["state"].items() for k, v in s.items()}


@pytest.fixture(scope="module")
def scenarios(module_tmp) -> tuple[Path, Path, subprocess.CompletedProcess]:
    uninterrupted, killed = module_tmp("uninterrupted"), module_tmp("killed")
    a = launch(uninterrupted, "train", "nan_once", "nan_limit", "nan_grads", "unreadable")
    assert a.returncode == 0, a.stderr[-5000:]
    b = launch(killed, "train", kill_at=KILL_AT)
    c = launch(killed, "resume")
    assert c.returncode == 0, c.stderr[-5000:]
    return uninterrupted, killed, b


def test_workers_end_with_their_launcher_and_find_ignites_group_built(scenarios) -> None:
    """A launcher killed with SIGKILL left its workers training on their own; a rank that failed before the first
    metric left the others blocked in ignite's lazy new_group until the group's 30-minute timeout."""
    uninterrupted = scenarios[0]
    for r in range(2):
        process = json.loads((uninterrupted / f"process.rank{r}.json").read_text())
        assert {k: process[k] for k in ("new_groups", "death_signal")} == {"new_groups": 0,
                                                                         "death_signal": int(signal.SIGTERM)}


def test_ranks_above_0_do_not_repeat_rank_0s_engine_lines(scenarios) -> None:
    """Every rank printed "Epoch[N] Complete", "Got new best metric" and the resume lines: 8 times on 8 GPUs."""
    levels = [json.loads((scenarios[0] / f"process.rank{r}.json").read_text())["engine_log_level"] for r in range(2)]
    assert levels == [logging.NOTSET, logging.WARNING]


def test_sigkilled_and_resumed_run_ends_as_the_uninterrupted_one(scenarios) -> None:
    uninterrupted, killed, kill_launch = scenarios
    assert kill_launch.returncode != 0 and "SIGKILL" in kill_launch.stderr
    assert [p.name for p in (killed / "ckpt").glob("*.pt")] != []
    assert max(masks(killed, "train")[1]) == KILL_AT  # rank 1 died right after iteration 5
    expected, resumed = final_state(uninterrupted, "train"), final_state(killed, "resume")
    # Tolerance: none. The same operations in the same order on the CPU give bitwise equal results.
    for name, value in expected["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    expected_opt, resumed_opt = optimizer_tensors(expected), optimizer_tensors(resumed)
    assert expected_opt.keys() == resumed_opt.keys() and len(expected_opt) > 0
    for name, value in expected_opt.items():
        assert torch.equal(resumed_opt[name], value), name
    assert records(killed, "resume")[0]["optimizer_steps"] == ITERATIONS


def test_ranks_draw_different_masks_at_every_step_before_and_after_the_resume(scenarios) -> None:
    uninterrupted, killed, _ = scenarios
    reference = masks(uninterrupted, "train")
    before, after = masks(killed, "train"), masks(killed, "resume")
    assert sorted(reference[0]) == list(range(1, ITERATIONS + 1))
    assert sorted(after[0]) == list(range(KILL_AT - 1, ITERATIONS + 1))  # resumed at the end of epoch 1 (iteration 3)
    for run in (reference, before, after):
        for iteration in run[1]:
            assert run[0][iteration] != run[1][iteration], iteration
    for run in (before, after):  # and they are the masks the uninterrupted run drew
        for r in range(2):
            assert all(run[r][i] == reference[r][i] for i in run[r])


def test_nan_on_one_rank_is_skipped_by_every_rank(scenarios) -> None:
    uninterrupted, _, _ = scenarios
    ranks = records(uninterrupted, "nan_once")
    assert [r.get("error") for r in ranks] == [None, None]
    assert [r["optimizer_steps"] for r in ranks] == [5, 5]  # 6 iterations, the one with rank 1's NaN skipped
    rank0, rank1 = final_state(uninterrupted, "nan_once", 0), final_state(uninterrupted, "nan_once", 1)
    for name, value in rank0["model"].items():
        assert torch.equal(rank1["model"][name], value), name  # bitwise: the replicas did not drift


def test_nonfinite_steps_in_a_row_on_one_rank_stop_every_rank(scenarios) -> None:
    uninterrupted, _, _ = scenarios
    for record in records(uninterrupted, "nan_limit"):
        assert record["error_type"] == "FloatingPointError"
        assert record["iteration"] == 4  # NaNs at 2, 3, 4 with max_nonfinite_steps=3: every rank stops there
        assert "3 optimiser steps in a row had a non-finite loss" in record["error"]
        assert "rank(s) [1]" in record["error"] and "max_nonfinite_steps=3" in record["error"]


def test_the_rank_whose_loss_was_nan_is_named_not_every_rank_its_gradients_reached(scenarios) -> None:
    """Rank 1's NaN loss makes every rank's all-reduced gradients NaN: the warnings and the error name rank 1, as the
    loss's rank, and not every rank (the gradient norm is measured after DDP averaged the gradients)."""
    uninterrupted, _, _ = scenarios
    for record in records(uninterrupted, "nan_grads"):
        assert record["error_type"] == "FloatingPointError" and record["iteration"] == 4
        assert "(last at iteration 4: non-finite loss on rank(s) [1]); every rank stops" in record["error"]
        assert record["warnings"] == [
            f"non-finite loss on rank(s) [1] at iteration {i}: step skipped on every rank ({i - 1} in a row, limit 3)"
            for i in (2, 3, 4)]


def test_a_rank_that_cannot_read_the_checkpoint_stops_every_rank(scenarios) -> None:
    uninterrupted, _, _ = scenarios
    for record in records(uninterrupted, "unreadable"):
        assert record["error_type"] == "CheckpointError" and record["iteration"] == 0
        message = record["error"]
        assert "rank(s) [1] cannot read 'checkpoint_iteration=9.pt'" in message
        assert str(uninterrupted / "node1_ckpt" / "checkpoint_iteration=9.pt") in message  # the path rank 1 tried
        assert "filesystem every node reads at the same path" in message
