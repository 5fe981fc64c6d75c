"""RobustStepTrainer's non-finite guard on crafted NaN / Inf batches: the step is skipped, the weights stay as they
were, a finite step resets the count, and the run stops after ``max_nonfinite_steps`` skipped steps in a row."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from torch import nn

from monai_ext.engines.classification import ClassificationTrainer

FINITE, NAN, INF = "finite", "nan", "inf"


def batch(kind: str, seed: int) -> dict[str, torch.Tensor]:
    images = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    if kind == NAN:
        images[1, 0, 2, 2] = float("nan")  # one pixel of one image poisons the loss
    elif kind == INF:
        images[0] = float("inf")
    return {"image": images, "label": torch.tensor([0, 1, 2, 0])}


def run(kinds: list[str], max_nonfinite_steps: int) -> tuple[list[dict[str, torch.Tensor]], ClassificationTrainer]:
    """Train over one batch per entry of ``kinds``; returns the weights after each iteration, and the trainer."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    trainer = ClassificationTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch(k, i) for i, k in enumerate(kinds)],
        network=network, optimizer=optimizer, loss_function=nn.CrossEntropyLoss(), precision="fp32",
        max_nonfinite_steps=max_nonfinite_steps,
    )
    weights = [{name: p.detach().clone() for name, p in network.named_parameters()}]

    @trainer.on(Events.ITERATION_COMPLETED)
    def keep_weights(_engine) -> None:
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in network.parameters())
        weights.append({name: p.detach().clone() for name, p in network.named_parameters()})

    return weights, trainer


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("bad", [NAN, INF])
def test_a_non_finite_batch_is_skipped_and_the_weights_stay(bad: str) -> None:
    weights, trainer = run([FINITE, bad, FINITE], max_nonfinite_steps=2)
    trainer.run()
    assert trainer.state.iteration == 3
    assert not same(weights[1], weights[0])  # a finite batch moves the weights
    assert same(weights[2], weights[1])  # the bad batch does not
    assert not same(weights[3], weights[2])  # and training goes on from where it was
    assert all(torch.isfinite(w).all() for w in weights[3].values())
    assert trainer.nonfinite_in_a_row == 0


def test_the_run_stops_after_max_nonfinite_steps_in_a_row() -> None:
    # two bad, one good (resets the count), then three bad: the third in a row stops the run at iteration 7
    weights, trainer = run([FINITE, NAN, NAN, FINITE, NAN, NAN, NAN, FINITE], max_nonfinite_steps=3)
    with pytest.raises(FloatingPointError, match="3"):
        trainer.run()
    assert trainer.state.iteration == 7 and trainer.nonfinite_in_a_row == 3
    assert len(weights) == 7  # the handler saw iterations 1-6; the 7th raised inside the step
    assert same(weights[2], weights[1]) and same(weights[3], weights[1]) and same(weights[6], weights[4])
    assert not same(weights[4], weights[3])


def skipped_step_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "monai_ext.engines.base" and "skipped" in r.getMessage()]


def test_a_non_finite_loss_is_named_as_the_source(caplog: pytest.LogCaptureFixture) -> None:
    _, trainer = run([FINITE, NAN, FINITE], max_nonfinite_steps=2)
    with caplog.at_level("WARNING", logger="monai_ext.engines.base"):
        trainer.run()
    assert skipped_step_messages(caplog) == [
        "non-finite loss on rank(s) [0] at iteration 2: step skipped on every rank (1 in a row, limit 2)"]


def test_non_finite_gradients_of_a_finite_loss_are_named_as_gradients(caplog: pytest.LogCaptureFixture) -> None:
    """An overflow in the backward pass alone (the loss finite): the message says gradients, not loss."""
    _, trainer = run([FINITE, FINITE, FINITE], max_nonfinite_steps=2)
    weight = trainer.network[1].weight
    weight.register_hook(lambda grad: grad * float("inf") if trainer.state.iteration == 2 else grad)
    with caplog.at_level("WARNING", logger="monai_ext.engines.base"):
        trainer.run()
    assert skipped_step_messages(caplog) == [
        "non-finite gradient norm on rank(s) [0] (every rank's loss finite) at iteration 2: step skipped on every "
        "rank (1 in a row, limit 2)"]
    assert trainer.nonfinite_in_a_row == 0


def test_a_non_finite_loss_earlier_in_an_accumulation_window_is_named_as_the_loss(
        caplog: pytest.LogCaptureFixture) -> None:
    """The NaN loss of the window's first micro-step (the stepping one's loss finite) is still the loss's fault."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    trainer = ClassificationTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch(k, i) for i, k in
                                                                     enumerate([NAN, FINITE, FINITE, FINITE])],
        network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.5), loss_function=nn.CrossEntropyLoss(),
        precision="fp32", max_nonfinite_steps=2, accumulation_steps=2,
    )
    with caplog.at_level("WARNING", logger="monai_ext.engines.base"):
        trainer.run()
    assert skipped_step_messages(caplog) == [
        "non-finite loss on rank(s) [0] at iteration 2: step skipped on every rank (1 in a row, limit 2)"]
    assert trainer.nonfinite_in_a_row == 0  # the second window (iterations 3 and 4) stepped
