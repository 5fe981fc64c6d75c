"""MetricsHistory: the per-validation metrics JSON; ProgressBar: the exception that ends a run still ends it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ignite.engine import Engine

from monai_ext.handlers.history import MetricsHistory, ProgressBar


def strict_json(text: str) -> object:
    """Parse as a strict JSON reader (jq, a browser) does: Python's NaN and Infinity tokens are refused."""
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value, written", [(0.25, 0.25), (torch.tensor(0.5), 0.5), (math.nan, None),
                                            (torch.tensor(float("inf")), None), (-math.inf, None)])
def test_non_finite_metrics_are_written_as_null(value, written, tmp_path) -> None:
    history = MetricsHistory(tmp_path / "metrics.json")
    engine = Engine(lambda e, b: None)
    for epoch in (1, 2):  # what the evaluator holds after each validation
        engine.state.epoch = epoch
        engine.state.metrics = {"val_hd95": value, "val_mean_dice": 0.75, "report": {"not": "scalar"}}
        history(engine)
    entries = strict_json((tmp_path / "metrics.json").read_text())
    assert entries == [{"epoch": 1, "val_hd95": written, "val_mean_dice": 0.75},
                       {"epoch": 2, "val_hd95": written, "val_mean_dice": 0.75}]


@pytest.mark.parametrize("count, written", [(7, "7"), (0, "0")])
def test_the_count_of_images_validated_is_written_as_a_whole_number(count, written, tmp_path) -> None:
    """n, the images validated, read 7.0 in metrics.json (the reports wrote 7)."""
    history = MetricsHistory(tmp_path / "metrics.json")
    engine = Engine(lambda e, b: None)
    engine.state.epoch = 1
    engine.state.metrics = {"n": count, "val_mean_dice": 0.75, "flag": True}
    history(engine)
    assert f'"n": {written},' in (tmp_path / "metrics.json").read_text()
    assert strict_json((tmp_path / "metrics.json").read_text()) == [
        {"epoch": 1, "n": count, "val_mean_dice": 0.75, "flag": 1.0}]


def test_a_history_resumed_from_an_earlier_versions_checkpoint_writes_every_count_as_a_whole_number(tmp_path) -> None:
    """Checkpoints written before the count was kept whole hold n as 7.0: the resumed metrics.json read 7.0 for the
    epochs before the resume and 7 after it."""
    history = MetricsHistory(tmp_path / "metrics.json")
    history.load_state_dict({"history": [{"epoch": 1, "n": 7.0, "val_mean_dice": 1.0, "val_hd95": math.nan}]})
    engine = Engine(lambda e, b: None)
    engine.state.epoch = 2
    engine.state.metrics = {"n": 7, "val_mean_dice": 0.75, "val_hd95": 2.0}
    history(engine)
    text = (tmp_path / "metrics.json").read_text()
    assert text.count('"n": 7,') == 2 and "7.0" not in text
    assert strict_json(text) == [{"epoch": 1, "n": 7, "val_mean_dice": 1.0, "val_hd95": None},
                                 {"epoch": 2, "n": 7, "val_mean_dice": 0.75, "val_hd95": 2.0}]


@pytest.mark.parametrize("per_class", [torch.tensor([0.5, 0.75]), torch.tensor([[0.5], [0.75]])])
def test_a_per_class_tensor_metric_is_left_out_and_the_scalars_written(per_class, tmp_path) -> None:
    """A metric of one value per class (a Dice without reduction) has no single number to write: it crashed the
    validation ('only one element tensors can be converted to Python scalars') when taken for a scalar."""
    history = MetricsHistory(tmp_path / "metrics.json")
    engine = Engine(lambda e, b: None)
    engine.state.epoch, engine.state.metrics = 1, {"val_dice_per_class": per_class, "val_mean_dice": torch.tensor(0.6)}
    history(engine)
    assert strict_json((tmp_path / "metrics.json").read_text()) == [{"epoch": 1, "val_mean_dice": pytest.approx(0.6)}]


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_exception_in_a_run_with_a_progress_bar_still_ends_the_run(error) -> None:
    """The bar closes itself first among the exception handlers; ignite leaves the raising to them, so a Ctrl-C (or a
    crash) in a run with no other exception handler returned from run() as if the run had ended well."""
    def step(engine: Engine, batch: int) -> dict[str, float]:
        if engine.state.iteration == 2:
            raise error("stop")
        return {"loss": 1.0}

    engine = Engine(step)
    ProgressBar().attach(engine)
    with pytest.raises(error, match="stop"):
        engine.run(range(4), max_epochs=1)
    assert engine.state.iteration == 2


def test_a_history_from_an_older_checkpoint_with_nan_is_written_as_json(tmp_path) -> None:
    """Checkpoints of earlier versions hold NaN in the history (a diverged loss); a resume from one must still
    write valid JSON at its first validation (it stopped with 'Out of range float values are not JSON compliant')."""
    history = MetricsHistory(tmp_path / "metrics.json")
    history.load_state_dict({"history": [{"epoch": 1, "val_loss": math.nan, "auc": 0.5}]})
    engine = Engine(lambda e, b: None)
    engine.state.epoch, engine.state.metrics = 2, {"val_loss": 0.25, "auc": 0.75}
    history(engine)
    assert strict_json((tmp_path / "metrics.json").read_text()) == [{"epoch": 1, "val_loss": None, "auc": 0.5},
                                                                     {"epoch": 2, "val_loss": 0.25, "auc": 0.75}]


@pytest.mark.parametrize("validated, kept", [
    ([(1, 0.1), (2, 0.2), (2, 0.25)], [(1, 0.1), (2, 0.25)]),  # validated twice in one epoch: the later figures
    ([(1, 0.1), (2, 0.2), (3, 0.3), (2, 0.4)], [(1, 0.1), (2, 0.4)]),  # a resume replays epoch 2; 3 comes again
])
def test_a_validated_epoch_replaces_its_earlier_entry_and_those_after_it(validated, kept, tmp_path) -> None:
    """An epoch validated again (a resume replays the epochs after its checkpoint) was appended: the JSON then held
    the epoch twice, and curves drawn from it went back in time."""
    history = MetricsHistory(tmp_path / "metrics.json")
    engine = Engine(lambda e, b: None)
    for epoch, loss in validated:
        engine.state.epoch, engine.state.metrics = epoch, {"val_loss": loss}
        history(engine)
    expected = [{"epoch": epoch, "val_loss": loss} for epoch, loss in kept]
    assert history.history == expected and strict_json((tmp_path / "metrics.json").read_text()) == expected


@pytest.mark.parametrize("main, kept", [(True, ["stats", "bar", "checkpoint", "tracking"]),
                                        (False, ["checkpoint", "tracking"])])
def test_ranks_other_than_0_attach_no_printing_handler_wherever_it_is_in_the_list(monkeypatch, main, kept) -> None:
    """--tracking appends its handler to the list: the overlay's slice of the last two then dropped the progress bar
    and the tracking handler on ranks > 0 and kept the statistics, printed once per rank."""
    from monai.handlers import StatsHandler

    from monai_ext.handlers import history

    monkeypatch.setattr(history, "is_main_process", lambda: main)
    handlers = {"stats": StatsHandler(iteration_log=False), "bar": history.ProgressBar(), "checkpoint": object(),
                "tracking": object()}
    chosen = history.handlers_of_this_rank(list(handlers.values()))
    assert chosen == [handlers[name] for name in kept]
