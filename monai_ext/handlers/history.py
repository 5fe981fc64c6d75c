"""Training history handlers: a tqdm progress bar and the per-validation metrics JSON, written by rank 0."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_ext.engines.distributed import is_main_process
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.json_values import json_number
from monai_ext.io.signals import reraise_last

logger = logging.getLogger(__name__)


class ProgressBar:
    """ignite's tqdm progress bar showing the running loss, attachable from a bundle's handler list."""

    def __init__(self, loss_key: str = "loss", persist: bool = False) -> None:
        self.loss_key, self.persist = loss_key, persist

    def attach(self, engine: Engine) -> None:
        from ignite.handlers import ProgressBar as IgniteProgressBar

        if is_main_process():
            bar = IgniteProgressBar(persist=self.persist)
            # the first item of a decollated output (MONAI's default), or the output itself when not decollated
            bar.attach(engine, output_transform=lambda out: {
                self.loss_key: (out[0] if isinstance(out, list) else out)[self.loss_key]})
            # ignite closes the bar at the end of an epoch only: a run ended by an exception (a stop signal) left
            # it open, and the stop's line or the traceback went on after the bar's last redraw, on its line.
            def close(engine: Engine, error: BaseException) -> None:
                bar._close(engine)

            def close_first(engine: Engine) -> None:
                # First of the exception handlers, which are all attached by the start: MONAI's StatsHandler and
                # the MLflow handler re-raise and end the chain. ignite has no public way to reorder handlers.
                handlers = engine._event_handlers[Events.EXCEPTION_RAISED]
                handlers.insert(0, handlers.pop(next(i for i, entry in enumerate(handlers) if entry[0] is close)))
                reraise_last(engine)  # the close returns: the exception must still end the run

            engine.add_event_handler(Events.EXCEPTION_RAISED, close)
            engine.add_event_handler(Events.STARTED, close_first)


def handlers_of_this_rank(handlers: Sequence[Any]) -> list[Any]:
    """The handlers this process attaches under torchrun: every one on rank 0; on the others, none of those that
    print (``StatsHandler``, :class:`ProgressBar`), whose lines would repeat once per rank.

    Chosen by type, not by position: ``--tracking`` appends its handler to the bundle's list, and a slice of the last
    two then dropped the progress bar and the tracking handler and kept the statistics.
    """
    from monai.handlers import StatsHandler

    if is_main_process():
        return list(handlers)
    return [h for h in handlers if not isinstance(h, (StatsHandler, ProgressBar))]


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)


def _history_value(value: Any) -> int | float | None:
    """A metric as the history writes it: a count (``n``, the images validated) as the whole number it is (it read
    ``7.0``), any other number as :func:`~monai_ext.io.json_values.json_number` writes it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return json_number(value)


def _restored_value(key: str, value: Any) -> int | float | None:
    """A value of a checkpoint's history as this version writes it: the count ``n`` that earlier versions kept as a
    float (``7.0``) made the whole number it is, so that a resumed history does not read ``7.0`` and ``7`` by
    turns; every other value as :func:`_history_value` gives it."""
    if key == "n" and isinstance(value, float) and value.is_integer():
        return int(value)
    return _history_value(value)


class MetricsHistory:
    """Append each validation's metrics (with the trainer's epoch) to a JSON list at ``path`` (null where a metric
    is not finite).

    Args:
        path: JSON file, rewritten atomically after each validation.
        epoch_engine: the trainer, whose epoch labels the entries.

    Saved in trainer checkpoints (``state_dict``), so a resumed run keeps the history of the epochs before it.
    """

    def __init__(self, path: str | os.PathLike, epoch_engine: Engine | None = None) -> None:
        self.path = Path(path)
        self.epoch_engine = epoch_engine
        self.history: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = (self.epoch_engine or engine).state.epoch
        entry = {"epoch": epoch, **{k: _history_value(v) for k, v in engine.state.metrics.items() if _is_scalar(v)}}
        self.history = [h for h in self.history if h["epoch"] < epoch] + [entry]
        if is_main_process():
            atomic_write_bytes(self.path, json.dumps(self.history, indent=1, allow_nan=False).encode())
            logger.info("epoch %d validation: %s", epoch,
                        {k: v if v is None else round(v, 6) for k, v in entry.items() if k != "epoch"})

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # checkpoints of earlier versions hold NaN where this version holds None, and n as a float
        self.history = [{k: v if k == "epoch" or v is None else _restored_value(k, v) for k, v in entry.items()}
                        for entry in state.get("history", [])]
