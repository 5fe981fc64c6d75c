"""Shared engine parts: autocast, batch unpacking, and a trainer with a robust optimisation step.

``SupervisedTrainer`` does its own forward/backward with a GradScaler for fp16 and nothing for clipping or
non-finite losses. :class:`RobustStepTrainer` replaces just the iteration; handlers, events, metrics, state and
``torchrun`` support stay MONAI's and ignite's.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.transforms import Decollated

from monai_ext.engines.distributed import (
    all_reduce_mean,
    collective_device,
    evaluation_network,
    is_distributed,
    is_main_process,
    ranks_flagged_each,
)
from monai_ext.io.settings import is_unset
from monai_ext.io.signals import (
    StopSignal,
    StopSignalLogFilter,
    reraise_last,
    stop_of_a_worker_death,
    stop_signals_raise,
)

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


#: (device, precision) pairs already announced by :func:`usable_device` in this process: one line each.
_ANNOUNCED: set[tuple[str, str | None]] = set()


def usable_device(device: torch.device | str, precision: str | None = None) -> torch.device:
    """``device`` as a ``torch.device``, checked before a network moves there; says once where the run goes.

    The bundles choose CUDA when there is one and the CPU otherwise: a machine whose CUDA is broken (a driver
    mismatch) trained on the CPU for days with nothing in its log to say so, and bf16 asked for ran as float32.
    So the first call for a device logs it, with the precision it really gets (:func:`effective_precision`).

    Raises:
        ValueError: ``device`` is not a device name, or names an accelerator (CUDA, MPS, XPU, or an index of one)
            this machine does not have: torch's ``AssertionError`` from deep inside a config expression said only
            "not compiled with CUDA", and ``--device mps`` on Linux passed here and failed later in the config.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from e
    count = accelerator_count(resolved.type)
    if count == 0:
        name = {"cuda": "CUDA", "mps": "MPS (Apple GPU)", "xpu": "XPU (Intel GPU)"}[resolved.type]
        raise ValueError(f"device {str(device)!r}: this machine has no usable {name} device (torch "
                         f"{torch.__version__}); use --device cpu or leave device unset")
    if count is not None and resolved.index is not None and resolved.index >= count:
        raise ValueError(f"device {str(device)!r}: this machine has {count} {resolved.type.upper()} device(s), "
                         "numbered from 0")
    if precision is not None:
        autocast(resolved, precision)  # checks the precision's name
    if (str(resolved), precision) not in _ANNOUNCED:
        _ANNOUNCED.add((str(resolved), precision))
        if precision is not None and effective_precision(resolved, precision) != precision:
            logger.info("running on %s in float32 (bf16 autocast runs on CUDA only; CUDA available: %s)", resolved,
                        torch.cuda.is_available())
        else:
            logger.info("running on %s%s", resolved, f" in {precision}" if precision else "")
    return resolved


def accelerator_count(device_type: str) -> int | None:
    """How many devices of an accelerator type (``"cuda"``, ``"mps"``, ``"xpu"``) this machine can use: 0 where
    torch was built without it or finds none; None for another type (the CPU), which :func:`usable_device` leaves
    alone."""
    if device_type == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device_type == "mps":  # one Apple GPU at most; torch.backends.mps is missing from some builds
        mps = getattr(torch.backends, "mps", None)
        return int(bool(mps is not None and mps.is_available()))
    if device_type == "xpu":  # torch.xpu came with torch 2.4
        xpu = getattr(torch, "xpu", None)
        return xpu.device_count() if xpu is not None and xpu.is_available() else 0
    return None


