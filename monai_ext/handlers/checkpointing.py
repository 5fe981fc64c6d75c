"""Fault-tolerant checkpoints for ignite/MONAI engines: atomic writes, automatic resume, fallback past corrupt files.

MONAI's ``CheckpointSaver`` writes in place (``atomic=False``), so a crash mid-write leaves a truncated newest file,
and ignite's atomic mode cannot keep a fixed best-model file name. These handlers write through
:func:`atomic_torch_save`, read through the safe :func:`read_checkpoint`, and restore with ignite's own
``Checkpoint.load_objects``.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import logging
import os
import random
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch.optim.lr_scheduler import LRScheduler

from monai_ext.engines.base import accumulation_window
from monai_ext.engines.distributed import broadcast_object, gather_objects, is_main_process, rank, world_size
from monai_ext.io.atomic import atomic_write_text
from monai_ext.io.signals import StopSignal, reraise_last, stop_signals_deferred
from monai_ext.networks.checkpoints import CheckpointError, arch_record, atomic_torch_save, read_checkpoint

logger = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"^checkpoint_iteration=(\d+)\.pt$")
#: The file in a checkpoint folder naming the MLflow run whose checkpoints are there (written by the tracking
#: handler, :class:`~monai_ext.handlers.tracking.RunHolder`). A run started without ``resume`` removes it: an
#: untracked run into the folder would otherwise leave the earlier run's record, and a later resume of the new
#: checkpoints would continue the earlier MLflow run.
MLFLOW_RUN_RECORD = "mlflow_run.json"
#: The file in a checkpoint folder listing the checkpoints that were there when the run training into it started
#: without ``resume`` (an earlier run's), by name and stamp (inode, mtime in ns, size). A run killed before its first
#: save leaves only those; a ``resume`` then must not continue that other run under this run's settings.
EARLIER_CHECKPOINTS_RECORD = "earlier_checkpoints.json"
#: ignite's line for an exception that ends a run: the checkpointer's refusals are shown once, by the caller.
_ENGINE_ERROR_PREFIX = "Engine run is terminating due to exception: "
#: The checkpoint entry, and the trainer's ``state`` attribute, holding how far the steps its iterations are logged
#: under (MLflow's curves) run ahead of its iteration count: a resume with epochs of another length renumbers the
#: iterations (:meth:`TrainingCheckpointer._keep_epoch_length`), and the curves must go on after the steps the
#: earlier attempts logged, not over them. Saved in every checkpoint, as later resumes may renumber again.
STEP_OFFSET = "step_offset"


def logged_step(engine: Engine) -> int:
    """The step the engine's current iteration is logged under: its iteration plus the :data:`STEP_OFFSET` its resume
    kept (0 for a run that was never renumbered, and for an engine no checkpointer restored, such as a validator)."""
    return engine.state.iteration + getattr(engine.state, STEP_OFFSET, 0)


def nothing_to_train(engine: Engine) -> bool:
    """Whether the engine is at its ``max_epochs`` already (a resume of a checkpoint saved at or after them), so that
    ignite ends its run without an iteration."""
    return engine.state.max_epochs is not None and engine.state.epoch >= engine.state.max_epochs


class ModelRecord:
    """Stateful stand-in that stores the architecture record beside the weights (so files rebuild the model).

    Args:
        network: the network whose architecture is recorded (wrappers are unwrapped).
        kind: "mae", "classifier", "segmenter" or "external".
        config: bundle settings recorded beside the architecture (data, split, labels, ...).
        fixed_settings: keys of ``config`` a resume must not change: the data, split and label settings, under
            which validation images of the new split were training images of the checkpoint's, and labels index
            other classes. Hyper-parameters (lr, batch size, epochs) stay out: changing them on resume is allowed.
    """

    def __init__(self, network: torch.nn.Module, kind: str, config: Mapping[str, Any] | None = None,
                 fixed_settings: Sequence[str] = ()) -> None:
        self.network = getattr(network, "module", network)
        self.kind = kind
        self.config = dict(config or {})
        unknown = sorted(set(fixed_settings) - set(self.config))
        if unknown:
            raise ValueError(f"fixed_settings {unknown!r} are not in config {sorted(self.config)!r}")
        self.fixed_settings = tuple(fixed_settings)

    def state_dict(self) -> dict[str, Any]:
        return arch_record(self.network, self.kind, self.config)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Check that the checkpoint's record describes this network; restores nothing.

        Raises:
            CheckpointError: another kind of model (a classifier's checkpoint in a pretraining run), other
                architecture settings, or other values of ``fixed_settings``, naming only what differs.
        """
        if state.get("kind") != self.kind:
            raise CheckpointError(f"it holds a {state.get('kind')!r} model and this run trains a {self.kind!r} model")
        # both as records are written (a tuple img_size is a list there): (32, 32) here was "[32, 32] there"
        record = self.state_dict()
        theirs, ours = state.get("arch_args") or {}, record.get("arch_args") or {}
        differing = [f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in sorted(set(theirs) | set(ours))
                     if theirs.get(k) != ours.get(k)]
        if differing:
            raise CheckpointError(f"its architecture differs from this run's ({'; '.join(differing)})")
        # a key the checkpoint does not record (written before it was recorded) cannot be compared: it resumes
        theirs, ours = state.get("config") or {}, record.get("config") or {}
        differing = [f"{k}: {theirs[k]!r} there, {ours.get(k)!r} here" for k in self.fixed_settings
                     if k in theirs and theirs[k] != ours.get(k)]
        if differing:
            raise CheckpointError(f"its data, split or label settings differ from this run's ({'; '.join(differing)})")


