"""Checkpoint handlers: atomic saves, newest-valid resume with fallback past corrupt files, random states."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator

from monai_ext.engines.optim import WarmupCosineLR
from monai_ext.handlers import checkpointing
from monai_ext.handlers.checkpointing import (
    EARLIER_CHECKPOINTS_RECORD,
    MLFLOW_RUN_RECORD,
    BestModelSaver,
    ModelRecord,
    RandomStates,
    TrainingCheckpointer,
    list_checkpoints,
    will_resume,
)
from monai_ext.io.signals import StopSignal, stop_signals_raise
from monai_ext.networks.checkpoints import CheckpointError, read_checkpoint
from monai_ext.networks.classifier import ViTClassifier
from monai_ext.networks.mae import MaskedAutoencoderViT
from tests.launch import run_torchrun


def counting_engine(model: torch.nn.Module) -> Engine:
    def step(engine: Engine, batch: float) -> float:
        with torch.no_grad():
            model.weight.add_(batch)
        return batch

    return Engine(step)


def test_saves_keep_newest_and_resume_falls_back_past_a_truncated_file(tmp_path, caplog) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, save_interval=1, n_saved=2).attach(engine)
    engine.run([1.0, 1.0], max_epochs=3)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["checkpoint_iteration=6.pt", "checkpoint_iteration=4.pt"]
    assert not list(tmp_path.glob("*.tmp"))

    newest = tmp_path / names[0]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a crash mid-copy
    resumed_model = torch.nn.Linear(1, 1, bias=False)
    resumed = counting_engine(resumed_model)
    ckpt = TrainingCheckpointer(tmp_path, {"model": resumed_model, "trainer": resumed}, save_interval=0, resume=True)
    ckpt.attach(resumed)
    seen = []
    resumed.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append((e.state.epoch, e.state.iteration)))
    with caplog.at_level("WARNING"):
        resumed.run([1.0, 1.0], max_epochs=3)
    assert "skipping unusable checkpoint" in caplog.text and names[0] in caplog.text
    assert ckpt.resumed_from.name == names[1]
    assert seen == [(3, 4)]  # only the third epoch ran, starting after iteration 4
    assert resumed_model.weight.item() == pytest.approx(6.0)


def test_random_states_round_trip_through_safe_loading(tmp_path) -> None:
    states = RandomStates()
    torch.save(states.state_dict(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    for _ in range(3):
        random.random(), np.random.rand(), torch.rand(1)
    states.load_state_dict(read_checkpoint(tmp_path / "rng.pt"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_random_states_are_kept_per_rank_and_restored_only_for_the_same_world(tmp_path, caplog, monkeypatch) -> None:
    from monai_ext.handlers import checkpointing

    states = RandomStates()
    saved = states.state_dict()
    assert len(saved["per_rank"]) == 1  # a single process: one entry
    torch.manual_seed(1)
    rank0 = RandomStates.local_state()
    torch.manual_seed(2)
    rank1 = RandomStates.local_state()
    two_ranks = {"per_rank": [rank0, rank1]}
    torch.save(two_ranks, tmp_path / "rng.pt")
    # As rank 1 of 2: rank 1's generators come back, not rank 0's.
    monkeypatch.setattr(checkpointing, "world_size", lambda: 2)
    monkeypatch.setattr(checkpointing, "rank", lambda: 1)
    states.load_state_dict(read_checkpoint(tmp_path / "rng.pt"))
    torch.manual_seed(2)
    expected = torch.rand(3)
    states.load_state_dict(read_checkpoint(tmp_path / "rng.pt"))
    assert torch.equal(torch.rand(3), expected)
    # A run of another size restores nothing, and says so.
    monkeypatch.setattr(checkpointing, "world_size", lambda: 3)
    before = torch.get_rng_state()
    with caplog.at_level("WARNING"):
        states.load_state_dict(two_ranks)
    assert torch.equal(torch.get_rng_state(), before) and "2 rank(s) and this run has 3" in caplog.text


TINY_MAE = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
            "decoder_depth": 1, "decoder_num_heads": 2}


def idle_engine() -> Engine:
    """An engine whose iterations change nothing: the tests look only at what the checkpointer restores."""
    return Engine(lambda engine, batch: batch)


def write_checkpoint_of(folder, network: torch.nn.Module, kind: str) -> None:
    """One epoch of a run training ``network`` as ``kind``, leaving its checkpoint in ``folder``."""
    engine = idle_engine()
    TrainingCheckpointer(folder, {"network": network, "trainer": engine, "arch": ModelRecord(network, kind)}).attach(
        engine)
    engine.run([0, 1], max_epochs=1)


@pytest.mark.parametrize("img_size", [32, (32, 32), (16, 48)])
def test_a_model_of_a_pair_image_size_resumes(tmp_path, img_size) -> None:
    """The record writes a tuple as a list and the check compared it with the network's tuple: "(img_size: [32, 32]
    there, (32, 32) here)" refused every resume of a model built with a pair."""
    network = MaskedAutoencoderViT(**{**TINY_MAE, "img_size": img_size})
    write_checkpoint_of(tmp_path, network, "mae")
    saved = torch.load(next(tmp_path.glob("checkpoint_*.pt")), weights_only=True)
    ModelRecord(network, "mae").load_state_dict(saved["arch"])  # no CheckpointError