def effective_precision(device: torch.device | str, precision: str) -> str:
    """The precision a run on ``device`` really computes in: "bf16" only for bf16 on CUDA (:func:`autocast`), else
    "fp32". Logged by the bundles' MLflow tracking in place of the setting: CPU runs asked for bf16 (the default)
    were recorded as bf16 while they trained in float32.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`, or ``device`` names no torch device.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    try:
        device_type = torch.device(device).type
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from e
    return "bf16" if precision == "bf16" and device_type == "cuda" else "fp32"


def refuse_amp(amp: Any, engine: str) -> None:
    """Refuse MONAI's ``amp`` switch for an engine that computes in ``precision`` and never reads ``amp``.

    ``--train#trainer#amp true`` was taken by MONAI's ``SupervisedTrainer`` and then ignored by this project's
    iteration: a run asked for mixed precision trained in float32 with nothing to say so.

    Args:
        amp: the value given for ``amp`` (a bool, or its text from a command line); false, 0 or unset pass.
        engine: the engine's class name, for the message.

    Raises:
        ValueError: ``amp`` is true, naming ``--precision bf16`` as the setting to use.
    """
    if is_unset(amp) or str(amp).strip().lower() in ("false", "0", "no", "off"):
        return
    raise ValueError(f"{engine} does not use amp (got {amp!r}): its mixed precision is set by precision; use "
                     "--precision bf16 (bf16 autocast on CUDA) and leave amp unset")


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA when asked for; float32 (a no-op context) otherwise, including on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def batch_images(batch: Mapping[str, Any] | torch.Tensor, device: torch.device, non_blocking: bool) -> torch.Tensor:
    """The image tensor (N, C, H, W) of a batch, as a plain tensor on ``device`` (MetaTensor tracking is not needed)."""
    images = batch["image"] if isinstance(batch, Mapping) else batch
    if isinstance(images, MetaTensor):
        images = images.as_tensor()
    return images.to(device, non_blocking=non_blocking)


def gradient_norm_limit(value: Any) -> float | None:
    """``clip_grad_norm`` as a positive number, or None for no clipping (0, null or none, from YAML or a command line).

    Raises:
        ValueError: a bool (YAML ``true``, ``--clip_grad_norm True``), not a number, or negative, quoting it.
    """
    if is_unset(value):
        return None
    if isinstance(value, (bool, np.bool_)):  # a bool is an int in Python: float(True) would silently clip at 1.0
        raise ValueError(f"clip_grad_norm must be a gradient-norm limit, not true or false (0 or null: no clipping), "
                         f"got {value!r}")
    try:
        limit = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"clip_grad_norm must be a number, or 0 or null for no clipping, got {value!r}") from None
    if not limit >= 0:  # also refuses NaN
        raise ValueError(f"clip_grad_norm must be at least 0 (0 or null: no clipping), got {value!r}")
    return limit or None


class ShardSafeEvaluatorMixin:
    """Evaluator mixin: a rank whose validation shard is empty still takes part in the metrics' gathers.

    With a validation set smaller than the world (1 image on 3 ranks) and a sampler that does not pad, some ranks get
    no image. MONAI's ``Workflow.run`` then returns at once, and the ranks that do have images wait forever in the
    metrics' collectives. Here such a rank fires the run's events without iterations, so its metrics reset,
    contribute nothing and gather like everyone else's. Put it before the MONAI evaluator class in the bases.

    The forwards are the only other collective: a ``DistributedDataParallel`` network broadcasts rank 0's buffers
    (BatchNorm statistics) at the start of its forward, which a rank without images never joins. So each run takes
    rank 0's buffers once on every rank and validates through the unwrapped module
    (:func:`~monai_ext.engines.distributed.evaluation_network`); ``network`` is the wrapper again afterwards.
    """

    def run(self, global_epoch: int = 1) -> None:
        wrapper = self.network  # type: ignore[has-type]
        # every rank, an empty one included, before any forward: the buffers' broadcast is a collective
        self.network = evaluation_network(wrapper)
        try:
            self._run_shard(global_epoch)
        finally:
            self.network = wrapper  # training, checkpoints and later runs see the network they were given

    def _handle_exception(self, e: BaseException) -> None:
        """ignite's, with a DataLoader worker's death of a job-wide SIGTERM taken for the stop it stands for, as the
        trainer takes it (:meth:`RobustStepTrainer._handle_exception`): validation inside a training meets it too,
        and its handlers (the validator's MLflow handler) took it for a failure."""
        super()._handle_exception(stop_of_a_worker_death(e))  # type: ignore[misc]

    def _run_shard(self, global_epoch: int) -> None:
        """MONAI's run, or for an empty shard in a process group its events without iterations."""
        if self.state.epoch_length != 0 or not is_distributed():
            super().run(global_epoch)  # type: ignore[misc]
            return
        self.state.max_epochs = max(global_epoch, 1)
        self.state.epoch = global_epoch - 1
        self.state.iteration = 0
        self._fire_event(Events.STARTED)
        self.state.epoch += 1
        for event in (Events.EPOCH_STARTED, Events.EPOCH_COMPLETED, Events.COMPLETED):
            self._fire_event(event)


class RobustStepTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` with bf16 autocast, gradient accumulation under DDP's ``no_sync``, gradient clipping and
    a guard against non-finite losses. Subclasses implement :meth:`forward_loss` for their batches.

    Under DDP every decision is global: an optimiser step is taken only when the loss and the clipped gradient norm
    are finite on every rank (one all-reduced flag per step), so the replicas never drift apart, and the run stops on
    every rank at the same step after ``max_nonfinite_steps`` skipped steps in a row.

    Args:
        precision: "bf16" (autocast on CUDA) or "fp32".
        clip_grad_norm: max gradient norm (None or 0: no clipping).
        max_nonfinite_steps: stop after this many consecutive skipped (non-finite) optimiser steps.
        log_interval: the loss is averaged over ranks every this many iterations and on each epoch's last one (the
            iterations whose loss is logged); in between "loss" is this rank's own, which saves a collective a step.
        *args, **kwargs: as ``SupervisedTrainer`` (``accumulation_steps`` included).

    Iteration output: the subclass's outputs plus "loss" (scalar; the mean over ranks on logged iterations),
    "local_loss" (this rank's) and "loss_is_global" (bool).
    """

    def __init__(
        self,
        *args: Any,
        precision: str = "bf16",
        clip_grad_norm: float | None = 1.0,
        max_nonfinite_steps: int = 5,
        log_interval: int = 1,
        **kwargs: Any,
    ) -> None:
        # state.output is MONAI's decollated list of per-item dicts (the loss replicated in each), the form MONAI's
        # stock handlers and its `--tracking mlflow` settings read with from_engine(["loss"], first=True); on an
        # undecollated dict that returns a 1-tuple, which MLflow cannot log as a metric.
        kwargs.setdefault("decollate", True)
        refuse_amp(kwargs.get("amp"), type(self).__name__)  # SupervisedTrainer's; this iteration reads precision
        super().__init__(*args, **kwargs)
        autocast(self.state.device, precision)  # validates the name early
        if max_nonfinite_steps < 1:
            raise ValueError(f"max_nonfinite_steps must be at least 1, got {max_nonfinite_steps!r}")
        if log_interval < 1:
            raise ValueError(f"log_interval must be at least 1, got {log_interval!r}")
        self.precision = precision
        self.clip_grad_norm = gradient_norm_limit(clip_grad_norm)
        self.max_nonfinite_steps = max_nonfinite_steps
        self.log_interval = log_interval
        self.nonfinite_in_a_row = 0
        # whether every loss of the current accumulation window's earlier micro-steps was finite (None: no earlier
        # micro-step), a tensor on the device so that keeping it costs no host read
        self._window_losses_finite: torch.Tensor | None = None


    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Train. A stop signal (a queue's time limit or ``docker stop`` sends SIGTERM, a closed session SIGHUP, a
        scheduler's warning SIGUSR1 or SIGUSR2)
        raises :class:`~monai_ext.io.signals.StopSignal` inside the run instead of ending the process at once,
        so the engine's exception handlers run: the training checkpointer writes the state of the last completed
        epoch (:meth:`monai_ext.handlers.checkpointing.TrainingCheckpointer.stopped`) and the MLflow run ends KILLED
        rather than RUNNING for ever. The run then ends with one line on stderr (rank 0), naming the signal and
        what a resume continues from, and exit status 128 + signal, without a traceback (ignite's and MONAI's
        lines for it are filtered: the stop is expected, not a fault; a DataLoader worker's death taken for the
        stop, :func:`~monai_ext.io.signals.stop_of_a_worker_death`, keeps ignite's ERROR line before it, which cannot
        be told from an out-of-memory kill's)."""
        if not any(isinstance(f, StopSignalLogFilter) for f in self.logger.filters):
            self.logger.addFilter(StopSignalLogFilter())
        reraise_last(self)  # handlers attached after the checkpointer's (MLflow's) would otherwise follow it
        try:
            with stop_signals_raise():
                return super().run(*args, **kwargs)
        except StopSignal as stop:
            if is_main_process():
                where = f"at epoch {self.state.epoch}, iteration {self.state.iteration}"
                report = stop.report or f"training {stop} {where}"
                print(report, file=sys.stderr, flush=True)
            raise

    def _handle_exception(self, e: BaseException) -> None:
        """ignite's: the exception handlers get ``e``, or the stop a DataLoader worker's death of a job-wide SIGTERM
        stands for (:func:`~monai_ext.io.signals.stop_of_a_worker_death`): the stop's checkpoint and KILLED mark, not
        a failure's."""
        super()._handle_exception(stop_of_a_worker_death(e))

    def _register_decollate(self) -> None:
        """Decollate the batch and the output once the iteration is complete (first ITERATION_COMPLETED handler).

        MONAI decollates on MODEL_COMPLETED, which its trainer fires after setting ``state.output``; here the output
        is the iteration's return value (set by ignite afterwards) and MODEL_COMPLETED comes only on optimiser steps.
        """
        transform = Decollated(keys=None, detach=True)

        @self.on(Events.ITERATION_COMPLETED)
        def _decollate_data(engine: RobustStepTrainer) -> None:
            if isinstance(engine.state.batch, (list, dict)):
                engine.state.batch = transform(engine.state.batch)
            if isinstance(engine.state.output, (list, dict)):
                engine.state.output = transform(engine.state.output)

    def forward_loss(self, engine: RobustStepTrainer, batchdata: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute ``(loss, outputs)`` for one micro-batch (called inside autocast)."""
        raise NotImplementedError

    def _micro_step_flags(self, engine: RobustStepTrainer) -> tuple[bool, bool, int]:
        """(zero the gradients before this micro-step, step the optimiser after it, micro-steps in its window).

        The last window of an epoch is shorter when ``accumulation_steps`` does not divide the epoch; its loss is
        divided by its own length, so that its step follows the mean gradient of its images as every other step
        does (divided by ``accumulation_steps``, its gradient would be scaled down by the missing micro-steps).
        """
        first, last = accumulation_window(engine)
        iteration = engine.state.iteration
        return iteration == first, iteration == last, last - first + 1

    def _logs_loss(self, engine: RobustStepTrainer) -> bool:
        return logs_loss(engine, self.log_interval)

    def _optimizer_step(self, engine: RobustStepTrainer, loss: torch.Tensor) -> None:
        """Clip and step when the loss and the clipped gradient norm are finite on every rank; otherwise every rank
        skips the step (and stops after ``max_nonfinite_steps`` skips in a row).

        The warning names the ranks whose own loss was non-finite (over the step's micro-steps) as the source: under
        DDP the gradient norm is measured after the gradients were averaged over ranks, so one rank's NaN makes
        every rank's norm NaN, and naming those ranks blamed the whole world for one rank's batch.
        """
        params = [p for group in engine.optimizer.param_groups for p in group["params"]]
        max_norm = self.clip_grad_norm or float("inf")
        total_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        loss_finite = torch.isfinite(loss)
        if self._window_losses_finite is not None:  # an earlier micro-step of the window had its own loss
            loss_finite = loss_finite & self._window_losses_finite
        self._window_losses_finite = None
        # The norm of the clipped gradients is min(total, max_norm): finite exactly when the total is.
        # One host read and one small collective per optimiser step, for both flags: a bad batch on any rank is
        # skipped everywhere, and every rank learns where it came from.
        flags = torch.stack([~loss_finite, ~torch.isfinite(total_norm)]).tolist()  # the one host read
        loss_ranks, gradient_ranks = ranks_flagged_each(flags, collective_device(engine.state.device))
        if not loss_ranks and not gradient_ranks:
            engine.optimizer.step()
            self.nonfinite_in_a_row = 0
            return
        self.nonfinite_in_a_row += 1
        source = nonfinite_source(loss_ranks, gradient_ranks)
        logger.warning(
            "%s at iteration %d: step skipped on every rank (%d in a row, limit %d)",
            source, engine.state.iteration, self.nonfinite_in_a_row, self.max_nonfinite_steps,
        )
        engine.optimizer.zero_grad(set_to_none=True)
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise FloatingPointError(
                f"{self.nonfinite_in_a_row} optimiser steps in a row had a non-finite loss or gradient norm (last at "
                f"iteration {engine.state.iteration}: {source}); every rank stops "
                f"(max_nonfinite_steps={self.max_nonfinite_steps})"
            )

    def _iteration(self, engine: RobustStepTrainer, batchdata: Any) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        zero_grad, step, window = self._micro_step_flags(engine)
        engine.network.train()
        if zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
            # a new window: nothing of an earlier one's losses (a window cut short by a raised step or a resume)
            self._window_losses_finite = None
        # DDP all-reduces gradients only on the micro-step that steps the optimiser.
        sync = nullcontext() if step or not hasattr(engine.network, "no_sync") else engine.network.no_sync()
        with sync:
            with autocast(engine.state.device, self.precision):
                loss, outputs = self.forward_loss(engine, batchdata)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            (loss / window).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if not step:  # kept for the window's step, which names the ranks of non-finite losses (no host read here)
            finite = torch.isfinite(loss.detach())
            held = self._window_losses_finite
            self._window_losses_finite = finite if held is None else held & finite
        else:
            self._optimizer_step(engine, loss.detach())
            engine.fire_event(IterationEvents.MODEL_COMPLETED)
        local = loss.detach()
        logged = self._logs_loss(engine)
        return {**outputs, "loss": all_reduce_mean(local) if logged else local, "local_loss": local,
                "loss_is_global": logged}


def nonfinite_source(loss_ranks: list[int], gradient_ranks: list[int]) -> str:
    """Where a skipped step's non-finite values came from, for the warning and the error.

    The ranks whose own loss was non-finite are the source when there are any; their gradients, all-reduced by DDP,
    are then non-finite everywhere and not worth naming. Otherwise every loss was finite and the gradients were not
    (an overflow in the backward pass); under DDP those are the averaged gradients, so the ranks named are usually
    all of them and the culprit cannot be told apart.

    Args:
        loss_ranks: ranks whose own loss of the step was non-finite.
        gradient_ranks: ranks whose (clipped) gradient norm was non-finite.
    """
    if loss_ranks:
        return f"non-finite loss on rank(s) {loss_ranks}"
    return f"non-finite gradient norm on rank(s) {gradient_ranks} (every rank's loss finite)"


def accumulation_window(engine: Engine) -> tuple[int, int]:
    """(first, last) iteration of the gradient accumulation window that the engine's current iteration is in.

    A window is ``accumulation_steps`` micro-steps (1 for an engine without the setting), counted from each epoch's
    start; an epoch whose length they do not divide ends on a shorter window. The optimiser steps on a window's last
    iteration only, so the gradients of its earlier ones live in the parameters' ``.grad`` and in no checkpoint: a
    checkpoint taken before ``last`` resumes with the window's step short of them
    (:class:`~monai_ext.handlers.checkpointing.TrainingCheckpointer` saves only at a window's last iteration). The
    answer follows from the iteration and the epoch length alone, so every rank gets the same without a collective.
    """
    accumulation = getattr(engine, "accumulation_steps", 1)
    length = engine.state.epoch_length
    iteration = engine.state.iteration
    local = (iteration - 1) % length if length else iteration - 1  # 0-based position in the epoch
    first = iteration - local % accumulation
    window_start = local - local % accumulation
    window = min(accumulation, length - window_start) if length else accumulation
    return first, first + window - 1


def logs_loss(engine: Engine, log_interval: int) -> bool:
    """Whether the trainer's loss of this iteration is logged, and so averaged over ranks: every ``log_interval``-th
    iteration and each epoch's last. The same answer on every rank, as the collective requires; loggers of the loss
    (the bundles' MLflow tracking under torchrun) filter on it, so that none records one rank's loss as the run's."""
    length = engine.state.epoch_length
    last_of_epoch = bool(length) and engine.state.iteration % length == 0
    return engine.state.iteration % log_interval == 0 or last_of_epoch