class RandomStates:
    """Every rank's Python, NumPy and torch (CPU and CUDA) generator states, each restored on its own rank.

    ``state_dict`` gathers the states of all ranks (a collective: every rank must call it, as
    :meth:`TrainingCheckpointer.save` does) into ``{"per_rank": [rank 0's, rank 1's, ...]}``; ``load_state_dict``
    restores this rank's entry, so the ranks keep drawing different masks and augmentations after a resume. A
    checkpoint from another number of ranks restores nothing (with a warning): the generators are then those seeded
    at start (and :class:`monai_ext.handlers.seeding.PositionSeeding`, which the bundles use, re-derives them anyway).

    NumPy's state holds an ndarray, which ``weights_only`` loading refuses; it is kept as an int64 tensor instead.
    """

    @staticmethod
    def local_state() -> dict[str, Any]:
        """This process's generator states."""
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
        return state

    @staticmethod
    def restore_local(state: Mapping[str, Any]) -> None:
        """Set this process's generators from one rank's entry."""
        random.setstate(_as_tuple(state["python"]))
        npy = state["numpy"]
        np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                             npy["cached"]))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])

    def state_dict(self) -> dict[str, Any]:
        return {"per_rank": gather_objects(self.local_state())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        per_rank = state.get("per_rank", [state])  # [state]: files written before per-rank states
        if len(per_rank) != world_size():
            if is_main_process():  # the same on every rank: once, not once per rank
                logger.warning("the checkpoint holds random states of %d rank(s) and this run has %d: not restored "
                               "(each rank keeps the generators seeded at its start; the bundles' draws follow the "
                               "seed, rank and iteration anyway, PositionSeeding)", len(per_rank), world_size())
            return
        self.restore_local(per_rank[rank()])


def _as_tuple(value: Any) -> Any:
    """Restore the nested tuples of ``random.getstate()`` (they may come back as lists)."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def list_checkpoints(save_dir: str | os.PathLike) -> list[Path]:
    """Trainer checkpoints in ``save_dir``, newest (highest iteration) first."""
    folder = Path(save_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _stamp(path: Path) -> list[int] | None:
    """``[inode, mtime in ns, size]`` of ``path`` (None when it is gone): the inode tells a file written later under
    the same name from the listed one even where timestamps are coarse."""
    try:
        status = path.stat()
    except OSError:
        return None
    return [status.st_ino, status.st_mtime_ns, status.st_size]


def record_earlier_checkpoints(save_dir: str | os.PathLike) -> None:
    """Write :data:`EARLIER_CHECKPOINTS_RECORD` in ``save_dir`` for a run starting there without ``resume``: the
    checkpoints already there are another run's (removed only at this run's first save). None there: the record is
    removed (a stale one lists nothing that is there anyway)."""
    folder = Path(save_dir)
    earlier = {path.name: stamp for path in list_checkpoints(folder) if (stamp := _stamp(path)) is not None}
    if earlier:
        atomic_write_text(folder / EARLIER_CHECKPOINTS_RECORD, json.dumps({"earlier_checkpoints": earlier}) + "\n")
    else:
        (folder / EARLIER_CHECKPOINTS_RECORD).unlink(missing_ok=True)


def earlier_checkpoints(save_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints in ``save_dir`` that :data:`EARLIER_CHECKPOINTS_RECORD` lists as another run's (same name and
    stamp), newest first; none without a readable record."""
    folder = Path(save_dir)
    try:
        listed = json.loads((folder / EARLIER_CHECKPOINTS_RECORD).read_text(encoding="utf-8"))["earlier_checkpoints"]
        listed = {str(name): list(stamp) for name, stamp in listed.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none, or unreadable: nothing is excluded
        return []
    return [path for path in list_checkpoints(folder) if listed.get(path.name) == _stamp(path)]


def resumable_checkpoints(save_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints in ``save_dir`` a resume may continue, newest first: all but :func:`earlier_checkpoints`."""
    earlier = set(earlier_checkpoints(save_dir))
    return [path for path in list_checkpoints(save_dir) if path not in earlier]


def will_resume(save_dir: str | os.PathLike, resume: bool) -> bool:
    """Whether a :class:`TrainingCheckpointer` with these settings will continue a run: ``resume`` is on and
    ``save_dir`` holds a checkpoint of the run (:func:`resumable_checkpoints`; whether it reads is found out at the
    start; none readable stops the run).

    Known before the trainer is built, for what a resumed run must not repeat: the baseline validation of the
    initial weights at the start (MONAI ``ValidationHandler(exec_at_start=True)``), which runs before the
    checkpoint is restored and would publish the initial weights as the best model and rewrite the metrics history.

    Every rank takes rank 0's answer (all ranks must call this): on nodes that do not share ``save_dir``, each
    rank's own look would differ, and the ranks running the baseline validation would wait in its collectives for
    the ones that skip it, a hang before :meth:`TrainingCheckpointer.load_latest` can say that ``save_dir`` must be
    shared.
    """
    if not resume:
        return False
    return bool(broadcast_object(bool(resumable_checkpoints(save_dir)) if is_main_process() else None))


class TrainingCheckpointer:
    """Save the training state periodically and at the end; optionally resume from the newest valid checkpoint.

    Args:
        save_dir: folder of ``checkpoint_iteration=N.pt`` files.
        save_dict: name -> object with ``state_dict``/``load_state_dict`` (network, optimizer, lr_scheduler,
            trainer, ...). Wrapped networks are saved without their ``module.`` prefix.
        save_interval: save every this many epochs (or iterations with ``epoch_level=False``, each save at the end
            of the gradient accumulation window it falls in, :meth:`_iteration_save_due`); 0: only at the end.
        epoch_level: interval in epochs (True) or iterations.
        n_saved: how many of the newest checkpoints to keep.
        resume: at start, restore the newest checkpoint that reads; corrupt ones are skipped with a warning, and
            when none reads the run stops (:class:`CheckpointError`) rather than start over; none at all: a fresh start
            (with a warning). Checkpoints that were in ``save_dir`` when the run started there without ``resume``
            are another run's (:data:`EARLIER_CHECKPOINTS_RECORD`) and are never resumed. The restore runs first at
            ``STARTED``, and sets the trainer's :data:`STEP_OFFSET`.
        optional_entries: names in ``save_dict`` that a checkpoint may lack (entries added to a bundle after files
            were written: those files still resume, the entry keeps its fresh state); every other entry is required.
        save_on_stop: keep the state of each completed epoch that no checkpoint holds in memory (rank 0, on the CPU:
            the weights, the optimiser's moments and the rest, about three times the model's size with AdamW), and
            write it when a stop signal or an error ends the run (:meth:`stopped`): a queue's time limit, ``docker
            stop`` or a crash (of any rank: a peer's reaches rank 0 as the process group's error) loses the epochs
            since the last checkpoint otherwise, up to ``save_interval`` of them.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        save_interval: int = 1,
        epoch_level: bool = True,
        n_saved: int = 2,
        resume: bool = False,
        optional_entries: Sequence[str] = (),
        save_on_stop: bool = True,
    ) -> None:
        if save_interval < 0 or n_saved < 1:
            raise ValueError(f"need save_interval >= 0 and n_saved >= 1, got {save_interval!r} and {n_saved!r}")
        self.save_dir = Path(save_dir)
        self.save_dict = {k: getattr(v, "module", v) for k, v in save_dict.items()}
        self.save_interval, self.epoch_level = save_interval, epoch_level
        self.n_saved, self.resume = n_saved, resume
        unknown = sorted(set(optional_entries) - set(self.save_dict))
        if unknown:
            raise ValueError(f"optional_entries {unknown!r} are not in save_dict {sorted(self.save_dict)!r}")
        self.optional_entries = frozenset(optional_entries)
        self.resumed_from: Path | None = None
        self.save_on_stop = save_on_stop
        self._saved_iteration: int | None = None  # the iteration whose state the last save built (every rank)
        # (iteration, epoch, file) of this run's newest checkpoint on disk (rank 0)
        self._written: tuple[int, int, Path] | None = None
        # (iteration, epoch, state) of the last completed epoch no checkpoint holds, on the CPU (rank 0)
        self._snapshot: tuple[int, int, dict[str, Any]] | None = None
        self._swept = False

    def attach(self, engine: Engine) -> None:
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load_latest)
            # first of the start handlers, though attached after them (the bundles attach the trainer's handlers as
            # they build it): they must see the resumed position. The MLflow handler's start would otherwise reopen
            # the run of a resume that has nothing left to train. ignite has no public way to reorder handlers.
            handlers = engine._event_handlers[Events.STARTED]
            handlers.insert(0, handlers.pop())
            # the refusals of load_latest reach the user as one line from whoever runs the engine; ignite's ERROR
            # line would say the same again first
            if _REPEATED_REFUSALS not in engine.logger.filters:
                engine.logger.addFilter(_REPEATED_REFUSALS)
        elif is_main_process():  # before the tracking handler records this run's MLflow run, at STARTED
            (self.save_dir / MLFLOW_RUN_RECORD).unlink(missing_ok=True)
            # whether or not tracking is on: a resume after a kill before this run's first save would otherwise
            # continue the earlier run's checkpoints under this run's settings
            record_earlier_checkpoints(self.save_dir)
        if self.save_interval:
            if self.epoch_level:
                engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
            else:
                engine.add_event_handler(Events.ITERATION_COMPLETED(event_filter=self._iteration_save_due), self.save)
        if self.save_on_stop:
            # after the interval save (an epoch it wrote needs no copy) and after the validation handler, which the
            # trainer's handlers attach first: the copy holds that epoch's best model and history
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._keep_snapshot)
            # first, as the MLflow handler's is: MONAI's StatsHandler re-raises and would end the chain before it
            engine.add_event_handler(Events.EXCEPTION_RAISED, self.stopped)
            handlers = engine._event_handlers[Events.EXCEPTION_RAISED]
            handlers.insert(0, handlers.pop())
            reraise_last(engine)  # this handler returns: the exception must still end the run
        engine.add_event_handler(Events.COMPLETED, self.save)

    def _iteration_save_due(self, engine: Engine, iteration: int) -> bool:
        """Whether an iteration-level interval save is due: on the last iteration of each gradient accumulation
        window (:func:`~monai_ext.engines.base.accumulation_window`) that holds a multiple of ``save_interval``.

        A save on the multiple itself, inside a window, held the weights from before the window's optimiser step and
        none of the gradients its earlier micro-steps had summed: the resumed run stepped on the rest of the window
        alone, one smaller step than the uninterrupted run's. At the window's end the checkpoint is a state the
        uninterrupted run passes through. Decided from the iteration alone, the same on every rank (the save is a
        collective). Without accumulation a window is one iteration: every ``save_interval``-th, as before.
        """
        first, last = accumulation_window(engine)
        return iteration == last and iteration // self.save_interval > (first - 1) // self.save_interval

    def _state(self, engine: Engine) -> dict[str, Any]:
        """The checkpoint of the engine's current position, on every rank (per-rank random states are gathered,
        a collective: every rank must call this)."""
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        state[STEP_OFFSET] = getattr(engine.state, STEP_OFFSET, 0)
        return state

    def save(self, engine: Engine) -> None:
        """Write ``checkpoint_iteration=N.pt`` (rank 0) and keep the newest ``n_saved``.

        Every rank builds the state (per-rank random states are gathered, a collective) and only rank 0 writes, so
        under several nodes ``save_dir`` must be on a filesystem every node reads (see :meth:`load_latest`).
        """
        iteration = engine.state.iteration
        if self._saved_iteration == iteration:  # the final save right after an interval save of the same iteration
            return
        self._saved_iteration = iteration
        state = self._state(engine)
        if is_main_process():
            self._write(state, iteration, engine.state.epoch)

    def _write(self, state: Mapping[str, Any], iteration: int, epoch: int) -> Path:
        """Write ``state`` as ``checkpoint_iteration={iteration}.pt`` (rank 0), keep the newest ``n_saved``."""
        path = self.save_dir / f"checkpoint_iteration={iteration}.pt"
        if not self._swept:
            self._remove_partial_writes()
        # a stop raised inside torch.save lost this checkpoint (and the stop's own). The bookkeeping is in the block
        # too: a stop held during the write is raised at its end, and its report (:meth:`stopped`) named the
        # previous checkpoint, or none ("start again") at the first, while this file was on disk
        with stop_signals_deferred():
            atomic_torch_save(state, path)
            self._written, self._snapshot = (iteration, epoch, path), None  # the copy is of this state or an older one
            self._remove_stale(iteration)
            self._remove_earlier_run()
            for old in list_checkpoints(self.save_dir)[self.n_saved :]:
                old.unlink(missing_ok=True)
            logger.info("saved checkpoint %s", path)
        return path

    def _keep_snapshot(self, engine: Engine) -> None:
        """At the end of an epoch no checkpoint was written for, copy its state to the CPU (rank 0) for
        :meth:`stopped`.

        The end of an epoch is the position a resume continues exactly (a mid-epoch one reads the epoch's trained
        batches again to skip them, :meth:`_skip_trained_batches`, and an accumulation window's gradients are in no
        checkpoint), and building the
        state there needs no agreement between ranks at the stop: under torchrun each rank gets the signal at
        another iteration, and a collective then would wait for ranks that have already left.
        """
        if self._saved_iteration == engine.state.iteration:  # the interval save has just written this epoch
            self._snapshot = None
            return
        state = self._state(engine)  # every rank: the random states are gathered
        if is_main_process():
            # the previous copy goes first, so that two are never held at once (a ViT-L's would be 8 GB at peak);
            # a signal during the copy is held until it is whole (stop_signals_deferred)
            self._snapshot = None
            with stop_signals_deferred():
                self._snapshot = (engine.state.iteration, engine.state.epoch, _cpu_copy(state))

    def stopped(self, engine: Engine, error: BaseException) -> None:
        """``EXCEPTION_RAISED``: write the last completed epoch's state that no checkpoint holds yet (rank 0),
        whatever ends the run, and on a :class:`~monai_ext.io.signals.StopSignal` set the stop's one-line report
        (which the trainer prints) to the signal and what ``--resume true`` continues from. Raises nothing but a
        stop held during its write, so that the MLflow handler still ends the run (KILLED at a stop, FAILED at an error); the trainer re-raises
        after its handlers.

        Not only at a stop: a peer's crash (out of memory, a failing file) reaches rank 0 as the process group's
        error ("Connection closed by peer" under gloo) before torchrun's SIGTERM, and rank 0's own errors end the run
        alike; the epochs since the last ``save_interval`` checkpoint were lost, and a resume started over when none
        had been written. The held state is that of a completed epoch, as an interval save would have written it.
        """
        if not is_main_process():
            if isinstance(error, StopSignal):
                error.report = f"{self._where(engine, error)}: rank 0 keeps the checkpoint"
            return
        if isinstance(error, StopSignal):
            self._write_snapshot(error)
            self._report(engine, error)
            return
        try:
            # torchrun's SIGTERM after a peer's crash comes while this writes: held until what it wrote is said
            with stop_signals_deferred():
                self._written_on_error(engine, error)
        except StopSignal as held:
            self._report(engine, held)
            raise

    @staticmethod
    def _where(engine: Engine, stop: StopSignal) -> str:
        return f"training {stop} at epoch {engine.state.epoch}, iteration {engine.state.iteration}"

    def _report(self, engine: Engine, stop: StopSignal) -> None:
        """Set the stop's one-line report to what ``--resume true`` continues from (rank 0)."""
        if self._written is None:
            stop.report = (f"{self._where(engine, stop)}: no checkpoint in {str(self.save_dir)!r} (none was written "
                           "before an epoch completed); start again")
            return
        iteration, epoch, path = self._written
        stop.report = (f"{self._where(engine, stop)}: continue from {str(path)!r} (epoch {epoch}, iteration "
                       f"{iteration}) with --resume true")

    def _written_on_error(self, engine: Engine, error: BaseException) -> None:
        """Write the held state at an error (rank 0), and say which file ``--resume true`` continues from."""
        before = self._written
        written = self._write_snapshot(type(error).__name__)
        # said when this wrote it (ignite raises an iteration's error twice: once from the epoch, once from the run)
        if written is not None and written != before:
            logger.warning("training ended on %s at epoch %d, iteration %d: %r (epoch %d, iteration %d) is what "
                           "--resume true continues from", type(error).__name__, engine.state.epoch,
                           engine.state.iteration, str(written[2]), written[1], written[0])

    def _write_snapshot(self, cause: Any) -> tuple[int, int, Path] | None:
        """Write the held state of the last completed epoch when it is newer than this run's newest checkpoint
        (rank 0); return (iteration, epoch, file) of the newest checkpoint then on disk, None without one."""
        snapshot, self._snapshot = self._snapshot, None
        written = self._written
        if snapshot is not None and (written is None or snapshot[0] > written[0]):
            iteration, epoch, state = snapshot
            try:
                written = (iteration, epoch, self._write(state, iteration, epoch))
            except (OSError, RuntimeError) as e:  # a full disk: the end is reported, with what is left
                logger.error("cannot write the checkpoint of epoch %d on %s: %s", epoch, cause, e)
        return written

    def _remove_partial_writes(self) -> None:
        """Delete the temporary files of checkpoint writes that a killed process left (once, at this run's first save).

        :func:`atomic_torch_save` removes its temporary file on an exception, but a SIGKILL or a lost node mid-write
        leaves it: a full-size file (over a GB for ViT-B with AdamW) per crash that nothing reads. No other writer
        is busy in ``save_dir``: only rank 0 of the one run that owns it writes there, and its writes are complete.
        The best model files of the :class:`BestModelSaver` entries of ``save_dict`` are this run's writes too
        (``.model.pt.*.tmp``): written in the same thread, none is under way while a checkpoint is saved.
        """
        self._swept = True
        leftovers = set(self.save_dir.glob(".checkpoint_iteration=*.pt.*.tmp"))
        for saver in self.save_dict.values():
            if isinstance(saver, BestModelSaver):
                leftovers.update(_partial_writes_of(saver.save_path))
        leftovers = sorted(leftovers)
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        if leftovers:
            logger.warning("removed %d unfinished checkpoint write(s) of a killed run from %s: %s", len(leftovers),
                           self.save_dir, ", ".join(p.name for p in leftovers))

    def _remove_stale(self, iteration: int) -> None:
        """Delete checkpoints of iterations after ``iteration``, the one this run has just written.

        A run writes its checkpoints in increasing iteration, so a later one in ``save_dir`` is another run's: an
        earlier run into the same folder (started without ``resume``), files the resume skipped as unreadable, or
        files of this run from before a resume with shorter epochs (renumbered in this run's iterations).
        Kept, they would outrank this run's files: the pruning to ``n_saved`` would delete this run's newest
        checkpoint and a later ``resume`` would continue the other run.
        """
        stale = [p for p in list_checkpoints(self.save_dir) if int(CHECKPOINT_PATTERN.match(p.name).group(1)) > iteration]
        for old in stale:
            old.unlink(missing_ok=True)
        if stale:
            logger.warning("removed %d checkpoint(s) numbered after this run's iteration %d from %s (another run's, "
                           "unreadable, or of epochs of another length): %s", len(stale), iteration, self.save_dir,
                           ", ".join(p.name for p in stale))

    def _remove_earlier_run(self) -> None:
        """Delete the checkpoints of an earlier run that :data:`EARLIER_CHECKPOINTS_RECORD` lists, and the record,
        now that this run has a checkpoint of its own.

        :meth:`_remove_stale` leaves those numbered before this run's: kept among the newest ``n_saved``, they would
        be skipped with a warning at every resume, and continued by none.
        """
        earlier = earlier_checkpoints(self.save_dir)
        for old in earlier:
            old.unlink(missing_ok=True)
        (self.save_dir / EARLIER_CHECKPOINTS_RECORD).unlink(missing_ok=True)
        if earlier:
            logger.warning("removed %d checkpoint(s) of the run before this one from %s: %s", len(earlier),
                           self.save_dir, ", ".join(p.name for p in earlier))

    def _read_usable(self, path: Path) -> dict[str, Any]:
        """The checkpoint at ``path`` if it reads and has every entry of ``save_dict``."""
        checkpoint = read_checkpoint(path)
        missing = sorted(set(self.save_dict) - set(checkpoint) - self.optional_entries)
        if missing:
            raise CheckpointError(f"{str(path)!r} lacks entries {missing!r}")
        return checkpoint

    def _newest_usable(self, candidates: Sequence[Path]) -> tuple[Path, dict[str, Any]] | None:
        for path in candidates:
            try:
                return path, self._read_usable(path)
            except CheckpointError as e:
                logger.warning("skipping unusable checkpoint %s: %s", path, e)
        return None

    def _check_records(self, path: Path, checkpoint: Mapping[str, Any]) -> None:
        """Compare the architecture records before any weights are loaded.

        Loading the network first would fail on a checkpoint of another architecture or bundle with torch's dump of
        every mismatched key; the record says in one line what differs. The same on every rank (same file).

        Raises:
            CheckpointError: naming ``path`` and the difference.
        """
        for name, obj in self.save_dict.items():
            if isinstance(obj, ModelRecord) and name in checkpoint:
                try:
                    obj.load_state_dict(checkpoint[name])
                except CheckpointError as e:
                    # no setting of this run turns it into another kind of model
                    same_kind = isinstance(checkpoint[name], Mapping) and checkpoint[name].get("kind") == obj.kind
                    advice = " or the settings that checkpoint was trained with" if same_kind else ""
                    raise CheckpointError(f"cannot resume from {str(path)!r}: {e}; give this run its own "
                                          f"ckpt_dir{advice}") from None

    def _load_entries(self, path: Path, checkpoint: Mapping[str, Any]) -> None:
        """Restore every entry of ``save_dict`` the checkpoint holds, one at a time (ignite's ``load_objects``).

        An entry that does not fit this run (weights renamed by a code change, another number of optimiser groups)
        fails inside torch with a message of one line per key; here it becomes one line naming the file, the entry
        and the start of torch's message. Same file on every rank, so every rank raises alike.

        Raises:
            CheckpointError: naming ``path`` and the entry.
        """
        for name, obj in self.save_dict.items():
            if name not in checkpoint:  # an optional entry (see ``optional_entries``)
                continue
            try:
                Checkpoint.load_objects(to_load={name: obj}, checkpoint={name: checkpoint[name]})
            except (RuntimeError, ValueError, KeyError, TypeError) as e:
                lines = [line.strip() for line in str(e).splitlines() if line.strip()]
                detail = " ".join(lines[:2])
                detail = detail if len(detail) <= 300 else detail[:297] + "..."
                more = f" (+{len(lines) - 2} more lines)" if len(lines) > 2 else ""
                raise CheckpointError(f"cannot resume from {str(path)!r}: its {name!r} entry does not fit this run: "
                                      f"{detail}{more}") from None
        for obj in self.save_dict.values():
            # A scheduler that can seek sets the optimiser groups' lr to its schedule's; restored before the
            # optimiser (save_dict order), the optimiser's saved lr would otherwise stand for the first resumed step.
            if isinstance(obj, LRScheduler) and hasattr(obj, "seek"):
                obj.seek(obj.last_epoch)

    def _keep_epoch_length(self, engine: Engine, epoch_length: int | None, path: Path) -> None:
        """Resume at the saved epoch with this run's iterations per epoch, where the two differ.

        ignite restores the saved ``epoch_length``; another batch size, number of processes (each rank's shard) or
        data set gives this run's data loader another length, and the saved one would cut the resumed epochs across
        the loader's passes (and misplace the accumulation steps and the sampler's shuffles). The trainer is put at
        the end of the saved epoch in this run's iterations, and so is a scheduler stepped every iteration (one
        whose position is the saved iteration) that can ``seek`` (:class:`monai_ext.engines.optim.WarmupCosineLR`).

        Raises:
            CheckpointError: the checkpoint was saved mid-epoch, which has no position in epochs of another length.
        """
        saved_length, saved_iteration = engine.state.epoch_length, engine.state.iteration
        if epoch_length is None or saved_length is None or saved_length == epoch_length:
            return
        if saved_iteration % saved_length:
            raise CheckpointError(
                f"cannot resume from {str(path)!r}: it was saved mid-epoch (iteration {saved_iteration}, epochs of "
                f"{saved_length} iterations) and this run's epochs have {epoch_length} (another batch size, number of "
                "processes or data set); resume with the settings it was saved with"
            )
        engine.state.epoch_length = epoch_length
        engine.state.iteration = engine.state.epoch * epoch_length
        for name, obj in self.save_dict.items():
            if isinstance(obj, LRScheduler) and obj.last_epoch == saved_iteration:
                if hasattr(obj, "seek"):
                    obj.seek(engine.state.iteration)
                else:
                    logger.warning("%s (%s) stays at step %d of the saved epochs of %d iterations", name,
                                   type(obj).__name__, saved_iteration, saved_length)
        if is_main_process():  # the same on every rank: once, not once per rank
            logger.warning("%s was saved with epochs of %d iterations and this run's have %d: resuming after epoch %d "
                           "at iteration %d", path, saved_length, epoch_length, engine.state.epoch,
                           engine.state.iteration)

    def load_latest(self, engine: Engine) -> None:
        """Restore the newest readable checkpoint (keeping the configured ``max_epochs``).

        Rank 0 chooses the file (skipping corrupt ones and an earlier run's) and every rank reads that same file
        name from its own ``save_dir``. If any rank cannot read it (on several nodes: ``save_dir`` is not on a shared
        filesystem), every rank raises :class:`CheckpointError` naming the path and the requirement, instead of ranks
        resuming from different states or waiting for each other forever.

        Raises:
            CheckpointError: one line; ignite's own ERROR line for it is held back (:class:`_RepeatedRefusalFilter`).
        """
        try:
            self._load_latest(engine)
        except CheckpointError as e:
            _REPEATED_REFUSALS.messages.add(_ENGINE_ERROR_PREFIX + str(e))
            raise

    def _load_latest(self, engine: Engine) -> None:
        candidates = self._resumable() if is_main_process() else []
        found = self._newest_usable(candidates) if is_main_process() else None
        # rank 0's verdict for every rank: the file to read, or why there is none when checkpoints exist
        unusable = None if found or not is_main_process() else [p.name for p in candidates]
        name, unusable = broadcast_object((found[0].name if found else None, unusable))
        if unusable:
            # Starting over would throw the run's progress away without being asked to (and this run's first save
            # would then remove those files as another run's): the user decides.
            raise CheckpointError(
                f"cannot resume: none of the {len(unusable)} checkpoint(s) in {str(self.save_dir)!r} reads "
                f"({', '.join(unusable)}; the reasons are in the warnings above); restore a readable one, or start "
                "over with resume false"
            )
        if name is None:
            # asked to resume, the user expects a continuation: a fresh start (a wrong ckpt_dir) must stand out
            logger.warning("no checkpoint to resume from in %s; starting from the beginning", self.save_dir)
            # The best model a killed run saved before its first checkpoint is still the one to beat: the first
            # validation of the new start would otherwise replace it with a worse model.
            for obj in self.save_dict.values():
                if isinstance(obj, BestModelSaver):
                    obj.keep_best_on_disk()
            return
        path = self.save_dir / name
        checkpoint, error = (found[1], None) if found else (None, None)
        if checkpoint is None:
            try:
                checkpoint = self._read_usable(path)
            except (CheckpointError, OSError) as e:
                error = str(e) if str(path) in str(e) else f"{str(path)!r}: {e}"
        failed = {r: e for r, e in enumerate(gather_objects(error)) if e is not None}
        if failed:
            detail = "; ".join(f"rank {r}: {e}" for r, e in failed.items())
            raise CheckpointError(
                f"cannot resume: rank(s) {sorted(failed)} cannot read {name!r}, the newest checkpoint in rank 0's "
                f"ckpt_dir ({detail}). Rank 0 alone writes checkpoints, so with several nodes ckpt_dir must be on a "
                "filesystem every node reads at the same path (NFS, Lustre, GPFS, ...); every rank stops."
            )
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        self._check_records(path, checkpoint)
        self._load_entries(path, checkpoint)
        if max_epochs is not None:
            engine.state.max_epochs = max_epochs
        saved_step = engine.state.iteration + int(checkpoint.get(STEP_OFFSET, 0))  # files before it: never renumbered
        self._keep_epoch_length(engine, epoch_length, path)
        setattr(engine.state, STEP_OFFSET, saved_step - engine.state.iteration)
        self.resumed_from = path
        self._saved_iteration = engine.state.iteration  # that state is on disk already
        self._written = (engine.state.iteration, engine.state.epoch, path)
        logger.info("resumed from %s at epoch %d, iteration %d", path, engine.state.epoch, engine.state.iteration)
        self._warn_mid_window(engine, path)
        self._skip_trained_batches(engine)
        if nothing_to_train(engine):
            # ignite ends such a run at once with exit code 0: without a word it looked like a finished resume
            logger.warning("checkpoint %s is at epoch %d, --epochs is %d: nothing to train; raise --epochs to "
                           "continue", path, engine.state.epoch, engine.state.max_epochs)

    @staticmethod
    def _warn_mid_window(engine: Engine, path: Path) -> None:
        """Say that a checkpoint saved inside a gradient accumulation window resumes with that window's step short of
        the gradients of its micro-steps before the save, which no checkpoint holds.

        Interval saves wait for a window's end (:meth:`_iteration_save_due`); such a file is an iteration-level save
        of an earlier version, the final save of a run ended inside a window (ignite's ``terminate()`` or
        ``max_iters``), or one resumed with another ``accumulation_steps``, whose windows end elsewhere. Said by
        rank 0 alone, as the other resume warnings are.
        """
        iteration = engine.state.iteration
        first, last = accumulation_window(engine)
        if not iteration or iteration == last or not is_main_process():  # the same on every rank: said once
            return
        logger.warning("%s was saved after %d of the %d micro-steps of an accumulation window: their gradients are "
                       "not in it, so the optimiser step at iteration %d follows the remaining %d alone",
                       path, iteration - first + 1, last - first + 1, last, last - iteration)

    def _skip_trained_batches(self, engine: Engine) -> None:
        """After a checkpoint saved mid-epoch (``epoch_level=False``), skip the batches of the epoch it has trained.

        ignite resumes such a position with a fresh data loader: the rest of the epoch took the loader's first
        batches (trained again) and stopped short of its end, and every later epoch went on from that loader, its
        batches shifted across the epochs' shuffles (epochs of 4 batches saved after 3: ``a`` once more where ``d``
        was due, then ``b c d a``). The batches trained are read and dropped (no step runs on them), before the
        seeding handlers draw for the first batch trained, so the resumed epoch continues where the saved one was.
        """
        epoch_length = engine.state.epoch_length
        done = engine.state.iteration % epoch_length if epoch_length else 0
        if not done or _length(engine.state.dataloader) not in (None, epoch_length):
            return  # an epoch shorter than the loader goes on with the previous epoch's loader: no position to find

        def skip(engine: Engine) -> None:
            engine.remove_event_handler(skip, Events.GET_BATCH_STARTED)
            for _ in range(done):
                # the loader has the saved epochs' length (_keep_epoch_length refuses another one mid-epoch)
                next(engine._dataloader_iter)  # ignite has no public way to start an epoch's data mid-way

        engine.add_event_handler(Events.GET_BATCH_STARTED, skip)
        handlers = engine._event_handlers[Events.GET_BATCH_STARTED]
        handlers.insert(0, handlers.pop())  # before a reseeding handler (PositionSeeding) draws for the next batch
        logger.info("the checkpoint was saved after %d of the epoch's %d batches: they are read again and skipped",
                    done, epoch_length)

    def _resumable(self) -> list[Path]:
        """The checkpoints a resume may continue (rank 0): those of ``save_dir`` but an earlier run's, which are
        named in one warning (:data:`EARLIER_CHECKPOINTS_RECORD`)."""
        earlier = earlier_checkpoints(self.save_dir)
        if earlier:
            logger.warning("not resuming from %s in %s: another run's, there when a run started in this folder "
                           "without resume (this run's first save removes them; to continue them instead, stop and "
                           "delete %s)", ", ".join(p.name for p in earlier), self.save_dir, EARLIER_CHECKPOINTS_RECORD)
        return resumable_checkpoints(self.save_dir)


