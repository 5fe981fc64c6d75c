"""Iteration-level checkpoints under gradient accumulation: a run stopped and resumed trains what the uninterrupted run
trains, whichever iteration of an accumulation window ``save_interval`` falls on."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import LrScheduleHandler
from torch import nn

from monai_ext.engines.classification import ClassificationTrainer
from monai_ext.engines.optim import WarmupCosineLR
from monai_ext.handlers.checkpointing import TrainingCheckpointer, list_checkpoints
from monai_ext.io.signals import StopSignal
from tests.engines.test_nonfinite_guard import FINITE, batch

EPOCHS = 3


def accumulating_run(accumulation: int, epoch_length: int, folder: Path | None = None, save_interval: int = 0,
                     resume: bool = False) -> tuple[ClassificationTrainer, dict[str, object], TrainingCheckpointer | None]:
    """A tiny classifier trained with AdamW and a per-iteration warmup-cosine schedule (as the bundles step it), its
    checkpointer saving every ``save_interval`` iterations into ``folder`` when given."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.05)
    scheduler = WarmupCosineLR(optimizer, total_steps=EPOCHS * epoch_length, warmup_steps=3, min_lr=1e-3)
    trainer = ClassificationTrainer(
        device=torch.device("cpu"), max_epochs=EPOCHS, train_data_loader=[batch(FINITE, i) for i in range(epoch_length)],
        network=network, optimizer=optimizer, loss_function=nn.CrossEntropyLoss(), precision="fp32",
        accumulation_steps=accumulation, clip_grad_norm=None,
    )
    LrScheduleHandler(scheduler, epoch_level=False, print_lr=False).attach(trainer)
    parts = {"network": network, "optimizer": optimizer, "lr_scheduler": scheduler, "trainer": trainer}
    checkpointer = None
    if folder is not None:
        checkpointer = TrainingCheckpointer(folder, parts, save_interval=save_interval, epoch_level=False, n_saved=10,
                                            resume=resume)
        checkpointer.attach(trainer)
    return trainer, parts, checkpointer


def assert_same_training(got: dict[str, object], want: dict[str, object]) -> None:
    """Bitwise the same weights, optimiser state (AdamW's moments and step counts) and schedule position."""
    for (name, a), b in zip(got["network"].state_dict().items(), want["network"].state_dict().values()):
        assert torch.equal(a, b), f"{name}: max difference {(a - b).abs().max().item():.3e}"
    for a, b in zip(got["optimizer"].state_dict()["state"].values(), want["optimizer"].state_dict()["state"].values()):
        assert all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in b), "optimiser state differs"
    assert got["lr_scheduler"].state_dict()["last_epoch"] == want["lr_scheduler"].state_dict()["last_epoch"]
    assert got["optimizer"].param_groups[0]["lr"] == want["optimizer"].param_groups[0]["lr"]


@pytest.mark.parametrize("accumulation, epoch_length, save_interval, stop_at, resumed_at", [
    (1, 7, 4, 5, 4),    # no accumulation: every save_interval-th iteration, as before
    (2, 7, 3, 5, 4),    # 3 opens the window [3, 4]
    (2, 7, 4, 5, 4),    # 4 ends it
    (2, 7, 7, 9, 7),    # 7 is the epoch's shorter last window [7] on its own
    (3, 7, 4, 7, 6),    # first micro-step of [4, 6]
    (3, 7, 5, 7, 6),    # its second
    (3, 7, 6, 7, 6),    # its last
    (3, 7, 2, 5, 3),    # save_interval below accumulation_steps: at 3 for 2, at 6 for 4 and 6
    (3, 8, 7, 8, 8),    # inside the epoch's shorter last window [7, 8]
    (3, 7, 8, 10, 10),  # inside the second epoch's first window [8, 10]
])
def test_a_run_stopped_after_an_iteration_level_save_resumes_into_the_uninterrupted_runs_training(
        tmp_path, accumulation, epoch_length, save_interval, stop_at, resumed_at) -> None:
    """A save inside an accumulation window held the weights from before the window's step and none of the gradients
    its earlier micro-steps had summed: the resumed window stepped on the rest alone (acc 3, saved at 4 of [4, 6]: a
    step along (g5 + g6) / 3 instead of (g4 + g5 + g6) / 3), and the weights never met the uninterrupted run's again.
    The save now comes at the end of the window."""
    _, uninterrupted, _ = accumulating_run(accumulation, epoch_length)
    uninterrupted["trainer"].run()

    stopped, _, _ = accumulating_run(accumulation, epoch_length, tmp_path, save_interval)
    stopped.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at),
                              lambda e: (_ for _ in ()).throw(StopSignal(signal.SIGTERM)))
    with pytest.raises(StopSignal):
        stopped.run()
    resumed, parts, checkpointer = accumulating_run(accumulation, epoch_length, tmp_path, save_interval, resume=True)
    resumed.run()
    assert_same_training(parts, uninterrupted)
    assert checkpointer.resumed_from == tmp_path / f"checkpoint_iteration={resumed_at}.pt"  # not a fresh start