@pytest.mark.parametrize("other, other_kind, expected", [
    (MaskedAutoencoderViT(**{**TINY_MAE, "embed_dim": 64}), "mae", "(embed_dim: 64 there, 32 here)"),
    (ViTClassifier(num_classes=3, **{k: TINY_MAE[k] for k in ("img_size", "patch_size", "embed_dim", "depth",
                                                                "num_heads")}),
     "classifier", "it holds a 'classifier' model and this run trains a 'mae' model"),
])
def test_resume_from_another_architecture_or_bundle_says_what_differs_in_one_line(
        tmp_path, other, other_kind, expected) -> None:
    write_checkpoint_of(tmp_path, other, other_kind)
    network = MaskedAutoencoderViT(**TINY_MAE)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    engine = idle_engine()
    TrainingCheckpointer(tmp_path, {"network": network, "trainer": engine, "arch": ModelRecord(network, "mae")},
                         resume=True).attach(engine)
    with pytest.raises(CheckpointError) as error:
        engine.run([0, 1], max_epochs=2)
    message = str(error.value)
    assert message.startswith(f"cannot resume from '{tmp_path / 'checkpoint_iteration=2.pt'}': ")
    assert expected in message and "\n" not in message and "size mismatch" not in message
    assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())  # nothing was half-loaded



def assert_resumes_one_more_epoch(folder: Path) -> None:
    """A resume in ``folder`` continues this run's iteration-4 checkpoint: its 4 steps of +1, then 2 more."""
    resumed_model = torch.nn.Linear(1, 1, bias=False)
    resumed = counting_engine(resumed_model)
    ckpt = TrainingCheckpointer(folder, {"model": resumed_model, "trainer": resumed}, resume=True)
    ckpt.attach(resumed)
    resumed.run([1.0, 1.0], max_epochs=3)
    assert ckpt.resumed_from.name == "checkpoint_iteration=4.pt"
    assert resumed_model.weight.item() == pytest.approx(6.0)

def test_a_new_run_is_what_resume_continues_despite_later_checkpoints_of_another_run(tmp_path, caplog) -> None:
    """An earlier, longer run left checkpoints of later iterations in the folder; a new run (not resumed) must keep
    its own newest checkpoint and be the one a resume continues."""
    earlier_model = torch.nn.Linear(1, 1, bias=False)
    earlier = counting_engine(earlier_model)
    TrainingCheckpointer(tmp_path, {"model": earlier_model, "trainer": earlier}).attach(earlier)
    earlier.run([1.0, 1.0], max_epochs=5)  # leaves iterations 10 and 8
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}).attach(engine)
    with caplog.at_level("WARNING"):
        engine.run([1.0, 1.0], max_epochs=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_iteration=4.pt", "checkpoint_iteration=2.pt"]
    assert "checkpoint_iteration=10.pt" in caplog.text  # the removal is said
    assert_resumes_one_more_epoch(tmp_path)


@pytest.mark.parametrize("resume", [False, True])
def test_a_new_run_removes_the_record_of_an_earlier_runs_mlflow_run(tmp_path, resume) -> None:
    """An untracked new run into the folder must not leave the earlier tracked run's record: a later resume of the
    new checkpoints would add their curves to the earlier MLflow run. A resume keeps the record it continues."""
    (tmp_path / MLFLOW_RUN_RECORD).write_text(json.dumps({"run_id": "a" * 32}))
    if resume:
        tracked_model = torch.nn.Linear(1, 1, bias=False)
        tracked = counting_engine(tracked_model)
        TrainingCheckpointer(tmp_path, {"model": tracked_model, "trainer": tracked}).attach(tracked)
        tracked.run([1.0], max_epochs=1)
        (tmp_path / MLFLOW_RUN_RECORD).write_text(json.dumps({"run_id": "a" * 32}))  # the tracked run recorded
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, resume=resume).attach(engine)
    assert (tmp_path / MLFLOW_RUN_RECORD).exists() is resume
    engine.run([1.0], max_epochs=2)
    assert (tmp_path / MLFLOW_RUN_RECORD).exists() is resume


def scheduled_run(folder, epochs: int, lr: float, resume: bool, scheduler_first: bool = False) -> dict[int, float]:
    """A run of ``epochs`` epochs of 3 iterations on a warmup-cosine schedule over all its steps, as the bundles
    build it (optimizer, then its scheduler, stepped every iteration; ``scheduler_first`` lists the scheduler
    before the optimiser in the checkpoint); returns iteration -> lr used there."""
    model = torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = WarmupCosineLR(optimizer, total_steps=epochs * 3, warmup_steps=2, min_lr=0.0)
    engine = Engine(lambda e, b: (optimizer.step(), scheduler.step()))
    used: dict[int, float] = {}
    engine.add_event_handler(Events.ITERATION_STARTED,
                             lambda e: used.__setitem__(e.state.iteration, optimizer.param_groups[0]["lr"]))
    entries = {"lr_scheduler": scheduler, "optimizer": optimizer} if scheduler_first else \
        {"optimizer": optimizer, "lr_scheduler": scheduler}
    TrainingCheckpointer(folder, {"network": model, **entries, "trainer": engine}, resume=resume).attach(engine)
    engine.run([0, 1, 2], max_epochs=epochs)
    return used


@pytest.mark.parametrize("scheduler_first", [False, True])  # True: restored before the optimiser's saved lr
@pytest.mark.parametrize("resumed_lr", [1.0, 2.0])  # 2.0: the lr scaled for twice the processes
def test_a_finished_run_resumed_with_more_epochs_follows_the_longer_schedule(tmp_path, resumed_lr,
                                                                             scheduler_first) -> None:
    """The optimiser and the schedule's position come from the checkpoint; the schedule's length and peak lr from
    the resumed run's settings, so the added epochs are not all at min_lr (MAE's lr_sched behaves so), whatever
    order the checkpoint's entries are restored in."""
    finished = scheduled_run(tmp_path, epochs=2, lr=1.0, resume=False, scheduler_first=scheduler_first)
    assert finished[6] < 0.2  # the 2-epoch schedule was near its end
    extended = scheduled_run(tmp_path, epochs=4, lr=resumed_lr, resume=True, scheduler_first=scheduler_first)
    reference = scheduled_run(tmp_path / "reference", epochs=4, lr=resumed_lr, resume=False)
    assert sorted(extended) == list(range(7, 13))
    assert extended == pytest.approx({i: reference[i] for i in extended}, rel=1e-12)
    assert extended[7] > 0.4 * resumed_lr