def _length(data: Any) -> int | None:
    """``len(data)``, None where it has none (an iterable data source, no data)."""
    try:
        return len(data)
    except TypeError:
        return None


def _item_identity(item: Any) -> str:
    """What names a validation item for :meth:`BestModelSaver.validation_record`: its ``"image"`` (path or frame
    key), else its whole content (positions added by ``with_positions`` aside, they follow from the order)."""
    if isinstance(item, Mapping):
        if "image" in item:
            return str(item["image"])
        return json.dumps({str(k): v for k, v in item.items() if k != "index"}, sort_keys=True, default=str)
    return str(item)


def _below_common_folder(identities: list[str]) -> list[str]:
    """Paths below the folder they all share, other identities as they are: the same files under another root (a
    job's scratch copy, another mount, a relative ``--dataset_dir``) are the same validation set, and a resume onto
    them kept its best model."""
    # a relative path typed from another folder names the same file: made absolute where it is one
    paths = [i if os.path.isabs(i) else os.path.abspath(i) for i in identities if os.path.isabs(i) or os.path.exists(i)]
    if len(paths) != len(identities) or not paths:
        return identities
    common = os.path.dirname(paths[0]) if len(paths) == 1 else os.path.commonpath(paths)
    return [os.path.relpath(p, common) for p in paths]


