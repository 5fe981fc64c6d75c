"""Validation of a BatchNorm network under DDP with fewer validation images than ranks (3 ranks, gloo, CPU).

DDP's default ``broadcast_buffers`` broadcasts rank 0's BatchNorm statistics at the start of a forward, the first
validation forward after training included; a rank with an empty validation shard runs no forward, so the ranks with
images waited in that broadcast until the group's 30-minute timeout. Launched through ``run_bounded``: a hang fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.engines.ddp_batchnorm_worker import EPOCHS, make_network, validation_items
from tests.launch import run_torchrun

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_batchnorm_worker.py")
REPO = Path(__file__).resolve().parents[2]
RANKS = 3
VALIDATION_IMAGES = 2  # shards 1/1/0: rank 2 has none


@pytest.fixture(scope="module")
def records(module_tmp) -> list[dict]:
    out = module_tmp("ddp_batchnorm")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # seconds when it works; a hang raises TimeoutExpired
    result = run_torchrun([WORKER, out, VALIDATION_IMAGES], processes=RANKS, env=env, timeout=150)
    assert result.returncode == 0, result.stderr[-5000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(RANKS)]


def test_validation_with_an_empty_shard_finishes_and_trains_on(records) -> None:
    for record in records:
        assert sorted(record) == list(range(1, EPOCHS + 1))  # validated after every epoch, trained after the first
        for epoch in record.values():
            assert epoch["runs_unwrapped"] and epoch["network_restored"]


def test_every_rank_validates_with_rank_0s_statistics(records) -> None:
    for epoch in range(1, EPOCHS + 1):
        rank0 = records[0][epoch]["before"]
        # the test means something: training left each rank with its own running statistics
        assert not torch.equal(records[1][epoch]["before"]["1.running_mean"], rank0["1.running_mean"])
        for record in records:
            for name, value in rank0.items():
                assert torch.equal(record[epoch]["seen"][name], value), (epoch, name)


def test_gathered_logits_equal_one_process_with_rank_0s_weights(records) -> None:
    items = validation_items(VALIDATION_IMAGES)
    images = torch.stack([item["image"] for item in items])
    for epoch in range(1, EPOCHS + 1):
        model = make_network()
        model.load_state_dict(records[0][epoch]["before"])
        with torch.no_grad():
            expected = model.eval()(images)
        for record in records:  # every rank holds every image's logits, as one process computes them
            got = record[epoch]["logits"]
            assert sorted(got) == list(range(VALIDATION_IMAGES))
            torch.testing.assert_close(torch.tensor([got[i] for i in range(VALIDATION_IMAGES)]), expected,
                                       atol=1e-6, rtol=0)
