"""PositionSeeding: every draw of an iteration is a function of (seed, rank, iteration), so a resumed run draws what
the uninterrupted one drew, and ranks draw differently."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, RandGaussianNoised

from monai_ext.handlers import seeding
from monai_ext.handlers.seeding import PositionSeeding, position_seed

EPOCHS, PER_EPOCH = 3, 3


def draws_of_run(resume_at: int = 0, process_rank: int = 0, monkeypatch=None) -> dict[int, tuple]:
    """Iteration -> (batch order, augmentation noise, torch, numpy and Python draws) of a shuffled 3-epoch run."""
    if monkeypatch is not None:
        monkeypatch.setattr(seeding, "rank", lambda: process_rank)
    augment = Compose([RandGaussianNoised("x", prob=1.0, std=1.0)])
    data = Dataset([{"i": i, "x": torch.zeros(1)} for i in range(6)], transform=augment)
    loader = DataLoader(data, batch_size=2, shuffle=True, num_workers=0)
    seen: dict[int, tuple] = {}

    def step(engine: Engine, batch: dict) -> None:
        seen[engine.state.iteration] = (batch["i"].tolist(), batch["x"].flatten().tolist(), torch.rand(2).tolist(),
                                        np.random.rand(), random.random())

    engine = Engine(step)
    PositionSeeding(11, [augment]).attach(engine)
    if resume_at:  # what TrainingCheckpointer restores: the position after an epoch
        engine.load_state_dict({"iteration": resume_at, "epoch_length": PER_EPOCH, "max_epochs": EPOCHS})
    for _ in range(5):  # whatever the process drew before must not matter
        torch.rand(1), np.random.rand(), random.random()
    engine.run(loader, max_epochs=EPOCHS)
    return seen


def test_resumed_run_draws_what_the_uninterrupted_run_drew() -> None:
    whole = draws_of_run()
    assert sorted(whole) == list(range(1, EPOCHS * PER_EPOCH + 1))
    for resume_at in (PER_EPOCH, 2 * PER_EPOCH):
        resumed = draws_of_run(resume_at)
        assert sorted(resumed) == list(range(resume_at + 1, EPOCHS * PER_EPOCH + 1))
        assert all(resumed[i] == whole[i] for i in resumed)
    orders = {tuple(whole[e * PER_EPOCH + 1][0]) for e in range(EPOCHS)}
    assert len(orders) > 1  # the shuffle still changes from epoch to epoch


def test_ranks_draw_differently_at_every_iteration(monkeypatch) -> None:
    rank0, rank1 = draws_of_run(process_rank=0, monkeypatch=monkeypatch), draws_of_run(process_rank=1,
                                                                                        monkeypatch=monkeypatch)
    for i in rank0:
        assert rank0[i][1:] != rank1[i][1:] and rank0[i][2] != rank1[i][2]


def test_position_seed_mixes_its_inputs() -> None:
    assert position_seed(1, 0, 5) == position_seed(1, 0, 5)
    seeds = {position_seed(1, r, i) for r in range(4) for i in range(50)}
    assert len(seeds) == 200  # unlike seed + rank + iteration, no two (rank, iteration) pairs share a seed
    with pytest.raises(ValueError, match="-1"):
        position_seed(-1, 0, 0)


def test_each_iteration_draws_from_the_seed_of_its_own_position() -> None:
    """Iteration i must draw from ``position_seed(seed, rank, i)``, both in its computation (ITERATION_STARTED
    comes after the counter's increment) and in the augmentation of its batch (GET_BATCH_STARTED comes before it):
    one off, iteration i drew iteration i - 1's or i + 1's numbers and its masks repeated a neighbour's."""
    from monai.data.utils import set_rnd

    whole = draws_of_run()
    for i, (_, noise, torch_draw, numpy_draw, python_draw) in whole.items():
        seed = position_seed(11, 0, i)
        assert torch_draw == torch.rand(2, generator=torch.Generator().manual_seed(seed)).tolist(), i
        assert numpy_draw == np.random.RandomState(seed).rand() and python_draw == random.Random(seed).random(), i
        augment = Compose([RandGaussianNoised("x", prob=1.0, std=1.0)])
        set_rnd(augment, seed)
        assert noise == pytest.approx([float(augment({"x": torch.zeros(1)})["x"]) for _ in noise]), i


def test_a_resume_from_a_mid_epoch_checkpoint_draws_what_the_uninterrupted_run_drew(tmp_path) -> None:
    """A ``RandomSampler``'s shuffle is drawn when the epoch's loader is made: at the epoch's start in an
    uninterrupted run, after the restored iteration in a run resumed mid-epoch (``TrainingCheckpointer`` with
    ``epoch_level=False``), which then shuffled the epoch otherwise and, skipping the batches trained, repeated some
    images and left others out."""
    from ignite.engine import Events

    from monai_ext.handlers.checkpointing import TrainingCheckpointer

    def run(resume: bool) -> dict[int, tuple]:
        augment = Compose([RandGaussianNoised("x", prob=1.0, std=1.0)])
        data = Dataset([{"i": i, "x": torch.zeros(1)} for i in range(6)], transform=augment)
        loader = DataLoader(data, batch_size=2, shuffle=True, num_workers=0)
        seen: dict[int, tuple] = {}
        engine = Engine(lambda e, b: seen.setdefault(e.state.iteration, (b["i"].tolist(), b["x"].flatten().tolist(),
                                                                          torch.rand(2).tolist())))
        PositionSeeding(11, [augment]).attach(engine)  # before the checkpointer, as in the bundles
        TrainingCheckpointer(tmp_path, {"trainer": engine}, save_interval=0 if resume else 4, epoch_level=False,
                             resume=resume, save_on_stop=False).attach(engine)
        if resume:
            engine.run(loader, max_epochs=EPOCHS)
            return seen
        # killed after iteration 5; the checkpoint of iteration 4 is mid-way through epoch 2
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=5),
                                 lambda e: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError, match="killed"):
            engine.run(loader, max_epochs=EPOCHS)
        return seen

    whole = draws_of_run()
    run(resume=False)
    resumed = run(resume=True)
    assert sorted(resumed) == list(range(5, EPOCHS * PER_EPOCH + 1))
    assert all(resumed[i] == whole[i][:3] for i in resumed)
