"""Samplers for data-parallel runs: balanced sampling split over ranks, and evaluation shards without padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.engines.classification import DistributedBalancedSampler, balanced_sampler, balanced_weights
from monai_ext.engines.distributed import UnpaddedShardSampler

# an imbalanced set of 100: 90 / 10, the case where per-shard weighting goes wrong
DATALIST = [{"label": 0}] * 90 + [{"label": 1}] * 10
LABELS = np.array([d["label"] for d in DATALIST])
EPOCHS = 300


def class_fractions(draws: list[int]) -> np.ndarray:
    counts = np.bincount(LABELS[draws], minlength=2)
    return counts / counts.sum()


def single_process_fractions() -> np.ndarray:
    sampler, draws = balanced_sampler(DATALIST, seed=3, distributed=False), []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)  # as MONAI's workflows do at each epoch
        draws += list(sampler)
    return class_fractions(draws)


def test_a_resumed_single_process_run_draws_what_the_uninterrupted_one_drew() -> None:
    """PyTorch's WeightedRandomSampler kept its generator to itself: a run resumed at epoch 3 (a new sampler) drew
    epoch 1's indices again."""
    uninterrupted = balanced_sampler(DATALIST, seed=42, distributed=False)
    epochs = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        epochs.append(list(uninterrupted))
    resumed = balanced_sampler(DATALIST, seed=42, distributed=False)
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2] != epochs[0] and len(epochs[2]) == len(DATALIST)


@pytest.mark.parametrize("world", [2, 3, 8])
def test_balanced_sampling_under_ddp_matches_the_single_process_sampler(world: int) -> None:
    draws = []
    for epoch in range(EPOCHS):
        for rank in range(world):
            sampler = DistributedBalancedSampler(balanced_weights(DATALIST), num_replicas=world, rank=rank, seed=3)
            sampler.set_epoch(epoch)
            assert len(sampler) == len(list(sampler)) == -(-len(DATALIST) // world)  # equal steps on every rank
            draws += list(sampler)
    # Tolerance 0.02: about 4 standard deviations of the difference of two class fractions over 30,000 draws.
    # (MONAI's DistributedWeightedRandomSampler, which weights each rank's shard, is off by 0.08 at 8 ranks here.)
    assert class_fractions(draws) == pytest.approx(single_process_fractions(), abs=0.02)
    assert class_fractions(draws) == pytest.approx([0.5, 0.5], abs=0.02)


def epoch_seed(seed: int, epoch: int) -> int:
    """The draw's seed, written out: numpy's SeedSequence of (seed, epoch), one 32-bit word."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def test_ranks_split_one_draw_and_epochs_differ() -> None:
    weights = balanced_weights(DATALIST)
    per_rank = [DistributedBalancedSampler(weights, num_replicas=3, rank=r, seed=1) for r in range(3)]
    shards = [list(s) for s in per_rank]
    whole = torch.multinomial(torch.tensor(weights, dtype=torch.double), 102, True,
                              generator=torch.Generator().manual_seed(epoch_seed(1, 0))).tolist()
    assert [i for row in zip(*shards) for i in row] == whole  # rank r takes draws r, r + 3, ...
    per_rank[0].set_epoch(1)
    assert list(per_rank[0]) != shards[0]
    assert list(DistributedBalancedSampler(weights, num_replicas=3, rank=0, seed=1)) == shards[0]  # reproducible


def test_balanced_sampler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        balanced_weights([])
    with pytest.raises(ValueError, match="non-negative"):
        DistributedBalancedSampler([0.0, 0.0], num_replicas=2, rank=0)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 10])
def test_unpadded_shards_hold_every_item_exactly_once(size: int, world: int) -> None:
    shards = [list(UnpaddedShardSampler(range(size), num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    assert [len(s) for s in shards] == [len(range(r, size, world)) for r in range(world)]
    assert all(s == sorted(s) for s in shards)  # in order: shard r is items r, r + world, ...


def test_seeds_do_not_repeat_each_other_an_epoch_apart() -> None:
    """The generator was seeded with seed + epoch: seed 1's epoch 0 drew exactly seed 0's epoch 1, so repeats over
    seeds 0, 1, 2 shared their draws, shifted by an epoch."""
    def draws(seed: int, epoch: int) -> list[int]:
        sampler = DistributedBalancedSampler([1.0] * 20, num_replicas=1, rank=0, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draws(0, 1) != draws(1, 0) and draws(0, 2) != draws(2, 0)
    assert draws(3, 4) == draws(3, 4)  # still a function of (seed, epoch)