def test_resume_with_epochs_of_another_length_continues_at_the_saved_epoch(tmp_path, caplog) -> None:
    """A larger batch or more processes give fewer iterations an epoch (3 -> 2 here): the resumed run starts the
    epoch after the saved one at that epoch's first batch, and its lr is the new run's at the same epoch."""
    def run(folder, batches: int, epochs: int, resume: bool) -> tuple[list, dict[int, float]]:
        model = torch.nn.Linear(1, 1, bias=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = WarmupCosineLR(optimizer, total_steps=epochs * batches, warmup_steps=1, min_lr=0.0)
        engine = Engine(lambda e, b: (optimizer.step(), scheduler.step()))
        seen, lrs = [], {}
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(("epoch", e.state.epoch)))
        engine.add_event_handler(Events.ITERATION_STARTED, lambda e: (
            seen.append((e.state.iteration, e.state.batch)), lrs.__setitem__(e.state.iteration,
                                                                            optimizer.param_groups[0]["lr"])))
        TrainingCheckpointer(folder, {"network": model, "optimizer": optimizer, "lr_scheduler": scheduler,
                                      "trainer": engine}, resume=resume).attach(engine)
        engine.run(list(range(batches)), max_epochs=epochs)
        return seen, lrs

    run(tmp_path, batches=3, epochs=2, resume=False)
    with caplog.at_level("WARNING"):
        seen, lrs = run(tmp_path, batches=2, epochs=4, resume=True)
    assert seen == [("epoch", 3), (5, 0), (6, 1), ("epoch", 4), (7, 0), (8, 1)]
    assert "epochs of 3 iterations and this run's have 2" in caplog.text
    _, reference = run(tmp_path / "reference", batches=2, epochs=4, resume=False)
    assert lrs == pytest.approx({i: reference[i] for i in lrs}, rel=1e-12)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_iteration=8.pt", "checkpoint_iteration=6.pt"]


def test_a_mid_epoch_checkpoint_with_epochs_of_another_length_is_refused_in_one_line(tmp_path) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, save_interval=2, epoch_level=False).attach(
        engine)
    engine.run([1.0, 1.0, 1.0], max_epochs=1, epoch_length=3)
    (tmp_path / "checkpoint_iteration=3.pt").unlink()  # the end-of-run one: iteration 2 of 3 is left
    resumed = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": resumed}, resume=True).attach(resumed)
    with pytest.raises(CheckpointError, match=r"saved mid-epoch \(iteration 2, epochs of 3 iterations\) and this "
                                              r"run's epochs have 2"):
        resumed.run([1.0, 1.0], max_epochs=2)


def best_saver(path, network: torch.nn.Module, mode: str) -> BestModelSaver:
    return BestModelSaver(path, network, ModelRecord(network, "mae"), metric_name="val_loss", mode=mode)


def validate(saver: BestModelSaver, value: float) -> None:
    saver(SimpleNamespace(state=SimpleNamespace(metrics={"val_loss": value})))


@pytest.mark.parametrize("mode, lost_best, checkpoint_best, replayed, better_replay", [
    ("min", 0.5, 1.0, 0.8, 0.4),
    ("max", 0.9, 0.6, 0.7, 0.95),
])
def test_a_resume_does_not_replace_a_better_model_saved_after_its_checkpoint(
        tmp_path, mode, lost_best, checkpoint_best, replayed, better_replay) -> None:
    """The killed run saved its best model (``lost_best``) in an epoch after its last checkpoint, which knew only
    ``checkpoint_best``; the replayed epochs compute ``replayed``, between the two: the file must stay."""
    path = tmp_path / "model.pt"
    network = MaskedAutoencoderViT(**TINY_MAE)
    validate(best_saver(path, network, mode), lost_best)
    lost_weights = read_checkpoint(path)["model"]
    resumed = best_saver(path, MaskedAutoencoderViT(**TINY_MAE), mode)
    resumed.load_state_dict({"best": checkpoint_best})
    assert resumed.best == lost_best
    validate(resumed, replayed)
    saved = read_checkpoint(path)
    assert saved["val_loss"] == lost_best
    assert all(torch.equal(saved["model"][k], v) for k, v in lost_weights.items())
    validate(resumed, better_replay)
    assert read_checkpoint(path)["val_loss"] == better_replay


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_tie_with_the_best_keeps_the_earlier_model(tmp_path, mode) -> None:
    """Only a strictly better value replaces the best model: a later epoch that merely ties it (a plateau) rewrote
    the file with its own weights and epoch, so the model kept was not the first to reach the score."""
    path = tmp_path / "model.pt"
    network = MaskedAutoencoderViT(**TINY_MAE)
    saver = best_saver(path, network, mode)
    saver(SimpleNamespace(state=SimpleNamespace(metrics={"val_loss": 0.5}, epoch=1)))
    first = read_checkpoint(path)
    with torch.no_grad():
        next(network.parameters()).add_(1.0)  # the later epoch's weights differ
    saver(SimpleNamespace(state=SimpleNamespace(metrics={"val_loss": 0.5}, epoch=2)))
    saved = read_checkpoint(path)
    assert saver.best == 0.5 and saver.best_epoch == 1 and saved["epoch"] == 1
    assert all(torch.equal(saved["model"][k], v) for k, v in first["model"].items())


