"""FinalEpochValidationHandler: validation every ``interval`` epochs and at the last one, in every bundle."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from ignite.engine import Engine

from monai_ext.handlers.validation import FinalEpochValidationHandler
from tests.bundles.helpers import REPO


def validated_epochs(epochs: int, interval: int, exec_at_start: bool = False) -> list[int]:
    """The trainer epochs a handler of ``interval`` validates in a run of ``epochs`` (0: at the start)."""
    seen: list[int] = []
    handler = FinalEpochValidationHandler(interval=interval, exec_at_start=exec_at_start)
    handler.validator = SimpleNamespace(run=seen.append)  # MONAI's type check is for __init__ only
    trainer = Engine(lambda engine, batch: None)
    handler.attach(trainer)
    trainer.run([0], max_epochs=epochs)
    return seen


@pytest.mark.parametrize("epochs, interval, expected", [
    (3, 2, [2, 3]),      # MONAI's every=2 validated [2]: the final weights were never scored
    (4, 2, [2, 4]),      # the last epoch once, not twice
    (2, 5, [2]),         # an interval above the epochs still validates the end
    (3, 1, [1, 2, 3]),
])
def test_the_last_epoch_is_validated_whatever_the_interval(epochs, interval, expected) -> None:
    assert validated_epochs(epochs, interval) == expected


def test_validation_at_the_start_is_kept() -> None:
    assert validated_epochs(3, 2, exec_at_start=True) == [0, 2, 3]


def test_a_resumed_run_given_more_epochs_validates_its_own_last_epoch() -> None:
    """The last epoch is read from the trainer when an epoch ends, not fixed when the handler is attached."""
    seen: list[int] = []
    handler = FinalEpochValidationHandler(interval=2)
    handler.validator = SimpleNamespace(run=seen.append)
    trainer = Engine(lambda engine, batch: None)
    handler.attach(trainer)
    trainer.run([0], max_epochs=3)
    trainer.run([0], max_epochs=5)  # ignite continues a finished run when max_epochs grows
    assert seen == [2, 3, 4, 5]


@pytest.mark.parametrize("interval", [0, -1, 1.5, 2.0, "2", True, None])
@pytest.mark.parametrize("epoch_level", [True, False])
def test_an_interval_that_is_not_a_whole_number_of_at_least_1_is_refused_when_made(interval, epoch_level) -> None:
    """``--val_interval 0`` trained a whole epoch (on every rank under torchrun) and then failed with a
    ZeroDivisionError traceback in the epoch filter, the epoch lost; ``-1`` validated every epoch and ``1.5`` every
    third, silently. Refused before any training, quoting the value."""
    with pytest.raises(ValueError, match=r"--val_interval must be a whole number of at least 1, got " + repr(interval)
                       .replace(".", r"\.")):
        FinalEpochValidationHandler(interval=interval, epoch_level=epoch_level)


def test_an_interval_of_zero_fails_before_the_first_epoch_trains() -> None:
    trained: list[int] = []
    with pytest.raises(ValueError, match="got 0"):
        handler = FinalEpochValidationHandler(interval=0)
        handler.validator = SimpleNamespace(run=lambda epoch: None)
        trainer = Engine(lambda engine, batch: trained.append(engine.state.iteration))
        handler.attach(trainer)
        trainer.run([0, 1], max_epochs=2)
    assert trained == []  # nothing trained: ZeroDivisionError came only once epoch 1 had trained


@pytest.mark.parametrize("bundle", ["usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment"])
def test_every_training_bundle_validates_its_last_epoch(bundle) -> None:
    handlers = yaml.safe_load((REPO / "bundles" / bundle / "configs" / "train.yaml").read_text())["train"]["handlers"]
    targets = [h.get("_target_") for h in handlers if isinstance(h, dict)]
    assert "ValidationHandler" not in targets
    assert "monai_ext.handlers.validation.FinalEpochValidationHandler" in targets