def counting_engine(accumulation: int) -> Engine:
    engine = Engine(lambda engine, batch: None)
    engine.accumulation_steps = accumulation  # as a RobustStepTrainer has it
    return engine


@pytest.mark.parametrize("accumulation, save_interval, saved", [
    (1, 3, [3, 6, 9, 12, 14]),   # every third iteration, and the last (the run's end)
    (1, 1, list(range(1, 15))),
    (2, 3, [4, 6, 9, 13, 14]),  # windows [1, 2] [3, 4] [5, 6] [7] [8, 9] [10, 11] [12, 13] [14]
    (3, 2, [3, 6, 10, 13, 14]),  # windows [1, 3] [4, 6] [7] [8, 10] [11, 13] [14]
    (3, 4, [6, 10, 13, 14]),
    (3, 20, [14]),
])
def test_iteration_level_saves_come_at_the_end_of_the_window_holding_each_interval(tmp_path, accumulation,
                                                                                   save_interval, saved) -> None:
    engine = counting_engine(accumulation)
    TrainingCheckpointer(tmp_path, {"trainer": engine}, save_interval=save_interval, epoch_level=False, n_saved=100,
                         save_on_stop=False).attach(engine)
    engine.run(range(7), max_epochs=2)
    assert sorted(int(p.name.split("=")[1][:-3]) for p in list_checkpoints(tmp_path)) == saved


@pytest.mark.parametrize("saved_at, warned", [(4, "after 1 of the 3 micro-steps"), (5, "after 2 of the 3"),
                                              (6, None), (7, None)])
def test_a_checkpoint_saved_inside_a_window_by_an_earlier_version_resumes_with_a_warning(tmp_path, caplog, saved_at,
                                                                                        warned) -> None:
    """Files written before saves waited for the window's end still resume, and say that the window's step is short
    of the gradients saved before them."""
    engine = counting_engine(3)
    checkpointer = TrainingCheckpointer(tmp_path, {"trainer": engine}, save_interval=0, save_on_stop=False)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=saved_at), checkpointer.save)  # as every=N did
    engine.run(range(7), max_epochs=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"checkpoint_iteration={saved_at}.pt"]
    resumed = counting_engine(3)
    TrainingCheckpointer(tmp_path, {"trainer": resumed}, resume=True, save_on_stop=False).attach(resumed)
    with caplog.at_level("WARNING"):
        resumed.run(range(7), max_epochs=1)
    said = [r.getMessage() for r in caplog.records if "micro-steps of an accumulation window" in r.getMessage()]
    if warned is None:
        assert said == []
    else:
        assert len(said) == 1 and warned in said[0], said
        assert said[0].endswith("so the optimiser step at iteration 6 follows the remaining "
                                f"{6 - saved_at} alone")


DDP_WORKER = Path(__file__).with_name("ddp_accumulation_resume_worker.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ranks_stopped_after_a_save_inside_a_window_resume_into_the_uninterrupted_runs_training(tmp_path) -> None:
    """Two processes (gloo), accumulation 3 in epochs of 7: the deferred save is decided from the iteration on every
    rank alike (its gather of the random states is a collective), and the resumed ranks end on the weights of the
    uninterrupted run. ``save_interval:stop_at`` cases: inside a window, at its end, inside the shorter last one."""
    import os

    from tests.launch import run_torchrun

    cases = {"4:7": "checkpoint_iteration=6.pt", "6:7": "checkpoint_iteration=6.pt",
             "7:11": "checkpoint_iteration=7.pt", "8:10": "checkpoint_iteration=10.pt"}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = run_torchrun([DDP_WORKER, tmp_path, ",".join(cases)], processes=2, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads((tmp_path / "result.json").read_text())
    assert all(found[case]["same"] for case in cases), found
    assert {case: found[case]["resumed_from"] for case in cases} == cases


@pytest.mark.parametrize("main, said", [(True, 1), (False, 0)])
def test_the_mid_window_resume_warning_is_said_by_rank_0_alone(caplog, monkeypatch, main, said) -> None:
    """Every rank resumes the same file: the warning from each of them read as that many problems, as the other
    resume warnings did before they were said by rank 0 alone."""
    from types import SimpleNamespace

    from monai_ext.handlers import checkpointing

    monkeypatch.setattr(checkpointing, "is_main_process", lambda: main)
    engine = SimpleNamespace(accumulation_steps=3, state=SimpleNamespace(iteration=4, epoch_length=7))
    with caplog.at_level("WARNING"):
        TrainingCheckpointer._warn_mid_window(engine, Path("checkpoint_iteration=4.pt"))
    assert sum("micro-steps of an accumulation window" in r.getMessage() for r in caplog.records) == said