@pytest.mark.parametrize("other", ["another architecture", "not a checkpoint"])
def test_a_best_model_file_of_another_model_does_not_set_the_best(tmp_path, other) -> None:
    path = tmp_path / "model.pt"
    if other == "not a checkpoint":
        path.write_bytes(b"not a torch file")
    else:
        validate(best_saver(path, MaskedAutoencoderViT(**{**TINY_MAE, "embed_dim": 64}), "min"), 0.1)
    resumed = best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min")
    resumed.load_state_dict({"best": 1.0})
    assert resumed.best == 1.0


def test_will_resume_only_with_resume_on_and_a_checkpoint_file(tmp_path) -> None:
    assert not will_resume(tmp_path / "missing", True)
    (tmp_path / "model.pt").write_bytes(b"")  # a best model is not a training checkpoint
    assert not will_resume(tmp_path, True)
    (tmp_path / "checkpoint_iteration=4.pt").write_bytes(b"")
    assert will_resume(tmp_path, True) and not will_resume(tmp_path, False)


class Scores:
    """A handler's history, as MetricsHistory and RepresentationMonitor keep it."""

    def __init__(self) -> None:
        self.history: list[int] = []

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])


def test_an_optional_entry_is_restored_when_present_and_may_be_absent_from_older_files(tmp_path) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path / "older", {"model": model, "trainer": engine}).attach(engine)
    engine.run([1.0], max_epochs=1)
    scores = Scores()
    engine = counting_engine(model)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scores.history.append(e.state.epoch))
    TrainingCheckpointer(tmp_path / "newer", {"model": model, "trainer": engine, "scores": scores}).attach(engine)
    engine.run([1.0], max_epochs=2)
    for folder, expected in (("older", []), ("newer", [1, 2])):
        restored, resumed = Scores(), counting_engine(model)
        ckpt = TrainingCheckpointer(tmp_path / folder, {"model": model, "trainer": resumed, "scores": restored},
                                    resume=True, optional_entries=["scores"])
        ckpt.attach(resumed)
        resumed.run([1.0], max_epochs=2)
        assert ckpt.resumed_from is not None and restored.history == expected, folder
    with pytest.raises(ValueError, match=r"optional_entries \['score'\] are not in save_dict"):
        TrainingCheckpointer(tmp_path, {"model": model}, optional_entries=["score"])


def test_a_checkpoint_write_cut_by_a_kill_leaves_no_file_behind_after_the_next_run(tmp_path) -> None:
    """A SIGKILL inside torch.save leaves the atomic write's temporary file (the target is untouched); the next
    run's first save removes it, and leaves other files alone."""
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}).attach(engine)
    engine.run([1.0], max_epochs=1)
    code = ("import os, signal, torch\n"
            "from monai_ext.io.atomic import atomic_write\n"
            "def write(f):\n"
            "    f.write(b'PK\\x03\\x04 half of a checkpoint')\n"
            "    f.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            f"atomic_write({str(tmp_path / 'checkpoint_iteration=2.pt')!r}, write)\n")
    killed = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".checkpoint_iteration=2.pt.*.tmp"))) == 1
    (tmp_path / ".model.pt.x1y2z3.tmp").write_bytes(b"another writer's")
    resumed = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": resumed}, resume=True).attach(resumed)
    resumed.run([1.0], max_epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".model.pt.x1y2z3.tmp", "checkpoint_iteration=1.pt", "checkpoint_iteration=2.pt"]


@pytest.mark.parametrize("entry, resumed_objects", [
    ("model", lambda: (torch.nn.Linear(2, 1, bias=False), None)),  # weights of another shape, no record to tell
    ("optimizer", lambda: (lambda m: (m, torch.optim.SGD([{"params": [m.weight]}, {"params": [], "lr": 0.1}],
                                                          lr=1.0)))(torch.nn.Linear(1, 1, bias=False))),
])
def test_an_entry_that_does_not_fit_is_refused_in_one_line_naming_file_and_entry(tmp_path, entry,
                                                                               resumed_objects) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=1.0),
                                    "trainer": engine}).attach(engine)
    engine.run([1.0], max_epochs=1)
    network, optimizer = resumed_objects()
    optimizer = optimizer or torch.optim.SGD(network.parameters(), lr=1.0)
    resumed = counting_engine(network)
    TrainingCheckpointer(tmp_path, {"model": network, "optimizer": optimizer, "trainer": resumed},
                         resume=True).attach(resumed)
    with pytest.raises(CheckpointError) as error:
        resumed.run([1.0], max_epochs=2)
    message = str(error.value)
    assert message.startswith(f"cannot resume from '{tmp_path / 'checkpoint_iteration=1.pt'}': its '{entry}' entry "
                              "does not fit this run: ") and "\n" not in message


def test_resume_when_no_checkpoint_reads_stops_instead_of_starting_over(tmp_path, caplog) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}).attach(engine)
    engine.run([1.0, 1.0], max_epochs=2)
    for path in list_checkpoints(tmp_path):
        path.write_bytes(path.read_bytes()[:100])  # both cut short
    resumed = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": resumed}, resume=True).attach(resumed)
    with caplog.at_level("WARNING"), pytest.raises(CheckpointError) as error:
        resumed.run([1.0, 1.0], max_epochs=3)
    assert str(error.value) == (
        f"cannot resume: none of the 2 checkpoint(s) in {str(tmp_path)!r} reads (checkpoint_iteration=4.pt, "
        "checkpoint_iteration=2.pt; the reasons are in the warnings above); restore a readable one, or start over "
        "with resume false")
    assert caplog.text.count("skipping unusable checkpoint") == 2 and resumed.state.iteration == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_iteration=2.pt", "checkpoint_iteration=4.pt"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_validation_is_never_the_best(tmp_path, bad) -> None:
    path = tmp_path / "model.pt"
    saver = best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min")
    validate(saver, bad)
    assert saver.best is None and not path.exists()
    validate(saver, 0.7)
    assert saver.best == 0.7 and read_checkpoint(path)["val_loss"] == 0.7
    restored = best_saver(tmp_path / "other.pt", MaskedAutoencoderViT(**TINY_MAE), "min")
    restored.load_state_dict({"best": bad})  # a checkpoint written before non-finite values were refused
    assert restored.best is None


