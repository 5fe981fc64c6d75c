"""Random draws as a function of (seed, rank, iteration), so a resumed run draws what the uninterrupted one drew.

Saving generator states cannot restore everything a run draws from: MONAI transforms keep their own
``RandomState``s, DataLoader workers are seeded when an epoch's iterator is made, and a sampler's generator lives in
the sampler. Re-deriving every generator from the run's seed, the process's rank and the iteration about to run
needs nothing from the checkpoint, keeps the ranks' draws (masks, augmentations, mixing, dropout) different from
each other, and makes the draws of iteration i the same whether or not the run was interrupted before it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd

from monai_ext.engines.distributed import rank


def position_seed(seed: int, process_rank: int, position: int) -> int:
    """A 32-bit seed mixing the run's seed, the rank and the iteration (NumPy's ``SeedSequence``: nearby inputs
    give unrelated seeds, unlike ``seed + rank + iteration``, where rank 1 at iteration i would repeat rank 0 at
    i + 1)."""
    if seed < 0 or process_rank < 0 or position < 0:
        raise ValueError(f"seed, rank and position must be >= 0, got {seed!r}, {process_rank!r}, {position!r}")
    return int(np.random.SeedSequence([seed, process_rank, position]).generate_state(1)[0])


class PositionSeeding:
    """Reseed Python, NumPy, torch (CPU and CUDA) and the given MONAI randomizables from (seed, rank, iteration).

    Position = the iteration about to run. Attached to a trainer, it reseeds

    * the global generators where an epoch's DataLoader iterator is made (``EPOCH_STARTED`` and
      ``DATALOADER_STOP_ITERATION``, which precede ignite's two places of making it), so the workers' seeds and a
      ``RandomSampler``'s order follow the position;
    * the randomizables before a batch is loaded (``GET_BATCH_STARTED``), so in-process augmentations do;
    * the global generators and the randomizables again before the iteration's computation (``ITERATION_STARTED``),
      so masks, dropout and batch mixing do, whatever loading the batch drew.

    Every draw of an iteration is then a function of (seed, rank, iteration) and of the epoch's start, never of what
    ran before in the process: resuming from a checkpoint written at the end of an epoch (the bundles' checkpoints)
    reproduces the uninterrupted run, and ranks draw differently. With DataLoader workers, augmentations come from
    the workers' seeds, which are drawn at the epoch's start from the reseeded generator.

    Args:
        seed: the run's seed.
        randomizables: objects with MONAI ``set_random_state`` (a transform ``Compose``, a batch mixer), or objects
            holding them; each is reseeded through ``monai.data.utils.set_rnd``. Pass the transform chain, not the
            dataset, so a large datalist is not walked at every batch.
    """

    def __init__(self, seed: int, randomizables: Sequence[Any] = ()) -> None:
        position_seed(seed, 0, 0)  # validates the seed
        self.seed = int(seed)
        self.randomizables = [r for r in randomizables if r is not None]

    def attach(self, engine: Engine) -> None:
        for event in (Events.EPOCH_STARTED, Events.DATALOADER_STOP_ITERATION):
            engine.add_event_handler(event, self.reseed_generators)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self.reseed_randomizables)
        engine.add_event_handler(Events.ITERATION_STARTED, self.reseed_generators)
        engine.add_event_handler(Events.ITERATION_STARTED, self.reseed_randomizables)

    def seed_for(self, engine: Engine) -> int:
        """The seed of the iteration about to run (ITERATION_STARTED comes after the counter's increment); at
        ``EPOCH_STARTED``, of the epoch's first iteration.

        The epoch's first, not the one about to run: a run resumed from a checkpoint saved mid-epoch
        (``TrainingCheckpointer(epoch_level=False)``) makes the epoch's loader there, and a ``RandomSampler`` then
        shuffled the epoch otherwise than the uninterrupted run, whose batches already trained it skips. The same
        position in an uninterrupted run, where an epoch starts after the previous one's last iteration.
        """
        state = engine.state
        if engine.last_event_name == Events.EPOCH_STARTED and state.epoch_length:
            position = (state.epoch - 1) * state.epoch_length + 1
        else:
            position = state.iteration + (0 if engine.last_event_name == Events.ITERATION_STARTED else 1)
        return position_seed(self.seed, rank(), position)

    def reseed_generators(self, engine: Engine) -> None:
        seed = self.seed_for(engine)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # CUDA generators included

    def reseed_randomizables(self, engine: Engine) -> None:
        seed = self.seed_for(engine)
        for obj in self.randomizables:
            set_rnd(obj, seed)
