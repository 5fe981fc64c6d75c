"""Validation every ``interval`` epochs and at the last one."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler


class FinalEpochValidationHandler(ValidationHandler):
    """MONAI's ``ValidationHandler`` that, at epoch level, also validates the last epoch (``max_epochs``).

    ``Events.EPOCH_COMPLETED(every=interval)`` left the last epoch unvalidated where ``interval`` does not divide
    the epochs (``--epochs 3 --val_interval 2`` validated epoch 2 only): the final weights were never scored, so they
    could not become the best model, and the representation monitor, which runs inside validation, skipped its
    promised last check. Iteration-level validation is MONAI's.

    Args:
        interval: validate every this many epochs (or iterations with ``epoch_level=False``): a whole number of at
            least 1.
        *args, **kwargs: as MONAI's ``ValidationHandler`` (``validator``, ``epoch_level``, ``exec_at_start``).

    Raises:
        ValueError: ``interval`` is not a whole number of at least 1, quoting it.
    """

    def __init__(self, interval: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(check_interval(interval), *args, **kwargs)

    def attach(self, engine: Engine) -> None:
        """Attach to ``engine`` (the trainer): every ``interval`` epochs, the last epoch, and at the start if asked."""
        if not self.epoch_level:
            super().attach(engine)
            return
        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=self._due), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)

    def _due(self, engine: Engine, epoch: int) -> bool:
        """Whether ``epoch`` is validated: a multiple of ``interval``, or the last one (read when it ends, so that a
        resumed run given more ``--epochs`` validates its own last epoch)."""
        return epoch % self.interval == 0 or epoch == engine.state.max_epochs


def check_interval(interval: Any) -> int:
    """``interval`` when it is a whole number of at least 1 (``--val_interval``).

    Checked when the handler is made, before any training: the epoch filter divides by it only when the first epoch
    ends, so ``--val_interval 0`` trained a whole epoch (every rank, under torchrun) and then failed with a
    ZeroDivisionError traceback, losing that epoch; ``-1`` validated every epoch and ``1.5`` every third, silently.

    Raises:
        ValueError: ``interval`` is a bool, not an integer, or below 1, quoting it.
    """
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"--val_interval must be a whole number of at least 1, got {interval!r}")
    return interval