class Constant(Metric):
    """An ignite metric that computes a given value: the validation score of one epoch."""

    def __init__(self, value: float) -> None:
        self.value = value
        super().__init__()

    def reset(self) -> None:
        pass

    def update(self, output: Any) -> None:
        pass

    def compute(self) -> float:
        return self.value


def monai_evaluator(value: float) -> SupervisedEvaluator:
    """MONAI's evaluator whose key metric (lower is better) is ``value``, over one batch."""
    data = [{"image": torch.zeros(1, 1), "label": torch.zeros(1)}]
    return SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data, network=torch.nn.Identity(),
                               key_val_metric={"val_loss": Constant(value)},
                               metric_cmp_fn=lambda current, best: current < best)


@pytest.mark.parametrize("from_file", [False, True])
def test_a_resumed_evaluator_knows_the_restored_best_and_announces_no_worse_one(tmp_path, from_file, caplog) -> None:
    """MONAI's evaluator keeps its own best (its "Got new best metric" log line), which no checkpoint restored: a
    resumed run announced a worse value as the new best while model.pt rightly stayed. The best and its epoch come
    from the checkpoint, or from model.pt when that holds a better one saved after the checkpoint."""
    path = tmp_path / "model.pt"
    first = monai_evaluator(0.5)
    best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min").attach(first)
    first.run(1)  # validation after the trainer's epoch 1: best 0.5, saved with its epoch
    assert read_checkpoint(path)["epoch"] == 1
    resumed = monai_evaluator(0.8)
    saver = best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min")
    saver.attach(resumed)
    saver.load_state_dict({"best": 1.0, "epoch": 0} if from_file else {"best": 0.5, "epoch": 1})
    assert (saver.best, saver.best_epoch) == (0.5, 1)
    assert (resumed.state.best_metric, resumed.state.best_metric_epoch) == (0.5, 1)
    caplog.clear()  # the first run's own "Got new best metric" (captured when another test left INFO on)
    with caplog.at_level(logging.INFO, logger=resumed.logger.name):
        resumed.run(2)
    assert "Engine run" in caplog.text and "Got new best metric" not in caplog.text  # the evaluator's log, captured
    assert (resumed.state.best_metric, resumed.state.best_metric_epoch) == (0.5, 1)
    assert read_checkpoint(path)["val_loss"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
def test_every_rank_takes_rank_0s_view_of_whether_the_run_resumes(tmp_path, processes) -> None:
    """Ranks whose ckpt_dir is not shared see different folders; answering each from its own, the ranks that run
    the start-of-run validation would wait in its collectives for those that skip it."""
    worker = Path(__file__).with_name("ddp_resume_view_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = run_torchrun([worker, tmp_path], processes=processes, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads((tmp_path / f"answer.rank{r}.json").read_text()) for r in range(processes)] == [True] * processes


def test_a_resume_after_a_kill_before_the_first_save_does_not_continue_another_runs_checkpoints(tmp_path,
                                                                                                caplog) -> None:
    """Run B's finished checkpoints are in the folder; run A starts there without resume and is killed before its
    first save; A's ``--resume true`` must start afresh, not continue B under A's settings (with tracking off)."""
    other_model = torch.nn.Linear(1, 1, bias=False)
    other = counting_engine(other_model)
    TrainingCheckpointer(tmp_path, {"model": other_model, "trainer": other}).attach(other)
    other.run([1.0], max_epochs=2)  # leaves iterations 2 and 1
    killed_model = torch.nn.Linear(1, 1, bias=False)
    killed = counting_engine(killed_model)
    TrainingCheckpointer(tmp_path, {"model": killed_model, "trainer": killed}).attach(killed)  # then killed
    assert (tmp_path / EARLIER_CHECKPOINTS_RECORD).is_file()
    assert not will_resume(tmp_path, True)  # the baseline validation of a fresh start is not skipped
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    engine = counting_engine(model)
    ckpt = TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, resume=True)
    ckpt.attach(engine)
    with caplog.at_level("WARNING"):
        engine.run([1.0, 1.0], max_epochs=2)
    assert ckpt.resumed_from is None and model.weight.item() == pytest.approx(4.0)  # trained from the start
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not resuming from checkpoint_iteration=2.pt, checkpoint_iteration=1.pt" in w for w in warnings)
    # this run's first save removed the other run's checkpoints, lower-numbered ones too, and the record
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_iteration=2.pt", "checkpoint_iteration=4.pt"]
    assert_resumes_one_more_epoch(tmp_path)


def test_a_fresh_start_in_an_empty_folder_writes_no_record(tmp_path) -> None:
    (tmp_path / EARLIER_CHECKPOINTS_RECORD).write_text("{}")  # a stale one
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}).attach(engine)
    assert not (tmp_path / EARLIER_CHECKPOINTS_RECORD).exists()