def _cpu_copy(value: Any) -> Any:
    """A copy of a state (nested mappings, lists and tuples) that shares nothing with the live objects: tensors are
    copied to the CPU (a state dict's tensors are the parameters and optimiser moments themselves, which training
    goes on changing; on the GPU they would take its memory), everything else deep-copied. An ``OrderedDict`` keeps
    its type and torch's ``_metadata`` (the module versions ``load_state_dict`` reads)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, OrderedDict):
        copied = OrderedDict((k, _cpu_copy(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):
            copied._metadata = copy.deepcopy(value._metadata)
        return copied
    if isinstance(value, Mapping):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_cpu_copy(v) for v in value)
    return copy.deepcopy(value)


class _RepeatedRefusalFilter(logging.Filter):
    """Drops ignite's "Engine run is terminating due to exception: <message>" line for a refusal of
    :meth:`TrainingCheckpointer.load_latest`: the caller shows that message (the bundles' one-line error, exit code
    2), and the line repeated it word for word. Any other exception keeps ignite's line."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.messages


_REPEATED_REFUSALS = _RepeatedRefusalFilter()


def _partial_writes_of(path: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_torch_save` of ``path`` leaves when killed mid-write
    (``.{name}.XXXXXXXX.tmp`` beside it, or beside the file a link points to, the name cut at 64 bytes as
    :mod:`monai_ext.io.atomic` cuts it)."""
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    head = path.name.encode("utf-8", "surrogateescape")[:64].decode("utf-8", "ignore")
    return sorted(path.parent.glob(f".{glob.escape(head)}.*.tmp"))


class BestModelSaver:
    """Write ``{"model": weights, "arch": record}`` atomically whenever a validation metric improves.

    The file and the saver's state (in training checkpoints) also record the validation set the metric was scored
    on (:meth:`validation_record`: its item count and a digest of its items): a resume onto another validation set
    (files added to the folder, a grown corpus cache) starts the best afresh, with a warning, rather than compare
    scores of different sets.

    Args:
        save_path: file to (over)write, e.g. ``models/model.pt``.
        network: the network (wrappers are unwrapped).
        record: its :class:`ModelRecord`.
        metric_name: key in the evaluator's ``state.metrics``.
        mode: "min" or "max".
    """

    def __init__(
        self, save_path: str | os.PathLike, network: torch.nn.Module, record: ModelRecord, metric_name: str, mode: str = "min"
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.save_path = Path(save_path)
        self.network = getattr(network, "module", network)
        self.record, self.metric_name, self.mode = record, metric_name, mode
        self.best: float | None = None
        self.best_epoch: int | None = None  # the (trainer's) epoch whose validation gave ``best``
        self.evaluator: Engine | None = None
        self._validation: dict[str, Any] | None = None  # validation_record's value, once found
        self._validation_warned: set[tuple[Any, Any]] = set()  # records of other sets already warned of

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self)
        self.evaluator = evaluator

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def __call__(self, evaluator: Engine) -> None:
        value = float(evaluator.state.metrics[self.metric_name])
        if not np.isfinite(value):
            # A NaN taken as the first best would never be beaten (every comparison with it is false): no later model
            # would be saved, in this run or, through the checkpoint, in a resumed one.
            logger.warning("validation %s is %s: the best model is not replaced", self.metric_name, value)
            return
        if not self.improved(value):
            return
        self.best, self.best_epoch = value, getattr(evaluator.state, "epoch", None)
        if is_main_process():
            state = {k: v for k, v in self.network.state_dict().items()}
            saved = {"model": state, "arch": self.record.state_dict(), self.metric_name: value,
                     "epoch": self.best_epoch, "validation": self.validation_record()}
            with stop_signals_deferred():  # a stop inside torch.save would lose the new best model
                atomic_torch_save(saved, self.save_path)
            logger.info("new best %s %.6f: saved %s", self.metric_name, value, self.save_path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "epoch": self.best_epoch, "validation": self.validation_record()}

    def validation_record(self) -> dict[str, Any] | None:
        """``{"count": items, "digest": sha256}`` of the attached evaluator's validation set, None where it has no
        datalist (``data_loader.dataset.data``) to describe.

        An item is known by its ``"image"`` (a path, or a corpus cache's frame key) and otherwise by all of its
        content; the digest is of the sorted identities, so another order of the same items is the same set. The
        whole datalist on every rank (a rank's shard is its sampler's), so every rank's record is the same.
        """
        if self._validation is None:
            loader = getattr(self.evaluator, "data_loader", None)
            data = getattr(getattr(loader, "dataset", None), "data", None)
            if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
                return None
            identities = sorted(_below_common_folder([_item_identity(item) for item in data]))
            digest = hashlib.sha256("\n".join(identities).encode("utf-8", "surrogateescape")).hexdigest()
            self._validation = {"count": len(identities), "digest": digest}
        return dict(self._validation)

    def _same_validation(self, theirs: Any, source: str) -> bool:
        """Whether a best scored on the validation set ``theirs`` records (checkpoint or model file) compares with
        this run's; warns, naming both counts, when not. A record missing on either side (files of earlier versions,
        an evaluator without a datalist) cannot be compared and counts as the same."""
        ours = self.validation_record()
        if not isinstance(theirs, Mapping) or ours is None or (theirs.get("count"), theirs.get("digest")) == (
                ours["count"], ours["digest"]):
            return True
        seen = (theirs.get("count"), theirs.get("digest"))
        if seen not in self._validation_warned:  # the checkpoint and model.pt of the old set: said once
            self._validation_warned.add(seen)
            logger.warning("the validation set changed since %s was scored (%s validation item(s) then, %d now%s): "
                           "its best %s is not compared with this run's; the next validation's model replaces %s",
                           source, theirs.get("count"), ours["count"],
                           ", other items" if theirs.get("count") == ours["count"] else "", self.metric_name,
                           self.save_path)
        return False

    def keep_best_on_disk(self) -> None:
        """Take the best of the model file at ``save_path`` as the one to beat (a resume that finds no checkpoint of
        the run, killed before its first one, which may have saved a best model already). Every rank must call
        this (one broadcast)."""
        self.load_state_dict({})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the best value, or the better one that the file at ``save_path`` holds.

        Checkpoints come every ``save_interval`` epochs, so a killed run may have saved a better model in epochs its
        last checkpoint does not know of. The resumed run replays them and, unless it computes the very same values
        (other GPU kernels, another number of processes), would replace that file with a worse model when it beats
        only the checkpoint's value. Rank 0 reads the file and every rank takes its answer (one broadcast).
        """
        best = state.get("best")
        finite = best is not None and np.isfinite(best)  # a NaN saved by earlier versions is no best
        if finite and not self._same_validation(state.get("validation"), "the checkpoint's best model"):
            finite = False  # scored on another validation set: the next validation's model is saved afresh
        self.best, self.best_epoch = (best, state.get("epoch")) if finite else (None, None)
        on_disk = broadcast_object(self._best_on_disk() if is_main_process() else None)
        if on_disk is not None and self.improved(on_disk[0]):
            than = "" if self.best is None else f" than the checkpoint's best ({self.best})"
            logger.info("%s holds a better %s (%.6f)%s: kept as the best to beat", self.save_path, self.metric_name,
                        on_disk[0], than)
            self.best, self.best_epoch = on_disk
        self._restore_evaluator_best()

    def _restore_evaluator_best(self) -> None:
        """Give MONAI's evaluator the restored best, when it tracks the same metric.

        MONAI keeps its own ``best_metric`` / ``best_metric_epoch`` (for its "Got new best metric" and "Key metric
        ... best value ... at epoch" lines), which no checkpoint restores: a resumed run would announce a worse
        value as a new best while the file at ``save_path`` rightly stays. Epoch 0 stands for a best whose epoch
        files of earlier versions did not record (MONAI's -1 means "none yet" and would take any value).
        """
        state = getattr(self.evaluator, "state", None)
        if self.best is None or getattr(state, "key_metric_name", None) != self.metric_name:
            return
        state.best_metric = self.best
        state.best_metric_epoch = self.best_epoch if self.best_epoch is not None else 0

    def _best_on_disk(self) -> tuple[float, int | None] | None:
        """(metric, epoch or None) stored in the file at ``save_path`` when it is a model of this architecture, else
        None."""
        if not self.save_path.is_file():
            return None
        try:
            saved = read_checkpoint(self.save_path)
        except (CheckpointError, OSError) as e:
            logger.warning("cannot read the best model %s (%s): it will be replaced by this run's", self.save_path, e)
            return None
        record = self.record.state_dict()
        if not isinstance(saved, Mapping) or not isinstance(saved.get("arch"), Mapping):
            return None
        if any(saved["arch"].get(k) != record[k] for k in ("kind", "arch_args")):  # another model's file
            return None
        value = saved.get(self.metric_name)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            return None
        if not self._same_validation(saved.get("validation"), str(self.save_path)):
            return None
        epoch = saved.get("epoch")
        return float(value), epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
