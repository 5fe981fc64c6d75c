"""Shared engine parts: autocast, batch unpacking, and a trainer with a robust optimisation step.

``SupervisedTrainer`` does its own forward/backward with a GradScaler for fp16 and nothing for clipping or
non-finite losses. :class:`RobustStepTrainer` replaces just the iteration; handlers, events, metrics, state and
``torchrun`` support stay MONAI's and ignite's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from ignite.engine import Events
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.transforms import Decollated

from monai_ext.engines.distributed import all_reduce_mean

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str):
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


class RobustStepTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` with bf16 autocast, gradient accumulation under DDP's ``no_sync``, gradient clipping and
    a guard against non-finite losses. Subclasses implement :meth:`forward_loss` for their batches.

    Args:
        precision: "bf16" (autocast on CUDA) or "fp32".
        clip_grad_norm: max gradient norm (None or 0: no clipping).
        max_nonfinite_steps: stop after this many consecutive non-finite losses (each such step is skipped).
        *args, **kwargs: as ``SupervisedTrainer`` (``accumulation_steps`` included).
    """

    def __init__(
        self,
        *args: Any,
        precision: str = "bf16",
        clip_grad_norm: float | None = 1.0,
        max_nonfinite_steps: int = 5,
        **kwargs: Any,
    ) -> None:
        # state.output is MONAI's decollated list of per-item dicts (the loss replicated in each), the form MONAI's
        # stock handlers and its `--tracking mlflow` settings read with from_engine(["loss"], first=True); on an
        # undecollated dict that returns a 1-tuple, which MLflow cannot log as a metric.
        kwargs.setdefault("decollate", True)
        super().__init__(*args, **kwargs)
        autocast(self.state.device, precision)  # validates the name early
        if max_nonfinite_steps < 1:
            raise ValueError(f"max_nonfinite_steps must be at least 1, got {max_nonfinite_steps!r}")
        self.precision = precision
        self.clip_grad_norm = clip_grad_norm
        self.max_nonfinite_steps = max_nonfinite_steps
        self.nonfinite_in_a_row = 0

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

    def _micro_step_flags(self, engine: RobustStepTrainer) -> tuple[bool, bool]:
        """(zero the gradients before this micro-step, step the optimiser after it)."""
        acc = engine.accumulation_steps
        length = engine.state.epoch_length
        local = (engine.state.iteration - 1) % length if length else engine.state.iteration - 1
        last_of_epoch = length is not None and local + 1 == length
        return local % acc == 0, (local + 1) % acc == 0 or last_of_epoch

    def _optimizer_step(self, engine: RobustStepTrainer, loss: torch.Tensor) -> None:
        """Clip and step, or skip the step when the loss or the gradients are not finite."""
        params = [p for group in engine.optimizer.param_groups for p in group["params"]]
        max_norm = self.clip_grad_norm or float("inf")
        total_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        # One host read per optimiser step; it is what lets a bad batch be skipped instead of poisoning the weights.
        if bool(torch.isfinite(loss) & torch.isfinite(total_norm)):
            engine.optimizer.step()
            self.nonfinite_in_a_row = 0
            return
        self.nonfinite_in_a_row += 1
        logger.warning(
            "non-finite loss or gradient at iteration %d: step skipped (%d in a row, limit %d)",
            engine.state.iteration, self.nonfinite_in_a_row, self.max_nonfinite_steps,
        )
        engine.optimizer.zero_grad(set_to_none=True)
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise FloatingPointError(f"{self.nonfinite_in_a_row} non-finite losses in a row; stopping the run")

    def _iteration(self, engine: RobustStepTrainer, batchdata: Any) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        zero_grad, step = self._micro_step_flags(engine)
        engine.network.train()
        if zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        # DDP all-reduces gradients only on the micro-step that steps the optimiser.
        sync = nullcontext() if step or not hasattr(engine.network, "no_sync") else engine.network.no_sync()
        with sync:
            with autocast(engine.state.device, self.precision):
                loss, outputs = self.forward_loss(engine, batchdata)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            (loss / engine.accumulation_steps).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if step:
            self._optimizer_step(engine, loss.detach())
            engine.fire_event(IterationEvents.MODEL_COMPLETED)
        # What is logged is the loss over all ranks (the local one stays available as "local_loss").
        return {**outputs, "loss": all_reduce_mean(loss.detach()), "local_loss": loss.detach()}