def record_run(folder, config: dict, resume: bool, max_epochs: int = 1) -> TrainingCheckpointer:
    """A run of a tiny MAE recording ``config`` with its data settings fixed (as the bundles fix theirs)."""
    network = MaskedAutoencoderViT(**TINY_MAE)
    engine = idle_engine()
    record = ModelRecord(network, "mae", config, fixed_settings=["val_fraction", "data_seed", "dataset_dir"])
    ckpt = TrainingCheckpointer(folder, {"network": network, "trainer": engine, "arch": record}, resume=resume)
    ckpt.attach(engine)
    engine.run([0, 1], max_epochs=max_epochs)
    return ckpt


def test_a_resume_refuses_other_data_settings_in_one_line_and_takes_other_hyper_parameters(tmp_path) -> None:
    """Another split on resume validates on images the checkpoint trained on: refused naming old and new values."""
    settings = {"val_fraction": 0.25, "data_seed": 1, "dataset_dir": None, "lr": 0.1}
    record_run(tmp_path, settings, resume=False)
    with pytest.raises(CheckpointError) as error:
        record_run(tmp_path, {**settings, "val_fraction": 0.5, "data_seed": 2}, resume=True, max_epochs=2)
    assert str(error.value) == (
        f"cannot resume from '{tmp_path / 'checkpoint_iteration=2.pt'}': its data, split or label settings differ "
        "from this run's (val_fraction: 0.25 there, 0.5 here; data_seed: 1 there, 2 here); give this run its own "
        "ckpt_dir or the settings that checkpoint was trained with")
    assert record_run(tmp_path, {**settings, "lr": 0.2}, resume=True, max_epochs=2).resumed_from is not None
    with pytest.raises(ValueError, match=r"fixed_settings \['fold'\] are not in config"):
        ModelRecord(torch.nn.Linear(1, 1), "external", settings, fixed_settings=["fold"])


def test_a_resume_into_another_kind_of_model_is_not_told_to_change_settings(tmp_path, caplog) -> None:
    """No setting turns a classifier's checkpoint into an MAE's; and the refusal is said once, not also by ignite."""
    write_checkpoint_of(tmp_path, ViTClassifier(num_classes=3, **{k: TINY_MAE[k] for k in (
        "img_size", "patch_size", "embed_dim", "depth", "num_heads")}), "classifier")
    network = MaskedAutoencoderViT(**TINY_MAE)
    engine = idle_engine()
    TrainingCheckpointer(tmp_path, {"network": network, "trainer": engine, "arch": ModelRecord(network, "mae")},
                         resume=True).attach(engine)
    with caplog.at_level("INFO"), pytest.raises(CheckpointError) as error:
        engine.run([0, 1], max_epochs=2)
    assert str(error.value).endswith("and this run trains a 'mae' model; give this run its own ckpt_dir")
    assert str(error.value) not in caplog.text
    other = idle_engine()
    other.add_event_handler(Events.STARTED, lambda e: (_ for _ in ()).throw(RuntimeError("any other error")))
    with caplog.at_level("INFO"), pytest.raises(RuntimeError):
        other.run([0], max_epochs=1)
    assert "Engine run is terminating due to exception: any other error" in caplog.text


def test_a_resume_without_checkpoints_or_with_no_epoch_left_warns(tmp_path, caplog) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path / "empty", {"model": model, "trainer": engine}, resume=True).attach(engine)
    with caplog.at_level("WARNING"):
        engine.run([1.0], max_epochs=1)
    assert f"no checkpoint to resume from in {tmp_path / 'empty'}; starting from the beginning" in caplog.text
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path / "done", {"model": model, "trainer": engine}).attach(engine)
    engine.run([1.0], max_epochs=5)
    caplog.clear()
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path / "done", {"model": model, "trainer": engine}, resume=True).attach(engine)
    with caplog.at_level("WARNING"):
        engine.run([1.0], max_epochs=3)
    assert (f"checkpoint {tmp_path / 'done' / 'checkpoint_iteration=5.pt'} is at epoch 5, --epochs is 3: nothing to "
            "train; raise --epochs to continue") in caplog.text


def test_a_best_model_write_cut_by_a_kill_is_removed_at_the_next_runs_first_save(tmp_path) -> None:
    """BestModelSaver writes through the same atomic write: a kill mid-write leaves ``.model.pt.*.tmp``."""
    network = torch.nn.Linear(1, 1, bias=False)
    (tmp_path / ".model.pt.x1y2z3.tmp").write_bytes(b"half a model")
    (tmp_path / ".other.pt.x1y2z3.tmp").write_bytes(b"another writer's")
    saver = BestModelSaver(tmp_path / "model.pt", network, ModelRecord(network, "external"), "loss")
    engine = counting_engine(network)
    TrainingCheckpointer(tmp_path, {"model": network, "trainer": engine, "best_model": saver}).attach(engine)
    engine.run([1.0], max_epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x1y2z3.tmp", "checkpoint_iteration=1.pt"]


def validating(saver: BestModelSaver, value: float) -> Callable[[Engine], None]:
    """A trainer's end-of-epoch validation that scores ``value``, for ``saver``."""
    return lambda engine: saver(SimpleNamespace(state=SimpleNamespace(metrics={"val_loss": value},
                                                                      epoch=engine.state.epoch)))


def test_a_resume_that_finds_no_checkpoint_keeps_the_best_model_on_disk_to_beat(tmp_path, caplog) -> None:
    """A run killed before its first checkpoint leaves only model.pt (its best); ``resume`` then starts from the
    beginning, and its first validation replaced that model with a worse one (the saver started with no best)."""
    path = tmp_path / "model.pt"
    validate(best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min"), 0.5)  # the killed run's best
    network = MaskedAutoencoderViT(**TINY_MAE)
    saver = best_saver(path, network, "min")
    engine = idle_engine()
    engine.add_event_handler(Events.EPOCH_COMPLETED, validating(saver, 0.8))
    TrainingCheckpointer(tmp_path, {"network": network, "trainer": engine, "best_model": saver}, save_interval=0,
                         resume=True).attach(engine)
    with caplog.at_level("WARNING"):
        engine.run([0], max_epochs=1)
    assert "no checkpoint to resume from" in caplog.text
    assert saver.best == 0.5 and read_checkpoint(path)["val_loss"] == 0.5


def validation_on(saver: BestModelSaver, images: list[str]) -> BestModelSaver:
    """``saver`` as attached to an evaluator whose validation datalist is ``images`` (with positions, as the
    pretraining bundle's)."""
    data = [{"image": image, "index": i} for i, image in enumerate(images)]
    saver.evaluator = SimpleNamespace(data_loader=SimpleNamespace(dataset=SimpleNamespace(data=data)))
    return saver


@pytest.mark.parametrize("changed", ["file added", "file replaced"])
def test_a_resume_onto_another_validation_set_starts_the_best_afresh_with_a_warning(tmp_path, caplog,
                                                                                      changed) -> None:
    """Scores of different validation sets do not compare: the checkpoint's best and model.pt's were kept as the
    ones to beat when files were added to the folder, and the best model was chosen across the two sets."""
    path, images = tmp_path / "model.pt", ["a.png", "b.png", "c.png"]
    first = validation_on(best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min"), images)
    validate(first, 0.5)
    state = first.state_dict()
    assert state["validation"]["count"] == read_checkpoint(path)["validation"]["count"] == 3
    # the same set in another order (another listing of the folder) is the same set
    same = validation_on(best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min"), images[::-1])
    same.load_state_dict(state)
    assert same.best == 0.5
    other = images + ["d.png"] if changed == "file added" else images[:2] + ["d.png"]
    resumed = validation_on(best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min"), other)
    with caplog.at_level("WARNING"):
        resumed.load_state_dict(state)
    assert resumed.best is None
    assert f"(3 validation item(s) then, {len(other)} now" in caplog.text
    validate(resumed, 0.8)  # the new set's first score is its best model, whatever the old set's was
    saved = read_checkpoint(path)
    assert saved["val_loss"] == 0.8 and saved["validation"]["count"] == len(other)


def test_the_same_validation_files_under_another_root_keep_the_best(tmp_path, caplog, monkeypatch) -> None:
    """A job's scratch copy (``/scratch/job1001/busi`` then ``/scratch/job1002/busi``) was another validation set by
    its absolute paths: the resume dropped the best and the first validation replaced model.pt, however worse."""
    path = tmp_path / "model.pt"
    first = validation_on(best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min"),
                          [f"/scratch/job1001/busi/{n}.png" for n in "abc"])
    validate(first, 0.5)
    moved = [f"/scratch/job1002/busi/{n}.png" for n in "abc"]
    resumed = validation_on(best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min"), moved)
    with caplog.at_level("WARNING"):
        resumed.load_state_dict(first.state_dict())
    assert resumed.best == 0.5 and "validation set changed" not in caplog.text
    for name in "abc":  # the same files given by a relative --dataset_dir, from the folder above them
        (tmp_path / "busi").mkdir(exist_ok=True)
        (tmp_path / "busi" / f"{name}.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    relative = validation_on(best_saver(path, MaskedAutoencoderViT(**TINY_MAE), "min"),
                             [f"busi/{n}.png" for n in "abc"])
    relative.load_state_dict(first.state_dict())
    assert relative.best == 0.5 and "validation set changed" not in caplog.text


def test_a_stop_signal_leaves_the_last_completed_epochs_checkpoint(tmp_path) -> None:
    """SIGTERM (a queue's time limit) lost every epoch since the last ``save_interval`` checkpoint: the state of
    the last completed epoch is written at the stop, as it was then (not as training had changed it since)."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    engine = counting_engine(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    checkpointer = TrainingCheckpointer(tmp_path, {"model": model, "optimizer": optimizer, "trainer": engine},
                                        save_interval=10)
    checkpointer.attach(engine)

    def stop(engine: Engine) -> None:
        raise StopSignal(signal.SIGTERM)

    engine.add_event_handler(Events.ITERATION_COMPLETED(once=5), stop)  # in epoch 3 of [1, 1] epochs
    with pytest.raises(StopSignal) as raised:
        engine.run([1.0, 1.0], max_epochs=20)
    assert model.weight.item() == 5.0  # trained on: the checkpoint must not hold the live weights
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_iteration=4.pt"]
    saved = read_checkpoint(tmp_path / "checkpoint_iteration=4.pt")
    assert saved["model"]["weight"].item() == 4.0
    assert saved["trainer"]["iteration"] == 4
    assert raised.value.code == 128 + signal.SIGTERM
    assert raised.value.report == (f"training stopped by SIGTERM at epoch 3, iteration 5: continue from "
                                   f"{str(tmp_path / 'checkpoint_iteration=4.pt')!r} (epoch 2, iteration 4) with "
                                   "--resume true")
    resumed_model = torch.nn.Linear(1, 1, bias=False)
    resumed = counting_engine(resumed_model)
    TrainingCheckpointer(tmp_path, {"model": resumed_model, "trainer": resumed}, resume=True).attach(resumed)
    resumed.run([1.0, 1.0], max_epochs=3)
    assert resumed_model.weight.item() == 6.0  # epoch 3 once more, from the end of epoch 2


def test_a_stop_before_any_epoch_completed_writes_nothing_and_says_so(tmp_path) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, save_interval=10).attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=1),
                             lambda e: (_ for _ in ()).throw(StopSignal(signal.SIGTERM)))
    with pytest.raises(StopSignal) as raised:
        engine.run([1.0, 1.0], max_epochs=3)
    assert list_checkpoints(tmp_path) == []
    assert raised.value.report.endswith(f"no checkpoint in {str(tmp_path)!r} (none was written before an epoch "
                                        "completed); start again")


@pytest.mark.parametrize("earlier_save", [False, True])
def test_a_stop_held_during_a_checkpoint_write_names_that_checkpoint(tmp_path, monkeypatch, earlier_save) -> None:
    """A SIGTERM arriving while rank 0 wrote an interval checkpoint (torchrun's agent stopping every rank after a
    peer's crash) was held until the write was whole and then raised before the write was recorded: the report
    named the previous checkpoint, or at the first save said "no checkpoint ... start again" with the file on disk,
    and the pruning to ``n_saved`` did not run."""
    real_save = checkpointing.atomic_torch_save
    stop_at = "checkpoint_iteration=4.pt"

    def save_during_a_stop(state: Any, path: Path) -> None:
        real_save(state, path)
        if Path(path).name == stop_at:
            signal.raise_signal(signal.SIGTERM)  # held by stop_signals_deferred until the write is whole

    monkeypatch.setattr(checkpointing, "atomic_torch_save", save_during_a_stop)
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, save_interval=2 if earlier_save else 4,
                         n_saved=1).attach(engine)
    with pytest.raises(StopSignal) as raised, stop_signals_raise():
        engine.run([1.0], max_epochs=10)
    assert [p.name for p in list_checkpoints(tmp_path)] == [stop_at]  # the earlier one pruned (n_saved=1)
    assert raised.value.report == (f"training stopped by SIGTERM at epoch 4, iteration 4: continue from "
                                   f"{str(tmp_path / stop_at)!r} (epoch 4, iteration 4) with --resume true")


def test_an_error_ending_the_run_leaves_the_last_completed_epochs_checkpoint(tmp_path, caplog) -> None:
    """A crash of any rank (a peer's reaches rank 0 as gloo's "Connection closed by peer" before torchrun's SIGTERM)
    lost every epoch since the last ``save_interval`` checkpoint, and a resume before the first one started over:
    the state of the last completed epoch is written on an error as on a stop, and the error is still raised."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, save_interval=10).attach(engine)

    def crash(engine: Engine) -> None:
        raise RuntimeError("Connection closed by peer")

    engine.add_event_handler(Events.ITERATION_COMPLETED(once=5), crash)  # in epoch 3 of [1, 1] epochs
    with caplog.at_level("WARNING"), pytest.raises(RuntimeError, match="closed by peer"):
        engine.run([1.0, 1.0], max_epochs=20)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_iteration=4.pt"]
    assert read_checkpoint(tmp_path / "checkpoint_iteration=4.pt")["model"]["weight"].item() == 4.0
    said = (f"training ended on RuntimeError at epoch 3, iteration 5: {str(tmp_path / 'checkpoint_iteration=4.pt')!r} "
            "(epoch 2, iteration 4) is what --resume true continues from")
    assert caplog.text.count(said) == 1


def test_a_stop_during_the_write_at_an_error_comes_after_the_write_is_said(tmp_path, monkeypatch, caplog) -> None:
    """torchrun stops every rank with SIGTERM after a peer's crash, while rank 0 writes at its own error (gloo's
    "Connection closed by peer"): the stop is held until the checkpoint is written and named."""
    real_save = checkpointing.atomic_torch_save

    def save_during_a_stop(state: Any, path: Path) -> None:
        signal.raise_signal(signal.SIGTERM)  # the launcher's SIGTERM, as the write starts
        real_save(state, path)

    monkeypatch.setattr(checkpointing, "atomic_torch_save", save_during_a_stop)
    model = torch.nn.Linear(1, 1, bias=False)
    engine = counting_engine(model)
    TrainingCheckpointer(tmp_path, {"model": model, "trainer": engine}, save_interval=10).attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=5),
                             lambda e: (_ for _ in ()).throw(RuntimeError("Connection closed by peer")))
    with caplog.at_level("WARNING"), pytest.raises(StopSignal) as raised, stop_signals_raise():
        engine.run([1.0, 1.0], max_epochs=20)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_iteration=4.pt"]
    assert f"{str(tmp_path / 'checkpoint_iteration=4.pt')!r} (epoch 2, iteration 4) is what" in caplog.text
    assert raised.value.report == (f"training stopped by SIGTERM at epoch 3, iteration 5: continue from "
                                   f"{str(tmp_path / 'checkpoint_iteration=4.pt')!r} (epoch 2, iteration 4) with "
                                   "--resume true")


def test_a_resume_from_a_mid_epoch_checkpoint_continues_the_epochs_data_where_it_was(tmp_path) -> None:
    """ignite restarts a mid-epoch position with a fresh data loader: resumed after 3 of 4 batches, the run trained
    ``a`` again where ``d`` was due and then every later epoch shifted (``b c d a``), without a word."""
    data = ["a", "b", "c", "d"]
    seen: list[tuple[int, str]] = []

    def recording_engine() -> Engine:
        return Engine(lambda engine, batch: seen.append((engine.state.epoch, batch)))

    first = recording_engine()
    TrainingCheckpointer(tmp_path, {"trainer": first}, save_interval=3, epoch_level=False,
                         save_on_stop=False).attach(first)
    first.add_event_handler(Events.ITERATION_COMPLETED(once=5),
                            lambda e: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        first.run(data, max_epochs=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_iteration=3.pt"]
    seen.clear()
    resumed = recording_engine()
    TrainingCheckpointer(tmp_path, {"trainer": resumed}, save_interval=0, resume=True).attach(resumed)
    resumed.run(data, max_epochs=3)
    assert seen == [(1, "d")] + [(epoch, batch) for epoch in (2, 3) for batch in data]
